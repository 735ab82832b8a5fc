"""The host-side vocabulary shared by every backend.

This module never imports jax. It owns:

- `Status`, the one list of outcome codes a host computation can report (the JAX side maps
  them onto `lineax.RESULTS` in `lineax_sparse._bridge`);
- `Pattern`, a validated sparsity pattern: which entries are real, which are padding, which
  are invalid, and how to sum an uncoalesced COO value array into CSC order in O(nnz);
- `Backend`, the small protocol a native library implements to plug in;
- `FactorError`, how a backend reports a data-dependent failure of a factorization;
- `backward_error`, the residual check used where a native library gives no other signal.
"""

from __future__ import annotations

import enum
import zlib
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp


class Status(enum.IntEnum):
    """Outcome of one host computation. `OK` must stay 0."""

    OK = 0
    SINGULAR = 1
    NONFINITE_INPUT = 2
    MAX_STEPS_REACHED = 3
    BREAKDOWN = 4
    INVALID_INDEX = 5
    NOT_POSITIVE_DEFINITE = 6
    NOT_SYMMETRIC = 7


class FactorError(Exception):
    """Raised by `Backend.factor` for a data-dependent failure (never escapes the host)."""

    def __init__(self, status: Status, message: str = ""):
        super().__init__(message or status.name)
        self.status = status


def fingerprint(array: np.ndarray) -> tuple[int, int, str]:
    """A cheap bucket key for an array's contents; equal keys must still be compared."""
    array = np.ascontiguousarray(array)
    return zlib.crc32(array.view(np.uint8)), array.size, array.dtype.str


class Pattern:
    """A validated sparsity pattern of an `n x n` matrix given as COO `indices`.

    Entries with a row or column index equal to `n` are padding (as written by
    `BCOO.sum_duplicates(nse=...)` under jit) and are dropped, as every BCOO operation drops
    them. Any other index outside `[0, n)` makes the whole pattern invalid. Duplicates are
    summed. `slot[e]` is the CSC position that entry `e` is added into (`nnz` for dropped
    entries), so assembling values costs one `bincount`.
    """

    def __init__(self, n: int, indices: np.ndarray):
        indices = np.ascontiguousarray(indices)
        self.n = n
        self.indices = indices
        self.key = fingerprint(indices) + (n,)
        rows = indices[:, 0].astype(np.int64)
        cols = indices[:, 1].astype(np.int64)
        padding = (rows == n) | (cols == n)
        invalid = ((rows < 0) | (rows > n) | (cols < 0) | (cols > n)) & ~padding
        self.valid = not bool(invalid.any())
        keep = ~(padding | invalid)
        linear = np.where(keep, cols * n + rows, n * n)
        unique, slot = np.unique(linear, return_inverse=True)
        if unique.size and unique[-1] == n * n:
            unique = unique[:-1]
        self.nnz = int(unique.size)
        self.slot = slot.astype(np.int64).reshape(-1)
        self.row_indices = (unique % n).astype(np.int32)
        col_of_unique = unique // n
        self.indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(col_of_unique, minlength=n), out=self.indptr[1:])
        diagonal = self.row_indices == col_of_unique
        self.has_full_diagonal = int(np.count_nonzero(diagonal)) == n
        self.nbytes = (
            indices.nbytes + self.slot.nbytes + self.row_indices.nbytes + self.indptr.nbytes
        )

    def transpose_partner(self) -> np.ndarray:
        """For each CSC entry (i, j), the CSC position of (j, i), or -1 if not stored."""
        partner = getattr(self, "_partner", None)
        if partner is None:
            n = self.n
            cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.indptr))
            keys = cols * n + self.row_indices  # ascending: CSC order with sorted rows
            transposed = self.row_indices.astype(np.int64) * n + cols
            where = np.minimum(np.searchsorted(keys, transposed), max(keys.size - 1, 0))
            found = keys.size > 0 and keys[where] == transposed
            partner = np.where(found, where, -1)
            self._partner = partner
            self.nbytes += partner.nbytes
        return partner

    def same_as(self, n: int, indices: np.ndarray) -> bool:
        return n == self.n and np.array_equal(indices, self.indices)

    def assemble(self, values: np.ndarray) -> np.ndarray:
        """Sum COO `values` into CSC order: float64 or complex128, length `self.nnz`."""
        if np.iscomplexobj(values):
            real = np.bincount(self.slot, weights=values.real, minlength=self.nnz + 1)
            imag = np.bincount(self.slot, weights=values.imag, minlength=self.nnz + 1)
            return (real + 1j * imag)[: self.nnz]
        return np.bincount(self.slot, weights=values, minlength=self.nnz + 1)[: self.nnz]

    def csc(self, csc_values: np.ndarray) -> sp.csc_matrix:
        """The matrix as scipy CSC, sharing this pattern's index arrays."""
        return sp.csc_matrix(
            (csc_values, self.row_indices, self.indptr), shape=(self.n, self.n), copy=False
        )


