"""`JacobianPattern`: a concrete sparsity pattern of an operator's matrix, and what is
derived from it on the host.

The pattern is made canonical and hashable once (`as_pattern` accepts every description
users give: scipy, BCOO, dense, index pairs, asdex), bound to an operator's shape (`bind`),
and coloured once per pattern on the host (asdex's greedy colouring, column or row,
whichever needs fewer colours), never under a tracer.

Least squares. For an operator with more rows than columns (`GaussNewton`), or a Jacobian
stacked over a diagonal (`LevenbergMarquardt`'s damped operator `[J; sqrt(lambda) I]`), the
normal matrix `A^H A` is formed from the materialised values: its pattern and the pairs of
entries that multiply into each of its entries are computed once per pattern on the host,
and XLA sums the products into place (`NormalEquations`).

Static fields live on in JAX's caches, so they hold a `SparsityKey` (a 128-bit digest), not
the pattern's arrays. What is computed per pattern is kept in one small bounded table
(`cached`), emptied by `lineax_sparse.clear_cache`.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax.experimental import sparse as jsparse
from jaxtyping import Array

from .._host.registry import registry


def is_traced(x: Any) -> bool:
    """Whether any leaf of `x` is a tracer (a value known only when the program runs)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(x))


class JacobianPattern:
    """A concrete sparsity pattern of an `m x n` matrix, hashable by content.

    `rows` and `cols` are sorted (row-major) and unique; `shape` is None when the pattern
    was given as index arrays and takes the operator's shape when it is bound
    (`Materialise.init`). Everything derived from it (the colouring, the normal
    equations' maps) is computed once per pattern on the host and kept in a small bounded
    table.
    """

    __slots__ = ("rows", "cols", "shape", "_hash", "_key", "__weakref__")

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int] | None):
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        if rows.shape != cols.shape:
            raise ValueError(
                "A sparsity pattern needs as many row as column indices, got "
                f"{rows.shape} and {cols.shape}."
            )
        if rows.size and (rows.min() < 0 or cols.min() < 0):
            raise ValueError("A sparsity pattern's indices must be non-negative.")
        if shape is not None:
            m, n = (int(s) for s in shape)
            if rows.size and (rows.max() >= m or cols.max() >= n):
                raise ValueError(
                    f"A sparsity pattern of shape {(m, n)} has an index outside it "
                    f"(largest row {rows.max()}, largest column {cols.max()})."
                )
            shape = (m, n)
        width = int(cols.max()) + 1 if cols.size else 1
        keys = np.unique(rows * width + cols)
        self.rows = (keys // width).astype(np.int32)
        self.cols = (keys % width).astype(np.int32)
        self.rows.setflags(write=False)
        self.cols.setflags(write=False)
        self.shape = shape
        self._hash: int | None = None
        self._key: SparsityKey | None = None

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.shape, self.rows.tobytes(), self.cols.tobytes()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return (
            isinstance(other, JacobianPattern)
            and self.shape == other.shape
            and np.array_equal(self.rows, other.rows)
            and np.array_equal(self.cols, other.cols)
        )

    def __repr__(self) -> str:
        shape = "unbound" if self.shape is None else f"{self.shape[0]} x {self.shape[1]}"
        return f"JacobianPattern({shape}, nnz={self.nnz})"

    @property
    def key(self) -> SparsityKey:
        """What a static field holds of this pattern (a 128-bit digest of its content);
        the pattern is found again from it while anything else holds the pattern."""
        if self._key is None:
            digest = hashlib.blake2b(digest_size=16)
            for part in (np.asarray(self.shape or (-1, -1), np.int64), self.rows, self.cols):
                digest.update(part.tobytes())
            self._key = SparsityKey(self.shape, self.nnz, digest.digest())
            with _pattern_lock:
                _by_key[self._key] = self
        return self._key

    def bind(self, m: int, n: int) -> JacobianPattern:
        """This pattern for an operator with `m` outputs and `n` inputs.

        A square operator's pattern always includes the diagonal: implicit solvers solve
        `I - h gamma J`, and a structural zero costs one stored value. An operator with `n`
        more rows than a pattern with a shape (`[J; D]`, Levenberg-Marquardt's damped
        operator) gets the diagonal block `D` appended below the pattern's rows. A pattern
        given as `(rows, cols)` takes the operator's shape.
        """
        return cached(("bind", self, m, n), lambda: self._bind(m, n))

    def _bind(self, m: int, n: int) -> JacobianPattern:
        rows, cols = self.rows, self.cols
        given = (m, n) if self.shape is None else self.shape  # index pairs take any shape
        if given[1] != n:
            raise ValueError(
                f"The sparsity pattern has {given[1]} columns, the operator {n} inputs."
            )
        if rows.size and (rows.max() >= given[0] or cols.max() >= n):
            raise ValueError(
                f"The sparsity pattern has an index outside the operator's shape {(m, n)}."
            )
        diagonal = np.arange(n)
        if given[0] == m == n:
            return JacobianPattern(
                np.concatenate([rows, diagonal]), np.concatenate([cols, diagonal]), (m, n)
            )
        if given[0] == m:
            return JacobianPattern(rows, cols, (m, n))
        if given[0] + n == m:
            return JacobianPattern(
                np.concatenate([rows, given[0] + diagonal]),
                np.concatenate([cols, diagonal]),
                (m, n),
            )
        raise ValueError(
            f"The sparsity pattern has {given[0]} rows, the operator {m} outputs (and {n} "
            "inputs): give the pattern of the whole operator, or of `J` for an operator "
            "`[J; D]` with `D` diagonal n x n (Levenberg-Marquardt's damped operator)."
        )

    def coloring(self):
        """asdex's colouring of this pattern: columns or rows, whichever needs fewer."""
        assert self.shape is not None
        return cached(("coloring", self), self._coloring)

    def _coloring(self):
        import asdex

        pattern = asdex.SparsityPattern.from_coo(self.rows, self.cols, self.shape)
        if self.nnz == 0:
            return asdex.jacobian_coloring_from_sparsity(pattern)
        # The choice `asdex.jacobian_coloring_from_sparsity` makes (ties to columns: JVPs
        # are cheaper), made here because asdex also warns (`DenseColoringWarning`) when a
        # colouring needs as many colours as the dense Jacobian: a correct result (a small
        # system, a dense row and column) that `-W error` (optimistix's test setting) turns
        # into a failure of the user's program. The docs say what a dense pattern costs.
        column_colors, column_count = asdex.color_cols(pattern)
        row_colors, row_count = asdex.color_rows(pattern)
        if column_count <= row_count:
            colors, count, mode = column_colors, column_count, "fwd"
        else:
            colors, count, mode = row_colors, row_count, "rev"
        return asdex.ColoredPattern(
            pattern, colors=colors, num_colors=int(count), symmetric=False, mode=mode
        )

    def indices(self) -> np.ndarray:
        return np.stack([self.rows, self.cols], axis=1)

    def normal_equations(self) -> NormalEquations:
        return cached(("normal", self), lambda: NormalEquations(self))


class SparsityKey:
    """A `JacobianPattern` as a static field holds it: its shape, size and a 128-bit digest
    of its content, no arrays (static fields live on in JAX's caches)."""

    __slots__ = ("shape", "nnz", "digest")

    def __init__(self, shape: tuple[int, int] | None, nnz: int, digest: bytes):
        self.shape, self.nnz, self.digest = shape, nnz, digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparsityKey):
            return NotImplemented
        return self.digest == other.digest and self.shape == other.shape

    def __repr__(self) -> str:
        return f"SparsityKey(shape={self.shape}, nnz={self.nnz})"

    def resolve(self) -> JacobianPattern | None:
        with _pattern_lock:
            return _by_key.get(self)


