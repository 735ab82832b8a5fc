"""SuperLU's column ordering: which one a matrix gets (`auto_ordering`), and how later
factorizations of a pattern reuse the ordering its first one computed (`Ordering`), which
reproduces a fresh factorization bit for bit where `reuse_is_exact` (checked once per
process). Why, and the measurements behind the rule: docs/backends/superlu.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


@dataclasses.dataclass
class Ordering:
    """Per pattern and ordering: the column order `q` of the first factorization and, from
    the second one on, the CSC structure of `A[q, q]` (docs/backends/superlu.md)."""

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
        # The order of each column decides SuperLU's ties (docs/backends/superlu.md), and
        # `splu` sorts a matrix not flagged canonical; a pattern has no duplicates.
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
    symmetric: bool,
    matrix: sp.csc_matrix,
    column_max: np.ndarray,
    pivot_threshold: float,
    hermitian: Callable[[], bool],
) -> str:
    """`ordering="auto"`: `"MMD_AT_PLUS_A"` when the pattern is structurally symmetric,
    every diagonal entry of `matrix` is one SuperLU would take as its pivot before any
    elimination (nonzero, and at least `pivot_threshold` times the largest entry of its
    column), and the pivots stay on the diagonal during the elimination: the matrix is
    (weakly) diagonally dominant by columns, or `hermitian()` with a positive diagonal
    (every positive definite matrix is). `"COLAMD"` otherwise.

    Minimum degree on A^T + A orders for pivots on the diagonal: where they are taken it
    has half COLAMD's fill, where partial pivoting swaps rows instead its fill explodes
    (16x COLAMD's on Stokes saddle points, 107-442x the time), while COLAMD bounds the fill
    for any row pivoting (measurements: docs/backends/superlu.md). A diagonal that wins the
    first step is not enough: on a complex Helmholtz matrix on a 256^2 grid (-Δ - k^2, ten
    points per wavelength, diagonal 3.6 against off-diagonal sums of 4) the Schur
    complements of the indefinite matrix moved the pivots off the diagonal, and minimum
    degree took 11.4 s against COLAMD's 0.33 s. The test reads values, so it is made for
    each matrix (O(nnz)), never once per pattern: a factorization depends on its matrix
    alone.
    """
    if not symmetric:
        return "COLAMD"
    diagonal = matrix.diagonal()
    magnitude = np.abs(diagonal)
    if not (np.all(magnitude > 0) and np.all(magnitude >= pivot_threshold * column_max)):
        return "COLAMD"
    off_diagonal = np.asarray(abs(matrix).sum(axis=0)).ravel() - magnitude
    # Relative slack for the rounding of the column sums (Poisson: 4 against 1 + 1 + 1 + 1).
    if np.all(magnitude >= off_diagonal * (1 - 1e-12)):
        return "MMD_AT_PLUS_A"
    if np.all(diagonal.real > 0) and hermitian():
        return "MMD_AT_PLUS_A"
    return "COLAMD"


_reuse_exact: bool | None = None  # None until `reuse_is_exact` has run


def reuse_is_exact() -> bool:
    """Whether factorizing `A[q, q]` with the natural ordering reproduces a fresh
    factorization of `A` bit for bit on this scipy (docs/backends/superlu.md); checked once
    per process. If not, every factorization computes its own ordering."""
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
            options = dict(diag_pivot_thresh=threshold, options=dict(SymmetricMode=False))
            fresh = spla.splu(matrix, permc_spec=ordering, **options)
            kept = Ordering(np.argsort(fresh.perm_c))
            reused = spla.splu(kept.reordered(matrix), permc_spec="NATURAL", **options)
            order = kept.column_order
            for trans in ("N", "T"):
                x = np.empty(n)
                x[order] = reused.solve(rhs[order], trans=trans)
                if not np.array_equal(x, fresh.solve(rhs, trans=trans)):
                    return False
    return True
