"""`StaticPattern`: a sparsity pattern known at trace time, and what is derived from it.

In FEM, topology-optimization and stencil codes the BCOO's indices are concrete when the
operator is built (numpy arrays, or constants under `jit`). A `SparseOperator` built from
such indices refers to a `StaticPattern`, which owns the host `Pattern` (validation, the
slot of every COO entry in the coalesced CSC pattern, CSC index arrays, mirror pairs, the key
of the symbolic analysis), computed once per distinct pattern.

With it, only the operator's values cross into the host callback, which sums them into
their CSC slots with the pattern's maps: no index transfer, no index comparison, and
nothing of the pattern in the compiled program. XLA holds no O(nse) constant for a static
pattern (no slots, no mirror pairs), so a program's size and compile time do not grow with
the matrix; it gets indices only as the operator's own array, and only where it computes
with them (products with the matrix, derivatives with respect to its values). An operator
whose indices are traced keeps the general path, where the host derives the same `Pattern`
from the indices it receives.

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

import numpy as np

from ..backends.pattern import fingerprint, Pattern
from .registry import registry


#: Patterns this module keeps alive beyond their other holders, most recently used first,
#: within the cache's byte budget (the newest is kept whatever its size).
PATTERNS_HELD = 16

GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: spreads positions over 32 bits
#: Entries digested at a time by `index_digest` (its temporaries: a few times 4 MiB).
DIGEST_BLOCK = 1 << 20
PRIME = 0x01000193  # FNV's 32-bit prime: spreads rows before their columns are mixed in


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
    indices = np.asarray(indices)
    first = second = np.uint32(0)
    # In blocks: the temporaries of one pass over 39M entries held 0.6 GB at once.
    with np.errstate(over="ignore"):
        for start in range(0, indices.shape[0], DIGEST_BLOCK):
            words = indices[start : start + DIGEST_BLOCK].astype(np.uint32)
            position = np.arange(start, start + words.shape[0], dtype=np.uint32)
            position *= np.uint32(GOLDEN)
            mixed = mix32(((words[:, 0] * np.uint32(PRIME)) ^ words[:, 1]) + position)
            first += np.sum(mixed, dtype=np.uint32)
            second += np.sum(mixed * (position | np.uint32(1)), dtype=np.uint32)
    return int(first), int(second)


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

    def resolve(self, build: bool = True) -> StaticPattern | None:
        """The pattern, if it is still held anywhere (and then marked recently used).

        The key of a transpose's pattern (`mirror_key`) finds it built on first use, from
        the pattern it mirrors while that one is alive; not with `build=False`.
        """
        found = _by_serial.get(self.serial)
        if found is None and build:
            found = _build_mirror(self)
        if found is not None:
            _hold(found)
        return found


class StaticPattern:
    """A concrete sparsity pattern of an `n x n` matrix (see `lineax_sparse.static_pattern`).

    Made by `static_pattern`; never mutated. Equal patterns are the same object while one
    is alive. Operators and solver states refer to it through its small `key`.
    """

    __slots__ = ("n", "nse", "host", "key", "__weakref__")

    def __init__(self, n: int, indices: np.ndarray):
        host = Pattern(n, indices)
        host.indices.setflags(write=False)
        self.n = n
        self.nse = int(indices.shape[0])
        self.host = host
        self.key = PatternKey(n, self.nse, host.nnz, index_digest(indices), next(_serials))

    @property
    def nbytes(self) -> int:
        """Bytes of the host pattern's arrays (growing as maps are derived from it)."""
        return self.host.nbytes

    @property
    def slot(self) -> np.ndarray:
        """The CSC position each COO entry is summed into (`nnz` for padding), `(nse,)`."""
        return self.host.slot

    @property
    def source(self) -> np.ndarray | None:
        """Without duplicates (and not in CSC order already), the COO entry of each CSC
        position, `(nnz,)`: the values are then gathered, not summed. Else None."""
        return self.host.source

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
        return intern, (np.array(self.host.indices), self.n)


_serials = itertools.count(1)
_interned: weakref.WeakValueDictionary[tuple, StaticPattern] = weakref.WeakValueDictionary()
_by_serial: weakref.WeakValueDictionary[int, StaticPattern] = weakref.WeakValueDictionary()
_held: collections.OrderedDict[int, StaticPattern] = collections.OrderedDict()
_lock = threading.RLock()
#: The key of each pattern's mirror and of each mirror's pattern, by serial (`mirror_key`).
_mirror_keys: collections.OrderedDict[int, PatternKey] = collections.OrderedDict()
#: The pattern each mirror key was made from, while it is alive.
_mirrored: weakref.WeakValueDictionary[int, StaticPattern] = weakref.WeakValueDictionary()
#: Mirror keys remembered (a few integers each), most recently made last.
MIRRORS_KEPT = 1024


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


def intern(indices: np.ndarray, n: int) -> StaticPattern:
    """The `StaticPattern` of validated `indices` (`lineax_sparse.static_pattern` validates)."""
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


def mirror_key(key: PatternKey) -> PatternKey | None:
    """The key of the pattern with rows and columns swapped (a transpose's), made without
    building that pattern; None when `key`'s pattern is held nowhere.

    Every gradient through `lineax.linear_solve` transposes the operator, and the
    transpose's pattern is used only if something solves with it: building it at trace
    time cost as much as the pattern itself (O(nse log nse), and its arrays kept: 0.3 GB
    at 5M entries). The mirror's key costs one digest of its indices, once per pattern;
    `PatternKey.resolve` builds the mirror on first use. The mirror of a mirror key is
    the key it was made from.
    """
    with _lock:
        found = _mirror_keys.get(key.serial)
        if found is not None:
            _mirror_keys.move_to_end(key.serial)
            return found
    pattern = key.resolve()
    if pattern is None:
        return None
    digest = index_digest(pattern.indices[:, ::-1])
    mirror = PatternKey(key.n, key.nse, key.nnz, digest, next(_serials))
    with _lock:
        found = _mirror_keys.get(key.serial)
        if found is not None:
            return found
        _mirror_keys[key.serial] = mirror
        _mirror_keys[mirror.serial] = key
        _mirrored[mirror.serial] = pattern
        while len(_mirror_keys) > 2 * MIRRORS_KEPT:
            _mirror_keys.popitem(last=False)
    return mirror


def _build_mirror(key: PatternKey) -> StaticPattern | None:
    """The pattern of a mirror key, built from the pattern it mirrors (None if released)."""
    with _lock:
        original = _mirrored.get(key.serial)
    if original is None:
        return None
    built = intern(np.ascontiguousarray(original.indices[:, ::-1]), original.n)
    with _lock:
        # An equal pattern may exist under its own key: the mirror key finds it too.
        _by_serial[key.serial] = built
    return built