#: Everything computed per pattern (bound patterns, colourings, normal-equation maps), most
#: recently used last. Bounded: a program with more live patterns recomputes, never grows;
#: emptied by `clear_cache`.
_PATTERN_CACHE_SIZE = 64
_pattern_cache: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
_pattern_lock = threading.Lock()
#: Patterns by key while anything holds them (the `Materialise` built with one, the table
#: above): copies of a solver made by JAX transformations hold the key only.
_by_key: weakref.WeakValueDictionary[SparsityKey, JacobianPattern] = weakref.WeakValueDictionary()


def _release_patterns() -> None:
    with _pattern_lock:
        _pattern_cache.clear()


registry.on_clear(_release_patterns)


def cached(key: tuple, make: Callable[[], Any]) -> Any:
    """The value filed under `key` in the per-pattern table, made by `make()` if absent."""
    with _pattern_lock:
        if key in _pattern_cache:
            _pattern_cache.move_to_end(key)
            return _pattern_cache[key]
    value = make()
    with _pattern_lock:
        _pattern_cache[key] = value
        while len(_pattern_cache) > _PATTERN_CACHE_SIZE:
            _pattern_cache.popitem(last=False)
    return value


def as_pattern(sparsity: Any, argument: str = "sparsity") -> JacobianPattern:
    """Any accepted description of a sparsity pattern as a `JacobianPattern`.

    Accepted: a scipy.sparse matrix or array, a `jax.experimental.sparse.BCOO`, a dense
    boolean (or numeric: nonzeros count) 2-D array, a `(rows, cols)` pair of index arrays,
    an asdex `SparsityPattern` or `ColoredPattern` (what `detect_sparsity` returns), or a
    `JacobianPattern`. All must be concrete: numpy arrays, or jax arrays outside a trace.
    """
    if isinstance(sparsity, JacobianPattern):
        return sparsity
    if is_traced(sparsity) or is_traced(getattr(sparsity, "indices", None)):
        raise ValueError(
            f"`{argument}` must be concrete, got a traced array. A sparsity pattern is "
            "structure, not data: a jax array passed into a jitted function becomes a "
            "tracer. Build the solver outside `jax.jit` (or close over the pattern instead "
            "of passing it as an argument), from numpy or scipy arrays."
        )
    kind = type(sparsity).__name__
    module = type(sparsity).__module__
    if module.startswith("asdex"):
        pattern = getattr(sparsity, "sparsity", sparsity)  # a ColoredPattern holds one
        return JacobianPattern(pattern.rows, pattern.cols, tuple(pattern.shape))
    if isinstance(sparsity, jsparse.BCOO):
        if sparsity.n_batch or sparsity.n_dense or len(sparsity.shape) != 2:
            raise ValueError(f"`{argument}` must be an unbatched 2-D BCOO, got {sparsity.shape}.")
        indices = np.asarray(sparsity.indices)
        m, n = sparsity.shape
        keep = (indices[:, 0] < m) & (indices[:, 1] < n)  # BCOO padding
        return JacobianPattern(indices[keep, 0], indices[keep, 1], (m, n))
    if hasattr(sparsity, "tocoo") and hasattr(sparsity, "nnz"):  # scipy.sparse
        coo = sparsity.tocoo()
        return JacobianPattern(coo.row, coo.col, coo.shape)
    if isinstance(sparsity, tuple) and len(sparsity) == 2:
        rows, cols = (np.asarray(part) for part in sparsity)
        if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(cols.dtype, np.integer)):
            raise ValueError(
                f"`{argument}=(rows, cols)` must hold integer index arrays, got "
                f"{rows.dtype} and {cols.dtype}."
            )
        return JacobianPattern(rows, cols, None)
    array = np.asarray(sparsity) if hasattr(sparsity, "__array__") else None
    if array is not None and array.ndim == 2:
        rows, cols = np.nonzero(array)
        return JacobianPattern(rows, cols, array.shape)
    raise ValueError(
        f"`{argument}` must be a scipy.sparse matrix, a BCOO, a dense boolean 2-D array, a "
        f"`(rows, cols)` pair of index arrays or an asdex pattern (`lxs.detect_sparsity`), "
        f"got {kind}."
    )


