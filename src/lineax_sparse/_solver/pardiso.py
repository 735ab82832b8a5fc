"""`Pardiso`: MKL PARDISO's sparse Cholesky, `L D L^T` and LU, chosen from the operator's tags."""

from __future__ import annotations

import lineax as lx

from .._host import pool
from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.options import check_pardiso, PARDISO_MATRIX_TYPES, PardisoMatrixType
from ..backends.pardiso.locate import candidates, INSTALL_HINT
from .direct import AbstractDirectHostSolver


def require_mkl() -> None:
    """Raise the install instructions when MKL's runtime library is not found (not loaded)."""
    if not candidates():
        raise ImportError(INSTALL_HINT)


def matrix_type_for(operator: SparseOperator) -> str:
    """`Pardiso(matrix_type="auto")` for `operator`, from its tags."""
    if lx.is_positive_semidefinite(operator):
        return "spd"  # real symmetric or complex Hermitian positive definite
    if lx.is_symmetric(operator):
        return "symmetric_indefinite"  # A^T = A: complex symmetric when complex
    return "general"


class Pardiso(AbstractDirectHostSolver):
    """Sparse direct solver of MKL PARDISO: Cholesky, `L D L^T` with Bunch-Kaufman pivoting
    (reporting the inertia), and LU, for real and complex matrices.

    Needs MKL (`pip install "lineax-sparse[pardiso]"`, which installs MKL's PyPI wheel).

    The factorization follows the operator's tags (`matrix_type="auto"`): tagged
    `lineax.positive_semidefinite_tag`, a Cholesky factorization (symmetric positive
    definite; Hermitian positive definite when complex); tagged `lineax.symmetric_tag`, a
    symmetric indefinite `L D L^T` with 1x1 and 2x2 pivots (for saddle points such as
    Stokes or KKT systems; complex symmetric, `A^T = A`, when complex); untagged, LU. The
    symmetric factorizations read one triangle: the tags are promises, checked on the
    values (a matrix tagged symmetric whose values are not gives `RESULTS.singular`, reason
    "not symmetric"), and a Cholesky factorization of a matrix that is not positive
    definite reports "not positive definite".

    `Solution.stats` holds, beside `num_steps` (the checks' and PARDISO's refinement steps)
    and `relative_residual`: `stats["inertia"]`, the numbers of positive, negative and zero
    eigenvalues of a symmetric (Hermitian) matrix (`(n, 0, 0)` for a Cholesky
    factorization; -1 for LU and complex symmetric matrices, which have none), and
    `stats["perturbed_pivots"]`, the pivots PARDISO replaced by a small value instead of
    failing. With perturbed pivots the inertia is that of the perturbed matrix, and the
    solution is trusted only after the checks: every solve is checked by its backward
    error and refined, so a singular or numerically singular matrix gives
    `RESULTS.singular`, never a solution PARDISO calls a success.

    Each factorization has its own PARDISO handle, cached like the other direct solvers'
    factors and released with them; transposed and conjugated solves (the backward pass)
    reuse it. float32 / complex64 systems are factorized in double precision. PARDISO runs
    on `lineax_sparse.num_threads()` threads (one per matrix in a parallel vmapped batch) in
    its reproducible mode: the result does not depend on the number of threads.

    This solver takes no `options`.
    """

    matrix_type: PardisoMatrixType = "auto"

    def __check_init__(self):
        check_pardiso(self.matrix_type)
        require_mkl()

    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        matrix_type = self.matrix_type
        if matrix_type == "auto":
            matrix_type = matrix_type_for(operator)
        # The backend (which loads MKL) takes its threads from the host's setting.
        from ..backends.pardiso import threads

        threads.follow(pool.num_threads)
        return _spec(matrix_type)

    def backend_specs(self) -> dict[BackendSpec, bool]:
        # The backend checks the symmetry its matrix type needs itself (complex symmetric
        # is no Hermitian check): no spec asks the host for Hermitian values.
        types = [t for t in PARDISO_MATRIX_TYPES if t != "auto"]
        if self.matrix_type != "auto":
            types = [self.matrix_type]
        return {_spec(t): False for t in types}


def _spec(matrix_type: str) -> BackendSpec:
    return "pardiso", (("matrix_type", matrix_type),)


Pardiso.__init__.__doc__ = """**Arguments:**

- `matrix_type`: the factorization. `"auto"` (default) chooses from the operator's tags:
    `"spd"` when tagged `lineax.positive_semidefinite_tag`, `"symmetric_indefinite"` when
    tagged `lineax.symmetric_tag`, `"general"` otherwise. Or explicitly:
    `"spd"` (Cholesky of a real symmetric or complex Hermitian positive definite matrix),
    `"symmetric_indefinite"` (`L D L^T` with Bunch-Kaufman pivoting of a real symmetric
    matrix, or of a complex symmetric `A^T = A` one), `"hermitian_indefinite"` (`L D L^T`
    of a complex Hermitian indefinite matrix; real symmetric for real values), `"general"`
    (LU of any square matrix). The symmetric types read one triangle and check that the
    values are symmetric (Hermitian).
"""
