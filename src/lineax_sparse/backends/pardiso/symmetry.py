"""Whether a matrix given to a symmetric PARDISO type has the symmetry it promises.

The host's test (`numerics.is_hermitian`) lets a mirrored pair differ by 1e-10 of its larger
entry plus 1e-14 of `sqrt(|a_ii| |a_jj|)`, the rounding of assembling an entry of a positive
definite matrix. A saddle point has a zero diagonal block, and an entry of its coupling block
that cancels to rounding level (a Taylor-Hood Stokes matrix: -1.7e-18 against its mirror's
-3.5e-18, entries of order 1) then fails it. Here the floor is 1e-14 of
`sqrt(max_k |a_ki| max_k |a_kj|)`, the geometric mean of the two columns' largest entries:
the rounding of assembling the pair whatever the diagonal, and still far below any real
asymmetry (a 1e15 penalty on one diagonal entry makes the floor of its pairs with entries
of order 1 only 3e-7).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..numerics.norms import column_maxima
from ..numerics.symmetry import SYMMETRY_FLOOR, SYMMETRY_RTOL
from ..pattern import Pattern


def _within_rounding(pattern: Pattern, values: np.ndarray, conjugate: bool) -> bool:
    lower, upper, unpaired = pattern.symmetry_pairs()
    rows, columns = pattern.row_indices, pattern.column_indices()
    mine, theirs = values[lower], values[upper]
    if conjugate:
        theirs = theirs.conj()
    # The floors only where a pair differs or a mirror is missing (usually nowhere: an
    # exactly symmetric assembly), so that the common case costs two gathers.
    differ = np.flatnonzero(mine != theirs)
    lone = unpaired[values[unpaired] != 0]
    diagonal = pattern.diagonal(values) if conjugate else None
    if not (differ.size or lone.size or (conjugate and np.any(diagonal.imag))):
        return True
    matrix = sp.csc_matrix((values, pattern.row_indices, pattern.indptr), shape=(pattern.n,) * 2)
    root = np.sqrt(column_maxima(matrix))
    with np.errstate(over="ignore", invalid="ignore"):
        floor = SYMMETRY_FLOOR * root[rows[lone]] * root[columns[lone]]
        if np.any(np.abs(values[lone]) > floor):
            return False
        if conjugate and np.any(np.abs(diagonal.imag) > SYMMETRY_RTOL * np.abs(diagonal)):
            return False
        mine, theirs, where = mine[differ], theirs[differ], lower[differ]
        floor = SYMMETRY_FLOOR * root[rows[where]] * root[columns[where]]
        larger = np.maximum(np.abs(mine), np.abs(theirs))
        return bool(np.all(np.abs(mine - theirs) <= SYMMETRY_RTOL * larger + floor))


def is_symmetric(pattern: Pattern, values: np.ndarray, hermitian: bool) -> bool:
    """Whether finite CSC `values` are Hermitian (`hermitian`, or real symmetric) or
    complex symmetric (`A^T = A`) within rounding.

    Every matrix the host's `is_hermitian` accepts passes (each floor here is at least its
    floor: `|a_ii| <= max_k |a_ki|`). The floors are computed for the pairs that differ
    only: the host's test then this one cost 45-60 ms of a 550 ms factorization of a
    50,177-unknown Stokes matrix, this one alone 33 ms, now 12 ms."""
    if not np.iscomplexobj(values):
        return _within_rounding(pattern, values, False)
    if hermitian:
        return _within_rounding(pattern, values, True)
    return all(
        _within_rounding(pattern, part, False)
        for part in (np.ascontiguousarray(values.real), np.ascontiguousarray(values.imag))
    )