class NormalEquations:
    """The pattern of `A^H A` for a pattern of `A` (m x n, m > n), and the map that sums
    products of `A`'s values into it: entry `k` of `A^H A` is the sum over the pairs `p` with
    `slot[p] = k` of `conj(a[first[p]]) * a[second[p]]`. Computed once per pattern."""

    def __init__(self, pattern: JacobianPattern):
        assert pattern.shape is not None
        m, n = pattern.shape
        rows, cols = pattern.rows.astype(np.int64), pattern.cols.astype(np.int64)
        counts = np.bincount(rows, minlength=m)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # rows are sorted
        per_entry = counts[rows]
        first = np.repeat(np.arange(rows.size), per_entry)
        offsets = np.arange(first.size) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
        second = np.repeat(starts[rows], per_entry) + offsets
        keys, slot = np.unique(cols[first] * n + cols[second], return_inverse=True)
        self.first, self.second = first.astype(np.int32), second.astype(np.int32)
        self.slot = slot.astype(np.int32).ravel()
        self.pattern = JacobianPattern(keys // n, keys % n, (n, n))
        # `np.unique` sorts the keys row-major, as `JacobianPattern` stores its entries.
        self.size = int(keys.size)

    def values(self, data: Array) -> Array:
        products = jnp.conj(data[self.first]) * data[self.second]
        return jax.ops.segment_sum(products, jnp.asarray(self.slot), self.size)
