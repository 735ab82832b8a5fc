"""The two meanings of "symmetric" for assembled values, each defined once.

- `exactly_symmetric`: real values equal to their transpose bit for bit. Then `A^T = A` is
  the same matrix, so one factorization or hierarchy answers transposed solves too.
- `is_hermitian`: symmetric (Hermitian) within rounding, relative to each pair's own
  magnitude: what a symmetric factorization (CHOLMOD) may be given.
"""

from __future__ import annotations

import numpy as np

from ..pattern import Pattern


#: Symmetry of values (`is_hermitian`): a mirrored pair may differ by this much of its larger
#: entry (within the backward error every solve is held to) ...
SYMMETRY_RTOL = 1e-10
#: ... plus this much of `sqrt(|a_ii| |a_jj|)`, the rounding left by assembling an entry that
#: cancels to nearly zero (for an assembled positive definite matrix the contributions to
#: `a_ij` sum to at most `sqrt(a_ii a_jj)` in magnitude).
SYMMETRY_FLOOR = 1e-14


def exactly_symmetric(pattern: Pattern, csc_values: np.ndarray) -> bool:
    """Whether real CSC values equal their transpose exactly: every mirrored pair equal,
    every entry without a stored mirror zero (an explicit zero is no asymmetry). Complex
    values: False (their transpose is never needed as the same matrix)."""
    if np.iscomplexobj(csc_values):
        return False
    lower, upper, unpaired = pattern.symmetry_pairs()
    return bool(
        np.all(csc_values[unpaired] == 0) and np.array_equal(csc_values[lower], csc_values[upper])
    )


def is_hermitian(pattern, csc_values: np.ndarray) -> bool:
    """Whether assembled values are symmetric (real) or Hermitian (complex).

    Decided per mirrored pair, so that no other entry of the matrix can hide an asymmetry
    (a 1e15 penalty on one diagonal entry must not excuse a 1 / -1 pair elsewhere): a pair
    `(a_ij, a_ji)` may differ by `SYMMETRY_RTOL` of its larger entry plus `SYMMETRY_FLOOR`
    times `sqrt(|a_ii| |a_jj|)`; an entry without a stored mirror must be within that floor;
    the imaginary part of a Hermitian diagonal within `SYMMETRY_RTOL` of its entry. The
    test is invariant under any symmetric scaling `D A D`. O(nnz) per call, touching each
    pair once; the pairing is computed once per pattern. Values must be finite.
    """
    complex_values = np.iscomplexobj(csc_values)
    if not complex_values and exactly_symmetric(pattern, csc_values):
        return True  # as FEM assembly from symmetric element matrices usually is
    lower, upper, unpaired = pattern.symmetry_pairs()
    mine = csc_values[lower]
    theirs = csc_values[upper]
    if complex_values:
        theirs = theirs.conj()
    diagonal = pattern.diagonal(csc_values)
    root = np.sqrt(np.abs(diagonal))  # sqrt|a_ii|, 0 where none is stored; never overflows
    rows, columns = pattern.row_indices, pattern.column_indices()
    if unpaired.size:
        floor = SYMMETRY_FLOOR * root[rows[unpaired]] * root[columns[unpaired]]
        if np.any(np.abs(csc_values[unpaired]) > floor):
            return False
    if complex_values and np.any(np.abs(diagonal.imag) > SYMMETRY_RTOL * np.abs(diagonal)):
        return False
    floor = SYMMETRY_FLOOR * root[rows[lower]] * root[columns[lower]]
    with np.errstate(over="ignore", invalid="ignore"):
        difference = np.abs(mine - theirs)
        larger = np.maximum(np.abs(mine), np.abs(theirs))
        return bool(np.all(difference <= SYMMETRY_RTOL * larger + floor))
