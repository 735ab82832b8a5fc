"""Matrix-free operators as sparse matrices: patterns, colourings, compressed products.

A lineax operator that only knows how to multiply (`FunctionLinearOperator` from
`jax.linearize`, a `JacobianLinearOperator`, sums and compositions of operators) is turned
into a `SparseOperator` given the sparsity pattern of its matrix:

1. the pattern is made canonical and hashable once (`JacobianPattern`), and coloured once
   per pattern on the host (asdex's greedy colouring, column or row, whichever needs fewer
   colours), never under a tracer;
2. one product per colour with a seed vector that sums the columns of that colour (forward
   mode, `operator.mv`) or the rows of that colour (reverse mode, `operator.T.mv`), all
   colours at once under `jax.vmap`;
3. the compressed products are gathered into the pattern's values (asdex's
   `decompress_data`): no entry of one colour shares a row (column) with another, so each
   value is read off exactly;
4. one more product in the same `vmap`, with a fixed probe vector, is compared with the
   sparse matrix's: a pattern that misses entries of the operator's matrix (a periodic
   stencil without its wrap-around, a `custom_jvp` rule that couples more than its
   function) would otherwise give a wrong matrix with no signal, so it is a runtime error
   (`eqx.error_if`: the values are traced under `jit`).

Everything in steps 2-3 is ordinary JAX: it runs under `jit`, and derivatives flow to
whatever the operator closes over. Pytrees in and out are flattened leaf by leaf in
`jax.tree_util` order, each leaf raveled in C order (the order `jax.flatten_util.ravel_pytree`
and asdex use).

Least squares. For an operator with more rows than columns (`GaussNewton`), or a Jacobian
stacked over a diagonal (`LevenbergMarquardt`'s damped operator `[J; sqrt(lambda) I]`), the
normal matrix `A^H A` is formed from the materialised values: its pattern and the pairs of
entries that multiply into each of its entries are computed once per pattern on the host,
and XLA sums the products into place (`NormalEquations`).
"""

from __future__ import annotations

import collections
import hashlib
import threading
import weakref
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jax.experimental import sparse as jsparse
from jaxtyping import Array

from .._host.registry import registry


# ------------------------------------------------------------------ pytree <-> vector


class Structure:
    """Flattens a pytree of a given structure into one vector and back, consistently."""

    def __init__(self, structure: Any):
        leaves, self.treedef = jtu.tree_flatten(structure)
        self.shapes = tuple(tuple(leaf.shape) for leaf in leaves)
        self.dtypes = tuple(jnp.dtype(leaf.dtype) for leaf in leaves)
        self.sizes = tuple(int(np.prod(shape, dtype=np.int64)) for shape in self.shapes)
        self.size = int(sum(self.sizes))
        self.dtype = jnp.result_type(*self.dtypes) if leaves else jnp.dtype(jnp.float32)
        self._key = (self.treedef, self.shapes, self.dtypes)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Structure) and self._key == other._key

    def flatten(self, tree: Any, dtype=None) -> Array:
        leaves = self.treedef.flatten_up_to(tree)
        dtype = self.dtype if dtype is None else dtype
        if not leaves:
            return jnp.zeros(0, dtype)
        return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])

    def unflatten(self, vector: Array) -> Any:
        pieces, start = [], 0
        for shape, dtype, size in zip(self.shapes, self.dtypes, self.sizes, strict=True):
            piece = vector[start : start + size].reshape(shape)
            if not jnp.issubdtype(dtype, jnp.complexfloating):
                piece = piece.real
            pieces.append(piece.astype(dtype))
            start += size
        return jtu.tree_unflatten(self.treedef, pieces)

    def with_dtype(self, dtype) -> Structure:
        """The same structure as one flat vector of `dtype` (what an inner solver sees)."""
        return Structure(jax.ShapeDtypeStruct((self.size,), dtype))


# ------------------------------------------------------------------ patterns


def _is_traced(x: Any) -> bool:
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
        return _cached(("bind", self, m, n), lambda: self._bind(m, n))

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
        return _cached(("coloring", self), self._coloring)

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
        return _cached(("normal", self), lambda: NormalEquations(self))


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


def _cached(key: tuple, make) -> Any:
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
    if _is_traced(sparsity) or _is_traced(getattr(sparsity, "indices", None)):
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


