"""SuperLU through `scipy.sparse.linalg.splu`: square real or complex systems.

Symbolic reuse: scipy exposes no stand-alone column ordering, so the first factorization of
a pattern with an ordering (the requested one, or the one `auto_ordering` chooses for each
matrix) runs with it, and its column permutation `q = argsort(perm_c)` is kept for that
pattern and ordering. `perm_c` is SuperLU's whole column order: the fill-reducing ordering
followed by the postorder of the column elimination tree (which `sp_preorder` applies
unless `SymmetricMode` is on). Later factorizations factor `B = A[q, q]` with
`permc_spec="NATURAL"`, which reproduces a fresh factorization of `A` bit for bit (the
same pivots, fill, factors and solutions) without recomputing the ordering, because:

- SuperLU's preferred diagonal in column `j` of `A Pc` (`diag_pivot_thresh`, symmetric
  mode, and ties with the largest entry even at the default threshold 1) is row
  `iperm_c[j]`: `A`'s own diagonal in a fresh factorization, but row `j` in one of `A[:,
  q]` with the natural ordering, an off-diagonal entry. Relabelling the rows with the
  columns makes it `A`'s diagonal again. Without it, `pivot_threshold=0` gave 16 of 60
  random matrices of one pattern (n = 100, condition numbers 1e2-1e3) another status,
  successful or singular, when another matrix of the pattern had been factorized first.
- Each column of `B` keeps its entries in `A`'s row order, unsorted: SuperLU discovers the
  structure of `L` in that order and breaks ties between equal pivot candidates by it, so
  sorted columns choose other pivots (even other fill) when entries tie. `splu` sorts a
  matrix not flagged canonical, so `B` is flagged (it has no duplicates).
- `B`'s column elimination tree is already postordered, so the postorder SuperLU applies
  to it is the identity, and its relaxed supernodes are the fresh factorization's (scipy
  turns `SymmetricMode` on for `"NATURAL"`, which only chooses the heap-based relaxation
  that gives the same supernodes on a postordered tree).

This is checked once per process on a small matrix with ties (`_reuse_is_exact`); where it
does not hold (another scipy), every factorization computes its own ordering instead.
(`perm_c` used where `q` is meant is the inverse permutation: 7x the fill on a 128^2
Poisson.)

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

from ..blas import single_threaded_blas
from ..numerics import (
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
from ..options import SUPERLU_ORDERINGS
from ..pattern import Pattern
from ..status import FactorError, SolveResult, Status
from . import pivots as superlu_pivots


ORDERINGS = SUPERLU_ORDERINGS


@dataclasses.dataclass
class _Analysis:
    """Per pattern: whether it is structurally symmetric (what `"auto"` needs of it), and
    the symbolic data of each ordering its matrices were factorized with."""

    symmetric: bool
    orderings: dict[str, _Ordering] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Ordering:
    """Per pattern and ordering: the column order `q` of the first factorization and, from
    the second one on, the CSC structure of `A[q, q]` (module docstring)."""

    column_order: np.ndarray | None = None
    gather: np.ndarray | None = None
    indptr: np.ndarray | None = None
    row_indices: np.ndarray | None = None

    def reordered(self, matrix: sp.csc_matrix) -> sp.csc_matrix:
        """`matrix[q, q]`, each column's entries in `matrix`'s row order (not sorted)."""
        if self.gather is None:
            self.gather, self.indptr, self.row_indices = _reordered_structure(
                matrix.indices, matrix.indptr, self.column_order
            )
        reordered = sp.csc_matrix(
            (matrix.data[self.gather], self.row_indices, self.indptr),
            shape=matrix.shape,
            copy=False,
        )
        # The order of each column decides SuperLU's ties (module docstring), and `splu`
        # sorts a matrix not flagged canonical; a pattern has no duplicates.
        reordered.has_canonical_format = True
        return reordered


def _reordered_structure(
    indices: np.ndarray, indptr: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSC structure of `A[order, order]` for `A` given by `indices` and `indptr`:
    (positions of its entries in `A`'s values, its `indptr`, its row indices), each column
    keeping the order of `A`'s column `order[j]`."""
    counts = np.diff(indptr)[order].astype(np.int64)
    new_indptr = np.zeros(order.size + 1, dtype=np.int64)
    np.cumsum(counts, out=new_indptr[1:])
    shift = np.asarray(indptr, dtype=np.int64)[order] - new_indptr[:-1]
    gather = np.repeat(shift, counts) + np.arange(new_indptr[-1], dtype=np.int64)
    rank = np.empty(order.size, dtype=np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)  # row i of A is row rank[i] of B
    return gather, new_indptr.astype(np.int32), rank[indices[gather]]


