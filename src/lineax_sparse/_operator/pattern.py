"""Index patterns on the JAX side: `static_pattern`, and the check of an operator's indices.

The host owns the pattern's arrays and everything derived from them (`_host.patterns`):
the compiled program holds none of them, only the key. This module validates the indices a
user gives and checks that an operator's indices are still those of its pattern.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from .._bridge.callback import host_call
from .._host.patterns import GOLDEN, index_digest, intern, mix32, PatternKey, PRIME, StaticPattern
from .indices import concrete_value, validate_indices


#: Index arrays up to this size enter a program that builds an operator from its pattern
#: (`SparseOperator.from_pattern` under `jit`) as constants; larger ones are fetched from
#: the host when the program runs, and only where it computes with them. A constant costs
#: compile time and memory once per program (the 5.5 MB of the 180 x 60 MBB beam: about
#: 0.1 s); a fetch costs a copy and a check in every run (1.5 ms of a 26 ms gradient step
#: there, but under 1% of any factorization of 2M entries and more).
EMBEDDED_INDICES_MAX_BYTES = 16 << 20


def static_pattern(indices, size: int) -> StaticPattern:
    """The sparsity pattern of a `size x size` matrix's COO `indices`, computed once.

    Keep it where your program keeps its data (a variable, a closure, an
    `eqx.field(static=True)` of your model) and build operators with
    [`lineax_sparse.SparseOperator.from_pattern`][]: their solvers then send only values to
    the host, even when the operator is an argument of a jitted function (where its index
    array would be a tracer). `SparseOperator` finds the pattern itself when its indices
    are concrete (NumPy, or constants under `jit`). The pattern holds O(nse) arrays for as
    long as you keep it; operators and solver states refer to it by a small key only.

    The host keeps everything derived from the pattern (how duplicates are summed, the
    mirror pairs of the symmetry test, the symbolic analysis), so that a compiled
    program holds nothing of its size: pass the operator to the jitted function as an
    argument and the program's size and compile time do not grow with the matrix (see
    `from_pattern` for an operator built inside the jitted function).

    **Arguments:**

    - `indices`: concrete `(nse, 2)` integer indices (NumPy or a non-traced JAX array),
        uncoalesced and padded as a BCOO's may be.
    - `size`: the matrix's order `n`.

    **Returns:**

    A hashable `StaticPattern`; equal indices give the same object while it is alive. O(1)
    to find again (a sampled fingerprint and one exact comparison); O(nse log nse) the
    first time.
    """
    concrete = concrete_value(indices)
    if concrete is None:
        raise ValueError(
            "`static_pattern(indices=...)` must be concrete (NumPy, or a JAX array outside "
            "`jit`), got a tracer: build the pattern outside the jitted function."
        )
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
        raise ValueError(f"`static_pattern(size=...)` must be a non-negative int, got {size!r}.")
    validate_indices(concrete, int(size), "static_pattern(indices=...)")
    return intern(concrete, int(size))


def traced_index_digest(indices: Int[Array, "nse 2"]) -> Array:
    """`index_digest` in XLA, as a uint32 vector of two (one fused pass over the indices:
    0.5 ms for 690k entries on one core, 0.1 ms for 77k, dispatch included)."""
    words = indices.astype(jnp.uint32)
    position = jax.lax.iota(jnp.uint32, words.shape[0]) * jnp.uint32(GOLDEN)
    mixed = mix32(((words[:, 0] * jnp.uint32(PRIME)) ^ words[:, 1]) + position)
    weighted = mixed * (position | jnp.uint32(1))
    return jnp.stack([jnp.sum(mixed, dtype=jnp.uint32), jnp.sum(weighted, dtype=jnp.uint32)])


def check_indices(
    key: PatternKey, indices: Int[Array, "nse 2"], data: Array, argument: str
) -> Array:
    """`data`, guarded so that it is never used with indices other than the pattern's.

    Concrete indices are compared now (a `ValueError`); traced ones by their digest in
    XLA, where a mismatch raises when the computation runs (`equinox.error_if`).
    """
    message = (
        f"`{argument}`'s `indices` are not those of its static pattern: they were replaced "
        "(e.g. with `eqx.tree_at`) after the operator was built, so its solvers would "
        "solve the old matrix. Build a new operator from the new indices instead: "
        "`SparseOperator(BCOO((data, indices), shape=...))`, or "
        "`SparseOperator.from_pattern(lineax_sparse.static_pattern(indices, n), data)`."
    )
    if jnp.shape(indices) != (key.nse, 2):
        raise ValueError(message)
    concrete = concrete_value(indices)
    if concrete is not None:
        found = key.resolve(build=False)
        same = (
            found.host.same_as(key.n, concrete)
            if found is not None
            else index_digest(concrete) == key.digest
        )
        if not same:
            raise ValueError(message)
        return data
    expected = jnp.asarray(np.array(key.digest, dtype=np.uint32))
    differs = jnp.any(traced_index_digest(jax.lax.stop_gradient(indices)) != expected)
    return eqx.error_if(data, differs, message)


def staging() -> bool:
    """Whether JAX is staging a computation out (`jit`, `eqx.filter_jit`, the body of a
    `lax.scan`, ...): then even an operation on constants gives a tracer, where eager
    `grad` and `vmap` compute it."""
    return isinstance(jax.lax.full((), 0, jnp.int32), jax.core.Tracer)


def pattern_indices(pattern: StaticPattern, staged: bool) -> Array:
    """The pattern's indices as a JAX array, for an operator built from the pattern.

    Outside a staged computation (`staged` False) a device copy. Inside one, a constant of
    the program up to `EMBEDDED_INDICES_MAX_BYTES`; beyond, the output of a host callback
    that hands XLA the pattern's array each time the program runs (checked against the
    pattern like indices passed as an argument), so that the program's size does not grow
    with the pattern. The callback holds the pattern's index array (not a copy) for as
    long as the program lives, as an embedded constant would hold its copy.
    """
    indices = pattern.indices
    if not staged or indices.nbytes <= EMBEDDED_INDICES_MAX_BYTES:
        return jnp.asarray(indices)
    dtype = jax.dtypes.canonicalize_dtype(indices.dtype)  # int32 when x64 is off
    fetched = indices.astype(dtype, copy=False)
    return host_call(lambda: (fetched,), (jax.ShapeDtypeStruct(indices.shape, dtype),))[0]
