"""SuperLU through `scipy.sparse.linalg.splu`: square real or complex systems.

Symbolic reuse: scipy exposes no stand-alone column ordering, so the first factorization of
a pattern runs with the requested ordering, and its column permutation `q = argsort(perm_c)`
is kept for the pattern. Later factorizations factor `A[:, q]` with `permc_spec="NATURAL"`,
which reproduces the same fill and the same factors without recomputing the ordering.
(Passing `A[:, perm_c]` instead is the inverse permutation: 7x the fill on a 128^2 Poisson.)

SuperLU reports an exactly zero pivot but returns finite garbage for `inf` entries and huge
values after a tiny pivot, so every solve goes through `base.checked_solve`: a backward-error
check, with up to three steps of iterative refinement before a solve is reported singular.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .base import (
    checked_solve,
    FactorError,
    matrix_norm,
    Pattern,
    single_threaded_blas,
    SolveResult,
    Status,
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
    column_order: np.ndarray | None  # None: `lu` factors A itself, with its own ordering
    matrix: sp.csc_matrix
    matrix_norm: float


class SuperLUBackend:
    requires_symmetric = False

    def __init__(self, ordering: str, pivot_threshold: float, symmetric_mode: bool):
        self.ordering = ordering
        self.pivot_threshold = pivot_threshold
        self.symmetric_mode = symmetric_mode

    def analyse(self, pattern: Pattern) -> _Ordering:
        # The ordering itself is computed by the first factorization (see module docstring).
        del pattern
        return _Ordering()

    def _splu(self, matrix: sp.csc_matrix, permc_spec: str):
        try:
            return spla.splu(
                matrix,
                permc_spec=permc_spec,
                diag_pivot_thresh=self.pivot_threshold,
                options=dict(SymmetricMode=self.symmetric_mode),
            )
        except RuntimeError as error:  # "Factor is exactly singular"
            raise FactorError(Status.SINGULAR, str(error)) from error

    def factor(self, pattern: Pattern, analysis: _Ordering, matrix: sp.csc_matrix) -> _Factor:
        if analysis.column_order is None:
            lu = self._splu(matrix, self.ordering)
            analysis.column_order = np.argsort(lu.perm_c).astype(np.int32)
            return _Factor(lu, None, matrix, matrix_norm(matrix))
        if analysis.gather is None:
            # Second factorization of this pattern: build the permuted CSC structure once.
            positions = sp.csc_matrix(
                (np.arange(1, pattern.nnz + 1, dtype=np.float64), matrix.indices, matrix.indptr),
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
        return _Factor(lu, analysis.column_order, matrix, matrix_norm(matrix))

    def _apply_inverse(self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool):
        order = factor.column_order
        # With A Q = LU (Q = columns `order`): A x = b  <=>  (AQ) y = b, x[order] = y;
        # A^T x = c  <=>  (AQ)^T x = c[order]. conj(A) x = b  <=>  A conj(x) = conj(b).
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
        return checked_solve(
            lambda b: self._apply_inverse(factor, b, transpose, conjugate),
            factor.matrix,
            factor.matrix_norm,
            rhs,
            transpose,
            conjugate,
        )

    def nbytes(self, factor: _Factor) -> int:
        lu = factor.lu
        stored = lu.nnz * (16 if np.iscomplexobj(factor.matrix.data) else 8)
        # Row indices of L and U plus the permutations, roughly.
        stored += lu.nnz * 4 + 4 * lu.shape[0] * 4
        matrix = factor.matrix
        stored += matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
        return int(stored)
