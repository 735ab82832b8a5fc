"""`StaticPattern`: a sparsity pattern known at trace time, and what is derived from it.

In FEM, topology-optimization and stencil codes the BCOO's indices are concrete when the
operator is built (numpy arrays, or constants under `jit`). A `SparseOperator` built from
such indices carries a `StaticPattern`: a hashable static field that owns the host
`Pattern` (validation, the slot of every COO entry in the coalesced CSC pattern, CSC index
arrays, mirror pairs, the key of the symbolic analysis), computed once per distinct pattern.

With it, XLA sums the COO values into their CSC slots (a segment sum over constant slots),
and only the coalesced values cross into the host callback: no index transfer, no index
verification, no host coalescing. An operator whose indices are traced keeps the general
path, where the host derives the same `Pattern` from the indices it receives.

Patterns are interned: building two operators from equal index arrays gives the same
object, so `jit`'s cache compares them by identity. The table holds them weakly; a pattern
lives as long as an operator, a state or a compiled function refers to it.
"""

from __future__ import annotations

import threading
import weakref

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from .backends.base import fingerprint, Pattern


class StaticPattern:
    """A concrete sparsity pattern of an `n x n` matrix (see the module docstring).

    Made by `static_pattern`; never mutated. Equal patterns are the same object.
    """

    __slots__ = ("n", "nse", "host", "slot", "source", "_hash", "__weakref__")

    def __init__(self, n: int, indices: np.ndarray):
        host = Pattern(n, indices)
        host.indices.setflags(write=False)
        self.n = n
        self.nse = int(indices.shape[0])
        self.host = host
        index_type = np.int32 if max(host.nnz, self.nse) < 2**31 - 1 else np.int64
        self.slot = host.slot.astype(index_type)
        self.slot.setflags(write=False)
        #: Without duplicates, the COO entry of each CSC slot: the values are then gathered,
        #: which moves bits, where a sum would flush subnormal numbers (XLA on CPU does).
        self.source: np.ndarray | None = None
        kept = self.slot[self.slot < host.nnz]
        if not host.in_order and kept.size == host.nnz:  # every slot filled exactly once
            source = np.empty(host.nnz, dtype=index_type)
            source[kept] = np.flatnonzero(self.slot < host.nnz)
            source.setflags(write=False)
            self.source = source
        self._hash = hash(host.key)

    @property
    def nnz(self) -> int:
        """Stored entries after summing duplicates and dropping padding."""
        return self.host.nnz

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, StaticPattern):
            return NotImplemented
        return self._hash == other._hash and self.host.same_as(other.n, other.host.indices)

    def __repr__(self) -> str:
        return f"StaticPattern(n={self.n}, nse={self.nse}, nnz={self.nnz})"

    @property
    def indices(self) -> np.ndarray:
        """The COO indices it was made from, `(nse, 2)`, read-only."""
        return self.host.indices

    def __reduce__(self):
        return static_pattern, (np.asarray(self.host.indices), self.n)


_interned: weakref.WeakValueDictionary[tuple, StaticPattern] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def static_pattern(indices, size: int) -> StaticPattern:
    """The sparsity pattern of a `size x size` matrix's COO `indices`, computed once.

    Keep it where your program keeps static data (an `eqx.field(static=True)`, a closure)
    and build operators with [`lineax_sparse.SparseOperator.from_pattern`][]: their
    solvers then send only values to the host, even when the operator is an argument of a
    jitted function (where its index array would be a tracer). `SparseOperator` finds the
    pattern itself when its indices are concrete (NumPy, or constants under `jit`).

    **Arguments:**

    - `indices`: concrete `(nse, 2)` integer indices (NumPy or a non-traced JAX array),
        uncoalesced and padded as a BCOO's may be.
    - `size`: the matrix's order `n`.

    **Returns:**

    A hashable `StaticPattern`; equal indices give the same object. O(1) to find again (a
    sampled fingerprint and one exact comparison); O(nse log nse) the first time.
    """
    from ._operator import concrete_value, validate_indices

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


def intern(indices: np.ndarray, n: int) -> StaticPattern:
    """`static_pattern` for indices already validated (by `SparseOperator`)."""
    key = fingerprint(indices) + (n,)
    with _lock:
        found = _interned.get(key)
        if found is not None and found.host.same_as(n, indices):
            return found
    made = StaticPattern(n, indices)
    with _lock:
        found = _interned.get(key)
        if found is not None and found.host.same_as(n, indices):
            return found
        _interned[key] = made  # a colliding fingerprint replaces the older entry
    return made


def coalesce(data: Inexact[Array, "*batch nse"], pattern: StaticPattern) -> Array:
    """The values of the pattern's CSC entries: duplicates summed, padding dropped.

    One segment sum over constant slots, in XLA (batched like `data`); a gather when there
    are no duplicates; nothing for entries already unique and in CSC order. Half-precision
    values are summed in float32 (the host factorizes in double precision anyway). XLA on
    CPU flushes subnormal numbers to zero in arithmetic, so duplicates smaller than 2.2e-308
    sum to zero (documented in docs/reliability.md); gathers keep them.
    """
    if data.dtype in (jnp.float16, jnp.bfloat16):
        data = data.astype(jnp.float32)
    if pattern.host.in_order:  # already unique and in CSC order
        return data
    if pattern.source is not None:  # no duplicates: a permutation (padding left out)
        return jnp.take(data, jnp.asarray(pattern.source), axis=-1)
    slots = jnp.asarray(pattern.slot)
    total = pattern.nnz + 1  # the last slot takes padding entries, whatever they hold

    def one(values):
        return jax.ops.segment_sum(values, slots, num_segments=total)[: pattern.nnz]

    for _ in range(data.ndim - 1):
        one = jax.vmap(one)
    return one(data)


def plainly_valid(values: Inexact[Array, "*batch nnz"], pattern: StaticPattern) -> Array:
    """Whether coalesced real `values` are finite and exactly symmetric, per batch element.

    Computed in XLA beside the solve (two gathers and a comparison, fused), so that the
    host can skip its own O(nnz) finiteness and per-pair symmetry tests for the matrices
    that pass (FEM assembly from symmetric element matrices is exactly symmetric). False
    only means "check on the host", never "invalid". Complex values always say False.
    """
    batch = values.shape[:-1]
    lower, upper, unpaired = pattern.host.symmetry_pairs()
    if jnp.iscomplexobj(values) or unpaired.size:
        return jnp.zeros(batch, jnp.bool_)
    finite = jnp.all(jnp.isfinite(values), axis=-1)
    mine = jnp.take(values, jnp.asarray(lower), axis=-1)
    theirs = jnp.take(values, jnp.asarray(upper), axis=-1)
    return finite & jnp.all(mine == theirs, axis=-1)