class Backend(Protocol):
    """What a native library implements to be used by a lineax-sparse solver.

    One instance is made per solver configuration (`options` are the solver's static
    fields). All methods run on the owner thread; none may call jax.
    """

    #: Whether `factor` needs a matrix whose values are symmetric (Hermitian).
    requires_symmetric: bool

    def analyse(self, pattern: Pattern) -> Any:
        """Symbolic work that depends on the sparsity pattern only. Cached by pattern."""
        ...

    def factor(self, pattern: Pattern, analysis: Any, matrix: sp.csc_matrix) -> Any:
        """Numeric work on assembled (float64 / complex128) values; raises `FactorError`."""
        ...

    def solve(
        self, factor: Any, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Solve `op(A) X = rhs` for `rhs` of shape `(n, k)`.

        `op(A)` is `A`, `A^T`, `conj(A)` or `A^H` depending on the flags. Returns the
        solution `(n, k)` and a `Status` code per column (`(k,)` int32).
        """
        ...

    def nbytes(self, factor: Any) -> int:
        """Memory held by `factor`, for the cache's byte budget."""
        ...


def is_hermitian(pattern: Pattern, csc_values: np.ndarray) -> bool:
    """Whether assembled values are symmetric (real) or Hermitian (complex), to rounding.

    O(nnz) per call; the pairing of entries is computed once per pattern. A pair may differ
    by 1e-10 of its larger entry plus 1e-14 of the largest entry (assembly rounding).
    """
    partner = pattern.transpose_partner()
    paired = partner >= 0
    scale = np.max(np.abs(csc_values), initial=0.0)
    # An unpaired stored entry must be (numerically) zero.
    if np.any(np.abs(csc_values[~paired]) > 1e-14 * scale):
        return False
    mine = csc_values[paired]
    theirs = np.conj(csc_values[partner[paired]])
    limit = 1e-10 * np.maximum(np.abs(mine), np.abs(theirs)) + 1e-14 * scale
    return bool(np.all(np.abs(mine - theirs) <= limit))


def operator_apply(
    matrix: sp.csc_matrix, x: np.ndarray, transpose: bool, conjugate: bool
) -> np.ndarray:
    """`op(A) @ x` with `op` as in `Backend.solve`."""
    if conjugate:
        x = x.conj()
    y = matrix.T @ x if transpose else matrix @ x
    return y.conj() if conjugate else y


def backward_error(
    matrix: sp.csc_matrix,
    x: np.ndarray,
    rhs: np.ndarray,
    transpose: bool,
    conjugate: bool,
    matrix_norm: float,
) -> np.ndarray:
    """Normwise backward error `|b - op(A) x| / (|A| |x| + |b|)` per column (inf-norms)."""
    residual = rhs - operator_apply(matrix, x, transpose, conjugate)
    num = np.max(np.abs(residual), axis=0, initial=0.0)
    den = matrix_norm * np.max(np.abs(x), axis=0, initial=0.0) + np.max(
        np.abs(rhs), axis=0, initial=0.0
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.where(den > 0, num / np.where(den > 0, den, 1.0), num)
    return np.where(np.isfinite(error), error, np.inf)


def matrix_norm(matrix: sp.csc_matrix) -> float:
    """max(inf-norm, 1-norm): one scale valid for `A` and its transpose."""
    absolute = abs(matrix)
    row_sums = np.asarray(absolute.sum(axis=1)).ravel()
    col_sums = np.asarray(absolute.sum(axis=0)).ravel()
    return float(max(row_sums.max(initial=0.0), col_sums.max(initial=0.0)))
