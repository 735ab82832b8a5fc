"""Norms of blocks and sparse matrices that never overflow nor underflow, and `op(A) @ x`.

Column maxima and 2-norms of blocks, 1- and inf-norms of CSC matrices, `NormBound` (a cheap
lower bound of a norm with the exact value computed only when a check needs it) and
`operator_apply`, the product with `A`, `A^T`, `conj(A)` or `A^H` the checks measure with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def column_of(matrix: sp.csc_matrix) -> np.ndarray:
    """The column index of every stored entry of a CSC matrix."""
    return np.repeat(np.arange(matrix.shape[1], dtype=np.int64), np.diff(matrix.indptr))


def column_maxima(matrix: sp.csc_matrix) -> np.ndarray:
    """`max_i |A_ij|` per column (0 for an empty column); never overflows."""
    column_max = np.zeros(matrix.shape[1])
    if matrix.nnz:
        starts = matrix.indptr[:-1]
        nonempty = starts < matrix.indptr[1:]
        column_max[nonempty] = np.maximum.reduceat(np.abs(matrix.data), starts[nonempty])
    return column_max


def column_norms(block: np.ndarray) -> np.ndarray:
    """The 2-norm of each column of `block` (n, k), without overflow or underflow."""
    if block.shape[0] == 0:
        return np.zeros(block.shape[1])
    with np.errstate(all="ignore"):
        largest = np.max(np.abs(block), axis=0)
        usable = np.isfinite(largest) & (largest > 0)
        divisor = np.where(usable, largest, 1.0)
        norms = largest * np.linalg.norm(block / divisor, axis=0)
    return np.where(usable, norms, largest)


def one_norm(matrix: sp.csc_matrix) -> float:
    """`|A|_1`, the largest column sum of magnitudes (inf only if it truly overflows)."""
    if not matrix.nnz:
        return 0.0
    starts = matrix.indptr[:-1]
    nonempty = starts < matrix.indptr[1:]
    with np.errstate(over="ignore"):
        return float(np.add.reduceat(np.abs(matrix.data), starts[nonempty]).max())


def matrix_norm(matrix: sp.csc_matrix) -> float:
    """max(inf-norm, 1-norm): one scale valid for `A` and its transpose (CSC input)."""
    if not matrix.nnz:
        return 0.0
    absolute = np.abs(matrix.data)
    with np.errstate(over="ignore"):
        row_sums = np.bincount(matrix.indices, weights=absolute, minlength=matrix.shape[0])
    return float(max(row_sums.max(initial=0.0), one_norm(matrix)))


class NormBound:
    """A lower bound of `max(|A|_1, |A|_inf)` and a way to compute the norm exactly.

    The backward error decreases as the norm grows, so a column whose error is within the
    limit with the lower bound is within it with the exact norm: the exact norm (an O(nnz)
    pass) is only computed when some column fails with the bound, and then once.
    """

    __slots__ = ("lower", "_exact", "_value")

    def __init__(self, lower: float, exact: Callable[[], float]):
        self.lower = lower
        self._exact = exact
        self._value: float | None = None

    def exact(self) -> float:
        if self._value is None:
            self._value = float(self._exact())
            self._exact = None  # type: ignore[assignment]  # drops what it referred to
        return self._value


def operator_apply(
    matrix: sp.csc_matrix, x: np.ndarray, transpose: bool, conjugate: bool
) -> np.ndarray:
    """`op(A) @ x` with `op` as in `Backend.solve`."""
    if conjugate:
        x = x.conj()
    y = matrix.T @ x if transpose else matrix @ x
    return y.conj() if conjugate else y