def auto_ordering(
    symmetric: bool, matrix: sp.csc_matrix, column_max: np.ndarray, pivot_threshold: float
) -> str:
    """`ordering="auto"`: `"MMD_AT_PLUS_A"` when the pattern is structurally symmetric and
    every diagonal entry of `matrix` is one SuperLU would take as its pivot before any
    elimination (nonzero, and at least `pivot_threshold` times the largest entry of its
    column); `"COLAMD"` otherwise.

    Minimum degree on A^T + A orders for pivots on the diagonal. Where they are taken
    (Poisson, elasticity, convection-diffusion: diagonally dominant columns) it has half
    COLAMD's fill and is faster in 2D (COLAMD: 1.33x the time on a Poisson 512², 2.19x on
    the MBB beam 180 x 60), slower in 3D (1.20x COLAMD's time on a Poisson 30³). Where they
    are not, partial pivoting swaps rows that the ordering never planned for, and the fill
    explodes: on MAC Stokes saddle points (zero pressure block) it had 16x COLAMD's fill
    and took 107x COLAMD's time at n = 4,719, 442x at n = 10,679, and more than 120 s
    against 0.67 s at n = 67,199; so too with a small nonzero pressure block, on
    hangGlider_2 (45% of its diagonal absent: 17x) and bcsstk13 (SPD, but 20% of its
    diagonal below its column's largest entry: 1.6x). COLAMD bounds the fill for any row
    pivoting. With this rule the choice was within 1.20x of the best SuperLU ordering on
    every matrix of `benchmarks/bench_superlu.py --part orderings` (load 1.0-2.3, 2 cores).
    The test reads values, so it is made for each matrix (O(nnz)), never once per pattern:
    a factorization depends on its matrix alone.
    """
    if not symmetric:
        return "COLAMD"
    diagonal = np.abs(matrix.diagonal())
    if np.all(diagonal > 0) and np.all(diagonal >= pivot_threshold * column_max):
        return "MMD_AT_PLUS_A"
    return "COLAMD"


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

    def analyse(self, pattern: Pattern) -> _Analysis:
        # The orderings themselves are computed by the first factorizations (see module
        # docstring).
        symmetric = False
        if self.ordering == "auto":
            _, _, unpaired = pattern.symmetry_pairs()
            symmetric = unpaired.size == 0
        return _Analysis(symmetric)

    def _ordering(self, analysis: _Analysis, matrix: sp.csc_matrix, column_max) -> str:
        """SuperLU's `permc_spec` for `matrix` (the one factorized, maybe equilibrated)."""
        if self.ordering != "auto":
            return self.ordering
        return auto_ordering(analysis.symmetric, matrix, column_max, self.pivot_threshold)

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
        self, pattern: Pattern, analysis: _Analysis, matrix: sp.csc_matrix, aux: Any
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
        permc_spec = self._ordering(analysis, matrix, column_max)
        ordering = analysis.orderings.setdefault(permc_spec, _Ordering())
        if ordering.column_order is not None and _reuse_is_exact():
            lu = self._splu(ordering.reordered(matrix), "NATURAL")
            order = ordering.column_order
        else:
            lu = self._splu(matrix, permc_spec)
            order = None
            if ordering.column_order is None:
                ordering.column_order = np.argsort(lu.perm_c).astype(np.int32)
        # U's column j is A's column `factored_columns[j]`.
        factored_columns = np.argsort(lu.perm_c)
        if order is not None:
            factored_columns = order[factored_columns]
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
        # With B = S[q, q] = LU (q = `order`): S x = b  <=>  B x[q] = b[q], and
        # S^T x = c  <=>  B^T x[q] = c[q]. conj(S) x = b  <=>  S conj(x) = conj(b).
        work = rhs.conj() if conjugate else rhs
        if order is not None:
            work = work[order]
        trans = "T" if transpose else "N"
        # One block solve with BLAS held to one thread: threaded BLAS gains nothing in
        # triangular solves and is up to 10x slower on a busy machine, and a column loop
        # is 2x slower than the block (64 columns on a 128^2 Poisson: 74 / 171 ms).
        with single_threaded_blas():
            x = factor.lu.solve(np.asfortranarray(work), trans=trans)
        if order is not None:
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


_reuse_exact: bool | None = None  # None until `_reuse_is_exact` has run


def _reuse_is_exact() -> bool:
    """Whether factorizing `A[q, q]` with the natural ordering reproduces a fresh
    factorization of `A` bit for bit on this scipy (module docstring); checked once per
    process. If not, every factorization computes its own ordering."""
    global _reuse_exact
    if _reuse_exact is None:
        try:
            _reuse_exact = _reuse_self_test()
        except Exception:  # noqa: BLE001 - any failure means "do not reuse"
            _reuse_exact = False
    return _reuse_exact


def _reuse_self_test() -> bool:
    # A fixed 16 x 16 matrix whose entries tie (odd multiples of 1/2 in [-2.5, 3.5]): a
    # reuse that sorted its columns, or did not relabel its rows, chooses other pivots on it
    # with either ordering and either threshold (checked on scipy 1.17), so its solutions
    # differ in some bits.
    n = 16
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    structure = ((i * 6 + j * 3 + i * j) % 11 < 3) | (i == j)
    matrix = sp.csc_matrix(np.where(structure, (i * 5 + j * 3) % 7 - 2.5, 0.0))
    rhs = np.cos(np.arange(n, dtype=np.float64))
    for ordering in ("MMD_AT_PLUS_A", "COLAMD"):
        for threshold in (1.0, 0.0):
            backend = SuperLUBackend(ordering, threshold, symmetric_mode=False)
            fresh = backend._splu(matrix, ordering)
            kept = _Ordering(np.argsort(fresh.perm_c))
            reused = backend._splu(kept.reordered(matrix), "NATURAL")
            order = kept.column_order
            for trans in ("N", "T"):
                x = np.empty(n)
                x[order] = reused.solve(rhs[order], trans=trans)
                if not np.array_equal(x, fresh.solve(rhs, trans=trans)):
                    return False
    return True
