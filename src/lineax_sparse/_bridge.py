"""The only module that calls `jax.pure_callback`.

Two callbacks: `factor` (matrix arrays -> handle) and `solve` (handle, matrix arrays,
right-hand side -> solution, status). Both:

- see only arrays and static configuration (no tracer is ever closed over);
- use `vmap_method="expand_dims"`, so a whole vmapped batch is one host call and unbatched
  arguments are not broadcast before crossing to the host;
- hand their work to the owner thread and never raise for a data-dependent failure: the host
  returns a `Status` per system, mapped here onto `lineax.RESULTS`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Inexact, Int

from . import _host, _native
from ._native import BackendSpec
from .backends.base import Status


# One source of truth for how host outcomes read to a lineax user.
_STATUS_TO_RESULT = {
    Status.SINGULAR: lx.RESULTS.singular,
    Status.NONFINITE_INPUT: lx.RESULTS.nonfinite_input,
    Status.MAX_STEPS_REACHED: lx.RESULTS.max_steps_reached,
    Status.BREAKDOWN: lx.RESULTS.breakdown,
    # lineax has no "invalid input" result; an out-of-range index is upstream bad input.
    Status.INVALID_INDEX: lx.RESULTS.nonfinite_input,
    # lineax's `singular` message names "declared a property it does not satisfy".
    Status.NOT_POSITIVE_DEFINITE: lx.RESULTS.singular,
    Status.NOT_SYMMETRIC: lx.RESULTS.singular,
}


def status_to_result(status: Int[Array, ""]) -> lx.RESULTS:
    result = lx.RESULTS.successful
    for code, mapped in _STATUS_TO_RESULT.items():
        result = lx.RESULTS.where(status == code, mapped, result)
    return result


def _factor_host(spec: BackendSpec, n: int, values, indices):
    values, indices = np.asarray(values), np.asarray(indices)
    return _host.run(_native.factor_batch, spec, n, values, indices)


def _solve_host(spec: BackendSpec, n: int, transpose: bool, conjugate: bool, *arrays):
    arrays = [np.asarray(a) for a in arrays]
    x, status, steps, residual = _host.run(
        _native.solve_batch, spec, n, transpose, conjugate, *arrays
    )
    return x, status, steps, residual.astype(_residual_dtype(arrays[3].dtype))


def factor(
    spec: BackendSpec, n: int, values: Inexact[Array, " nse"], indices: Int[Array, "nse 2"]
) -> Int[Array, "2"]:
    """Factorize on the host; returns the handle as two int32."""
    return jax.pure_callback(
        functools.partial(_factor_host, spec, n),
        jax.ShapeDtypeStruct((2,), jnp.int32),
        values,
        indices,
        vmap_method="expand_dims",
    )


def solve(
    spec: BackendSpec,
    n: int,
    transpose: bool,
    conjugate: bool,
    handle: Int[Array, "2"],
    values: Inexact[Array, " nse"],
    indices: Int[Array, "nse 2"],
    rhs: Inexact[Array, " n"],
    guess: Inexact[Array, " n"] | None = None,
) -> tuple[Inexact[Array, " n"], lx.RESULTS, dict[str, Array]]:
    """Solve `op(A) x = rhs` on the host with the factorization under `handle`.

    The matrix arrays travel with the handle so that a missing or stale factorization is
    rebuilt on the host instead of failing. `guess` is an initial guess for iterative
    backends. Returns the solution, the result, and the statistics `num_steps` (iterations,
    or refinement steps of a direct solve) and `relative_residual` (`|b - Ax| / |b|`).
    """
    arrays = (handle, values, indices, rhs) + (() if guess is None else (guess,))
    solution, status, steps, residual = jax.pure_callback(
        functools.partial(_solve_host, spec, n, transpose, conjugate),
        (
            jax.ShapeDtypeStruct((n,), rhs.dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), _residual_dtype(rhs.dtype)),
        ),
        *arrays,
        vmap_method="expand_dims",
    )
    stats = {"num_steps": steps, "relative_residual": residual}
    return solution, status_to_result(status), stats


def _residual_dtype(dtype) -> np.dtype:
    # The real precision of the right-hand side (numpy only: also used inside the callback).
    return np.finfo(np.dtype(dtype)).dtype
