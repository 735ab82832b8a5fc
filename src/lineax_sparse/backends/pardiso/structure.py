"""The CSR arrays PARDISO reads, made once per sparsity pattern from the host's CSC.

PARDISO reads compressed rows; the host holds compressed columns, which read as rows are the
transpose. So no conversion is made: an unsymmetric matrix is handed over as `A^T` and solved
with PARDISO's transposed solve (`iparm[11]`), and a symmetric one as the lower triangle of its
columns, which read as rows is the upper triangle PARDISO takes (`triu(A^T)`: `triu(A)` for a
symmetric matrix, `triu(conj(A))` for a Hermitian one, whose values are conjugated). PARDISO
needs every diagonal entry of a symmetric matrix stored: missing ones are inserted as zeros.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..pattern import Pattern


#: Above this many rows or stored entries the 64-bit interface (`pardiso_64`) is used.
INT32_LIMIT = 2**31 - 1


@dataclasses.dataclass
class Structure:
    """PARDISO's view of a pattern: row pointers and column indices (0-based), and where each
    stored value comes from in the host's CSC values (`take`; -1 for an inserted zero
    diagonal entry, None when the values are the CSC values themselves)."""

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    take: np.ndarray | None
    #: Rows or columns without any stored entry: the matrix is singular (and PARDISO is
    #: not to be called: an empty row makes it crash).
    empty: bool

    @property
    def wide(self) -> bool:
        return self.indptr.dtype == np.int64

    def widened(self) -> Structure:
        """The same structure with 64-bit indices (for `pardiso_64`)."""
        return dataclasses.replace(
            self, indptr=self.indptr.astype(np.int64), indices=self.indices.astype(np.int64)
        )

    def values(self, csc_values: np.ndarray, conjugate: bool) -> np.ndarray:
        """The values PARDISO reads, in its order (a new array)."""
        if self.take is None:
            values = csc_values.copy()
        elif csc_values.size == 0:  # no stored entries: the inserted diagonal only
            values = np.zeros(self.take.size, dtype=csc_values.dtype)
        else:
            values = csc_values[np.maximum(self.take, 0)]
            values[self.take < 0] = 0
        if conjugate:
            np.conjugate(values, out=values)
        return values

    @property
    def nbytes(self) -> int:
        take = 0 if self.take is None else self.take.nbytes
        return int(self.indptr.nbytes + self.indices.nbytes + take)


def _index_type(n: int, nnz: int):
    return np.int64 if max(n, nnz) >= INT32_LIMIT else np.int32


def _empty(pattern: Pattern) -> bool:
    n = pattern.n
    columns = np.diff(pattern.indptr) > 0
    rows = np.bincount(pattern.row_indices, minlength=n) > 0
    return not (bool(columns.all()) and bool(rows.all()))


def general(pattern: Pattern) -> Structure:
    """`A^T` in compressed rows: the host's CSC arrays as they are."""
    index = _index_type(pattern.n, pattern.nnz)
    return Structure(
        pattern.n,
        pattern.indptr.astype(index),
        pattern.row_indices.astype(index),
        None,
        _empty(pattern),
    )


def upper(pattern: Pattern) -> Structure:
    """`triu(A^T)` in compressed rows with every diagonal entry stored."""
    n = pattern.n
    rows = pattern.row_indices.astype(np.int64)
    columns = pattern.column_indices().astype(np.int64)
    # The CSC order is by column, then row: the kept entries (row >= column) are already
    # PARDISO's order, by row of `A^T` then column. A missing diagonal entry has the
    # smallest row of its column, so it is inserted where its column starts.
    kept = np.flatnonzero(rows >= columns)
    kept_rows, kept_columns = rows[kept], columns[kept]
    has_diagonal = np.zeros(n, dtype=bool)
    has_diagonal[kept_rows[kept_rows == kept_columns]] = True
    missing = np.flatnonzero(~has_diagonal)
    starts = np.searchsorted(kept_columns, missing)
    all_rows = np.insert(kept_rows, starts, missing)
    take = np.insert(kept, starts, -1)
    counts = np.bincount(kept_columns, minlength=n) + ~has_diagonal
    index = _index_type(n, all_rows.size)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # Every row holds its diagonal: an empty row or column of A can still make it
    # singular, which the factorization reports (a zero row of a symmetric matrix).
    return Structure(n, indptr.astype(index), all_rows.astype(index), take, False)
