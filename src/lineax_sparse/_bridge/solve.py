"""`solve`: the one callback of a solve, (handle, matrix arrays, right-hand side) ->
(solution, status, statistics), through `callback.host_call` (a copy-free
`jax.pure_callback`).

On the host the handle (`handle.make_handle`) keys the registry; the entry found there is
verified against the arrays exactly, and made (factorized) under that handle when absent. So
the first solve of a matrix factorizes it, and every later solve of the same matrix (its
transposed solve in the backward pass, a tangent solve, a solve with `state=`) finds that
factorization.

Why one callback per solve rather than a factorization callback in `init` and a solve
callback in `compute`: each callback copies its array arguments (the matrix's values and
indices, 11 MB for the 180 x 60 MBB beam) in from XLA, and the solve needed the matrix arrays
anyway to be safe when its factorization was lost. Measured at n = 22k (CHOLMOD, values
changing every step): 2.5 ms between the two callbacks and 1.2 ms to find the handle's entry
again, of a 45 ms step.

The callback:

- sees only arrays and static configuration (no tracer is ever closed over);
- uses `vmap_method="expand_dims"`, so a whole vmapped batch is one host call and unbatched
  arguments are not broadcast before crossing to the host;
- hands its work to the owner thread and never raises for a data-dependent failure: the host
  returns a `Status` per system, mapped onto `lineax.RESULTS` by `status.status_to_result`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Inexact, Int

from .._host import owner
from .._host.batch import solve_batch
from .._host.patterns import intern, PatternKey, StaticPattern
from ..backends.base import BackendSpec
from ..backends.statistics import statistics_shapes
from ..backends.status import Status
from .callback import host_call
from .status import status_to_result


def _solve_host(
    spec: BackendSpec,
    statistics: tuple[tuple[str, tuple[int, ...]], ...],
    n: int,
    transpose: bool,
    conjugate: bool,
    has_guess: bool,
    has_aux: bool,
    key: PatternKey | None,
    pattern: StaticPattern | None,
    *arrays,
):
    arrays = [np.asarray(a) for a in arrays]
    if pattern is not None:  # the pattern's COO values; the host holds its indices
        handle, values, rhs, *rest = arrays
        indices, static = None, pattern.host
    elif key is None:  # the general path: COO values and their indices
        handle, values, indices, rhs, *rest = arrays
        static = None
    else:  # values of a pattern released since the trace: intern it from the indices
        handle, values, indices, rhs, *rest = arrays
        indices = indices.reshape(-1, *indices.shape[-2:])[0]
        found = intern(np.array(indices), n)
        if found.key.digest != key.digest:  # indices not the key's (`check_indices` raised)
            batch = np.broadcast_shapes(handle.shape[:-1], rhs.shape[:-1], values.shape[:-1])
            return (
                np.full(batch + (n,), np.nan, dtype=rhs.dtype),
                np.full(batch, Status.INVALID_INDEX, dtype=np.int32),
                np.zeros(batch, dtype=np.int32),
                np.full(batch, np.nan, dtype=_residual_dtype(rhs.dtype)),
                *(np.full(batch + shape, -1, dtype=np.int32) for _, shape in statistics),
            )
        indices, static = None, found.host
    guess = rest.pop(0) if has_guess else None
    aux = rest.pop(0) if has_aux else None
    x, status, steps, residual, extra = owner.run(
        solve_batch,
        spec,
        n,
        transpose,
        conjugate,
        handle,
        values,
        indices,
        rhs,
        guess,
        aux,
        static,
        None,
        dict(statistics),
    )
    residual = residual.astype(_residual_dtype(rhs.dtype))
    return x, status, steps, residual, *(extra[name] for name, _ in statistics)


def solve(
    spec: BackendSpec,
    n: int,
    transpose: bool,
    conjugate: bool,
    handle: Int[Array, "2"],
    values: Inexact[Array, " nse"],
    indices: Int[Array, "nse 2"] | None,
    rhs: Inexact[Array, " n"],
    guess: Inexact[Array, " n"] | None = None,
    aux: Array | None = None,
    key: PatternKey | None = None,
    pattern: StaticPattern | None = None,
) -> tuple[Inexact[Array, " n"], lx.RESULTS, dict[str, Array]]:
    """Solve `op(A) x = rhs` on the host with the factorization under `handle`.

    The matrix arrays travel with the handle: the host verifies the entry under `handle`
    against them, and factorizes them (under `handle`) when it holds none of this matrix, so
    a first, evicted, stale or forged handle costs a factorization, never a wrong answer.
    `guess` is an initial guess for iterative backends, `aux` the solver's arrays the
    factorization depends on (AMG's near-nullspace vectors), verified like the matrix.
    With a static pattern's `key`, `pattern` is the pattern itself when it is held (only
    the COO values cross, which the host sums into the pattern's CSC slots and tests for
    finiteness and symmetry itself, and the compiled callback keeps the pattern alive), or
    None when it was released, and then `indices` cross so that the host interns it again.
    Returns the solution, the result, and the statistics `num_steps` (iterations, or
    refinement steps of a direct solve), `relative_residual` (`|b - Ax| / |b|`),
    `reason` (the host's `Status` code, int32: 0 on success; see `reasons.REASONS`) and
    the backend's factorization statistics (`AbstractBackend.factor_statistics`: PARDISO's
    `inertia`), int32, -1 where unknown.
    """
    optional = tuple(a for a in (guess, aux) if a is not None)
    matrix = (handle, values) if pattern is not None else (handle, values, indices)
    if key is None:
        pattern = None
    arrays = matrix + (rhs,) + optional
    # The backend's factorization statistics (PARDISO's inertia), declared at trace time.
    statistics = tuple(sorted(statistics_shapes(spec).items()))
    host = functools.partial(
        _solve_host,
        spec,
        statistics,
        n,
        transpose,
        conjugate,
        guess is not None,
        aux is not None,
        key,
        pattern,
    )
    solution, status, steps, residual, *extra = host_call(
        host,
        (
            jax.ShapeDtypeStruct((n,), rhs.dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), _residual_dtype(rhs.dtype)),
            *(jax.ShapeDtypeStruct(shape, jnp.int32) for _, shape in statistics),
        ),
        *arrays,
    )
    # `reason`: the host's own code, finer than the lineax result (`reasons.REASONS`).
    stats = {"num_steps": steps, "relative_residual": residual, "reason": status}
    stats.update(zip((name for name, _ in statistics), extra, strict=True))
    return solution, status_to_result(status), stats


def _residual_dtype(dtype) -> np.dtype:
    """The dtype of `relative_residual`: float64 for double precision, float32 otherwise
    (float16 and bfloat16 included). numpy only: also used inside the callback."""
    double = np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.complex128))
    return np.dtype(np.float64 if double else np.float32)