# ------------------------------------------------------------------ materialisation


def compressed_values(
    operator: lx.AbstractLinearOperator,
    pattern: JacobianPattern,
    inputs: Structure,
    outputs: Structure,
    verify: bool = True,
    argument: str = "sparsity",
) -> Array:
    """The operator's values at the pattern's entries (in pattern order), from one product
    per colour, verified (`verify`) by one more product with a probe vector in the same
    `vmap`: a pattern that misses entries raises a runtime error naming `argument`."""
    import asdex

    coloring = pattern.coloring()
    colours = int(coloring.num_colors)
    dtype = jnp.result_type(inputs.dtype, outputs.dtype)
    seeds = coloring.colors[None, :] == np.arange(colours)[:, None]
    if coloring.mode == "fwd":

        def product(seed):
            return outputs.flatten(operator.mv(inputs.unflatten(seed)), dtype)

    else:
        transposed = operator.transpose()

        def product(seed):
            return inputs.flatten(transposed.mv(outputs.unflatten(seed)), dtype)

    probe = _probe(seeds.shape[1]) if verify else None
    if probe is not None:
        seeds = np.concatenate([seeds, probe[None, :]])
    if seeds.shape[0] == 0:
        return jnp.zeros(0, dtype)
    products = jax.vmap(product)(jnp.asarray(seeds, dtype))
    if pattern.nnz == 0:
        data = jnp.zeros(0, dtype)
    else:
        data = asdex.decompress_data(products[:colours], coloring)
    if probe is None:
        return data
    return _verified(data, products[colours], probe, pattern, coloring.mode, argument)


#: The probe vector's seed: fixed, so that materialising is a deterministic function of the
#: operator (no global random state, the same probe under `jit`, `grad` and `vmap`).
_PROBE_SEED = 20_240_617

#: Relative tolerance of the probe check in units of the dtype's epsilon, capped at
#: sqrt(epsilon) for half precision (where 1024 epsilon is about 1). The check compares
#: two evaluations of the same derivative (the coloured products and the probe's), each
#: rounded by the function's own arithmetic: a few epsilon of the terms, far below it.
#: With probe entries in [1, 2), a missed entry trips it when it is larger than about
#: 2 x 1024 epsilon of the sum of its row's magnitudes: 5e-13 in float64, 2.4e-4 in
#: float32 (6% in float16, 18% in bfloat16).
_PROBE_ULPS = 1024


def _probe(size: int) -> np.ndarray:
    """A fixed vector with entries +-[1, 2): every entry of the matrix weighs at least its
    own size in the product (a normal vector's near-zero entries would hide a missed
    entry of their column), and random signs make cancellation of several missed entries
    in one row a coincidence of measure zero."""

    def make():
        rng = np.random.default_rng(_PROBE_SEED)
        signs = rng.choice(np.array([-1.0, 1.0]), size)
        vector = signs * rng.uniform(1.0, 2.0, size)
        vector.setflags(write=False)
        return vector

    return _cached(("probe", size), make)


