"""SuperLU through `scipy.sparse.linalg.splu`: square real or complex systems.

Symbolic reuse: scipy exposes no stand-alone column ordering, so the first factorization of
a pattern runs with the requested ordering, and its column permutation `q = argsort(perm_c)`
is kept for the pattern. Later factorizations factor `A[:, q]` with `permc_spec="NATURAL"`,
which reproduces the same fill and the same factors without recomputing the ordering.
(Passing `A[:, perm_c]` instead is the inverse permutation: 7x the fill on a 128^2 Poisson.)

What SuperLU does not report, and how it is caught (docs/reliability.md has the figures):

- An exactly zero pivot raises; a singular matrix whose LU ends in a rounding-sized pivot
  does not. Its solves have a tiny normwise backward error and a solution of size 1e15
  (a pure-Neumann Laplacian: `|b - Ax| / |b|` of order 1). So after each factorization the
  pivots are read (`superlu_pivots`, O(n)) and compared with the largest entry of their
  column; when one is below `checks.PIVOT_GATE` of it, the reciprocal condition number of
  the equilibrated matrix is estimated from the factors (`checks.estimate_rcond`, 4 to 6
  block solves), and below `checks.RCOND_LIMIT` the matrix is `SINGULAR`. A solve whose
  relative residual exceeds `checks.RESIDUAL_TRIGGER` has its factor's condition estimated
  too (`checks.confirm`, once per factor): a matrix the pivots did not flag cannot then
  return such a solve as a success.
- Values near the overflow threshold overflow inside the LU (`[[1, 1e308], [-1, 1e308]]`):
  such matrices are equilibrated by powers of two first (`checks.equilibrate`).
- `inf` entries give finite garbage and tiny pivots huge values: every solve goes through
  `checks.checked_solve` (backward error, up to three steps of iterative refinement).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import superlu_pivots
from .base import FactorError, Pattern, single_threaded_blas, SolveResult, Status
from .checks import (
    checked_solve,
    column_maxima,
    Condition,
    confirm,
    equilibrate,
    estimate_rcond,
    is_extreme,
    matrix_norm,
    NormBound,
    one_norm,
    PIVOT_GATE,
    RCOND_LIMIT,
    solve_split,
)
from .options import SUPERLU_ORDERINGS


ORDERINGS = SUPERLU_ORDERINGS


@dataclasses.dataclass
class _Ordering:
    """Per-pattern symbolic data: the column permutation and the permuted CSC structure."""

    column_order: np.ndarray | None = None
    gather: np.ndarray | None = None
    indptr: np.ndarray | None = None
    row_indices: np.ndarray | None = None


@dataclasses.dataclass
class _Factor:
    lu: Any
    column_order: np.ndarray | None  # None: `lu` factors the matrix itself, own ordering
    matrix: sp.csc_matrix  # the matrix factorized: A, or R A C when equilibrated
    norm: float | NormBound  # max(|S|_1, |S|_inf), or a lower bound of it
    row_exponents: np.ndarray | None  # R = diag(2^-r) when equilibrated
    column_exponents: np.ndarray | None
    condition: Condition = dataclasses.field(default_factory=Condition)


class SuperLUBackend:
    requires_symmetric = False
    factors_per_pattern = 2

    def __init__(self, ordering: str, pivot_threshold: float, symmetric_mode: bool):
        self.ordering = ordering
        self.pivot_threshold = pivot_threshold
        self.symmetric_mode = symmetric_mode

    def analyse(self, pattern: Pattern) -> _Ordering:
        # The ordering itself is computed by the first factorization (see module docstring).
        del pattern
        return _Ordering()

    def _ordering(self, pattern: Pattern) -> str:
        """SuperLU's `permc_spec` for this pattern (`"auto"` decided once per pattern)."""
        if self.ordering != "auto":
            return self.ordering
        # Minimum degree on A^T + A suits structurally symmetric patterns (FEM, stencils,
        # PDE Jacobians): half COLAMD's fill and 1.4-2.1x faster on 2D problems, slower
        # (but with less fill) on a 3D Poisson 30^3. COLAMD for the others.
        _, _, unpaired = pattern.symmetry_pairs()
        return "MMD_AT_PLUS_A" if unpaired.size == 0 else "COLAMD"

    def _splu(self, matrix: sp.csc_matrix, permc_spec: str):
        try:
            with np.errstate(all="ignore"):
                return spla.splu(
                    matrix,
                    permc_spec=permc_spec,
                    diag_pivot_thresh=self.pivot_threshold,
                    options=dict(SymmetricMode=self.symmetric_mode),
                )
        except RuntimeError as error:  # "Factor is exactly singular"
            raise FactorError(Status.SINGULAR, str(error)) from error

    def setups(self, factor: _Factor) -> int:
        del factor
        return 1

    def factor(
        self, pattern: Pattern, analysis: _Ordering, matrix: sp.csc_matrix, aux: Any
    ) -> _Factor:
        del aux  # SuperLU depends on the matrix alone
        if pattern.n == 0:
            return _Factor(None, None, matrix, 0.0, None, None, Condition(rcond=np.inf))
        column_max = column_maxima(matrix)
        rows = columns = None
        if is_extreme(float(column_max.max(initial=0.0))) or is_extreme(
            float(np.min(column_max, where=column_max > 0, initial=np.inf))
        ):
            matrix, rows, columns = equilibrate(matrix)
            column_max = column_maxima(matrix)
        if analysis.column_order is None:
            lu = self._splu(matrix, self._ordering(pattern))
            analysis.column_order = np.argsort(lu.perm_c).astype(np.int32)
            order = None
            factored_columns = analysis.column_order  # U's column j is A's column q[j]
        else:
            if analysis.gather is None:
                # Second factorization of this pattern: the permuted CSC structure, once.
                positions = sp.csc_matrix(
                    (
                        np.arange(1, pattern.nnz + 1, dtype=np.float64),
                        matrix.indices,
                        matrix.indptr,
                    ),
                    shape=matrix.shape,
                )[:, analysis.column_order]
                analysis.gather = positions.data.astype(np.int64) - 1
                analysis.indptr = positions.indptr
                analysis.row_indices = positions.indices
            permuted = sp.csc_matrix(
                (matrix.data[analysis.gather], analysis.row_indices, analysis.indptr),
                shape=matrix.shape,
                copy=False,
            )
            lu = self._splu(permuted, "NATURAL")
            order = analysis.column_order
            factored_columns = order[np.argsort(lu.perm_c)]
        top = float(column_max.max(initial=0.0))
        factor = _Factor(
            lu, order, matrix, NormBound(top, lambda: matrix_norm(matrix)), rows, columns
        )
        self._check_pivots(factor, column_max[factored_columns])
        return factor

    def _check_pivots(self, factor: _Factor, column_max: np.ndarray) -> None:
        """Raise `SINGULAR` for a matrix singular to working precision (module docstring)."""
        dtype = np.result_type(factor.matrix.dtype, np.float64)
        pivots = superlu_pivots.pivots(factor.lu, dtype)
        if pivots is not None:
            with np.errstate(all="ignore"):
                ratio = np.abs(pivots) / column_max
            if not np.all(np.isfinite(pivots)):
                raise FactorError(Status.SINGULAR, "SuperLU: the factorization overflowed")
            if np.all(ratio >= PIVOT_GATE):  # NaN (0 / 0: an empty column) fails
                return
        # A small pivot, or pivots that cannot be read: estimate the condition number.
        rcond = self._rcond(factor)
        if rcond < RCOND_LIMIT:
            raise FactorError(
                Status.SINGULAR,
                f"SuperLU: the matrix is singular to working precision (estimated "
                f"reciprocal condition number {rcond:.1e} < {RCOND_LIMIT:.0e})",
            )

    def _rcond(self, factor: _Factor) -> float:
        """The estimated reciprocal 1-norm condition number of the equilibrated matrix.

        The matrix factorized (`S`) is `A` or `R A C`; when it is `A`, it is equilibrated
        here for the estimate only (`A`'s own condition number would call a matrix with a
        1e20 penalty row singular, while LU with partial pivoting solves it accurately).
        """
        if factor.condition.rcond is not None:
            return factor.condition.rcond
        matrix = factor.matrix
        n = matrix.shape[0]
        dtype = np.result_type(matrix.dtype, np.float64)
        if factor.row_exponents is None:
            equilibrated, r, c = equilibrate(matrix)
        else:  # already equilibrated
            equilibrated = matrix
            r = c = np.zeros(n, dtype=np.int64)
        # With S = A (or the factored R A C) and E = R' S C' its equilibration:
        # E^-1 = C'^-1 S^-1 R'^-1 and E^-H = R'^-1 S^-H C'^-1 (the scalings are real).
        up_r, up_c = np.ldexp(1.0, r)[:, None], np.ldexp(1.0, c)[:, None]

        def solve(block):
            return self._apply_inverse(factor, block * up_r, False, False) * up_c

        def solve_adjoint(block):
            return self._apply_inverse(factor, block * up_c, True, True) * up_r

        with np.errstate(all="ignore"):
            rcond = estimate_rcond(solve, solve_adjoint, n, one_norm(equilibrated), dtype)
        factor.condition.rcond = rcond
        return rcond

    def _apply_inverse(self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool):
        order = factor.column_order
        # With S Q = LU (Q = columns `order`): S x = b  <=>  (SQ) y = b, x[order] = y;
        # S^T x = c  <=>  (SQ)^T x = c[order]. conj(S) x = b  <=>  S conj(x) = conj(b).
        work = rhs.conj() if conjugate else rhs
        if order is not None and transpose:
            work = work[order]
        trans = "T" if transpose else "N"
        # One block solve with BLAS held to one thread: threaded BLAS gains nothing in
        # triangular solves and is up to 10x slower on a busy machine, and a column loop
        # is 2x slower than the block (64 columns on a 128^2 Poisson: 74 / 171 ms).
        with single_threaded_blas():
            x = factor.lu.solve(np.asfortranarray(work), trans=trans)
        if order is not None and not transpose:
            unpermuted = np.empty_like(x)
            unpermuted[order] = x
            x = unpermuted
        return x.conj() if conjugate else x

    def solve(
        self,
        factor: _Factor,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        del guess  # a direct solve needs none
        n, k = rhs.shape
        if n == 0:
            empty = np.zeros(k)
            return SolveResult(rhs.copy(), np.zeros(k, np.int32), np.zeros(k, np.int32), empty)
        if np.iscomplexobj(rhs) and not np.iscomplexobj(factor.matrix.data):
            # A real factor solves only real blocks (SuperLU refuses to cast a complex one),
            # and a real matrix is real-linear: the real and imaginary parts are solved as
            # one real block of 2k columns, each part checked like any other column.
            return solve_split(
                lambda block, _: self.solve(factor, block, transpose, conjugate, None), rhs, None
            )
        result = checked_solve(
            lambda b: self._apply_inverse(factor, b, transpose, conjugate),
            factor.matrix,
            factor.norm,
            rhs,
            transpose,
            conjugate,
            factor.row_exponents,
            factor.column_exponents,
        )
        return confirm(result, factor.condition, lambda: self._rcond(factor))

    def nbytes(self, factor: _Factor) -> int:
        matrix = factor.matrix
        stored = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
        lu = factor.lu
        if lu is None:
            return int(stored)
        stored += lu.nnz * (16 if np.iscomplexobj(matrix.data) else 8)
        # Row indices of L and U plus the permutations, roughly.
        stored += lu.nnz * 4 + 4 * lu.shape[0] * 4
        return int(stored)
