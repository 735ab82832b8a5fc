"""The only module that calls back into the host (`_callback.host_call`, a copy-free
`jax.pure_callback`), and where handles are made.

`make_handle` computes a matrix's handle inside the computation, with no host call: a 64-bit
digest (two int32) of a strided sample of the matrix's values and indices. `solve` is the one
callback: (handle, matrix arrays, right-hand side) -> (solution, status, statistics). On the
host the handle keys the registry; the entry found there is verified against the arrays
exactly, and made (factorized) under that handle when absent. So the first solve of a matrix
factorizes it, and every later solve of the same matrix (its transposed solve in the backward
pass, a tangent solve, a solve with `state=`) finds that factorization.

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
  returns a `Status` per system, mapped here onto `lineax.RESULTS`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Inexact, Int

from .._host import native as _native, owner as _host
from .._host.patterns import GOLDEN, intern, mix32, PatternKey, StaticPattern
from ..backends.base import BackendSpec
from ..backends.status import Status
from .callback import host_call


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


def _solve_host(
    spec: BackendSpec,
    n: int,
    transpose: bool,
    conjugate: bool,
    has_guess: bool,
    has_aux: bool,
    key: PatternKey | None,
    pattern: StaticPattern | None,
    has_valid: bool,
    *arrays,
):
    arrays = [np.asarray(a) for a in arrays]
    valid = arrays.pop() if has_valid else None
    if pattern is not None:  # the values are the pattern's CSC values; no indices
        handle, values, rhs, *rest = arrays
        indices, static = None, pattern.host
    elif key is None:  # the general path: COO values and their indices
        handle, values, indices, rhs, *rest = arrays
        static = None
    else:  # CSC values of a pattern released since the trace: intern it from the indices
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
            )
        indices, static = None, found.host
    guess = rest.pop(0) if has_guess else None
    aux = rest.pop(0) if has_aux else None
    x, status, steps, residual = _host.run(
        _native.solve_batch,
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
        valid,
    )
    return x, status, steps, residual.astype(_residual_dtype(rhs.dtype))


#: Entries of each array sampled by `make_handle`; arrays up to this long are digested whole.
HANDLE_SAMPLE = 4096
_SEEDS = (0x3C6EF372, 0xA54FF53A)  # one per half of the handle


_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _words(array: Array) -> Array:
    """The bits of `array` as a flat uint32 vector (complex: real and imaginary parts)."""
    if jnp.iscomplexobj(array):
        array = jnp.stack([array.real, array.imag], axis=-1)
    itemsize = array.dtype.itemsize
    if itemsize >= 4:  # 64-bit: 2 words per entry
        return jax.lax.bitcast_convert_type(array, jnp.uint32).reshape(-1)
    # 8- and 16-bit types (float16, bfloat16, int8, ...): one word per entry.
    return jax.lax.bitcast_convert_type(array, _UNSIGNED[itemsize]).astype(jnp.uint32).reshape(-1)


def _sample(array: Array) -> Array:
    """At most `HANDLE_SAMPLE` evenly strided entries of the leading axis, and the last."""
    length = array.shape[0]
    if length <= HANDLE_SAMPLE:
        return array
    positions = np.append(np.arange(HANDLE_SAMPLE) * (length // HANDLE_SAMPLE), length - 1)
    return array[positions]


def make_handle(
    values: Inexact[Array, " nse"],
    indices: Int[Array, "nse 2"] | None,
    aux: Array | None = None,
    pattern: PatternKey | None = None,
) -> Int[Array, "2"]:
    """The handle of a matrix: a digest of its values and indices (and of the solver's
    auxiliary arrays `aux`, if any), as two int32. With a static pattern, `indices` is
    None and the digest of the pattern's indices (its key's) stands for them.

    Made in the computation (a gather of a few thousand entries and a few integer operations,
    no host call), so that it costs nothing next to a factorization. It only routes: two
    matrices with equal handles are told apart on the host by an exact comparison, so a
    collision costs a comparison, never a wrong answer.
    """
    values, indices, aux = jax.lax.stop_gradient((values, indices, aux))
    parts = [_words(_sample(values))]
    if indices is not None:
        parts.append(_words(_sample(indices)))
        salt = indices.shape[0]
    else:
        salt = pattern.digest[0] if pattern is not None else 0
    if aux is not None:
        parts.append(_words(_sample(aux.reshape(-1))))
    words = jnp.concatenate(parts)
    position = jax.lax.iota(jnp.uint32, words.shape[0]) * jnp.uint32(GOLDEN)
    sizes = jnp.uint32((values.shape[0] * 0x01000193 + salt) & 0xFFFFFFFF)
    halves = [
        jnp.sum(mix32(words ^ mix32(position + jnp.uint32(seed))), dtype=jnp.uint32) ^ sizes
        for seed in _SEEDS
    ]
    return jax.lax.bitcast_convert_type(jnp.stack(halves), jnp.int32)


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
    valid: Array | None = None,
) -> tuple[Inexact[Array, " n"], lx.RESULTS, dict[str, Array]]:
    """Solve `op(A) x = rhs` on the host with the factorization under `handle`.

    The matrix arrays travel with the handle: the host verifies the entry under `handle`
    against them, and factorizes them (under `handle`) when it holds none of this matrix, so
    a first, evicted, stale or forged handle costs a factorization, never a wrong answer.
    `valid` (static patterns, symmetric solvers) says per matrix that XLA found its values
    finite and exactly symmetric, so the host may skip those tests (False: test them).
    `guess` is an initial guess for iterative backends, `aux` the solver's arrays the
    factorization depends on (AMG's near-nullspace vectors), verified like the matrix.
    With a static pattern's `key`, `values` are its CSC values; `pattern` is the pattern
    itself when it is held (only the values cross, and the compiled callback keeps the
    pattern alive), or None when it was released, and then `indices` cross so that the
    host interns it again.
    Returns the solution, the result,
    and the statistics `num_steps` (iterations, or refinement steps of a direct solve) and
    `relative_residual` (`|b - Ax| / |b|`).
    """
    optional = tuple(a for a in (guess, aux, valid) if a is not None)
    matrix = (handle, values) if pattern is not None else (handle, values, indices)
    if key is None:
        pattern = None
    arrays = matrix + (rhs,) + optional
    host = functools.partial(
        _solve_host,
        spec,
        n,
        transpose,
        conjugate,
        guess is not None,
        aux is not None,
        key,
        pattern,
        valid is not None,
    )
    solution, status, steps, residual = host_call(
        host,
        (
            jax.ShapeDtypeStruct((n,), rhs.dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), _residual_dtype(rhs.dtype)),
        ),
        *arrays,
    )
    stats = {"num_steps": steps, "relative_residual": residual}
    return solution, status_to_result(status), stats


def _residual_dtype(dtype) -> np.dtype:
    """The dtype of `relative_residual`: float64 for double precision, float32 otherwise
    (float16 and bfloat16 included). numpy only: also used inside the callback."""
    double = np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.complex128))
    return np.dtype(np.float64 if double else np.float32)
