"""Exact scaling by powers of two: of values, of right-hand sides, and of whole matrices.

Powers of two scale without rounding, so a matrix or a right-hand side near the overflow or
underflow thresholds is moved to a safe range and back exactly: `exponents` and `scale` for
values, `scaled_columns` for blocks, `equilibrate` (rows and columns, as LAPACK's
`xGEEQUB`) and `symmetric_equilibration` for matrices whose values `is_extreme` (LU of
`[[1, 1e308], [-1, 1e308]]` overflows otherwise).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .norms import column_maxima, column_of


#: Values whose magnitude leaves [2^-400, 2^400] are equilibrated before a factorization:
#: far enough from the overflow threshold that no norm, product or growth of the factors
#: overflows, and from the underflow threshold that no pivot becomes subnormal.
EXTREME_EXPONENT = 400


def exponents(magnitudes: np.ndarray) -> np.ndarray:
    """`e` with `magnitudes * 2^-e` in `[0.5, 1)`; 0 where zero or not finite (`frexp`'s
    own convention for those)."""
    return np.frexp(np.asarray(magnitudes, dtype=np.float64))[1]


def scale(values: np.ndarray, e) -> np.ndarray:
    """`values * 2^e`, exactly (real or complex; `e` broadcasts against `values`)."""
    e = np.asarray(e)
    if np.iscomplexobj(values):
        return np.ldexp(values.real, e) + 1j * np.ldexp(values.imag, e)
    return np.ldexp(values, e)


def scaled_columns(block: np.ndarray, row_exponents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(S, m)` with `S = diag(2^row_exponents) block diag(2^-m)` and each nonzero column of
    `S` having its largest magnitude in [0.5, 1); computed exponent by exponent, so that no
    intermediate product overflows or underflows (an all-zero column keeps `m = 0`)."""
    magnitude = np.abs(block)
    _, entry = np.frexp(np.where(magnitude > 0, magnitude, 1.0))
    total = np.where(magnitude > 0, entry + row_exponents[:, None], np.iinfo(np.int32).min)
    m = np.max(total, axis=0, initial=np.iinfo(np.int32).min)
    m = np.where(m == np.iinfo(np.int32).min, 0, m).astype(np.int64)
    return scale(block, row_exponents[:, None] - m[None, :]), m


def is_extreme(largest: float) -> bool:
    """Whether a matrix whose largest magnitude is `largest` needs equilibration."""
    if not largest > 0:  # zero, or NaN (reported elsewhere)
        return False
    return abs(int(exponents(np.array([largest]))[0])) >= EXTREME_EXPONENT


def equilibrate(matrix: sp.csc_matrix) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """`(S, r, c)` with `S = R A C`, `R = diag(2^-r)`, `C = diag(2^-c)`, every nonzero row
    and column of `S` having its largest magnitude in `[0.5, 1)` (rows first, then columns,
    as LAPACK's `xGEEQUB`). Exact: powers of two scale without rounding."""
    n = matrix.shape[0]
    columns = column_of(matrix)
    row_max = np.zeros(n)
    np.maximum.at(row_max, matrix.indices, np.abs(matrix.data))
    r = exponents(row_max)
    row_scaled = scale(matrix.data, -r[matrix.indices])
    c = exponents(column_maxima(sp.csc_matrix((row_scaled, matrix.indices, matrix.indptr))))
    data = scale(row_scaled, -c[columns])
    scaled = sp.csc_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)
    return scaled, r, c


def symmetric_equilibration(diagonal: np.ndarray) -> np.ndarray:
    """`d` with `D A D` (`D = diag(2^-d)`) having a diagonal in `[0.25, 1)` where positive:
    the scaling that keeps a symmetric matrix symmetric and a definite one definite."""
    return exponents(np.sqrt(np.abs(diagonal)))
