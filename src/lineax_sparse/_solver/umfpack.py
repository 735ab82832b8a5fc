"""`UMFPACK`: sparse multifrontal LU through UMFPACK (bundled with cvxopt), for any square
operator."""

from __future__ import annotations

from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.options import check_umfpack, UMFPACKOrdering, UMFPACKStrategy
from .direct import AbstractDirectHostSolver


class UMFPACK(AbstractDirectHostSolver):
    """Sparse LU through UMFPACK, the multifrontal LU of SuiteSparse (MATLAB's and SciPy's
    `spsolve` with scikit-umfpack), in the version bundled with cvxopt's Linux wheels.

    For any square nonsingular operator, real or complex. The symbolic analysis (fill-
    reducing ordering and frontal tree) is computed once per sparsity pattern, from the
    pattern alone, and reused for every later factorization of that pattern: the answer
    and status of a matrix never depend on what was factorized before. Transposed and
    conjugated solves (the backward pass) reuse the forward factorization. A complex
    right-hand side of a real matrix is solved as its real and imaginary parts.
    float32 / complex64 systems are factorized in double precision on the host and the
    solution is returned in the input's precision. Factorizations of a batch (`jax.vmap`)
    run on several threads.

    Against `SuperLU`, UMFPACK's dense frontal matrices (BLAS 3) pay off on larger
    problems and on saddle points; both give the same checks and statuses
    (`docs/backends/umfpack.md` has the measurements).

    Failures are reported through `lineax.RESULTS`: a singular factorization (a zero pivot,
    or one at rounding level whose condition estimate confirms it) or a solve whose
    backward error exceeds 1e-8 gives `RESULTS.singular`, non-finite matrix values or
    right-hand sides give `RESULTS.nonfinite_input`, and so does an index outside the
    matrix. `Solution.stats["reason"]` tells these apart (`lineax_sparse.explain`).

    Needs cvxopt's wheel (a default dependency) on Linux; elsewhere constructing the
    solver works but solving raises an `ImportError` that says what to install.

    This solver takes no `options`.
    """

    strategy: UMFPACKStrategy = "auto"
    ordering: UMFPACKOrdering = "amd"
    pivot_tolerance: float = 0.1

    def __check_init__(self):
        check_umfpack(self.strategy, self.ordering, self.pivot_tolerance)

    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        del operator  # any square real or complex matrix
        return self._spec()

    def backend_specs(self) -> dict[BackendSpec, bool]:
        return {self._spec(): False}

    def _spec(self) -> BackendSpec:
        options = (
            ("strategy", self.strategy),
            ("ordering", self.ordering),
            ("pivot_tolerance", float(self.pivot_tolerance)),
        )
        return "umfpack", options


UMFPACK.__init__.__doc__ = """**Arguments:**

- `strategy`: UMFPACK's ordering strategy. `"auto"` (default) chooses per pattern:
    `"symmetric"` (AMD on A + A^T, diagonal pivots preferred) when the pattern is mostly
    symmetric with a zero-free diagonal, `"unsymmetric"` (COLAMD, column pre-ordering
    refined during the factorization) otherwise. Fixing it skips UMFPACK's test.
- `ordering`: the fill-reducing ordering: `"amd"` (default: AMD or COLAMD, as the
    strategy asks), `"cholmod"` (CHOLMOD's choice between AMD/COLAMD and the nested
    dissections it was built with), `"best"` (tries several and keeps the one with the
    least fill: a slower analysis, once per pattern) or `"natural"` (no reordering).
- `pivot_tolerance`: threshold partial pivoting in (0, 1]: a pivot is accepted if it is
    at least this times the largest entry of its column (default 0.1, UMFPACK's; 1 is
    classic partial pivoting, more stable and more fill).
"""