def _verified(
    data: Array,
    probed: Array,
    probe: np.ndarray,
    pattern: JacobianPattern,
    mode: str,
    argument: str,
) -> Array:
    """`data`, with a runtime error if the sparse matrix's product with `probe` differs from
    the operator's (`probed`) beyond rounding: `A v` row by row for column colourings,
    `A^T w` column by column for row colourings (the product the operator was asked for).

    The tolerance of each row is scaled by its own `(|A| |v|)_i`, which bounds the
    rounding of both sides (`|A v| <= |A| |v|`), never by the row's size relative to other
    rows (rows of a multiphysics Jacobian differ by orders of magnitude);
    `epsilon * max_i (|A| |v|)_i` keeps rows whose terms cancel to nothing from tripping
    on noise. Measured on the tests' problems (diffusion, Brusselator, rows scaled over 30
    orders of magnitude, a diagonal cancelling to 1e-3 of its terms; float32 to
    complex128): differences below 2e-3 of the tolerance. Non-finite values are left to
    the solver, which reports them (`RESULTS.nonfinite_input`).
    """
    assert pattern.shape is not None  # bound to the operator
    rows, cols = jnp.asarray(pattern.rows), jnp.asarray(pattern.cols)
    m, n = pattern.shape
    if mode == "fwd":
        read, write, size, where = cols, rows, m, "rows"
    else:
        read, write, size, where = rows, cols, n, "columns"
    if size == 0:
        return data
    # Rows are sorted (the pattern is row-major): XLA's sorted segment sum is about twice
    # as fast on CPU (2.4 against 4.4 ms for both sums at 8e5 entries).
    by_row = mode == "fwd"
    terms = data * jnp.asarray(probe, data.dtype)[read]
    expected = jax.ops.segment_sum(terms, write, size, indices_are_sorted=by_row)
    magnitude = jax.ops.segment_sum(jnp.abs(terms), write, size, indices_are_sorted=by_row)
    eps = float(jnp.finfo(data.dtype).eps)
    rtol = min(_PROBE_ULPS * eps, eps**0.5)
    tolerance = rtol * magnitude + eps * jnp.max(magnitude)
    wrong = jnp.abs(probed - expected) > tolerance  # NaN compares False: not a pattern error
    where_wrong = ""
    if not _is_traced(wrong):  # outside a trace the rows are known now
        found = np.flatnonzero(np.asarray(wrong))
        shown = ", ".join(str(i) for i in found[:8]) + (", ..." if found.size > 8 else "")
        where_wrong = f" (in {where} {shown})"
    message = (
        f"`{argument}` misses nonzero entries of the operator's matrix: the materialised "
        f"matrix's product with a probe vector differs from the operator's beyond "
        f"rounding{where_wrong}, so the matrix, and any solve with it, would be wrong. "
        "Detect the pattern from the code with `lineax_sparse.detect_sparsity(fn, x)`, or "
        "add the missing entries (a periodic stencil couples its first and last points; a "
        "`custom_jvp` rule may couple more entries than its function). If the pattern is "
        "exact and the difference is rounding (a function that cancels large terms), "
        "`verify=False` turns this check off."
    )
    return eqx.error_if(data, jnp.any(wrong), message)


def operator_tags(operator: lx.AbstractLinearOperator) -> frozenset[object]:
    """The structure lineax knows of `operator`, as tags (they carry over)."""
    checks = (
        (lx.is_symmetric, lx.symmetric_tag),
        (lx.is_positive_semidefinite, lx.positive_semidefinite_tag),
        (lx.is_negative_semidefinite, lx.negative_semidefinite_tag),
        (lx.is_diagonal, lx.diagonal_tag),
        (lx.is_lower_triangular, lx.lower_triangular_tag),
        (lx.is_upper_triangular, lx.upper_triangular_tag),
        (lx.has_unit_diagonal, lx.unit_diagonal_tag),
    )
    tags = set()
    for predicate, tag in checks:
        try:
            if predicate(operator):
                tags.add(tag)
        except NotImplementedError:  # an operator lineax has no rule for
            pass
    return frozenset(tags)


def materialise(
    operator: lx.AbstractLinearOperator, sparsity: Any, tags: Any = None, verify: bool = True
) -> tuple[jsparse.BCOO, Any]:
    """The matrix and tags of `SparseOperator.from_operator` (see there), which wraps them."""
    if not isinstance(operator, lx.AbstractLinearOperator):
        raise ValueError(
            "`SparseOperator.from_operator(operator=...)` must be a lineax operator, got "
            f"{type(operator).__name__}."
        )
    inputs, outputs = Structure(operator.in_structure()), Structure(operator.out_structure())
    if inputs.size != outputs.size:
        raise ValueError(
            "`SparseOperator.from_operator` makes square matrices; the operator maps "
            f"{inputs.size} inputs to {outputs.size} outputs. For least squares, solve "
            "with `lineax_sparse.Materialise(...)`, which forms the normal equations."
        )
    pattern = as_pattern(sparsity).bind(outputs.size, inputs.size)
    data = compressed_values(
        operator, pattern, inputs, outputs, verify, "SparseOperator.from_operator(sparsity=...)"
    )
    tags = operator_tags(operator) if tags is None else tags
    bcoo = jsparse.BCOO((data, jnp.asarray(pattern.indices())), shape=pattern.shape)
    return bcoo, tags


# ------------------------------------------------------------------ least squares


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
