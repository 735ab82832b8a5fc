"""`Cholmod`: sparse Cholesky through CHOLMOD, for operators tagged positive semidefinite."""

from __future__ import annotations

import lineax as lx

from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.options import (
    check_cholmod,
    CholmodFactorization,
    CholmodMode,
    CholmodOrdering,
)
from .direct import AbstractDirectHostSolver


def cholmod_spec(mode: str, factorization: str, ordering: str) -> BackendSpec:
    return "cholmod", (("mode", mode), ("factorization", factorization), ("ordering", ordering))


def require_positive_semidefinite(solver: str, operator: SparseOperator) -> None:
    if not lx.is_positive_semidefinite(operator):
        hint = (
            " It is tagged negative semidefinite: solve with the negated matrix instead."
            if lx.is_negative_semidefinite(operator)
            else ""
        )
        raise ValueError(
            f"`{solver}` may only be used with operators tagged "
            "`lineax.positive_semidefinite_tag` (symmetric or Hermitian positive definite "
            "matrices): build the operator as `SparseOperator(matrix, "
            "tags=lx.positive_semidefinite_tag)` if it is, or use `lineax_sparse.SuperLU()` "
            f"for other matrices.{hint}"
        )


class Cholmod(AbstractDirectHostSolver):
    """Sparse Cholesky factorization through CHOLMOD (`cvxopt.cholmod`).

    The solver of choice for symmetric (real) or Hermitian (complex) positive definite
    systems: stiffness matrices, graph Laplacians, normal equations. The operator must be
    tagged `lineax.positive_semidefinite_tag`.

    The fill-reducing ordering and elimination tree are computed once per sparsity pattern
    and reused for every later factorization of that pattern, across calls and jit
    boundaries; an optimization loop that only changes values pays only the numeric
    factorization. By default the ordering is chosen as CHOLMOD itself chooses it when
    built with METIS: AMD, unless its factor would be costly (3D meshes), in which case
    METIS's nested dissection is tried too and the sparser factor kept. The backward
    pass reuses the forward factor. float32 / complex64 systems are factorized in double
    precision on the host.

    Failures are reported through `lineax.RESULTS`, with NaN solutions: a matrix that is
    not positive definite, singular, or whose values are not symmetric (Hermitian) although
    the operator is tagged so gives `RESULTS.singular` (CHOLMOD itself would silently use
    one triangle); NaN or inf values give `RESULTS.nonfinite_input`. Every solve is checked
    by its backward error. `Solution.stats["reason"]` says which failure it was (not
    symmetric, not positive definite, singular...): `lineax_sparse.explain(solution)`
    turns it into a sentence with the remedy.

    This solver takes no `options`.
    """

    mode: CholmodMode = "auto"
    factorization: CholmodFactorization = "LL"
    ordering: CholmodOrdering = "auto"

    def __check_init__(self):
        check_cholmod(self.mode, self.factorization, self.ordering)

    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        require_positive_semidefinite("Cholmod", operator)
        return self._spec()

    def backend_specs(self) -> dict[BackendSpec, bool]:
        # CHOLMOD reads one triangle: the host checks that the values are symmetric.
        return {self._spec(): True}

    def _spec(self) -> BackendSpec:
        # The ordering is part of the spec: analyses (and so factors) of one pattern made
        # with different orderings are cached apart.
        return cholmod_spec(self.mode, self.factorization, self.ordering)


Cholmod.__init__.__doc__ = """**Arguments:**

- `mode`: `"auto"` (default) lets CHOLMOD choose; `"supernodal"` uses dense BLAS blocks
    and is fastest for matrices with much fill (3D meshes, large 2D meshes);
    `"simplicial"` is faster for very sparse factors (1D-like, small or banded problems).
- `factorization`: `"LL"` (default) requires a positive definite matrix (CHOLMOD's
    supernodal `L L^T`, or a simplicial `L D L^T` with every pivot checked positive);
    `"LDL"` is the simplicial `L D L^T` without pivoting: it also accepts symmetric
    indefinite matrices that need no pivoting, and reports zero or tiny pivots as
    singular. Use `SuperLU` for indefinite matrices in general.
- `ordering`: the fill-reducing ordering, computed once per sparsity pattern.
    `"auto"` (default) is CHOLMOD's own default strategy: AMD, and if AMD's factor
    costs at least 500 flops per entry and fills at least 5x the lower triangle (3D
    meshes, not 2D ones), also METIS's nested dissection, keeping the ordering with the
    sparser factor. Measured on 3D elasticity (hexahedra, 90k dofs): half the fill and
    0.28x the factorization time of AMD, for 0.8 s more analysis once per pattern; on
    2D problems it keeps AMD. `"amd"`: approximate minimum degree (cheapest to compute,
    best for 2D meshes and small problems). `"nested_dissection"`: METIS's nested
    dissection (through pymetis) always: 10-20x slower to compute than AMD. `"natural"`:
    no reordering (only for matrices already ordered, e.g. banded).
"""
