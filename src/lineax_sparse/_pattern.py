"""`StaticPattern`: a sparsity pattern known at trace time, and what is derived from it.

In FEM, topology-optimization and stencil codes the BCOO's indices are concrete when the
operator is built (numpy arrays, or constants under `jit`). A `SparseOperator` built from
such indices refers to a `StaticPattern`, which owns the host `Pattern` (validation, the
slot of every COO entry in the coalesced CSC pattern, CSC index arrays, mirror pairs, the key
of the symbolic analysis), computed once per distinct pattern.

With it, XLA sums the COO values into their CSC slots (a segment sum over constant slots),
and only the coalesced values cross into the host callback: no index transfer, no index
verification, no host coalescing. An operator whose indices are traced keeps the general
path, where the host derives the same `Pattern` from the indices it receives.

Who holds what. Static fields (an operator's, a solver state's) end up in JAX's own caches
(treedefs are cache keys, and some of those caches outlive `jax.clear_caches`), so they
hold only a `PatternKey`: a few integers. The arrays live in `StaticPattern` objects, held

- by the `SparseOperator` that was built from them (outside its pytree: the copies JAX
  transformations make hold the key only);
- by this module, for the `PATTERNS_HELD` most recently used patterns within the cache's
  byte budget, released by `lineax_sparse.clear_cache`;
- by whoever else keeps them: a user's variable (`static_pattern`), and the callbacks of the
  compiled programs that solve with them (freed with those programs by `jax.clear_caches`).

A key whose pattern is held nowhere any more is rebuilt from concrete indices, or (indices
traced) the solve sends its indices to the host, which interns the pattern again: never a
failure, only work. Equal index arrays give the same `StaticPattern` while one is alive.

Every key carries a 64-bit digest of its index array (`index_digest`), which the solvers
compare with the operator's actual indices (in XLA when they are traced): an operator whose
`indices` were replaced (`eqx.tree_at`) is an error, never a solve of its old pattern.
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact, Int

from ._registry import registry
from .backends.base import fingerprint, Pattern


#: Patterns this module keeps alive beyond their other holders, most recently used first,
#: within the cache's byte budget (the newest is kept whatever its size).
PATTERNS_HELD = 16

GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: spreads positions over 32 bits
_PRIME = 0x01000193  # FNV's 32-bit prime: spreads rows before their columns are mixed in


def mix32(x):
    """MurmurHash3's 32-bit finalizer on a uint32 array, NumPy or JAX: every input bit
    reaches every output bit, and distinct inputs give distinct outputs."""
    word = x.dtype.type  # np.uint32 for both kinds of array
    x = x ^ (x >> word(16))
    x = x * word(0x85EBCA6B)
    x = x ^ (x >> word(13))
    x = x * word(0xC2B2AE35)
    return x ^ (x >> word(16))


def index_digest(indices: np.ndarray) -> tuple[int, int]:
    """A 64-bit digest of every entry of COO `indices` and its position (two uint32).

    Each entry `(r, c)` at position `e` gives `h = mix((r * P ^ c) + e * G)` (one
    bijective 32-bit mix); the digest is `(sum h, sum h * (e * G | 1))`. It guards against
    indices replaced by mistake, not against an adversary. `traced_index_digest` computes
    the same in XLA. Indices are read modulo 2^32, so any integer dtype of the same values
    gives the same digest.
    """
    with np.errstate(over="ignore"):
        words = np.asarray(indices).astype(np.uint32)
        position = np.arange(words.shape[0], dtype=np.uint32) * np.uint32(GOLDEN)
        mixed = mix32(((words[:, 0] * np.uint32(_PRIME)) ^ words[:, 1]) + position)
        weighted = mixed * (position | np.uint32(1))
        return int(np.sum(mixed, dtype=np.uint32)), int(np.sum(weighted, dtype=np.uint32))


def traced_index_digest(indices: Int[Array, "nse 2"]) -> Array:
    """`index_digest` in XLA, as a uint32 vector of two (one fused pass over the indices:
    0.5 ms for 690k entries on one core, 0.1 ms for 77k, dispatch included)."""
    words = indices.astype(jnp.uint32)
    position = jax.lax.iota(jnp.uint32, words.shape[0]) * jnp.uint32(GOLDEN)
    mixed = mix32(((words[:, 0] * jnp.uint32(_PRIME)) ^ words[:, 1]) + position)
    weighted = mixed * (position | jnp.uint32(1))
    return jnp.stack([jnp.sum(mixed, dtype=jnp.uint32), jnp.sum(weighted, dtype=jnp.uint32)])


class PatternKey:
    """What a static field holds of a `StaticPattern`: a few integers, no arrays.

    Keys compare by the identity of the pattern they were made for (`serial`), so `jit`
    never confuses two patterns; `digest` is the index digest the solvers verify.
    """

    __slots__ = ("n", "nse", "nnz", "digest", "serial")

    def __init__(self, n: int, nse: int, nnz: int, digest: tuple[int, int], serial: int):
        self.n, self.nse, self.nnz, self.digest, self.serial = n, nse, nnz, digest, serial

    def __hash__(self) -> int:
        return hash((self.serial, self.digest))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatternKey):
            return NotImplemented
        return self.serial == other.serial

    def __repr__(self) -> str:
        return f"PatternKey(n={self.n}, nse={self.nse}, nnz={self.nnz})"

    def resolve(self) -> StaticPattern | None:
        """The pattern, if it is still held anywhere (and then marked recently used)."""
        found = _by_serial.get(self.serial)
        if found is not None:
            _hold(found)
        return found


class StaticPattern:
    """A concrete sparsity pattern of an `n x n` matrix (see the module docstring).

    Made by `static_pattern`; never mutated. Equal patterns are the same object while one
    is alive. Operators and solver states refer to it through its small `key`.
    """

    __slots__ = ("n", "nse", "host", "slot", "source", "key", "nbytes", "__weakref__")

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
        self.key = PatternKey(n, self.nse, host.nnz, index_digest(indices), next(_serials))
        self.nbytes = (
            host.nbytes + self.slot.nbytes + (0 if self.source is None else self.source.nbytes)
        )

    @property
    def nnz(self) -> int:
        """Stored entries after summing duplicates and dropping padding."""
        return self.host.nnz

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, StaticPattern):
            return NotImplemented
        return self.key.digest == other.key.digest and self.host.same_as(
            other.n, other.host.indices
        )

    def __repr__(self) -> str:
        return f"StaticPattern(n={self.n}, nse={self.nse}, nnz={self.nnz})"

    @property
    def indices(self) -> np.ndarray:
        """The COO indices it was made from, `(nse, 2)`, read-only."""
        return self.host.indices

    def __reduce__(self):
        return static_pattern, (np.asarray(self.host.indices), self.n)


_serials = itertools.count(1)
_interned: weakref.WeakValueDictionary[tuple, StaticPattern] = weakref.WeakValueDictionary()
_by_serial: weakref.WeakValueDictionary[int, StaticPattern] = weakref.WeakValueDictionary()
_held: collections.OrderedDict[int, StaticPattern] = collections.OrderedDict()
_lock = threading.RLock()


def _hold(pattern: StaticPattern) -> None:
    """Keep `pattern` alive as recently used; drop the oldest beyond the bounds."""
    limit = registry.info().limit
    with _lock:
        _held[pattern.key.serial] = pattern
        _held.move_to_end(pattern.key.serial)
        total = sum(p.nbytes for p in _held.values())
        while len(_held) > 1 and (len(_held) > PATTERNS_HELD or total > limit):
            _, dropped = _held.popitem(last=False)
            total -= dropped.nbytes


def _release_held() -> None:
    with _lock:
        _held.clear()


registry.on_clear(_release_held)


def held_nbytes() -> int:
    """Bytes of the patterns this module keeps alive (for tests and diagnostics)."""
    with _lock:
        return sum(p.nbytes for p in _held.values())


def static_pattern(indices, size: int) -> StaticPattern:
    """The sparsity pattern of a `size x size` matrix's COO `indices`, computed once.

    Keep it where your program keeps its data (a variable, a closure, an
    `eqx.field(static=True)` of your model) and build operators with
    [`lineax_sparse.SparseOperator.from_pattern`][]: their solvers then send only values to
    the host, even when the operator is an argument of a jitted function (where its index
    array would be a tracer). `SparseOperator` finds the pattern itself when its indices
    are concrete (NumPy, or constants under `jit`). The pattern holds O(nse) arrays for as
    long as you keep it; operators and solver states refer to it by a small key only.

    **Arguments:**

    - `indices`: concrete `(nse, 2)` integer indices (NumPy or a non-traced JAX array),
        uncoalesced and padded as a BCOO's may be.
    - `size`: the matrix's order `n`.

    **Returns:**

    A hashable `StaticPattern`; equal indices give the same object while it is alive. O(1)
    to find again (a sampled fingerprint and one exact comparison); O(nse log nse) the
    first time.
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
    if found is None or not found.host.same_as(n, indices):
        made = StaticPattern(n, indices)
        with _lock:
            found = _interned.get(key)
            if found is None or not found.host.same_as(n, indices):
                _interned[key] = made  # a colliding fingerprint replaces the older entry
                _by_serial[made.key.serial] = made
                found = made
    _hold(found)
    return found


def check_indices(
    key: PatternKey, indices: Int[Array, "nse 2"], data: Array, argument: str
) -> Array:
    """`data`, guarded so that it is never used with indices other than the pattern's.

    Concrete indices are compared now (a `ValueError`); traced ones by their digest in
    XLA, where a mismatch raises when the computation runs (`equinox.error_if`).
    """
    from ._operator import concrete_value

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
        found = key.resolve()
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
