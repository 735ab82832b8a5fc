"""`SparseOperator`: a `lineax.AbstractLinearOperator` over a `jax.experimental.sparse.BCOO`.

The operator keeps the BCOO's `data` and `indices` as its array leaves, so that JAX
transformations (grad with respect to `data`, vmap over `data`) see them directly. Entries
follow BCOO's semantics: duplicates are summed, and entries whose row or column index equals
`n` (the padding written by `BCOO.sum_duplicates(nse=...)` under jit) are ignored.
Matrix-vector products are one gather and one scatter-add: O(nnz), differentiable with
respect to `data` in both modes.

`dispatch` registers it with every lineax singledispatch function.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.experimental import sparse as jsparse
from jaxtyping import Array, Inexact, Int

from .._host.patterns import intern, mirror_key, PatternKey, StaticPattern
from .._matrixfree.products import materialise
from .indices import concrete_value, validate_matrix
from .pattern import check_indices, pattern_indices, staging


#: `SparseOperator.as_matrix` warns above this many unknowns (a dense LU of 1,000 unknowns
#: already costs more than a sparse factorization of most such matrices).
DENSIFY_WARNING = 1000


def _frozenset(tags: object | Iterable[object]) -> frozenset[object]:
    if isinstance(tags, (frozenset, set, list, tuple)):
        return frozenset(tags)
    return frozenset([tags])


class SparseOperator(lx.AbstractLinearOperator):
    """A square sparse matrix as a lineax linear operator.

    Built from a `jax.experimental.sparse.BCOO` (or, through
    [`lineax_sparse.SparseOperator.from_scipy`][], from any scipy.sparse matrix), it works
    with every lineax solver, and is the operator the lineax-sparse solvers require.

    ```python
    A = lxs.SparseOperator(bcoo, tags=lx.positive_semidefinite_tag)
    x = lx.linear_solve(A, b, solver=lxs.Cholmod()).value
    ```

    Tags declare structure exactly as for `lineax.MatrixLinearOperator`: they are promises
    about the values, used to pick solvers. lineax-sparse's solvers still check the
    properties they depend on (symmetry for `Cholmod`) on the host.

    Values may be float16, bfloat16, float32, float64, complex64 or complex128 (the
    solvers factorize in double precision on the host and return the input's precision),
    indices any integer type.
    """

    data: Inexact[Array, " nse"]
    indices: Int[Array, "nse 2"]
    size: int = eqx.field(static=True)
    tags: frozenset[object] = eqx.field(static=True)
    #: The key of the pattern, when the indices were concrete at construction (see
    #: `_pattern`): the solvers then use that pattern, and only values cross to the host.
    #: A key, not the pattern, because static fields end up in JAX's caches.
    pattern_key: PatternKey | None = eqx.field(static=True)

    def __init__(
        self,
        matrix: jsparse.BCOO,
        tags: object | Iterable[object] = (),
        *,
        _pattern: StaticPattern | PatternKey | None = None,
    ):
        """**Arguments:**

        - `matrix`: a square `jax.experimental.sparse.BCOO` with floating or complex
            values, no batch dimensions and no dense blocks. It may be uncoalesced
            (duplicates are summed) and may contain padding entries at index `n`.
        - `tags`: any lineax tags (e.g. `lineax.positive_semidefinite_tag`), or a
            collection of them.
        """
        key = _pattern.key if isinstance(_pattern, StaticPattern) else _pattern
        if key is None:
            validate_matrix(matrix)
        self.data = matrix.data
        self.indices = matrix.indices
        self.size = matrix.shape[0]
        self.tags = _frozenset(tags)
        held = _pattern if isinstance(_pattern, StaticPattern) else None
        if key is None:
            concrete = concrete_value(matrix.indices)
            if concrete is not None:
                held = intern(concrete, self.size)
                key = held.key
        # (from `from_pattern` and `_with_tags`, the key is given: the indices are its own)
        self.pattern_key = key
        # The operator built here keeps its pattern alive, outside its pytree (so not in
        # treedefs, nor in JAX's caches): copies made by transformations find it by key
        # while this one lives.
        object.__setattr__(self, "_held_pattern", held)

    @property
    def pattern(self) -> StaticPattern | None:
        """The operator's static pattern: None when its indices were traced when it was
        built, or when the pattern was released (`clear_cache`) and its indices are traced
        now; concrete indices find or rebuild it."""
        key = self.pattern_key
        if key is None:
            return None
        found = key.resolve()
        if found is None:
            concrete = concrete_value(self.indices)
            if concrete is not None and concrete.shape == (key.nse, 2):
                found = intern(concrete, self.size)
        return found

    def _static_pattern_and_data(self) -> tuple[StaticPattern | None, Array]:
        """The static pattern the solvers use (None: take the general path) and the values,
        guarded against indices that are not the pattern's (see `pattern.check_indices`)."""
        key = self.pattern_key
        if key is None:
            return None, self.data
        data = check_indices(key, self.indices, self.data, "SparseOperator")
        return self.pattern, data

    def _with_tags(self, tags: frozenset[object]) -> SparseOperator:
        """The same matrix (and pattern) with other tags."""
        return SparseOperator(self.matrix, tags, _pattern=self.pattern or self.pattern_key)

    @classmethod
    def from_scipy(cls, matrix: Any, tags: object | Iterable[object] = ()) -> SparseOperator:
        """Build from any scipy.sparse matrix or array (copied; the input is unchanged).

        The values keep their dtype, except that with `jax_enable_x64` off JAX has no
        64-bit types: float64 / complex128 values are then narrowed to float32 /
        complex64, and a `UserWarning` says so (enable x64 with
        `jax.config.update("jax_enable_x64", True)` to keep double precision, or convert
        the matrix to float32 yourself to silence it).

        **Arguments:**

        - `matrix`: a square scipy.sparse matrix or array (CSR, CSC, COO, ...).
        - `tags`: as for `SparseOperator`.

        **Returns:**

        A `SparseOperator` with the same values.
        """
        if not hasattr(matrix, "tocoo") or not hasattr(matrix, "nnz"):
            raise ValueError(
                "`SparseOperator.from_scipy(matrix=...)` must be a scipy.sparse matrix or "
                f"array, got {type(matrix).__name__}."
            )
        coo = matrix.tocoo()
        index_type = np.int32 if max(coo.shape, default=0) < 2**31 else np.int64
        indices = np.stack([coo.row, coo.col], axis=1).astype(index_type)
        data = jnp.asarray(coo.data)
        if data.dtype != coo.data.dtype and np.dtype(coo.data.dtype).itemsize > data.dtype.itemsize:
            warnings.warn(
                f"`SparseOperator.from_scipy`: the matrix's {coo.data.dtype} values were "
                f"narrowed to {data.dtype} because `jax_enable_x64` is off; solutions will "
                "have single-precision accuracy. Enable it with "
                "`jax.config.update('jax_enable_x64', True)` for double precision.",
                UserWarning,
                stacklevel=2,
            )
        bcoo = jsparse.BCOO((data, jnp.asarray(indices)), shape=coo.shape)
        return cls(bcoo, tags)

    @classmethod
    def from_pattern(
        cls, pattern: StaticPattern, data: Any, tags: object | Iterable[object] = ()
    ) -> SparseOperator:
        """The matrix with these values at a pattern's entries (see
        [`lineax_sparse.static_pattern`][]).

        Cheap at trace time and keeps the pattern static through `jit` boundaries, so that
        solvers send only values to the host, even when the operator is passed into a
        jitted function.

        Nothing of the pattern's size enters a compiled program but the operator's own
        index array, which products with the matrix (and so derivatives with respect to
        its values) compute with. Pass the operator as an argument of the jitted function
        and its indices are an argument too: the program's size and compile time do not
        grow with the matrix. Built inside the jitted function (`K = from_pattern(pattern,
        assemble(young))` in a jitted step), its indices are a constant of the program up
        to 16 MiB (2M index pairs of int32: a fraction of a second of compilation, once),
        and are copied from the host in each run beyond that (under 1% of a
        factorization of that size). To keep even small patterns out of the program, pass
        a template operator in and replace its values inside:
        `eqx.tree_at(lambda op: op.data, template, values)`.

        **Arguments:**

        - `pattern`: a `StaticPattern` from `lineax_sparse.static_pattern(indices, size)`.
        - `data`: one value per index pair of the pattern (floating or complex).
        - `tags`: as for `SparseOperator`.
        """
        if not isinstance(pattern, StaticPattern):
            raise ValueError(
                "`SparseOperator.from_pattern(pattern=...)` must come from "
                f"`lineax_sparse.static_pattern(indices, size)`, got {type(pattern).__name__}."
            )
        data = jnp.asarray(data)
        if data.shape != (pattern.nse,):
            raise ValueError(
                f"`SparseOperator.from_pattern(data=...)` must have shape ({pattern.nse},), "
                f"one value per index pair of the pattern, got {data.shape}."
            )
        if not jnp.issubdtype(data.dtype, jnp.inexact):
            raise ValueError(
                "`SparseOperator.from_pattern(data=...)` must be floating or complex, got "
                f"{data.dtype}."
            )
        indices = pattern_indices(pattern, staging())
        matrix = jsparse.BCOO((data, indices), shape=(pattern.n,) * 2)
        return cls(matrix, tags, _pattern=pattern)

    @classmethod
    def from_operator(
        cls,
        operator: lx.AbstractLinearOperator,
        sparsity: Any,
        tags: object | Iterable[object] | None = None,
        verify: bool = True,
    ) -> SparseOperator:
        """The matrix of any square lineax operator, given its sparsity pattern.

        Materialised by graph-coloured products (see [`lineax_sparse.Materialise`][]):
        the pattern is coloured once on the host, then one Jacobian-vector product per
        colour (or vector-Jacobian product, when colouring rows needs fewer) under
        `jax.vmap`. It is ordinary JAX: it works under `jit`, and derivatives flow to the
        parameters the operator closes over (implicit differentiation of a matrix-free
        solve with respect to them, say).

        **Arguments:**

        - `operator`: a square lineax operator (`FunctionLinearOperator`,
            `JacobianLinearOperator`, sums, compositions, ...). Pytree inputs and outputs
            are flattened leaf by leaf in `jax.tree_util` order (each leaf raveled), and the
            result acts on such flat vectors.
        - `sparsity`: the pattern of its matrix (outputs x inputs), concrete: a scipy.sparse
            matrix, a BCOO, a dense boolean array, `(rows, cols)` index arrays, or an asdex
            pattern from [`lineax_sparse.detect_sparsity`][]. The diagonal is always added.
        - `tags`: the tags of the result; by default those lineax knows of `operator`.
        - `verify`: check the matrix against the operator with one more product (a fixed
            probe vector): a pattern that misses entries raises a runtime error instead of
            returning a wrong matrix. `False` skips it, for a pattern known to be exact.

        **Returns:**

        A `SparseOperator` with the operator's values at the pattern's entries.
        """
        matrix, tags = materialise(operator, sparsity, tags, verify)
        return cls(matrix, tags)

    @property
    def matrix(self) -> jsparse.BCOO:
        """The operator's matrix as a BCOO."""
        return jsparse.BCOO((self.data, self.indices), shape=(self.size, self.size))

    def _rows_cols(self):
        """Row and column indices, with every entry outside the matrix sent to `n`."""
        n = self.size
        indices = self.indices
        if indices.dtype.itemsize < 4 or jnp.issubdtype(indices.dtype, jnp.unsignedinteger):
            indices = indices.astype(jnp.int64 if n >= 2**31 else jnp.int32)
        rows, cols = indices[:, 0], indices[:, 1]
        # Negative indices would wrap around in a JAX scatter; send them to padding instead.
        valid = (rows >= 0) & (cols >= 0) & (rows < n) & (cols < n)
        return jnp.where(valid, rows, n), jnp.where(valid, cols, n)

    def _entries(self):
        """`(rows, cols, data)` with padding entries zeroed whatever they hold (a NaN in a
        padding slot must not reach the matrix)."""
        rows, cols = self._rows_cols()
        data = jnp.where((rows < self.size) & (cols < self.size), self.data, 0)
        return rows, cols, data

    def mv(self, vector: Inexact[Array, " n"]) -> Inexact[Array, " n"]:
        rows, cols, data = self._entries()
        gathered = vector.at[cols].get(mode="fill", fill_value=0)
        dtype = jnp.result_type(self.data, vector)
        out = jnp.zeros(self.size, dtype)
        return out.at[rows].add(data * gathered, mode="drop")

    def as_matrix(self) -> Inexact[Array, "n n"]:
        """The dense matrix. Warns (`UserWarning`, at trace time) above `DENSIFY_WARNING`
        unknowns: that is what lineax's dense solvers do with a sparse operator, e.g.
        `lineax.linear_solve(A, b)` without `solver=` (an O(n^3) dense LU)."""
        if self.size > DENSIFY_WARNING:
            warnings.warn(
                f"densifying a {self.size} x {self.size} sparse operator (O(n^2) memory, and "
                "O(n^3) time to factorize it): pass `solver=lineax_sparse.AutoSparse()` to "
                "`lineax.linear_solve`, or use `lineax_sparse.linear_solve`, which defaults "
                "to it.",
                UserWarning,
                stacklevel=2,
            )
        return self._dense()

    def _dense(self) -> Inexact[Array, "n n"]:
        """The dense matrix, without `as_matrix`'s warning (for the library's own uses)."""
        rows, cols, data = self._entries()
        out = jnp.zeros((self.size, self.size), self.data.dtype)
        return out.at[rows, cols].add(data, mode="drop")

    def transpose(self) -> SparseOperator:
        tags = lx.transpose_tags(self.tags)
        key, data = self.pattern_key, self.data
        if key is not None:
            data = check_indices(key, self.indices, data, "SparseOperator")
        # The operator's own indices flipped (checked to be its pattern's): no copy of the
        # pattern's indices enters the compiled program.
        flipped = jsparse.BCOO((data, self.indices[:, ::-1]), shape=(self.size, self.size))
        mirror = None if key is None else mirror_key(key)
        if mirror is None:
            return SparseOperator(flipped, tags)
        # Stays static, even when `indices` is a tracer; the transpose's pattern is built
        # only if something solves with it.
        return SparseOperator(flipped, tags, _pattern=mirror)

    def in_structure(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((self.size,), self.data.dtype)

    def out_structure(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((self.size,), self.data.dtype)
