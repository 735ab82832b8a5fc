"""`Materialise`: any lineax operator, solved by a lineax-sparse solver through its sparsity.

A thin wrapper: `init` turns the operator into a `SparseOperator` (`_materialise`) and
initialises the inner solver on it; `compute`, `transpose` and `conj` delegate, flattening
pytrees on the way in and unflattening on the way out. A `SparseOperator` passes through.
Operators with more rows than columns are solved in the least-squares sense through the
normal equations `A^H A x = A^H b` (positive definite for a full-column-rank `A`); their
transposed solves (lineax's backward pass) are the minimum-norm solves `A (A^H A)^-1 c`,
from the same factorization.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax.experimental import sparse as jsparse
from jaxtyping import Array, PyTree

from .._matrixfree.jacobian import as_pattern, JacobianPattern, SparsityKey
from .._matrixfree.products import compressed_values, operator_tags
from .._matrixfree.structure import Structure
from .._operator.operator import SparseOperator
from .auto import AutoSparse, dense_jacobian
from .base import AbstractHostSolver
from .cholmod import Cholmod
from .table import solver_names


class MaterialiseState(eqx.Module):
    """State of `Materialise`: the inner solver's state and how to reach it.

    `kind` is "square" (the inner solver solves the operator itself) or "normal" (it
    solves `A^H A`; `values` are `A`'s, for the products with `A` and `A^H`).
    """

    inner: Any
    values: Array | None
    kind: str = eqx.field(static=True)
    pattern: JacobianPattern | None = eqx.field(static=True)
    inputs: Structure = eqx.field(static=True)  # of the solution
    outputs: Structure = eqx.field(static=True)  # of the right-hand side
    transpose: bool = eqx.field(static=True)
    conjugate: bool = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)  # of the materialised matrix and its vectors


def _sparse_operator(operator: Any) -> SparseOperator | None:
    """`operator` if it is already sparse (possibly tagged), else None."""
    if isinstance(operator, SparseOperator):
        return operator
    if isinstance(operator, lx.TaggedLinearOperator) and isinstance(
        operator.operator, SparseOperator
    ):
        inner = operator.operator
        return inner._with_tags(inner.tags | operator.tags)
    return None


def _require_positive_semidefinite(operator: lx.AbstractLinearOperator, n: int) -> None:
    """A square operator is solved as it is: `Cholmod` needs it positive semidefinite.

    Nothing in the operator says whether a least-squares solver handed it over
    (optimistix's `GaussNewton` and `Newton` pass a square Jacobian alike), so a square
    Jacobian is never turned into normal equations behind the caller's back.
    """
    if lx.is_positive_semidefinite(operator):
        return
    raise ValueError(
        f"`Materialise(Cholmod(), ...)` was given a square operator ({n} x {n}) that is not "
        "tagged `lineax.positive_semidefinite_tag`, and Cholmod factorizes only positive "
        "definite matrices. A square Jacobian (optimistix's `GaussNewton` with as many "
        "residuals as unknowns, `Newton`, diffrax's implicit solvers) is solved as it is: "
        "use `Materialise(lineax_sparse.AutoSparse(), sparsity)`, which solves it by LU "
        "and overdetermined least squares (more residuals than unknowns, and "
        "`LevenbergMarquardt`'s damped operator) through the normal equations with CHOLMOD. "
        "If the operator is positive definite, tag it (optimistix: "
        "`tags=lineax.positive_semidefinite_tag`)."
    )


def _check_solver(solver: Any) -> Any:
    if not isinstance(solver, AbstractHostSolver):
        raise ValueError(
            f"`Materialise(solver=...)` must be a lineax-sparse solver ({solver_names()}), "
            f"got {type(solver).__name__}."
        )
    return solver


class Materialise(lx.AbstractLinearSolver[MaterialiseState]):
    """Solves any lineax operator with a lineax-sparse solver, given its sparsity pattern.

    The operator (a `FunctionLinearOperator` from `jax.linearize`, a
    `JacobianLinearOperator`, sums, compositions and tagged versions of them: what
    optimistix and diffrax hand to their linear solver) is materialised as a
    `SparseOperator` by graph-coloured products: the pattern is coloured once on the host
    (asdex), then one Jacobian-vector product per colour, all at once under `jax.vmap`
    (or vector-Jacobian products, when colouring the rows needs fewer colours). One more
    product, with a fixed probe vector, checks the matrix against the operator: a pattern
    that misses entries raises a runtime error (under `jit` too), never a wrong answer
    reported as successful. Everything else (`init`, `compute`, `transpose`, `conj`,
    statistics, results) is the inner solver's. The operator's tags carry over, so
    `Materialise(AutoSparse(), ...)` uses CHOLMOD for an operator tagged positive
    semidefinite. A `SparseOperator` passes through unchanged.

    ```python
    pattern = lxs.detect_sparsity(lambda y: residual(y, args), y0)
    linear_solver = lxs.Materialise(lxs.SuperLU(), pattern)
    solver = optx.Newton(rtol=1e-8, atol=1e-8, linear_solver=linear_solver)
    ```

    Pytrees in and out are flattened leaf by leaf (the order of `jax.flatten_util`), as
    the pattern must be: `detect_sparsity` gives it so. The diagonal is always part of a
    square operator's pattern (implicit solvers solve `I - h gamma J`).

    Least squares: use `AutoSparse()` (optimistix's `GaussNewton`, `LevenbergMarquardt`).
    An operator with more rows than columns is solved through the normal equations
    `A^H A x = A^H b` (tagged positive semidefinite: CHOLMOD under `AutoSparse()`), and an
    operator `[J; D]` with `D` diagonal (`LevenbergMarquardt`'s damped step) takes the
    pattern of `J` alone. A square Jacobian (`GaussNewton` with as many residuals as
    unknowns) is solved as it is, as `GaussNewton` asks: by SuperLU under `AutoSparse()`;
    `Cholmod()` refuses it unless it is tagged positive semidefinite. The normal equations
    square the condition number: for ill-conditioned least squares, prefer a QR solver.
    Operators with fewer rows than columns are refused.

    `options` are the inner solver's (AMG's `y0` in the operator's input structure).
    """

    solver: AbstractHostSolver
    #: The key of the pattern: a static field lives on in JAX's caches, so it holds no
    #: arrays. The `Materialise` built here holds the pattern itself (outside its pytree);
    #: the copies JAX transformations make find it by key.
    sparsity_key: SparsityKey = eqx.field(static=True)
    verify: bool = eqx.field(static=True)

    def __init__(self, solver: AbstractHostSolver, sparsity: Any, verify: bool = True):
        self.solver = _check_solver(solver)
        pattern = as_pattern(sparsity)
        self.sparsity_key = pattern.key
        self.verify = verify
        object.__setattr__(self, "_sparsity", pattern)

    @property
    def sparsity(self) -> JacobianPattern:
        """The sparsity pattern this solver was built with."""
        pattern = self.sparsity_key.resolve()
        if pattern is None:
            raise ValueError(
                "`Materialise`'s sparsity pattern is no longer held anywhere: the "
                "`Materialise(solver, sparsity)` it was built as was dropped, and "
                "`lineax_sparse.clear_cache()` released the patterns kept for reuse. Keep "
                "the solver you built alive while it is used (or build it again)."
            )
        return pattern

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        inputs = Structure(operator.in_structure())
        outputs = Structure(operator.out_structure())
        sparse = _sparse_operator(operator)
        if sparse is not None:
            inner = self.solver.init(sparse, self._inner_options(options, inputs))
            dtype = sparse.data.dtype
            return MaterialiseState(
                inner, None, "square", None, inputs, outputs, False, False, dtype
            )
        m, n = outputs.size, inputs.size
        if m < n:
            raise ValueError(
                f"`Materialise` solves square and overdetermined systems; this operator maps "
                f"{n} inputs to {m} outputs (underdetermined). Use a least-squares solver "
                "such as `lineax.QR()` for it."
            )
        if m == n and isinstance(self.solver, Cholmod):
            _require_positive_semidefinite(operator, n)
        pattern = self.sparsity.bind(m, n)
        if isinstance(self.solver, AutoSparse) and m == n:
            if self.solver.materialises_densely(n, int(pattern.coloring().num_colors)):
                matrix = jax.lax.stop_gradient(dense_jacobian(operator, inputs, outputs))
                inner = self.solver.init_dense(matrix, operator_tags(operator))
                return MaterialiseState(
                    inner, None, "square", pattern, inputs, outputs, False, False, matrix.dtype
                )
        values = compressed_values(
            operator, pattern, inputs, outputs, self.verify, "Materialise(sparsity=...)"
        )
        dtype = values.dtype
        values = jax.lax.stop_gradient(values)  # derivatives go through the operator
        inner_options = self._inner_options(options, inputs)
        if m == n:
            matrix = jsparse.BCOO((values, jnp.asarray(pattern.indices())), shape=(n, n))
            inner = self.solver.init(SparseOperator(matrix, operator_tags(operator)), inner_options)
            return MaterialiseState(
                inner, None, "square", pattern, inputs, outputs, False, False, dtype
            )
        normal = pattern.normal_equations()
        matrix = jsparse.BCOO(
            (normal.values(values), jnp.asarray(normal.pattern.indices())), shape=(n, n)
        )
        normal_operator = SparseOperator(matrix, lx.positive_semidefinite_tag)
        inner = self.solver.init(normal_operator, inner_options)
        return MaterialiseState(
            inner, values, "normal", pattern, inputs, outputs, False, False, dtype
        )

    @staticmethod
    def _inner_options(options: dict[str, Any], inputs: Structure, dtype=None) -> dict[str, Any]:
        if "y0" not in options:
            return options
        return {**options, "y0": inputs.flatten(options["y0"], dtype)}

    def compute(
        self, state: MaterialiseState, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        if not isinstance(state, MaterialiseState):
            raise ValueError(
                "`Materialise` needs a state made by `Materialise(...).init`, got "
                f"{type(state).__name__}."
            )
        inner_options = self._inner_options(options, state.inputs, state.dtype)
        if state.kind == "square":
            b = state.outputs.flatten(vector, state.dtype)
            x, result, stats = self.solver.compute(state.inner, b, inner_options)
            return state.inputs.unflatten(x), result, stats
        # The least-squares operator A (m x n) as op(A) in {A, conj(A), A^T, A^H}:
        #   A x = b: x = N^-1 A^H b (N = A^H A);  conj(A) x = b: x = conj(N^-1 A^H conj(b));
        #   A^H y = c: y = A N^-1 c (minimum norm);  A^T y = c: y = conj(A N^-1 conj(c)).
        wrap = state.conjugate != state.transpose
        b = state.outputs.flatten(vector, state.dtype)
        if wrap:
            b = jnp.conj(b)
        if not state.transpose:
            rhs = _adjoint_product(state.values, state.pattern, b)
            x, result, stats = self.solver.compute(state.inner, rhs, {})
        else:
            z, result, stats = self.solver.compute(state.inner, b, {})
            x = _product(state.values, state.pattern, z)
        if wrap:
            x = jnp.conj(x)
        return state.inputs.unflatten(x), result, stats

    def transpose(self, state: MaterialiseState, options: dict[str, Any]):
        swapped = dict(inputs=state.outputs, outputs=state.inputs)
        if state.kind == "square":
            inner, inner_options = self.solver.transpose(state.inner, options)
            new = dataclasses.replace(state, inner=inner, **swapped)
            return new, inner_options
        return dataclasses.replace(state, transpose=not state.transpose, **swapped), options

    def conj(self, state: MaterialiseState, options: dict[str, Any]):
        if state.kind == "square":
            inner, inner_options = self.solver.conj(state.inner, options)
            return dataclasses.replace(state, inner=inner), inner_options
        return dataclasses.replace(state, conjugate=not state.conjugate), options

    def assume_full_rank(self) -> bool:
        return self.solver.assume_full_rank()


def _product(values: Array, pattern: JacobianPattern, z: Array) -> Array:
    """`A z` for `A` with `values` at `pattern`."""
    rows, cols = jnp.asarray(pattern.rows), jnp.asarray(pattern.cols)
    return jax.ops.segment_sum(values * z[cols], rows, pattern.shape[0])


def _adjoint_product(values: Array, pattern: JacobianPattern, b: Array) -> Array:
    """`A^H b` for `A` with `values` at `pattern`."""
    rows, cols = jnp.asarray(pattern.rows), jnp.asarray(pattern.cols)
    return jax.ops.segment_sum(jnp.conj(values) * b[rows], cols, pattern.shape[1])


Materialise.__init__.__doc__ = """**Arguments:**

- `solver`: the lineax-sparse solver of the materialised matrix: `SuperLU()`,
    `AutoSparse()` (the choice for least squares), `Cholmod()` (for operators tagged
    positive semidefinite, and for overdetermined least squares only) or `AMG(...)`.
- `sparsity`: the sparsity pattern of the operator's matrix (outputs x inputs, flattened
    as above), concrete: a scipy.sparse matrix, a `jax.experimental.sparse.BCOO`, a dense
    boolean 2-D array, a `(rows, cols)` pair of index arrays, or an asdex pattern as
    returned by [`lineax_sparse.detect_sparsity`][]. It is coloured once, on the host.
- `verify`: check each materialised matrix against the operator with one more product
    (a probe vector in the same `vmap` as the coloured products): a pattern that misses
    entries raises an error instead of solving a wrong matrix. `False` skips it, for a
    pattern known to be exact.
"""
