"""Checked direct solves: `checked_solve` and the measures it decides by.

A direct solve is scaled (each right-hand side by a power of two, so that neither `b` nor
the products of the check can overflow), checked by its normwise backward error
(`backward_error`) and repaired by iterative refinement; what no refinement repairs is
`SINGULAR`. `relative_residual` is the `|b - op(A) x| / |b|` every solve reports.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ..status import SolveResult, Status
from .norms import column_norms, NormBound, operator_apply
from .scaling import exponents, scale, scaled_columns


#: A direct solve whose normwise backward error exceeds this is reported as singular. Stable
#: solves sit near 1e-16 even for condition numbers of 1e12; garbage sits near 1.
BACKWARD_ERROR_LIMIT = 1e-8
#: Steps of iterative refinement tried before a direct solve is reported as failed.
REFINEMENT_STEPS = 3


def backward_error(residual, x, rhs, norm) -> np.ndarray:
    """`|r|_inf / (norm |x|_inf + |b|_inf)` per column; inf where not finite.

    A denominator that overflows means a backward error far below any limit (the residual
    is finite), which is what the quotient gives.
    """
    with np.errstate(all="ignore"):
        num = np.max(np.abs(residual), axis=0, initial=0.0)
        den = norm * np.max(np.abs(x), axis=0, initial=0.0)
        den = den + np.max(np.abs(rhs), axis=0, initial=0.0)
        error = np.where(den > 0, num / np.where(den > 0, den, 1.0), num)
    return np.where(np.isfinite(error) & np.isfinite(num), error, np.inf)


def relative_residual(residual: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """`|r|_2 / |b|_2` per column (`|r|_2` where `b = 0`), without overflow."""
    num, den = column_norms(residual), column_norms(rhs)
    with np.errstate(all="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), num)


#: Right-hand side blocks larger than this are solved and checked in column chunks of at
#: most this size: every temporary of the checks then stays below glibc's mmap threshold
#: (32 MiB as `_host` sets it) and is reused from the heap instead of page-faulted in
#: afresh. Measured: 64 right-hand sides of a 2D Poisson 512² (134 MB per block) through
#: CHOLMOD took 3.45-3.63 s in one block, 3.1 s in chunks of 8 columns, and 2.7 s as 64
#: separate solves (copying one such block alone took 0.23 s).
CHUNK_BYTES = 16 << 20


def checked_solve(
    apply_inverse: Callable[[np.ndarray], np.ndarray],
    matrix: sp.csc_matrix,
    norm: float | NormBound,
    rhs: np.ndarray,
    transpose: bool,
    conjugate: bool,
    row_exponents: np.ndarray | None = None,
    column_exponents: np.ndarray | None = None,
) -> SolveResult:
    """A direct solve, checked by its backward error and repaired by iterative refinement.

    `matrix` is the matrix `S` that was factorized and `apply_inverse(b)` applies `op(S)^-1`
    to a block; `norm` is `max(|S|_1, |S|_inf)` or a `NormBound`. When `S` is an
    equilibrated `R A C` (`R = diag(2^-row_exponents)`, `C = diag(2^-column_exponents)`),
    the solution and residual returned are those of `op(A) x = rhs`.

    Each column of the right-hand side is scaled by a power of two to a largest magnitude
    in [0.5, 1) before the solve, so that neither `b` nor the products of the check can
    overflow or underflow. Columns whose backward error exceeds `BACKWARD_ERROR_LIMIT` get
    up to `REFINEMENT_STEPS` steps of refinement (small pivots often leave a solution a few
    steps repair); those still above, and solutions that are not finite, are `SINGULAR`.
    """
    n, k = rhs.shape
    width = max(1, CHUNK_BYTES // max(1, n * rhs.itemsize))
    if k > width:
        parts = [
            checked_solve(
                apply_inverse,
                matrix,
                norm,
                rhs[:, start : start + width],
                transpose,
                conjugate,
                row_exponents,
                column_exponents,
            )
            for start in range(0, k, width)
        ]
        return SolveResult(*(np.concatenate(field, axis=-1) for field in zip(*parts, strict=True)))
    if row_exponents is None and column_exponents is None:
        return _checked_solve_unscaled(apply_inverse, matrix, norm, rhs, transpose, conjugate)
    n, k = rhs.shape
    into, out = (row_exponents, column_exponents)
    if transpose:  # A^T x = b  <=>  (R A C)^T (R^-1 x) = C b
        into, out = out, into
    with np.errstate(all="ignore"):
        if into is None:
            # Unequilibrated (the common case): one power of two per column.
            largest = np.max(np.abs(rhs), axis=0, initial=0.0)
            rhs_exponents = exponents(largest)
            b = scale(rhs, -rhs_exponents[None, :])
        else:
            # b = R rhs 2^-m, R applied entry by entry: nothing overflows on the way.
            b, rhs_exponents = scaled_columns(rhs, -into)
        y = apply_inverse(b)
        residual = b - operator_apply(matrix, y, transpose, conjugate)
    steps = np.zeros(k, dtype=np.int32)
    if isinstance(norm, NormBound):
        error = backward_error(residual, y, b, norm.lower)
        if np.any(error > BACKWARD_ERROR_LIMIT):
            norm = norm.exact()
            error = backward_error(residual, y, b, norm)
        else:
            norm = norm.lower
    else:
        error = backward_error(residual, y, b, norm)
    for _ in range(REFINEMENT_STEPS):
        bad = np.flatnonzero((error > BACKWARD_ERROR_LIMIT) & np.all(np.isfinite(y), axis=0))
        if bad.size == 0:
            break
        with np.errstate(all="ignore"):
            y[:, bad] += apply_inverse(residual[:, bad])
            residual[:, bad] = b[:, bad] - operator_apply(matrix, y[:, bad], transpose, conjugate)
        steps[bad] += 1
        error[bad] = backward_error(residual[:, bad], y[:, bad], b[:, bad], norm)
    with np.errstate(all="ignore"):
        if out is None:
            x = scale(y, rhs_exponents[None, :])
        else:
            x = scale(y, rhs_exponents[None, :] - out[:, None])
        # A solution whose scaling back overflows is not representable: never a success.
        ok = (error <= BACKWARD_ERROR_LIMIT) & np.all(np.isfinite(x), axis=0)
        status = np.where(ok, Status.OK, Status.SINGULAR).astype(np.int32)
        # |b - op(A) x| / |b| = |R^-1 r| / |R^-1 b| for the scaled residual r (C for A^T),
        # both scaled by the same power of two per column.
        if into is None:
            ratio = relative_residual(residual, b)
        else:
            original, shift = scaled_columns(b, into)
            ratio = relative_residual(scale(residual, into[:, None] - shift[None, :]), original)
    return SolveResult(x, status, steps, ratio)


def _checked_solve_unscaled(apply_inverse, matrix, norm, rhs, transpose, conjugate):
    """`checked_solve` for a matrix that was not equilibrated: the same checks with as few
    array operations as possible (thousands of small solves run through here in a stiff
    ODE integration). Only each right-hand side is scaled, by one power of two."""
    n, k = rhs.shape
    with np.errstate(all="ignore"):
        largest = np.max(np.abs(rhs), axis=0, initial=0.0)
        shift = np.frexp(largest)[1]
        b = scale(rhs, -shift[None, :])  # |b|_inf in [0.5, 1) per column, or 0
        y = apply_inverse(b)
        residual = b - operator_apply(matrix, y, transpose, conjugate)
        b_max = np.ldexp(largest, -shift)

        def error_of(columns, lower_norm):
            r_max = np.max(np.abs(residual[:, columns]), axis=0, initial=0.0)
            y_max = np.max(np.abs(y[:, columns]), axis=0, initial=0.0)
            den = lower_norm * y_max + b_max[columns]
            error = np.where(den > 0, r_max / np.where(den > 0, den, 1.0), r_max)
            return np.where(np.isfinite(error) & np.isfinite(r_max), error, np.inf)

        everything = slice(None)
        if isinstance(norm, NormBound):
            error = error_of(everything, norm.lower)
            if np.any(error > BACKWARD_ERROR_LIMIT):
                norm = norm.exact()
                error = error_of(everything, norm)
            else:
                norm = norm.lower
        else:
            error = error_of(everything, norm)
        steps = np.zeros(k, dtype=np.int32)
        for _ in range(REFINEMENT_STEPS):
            bad = np.flatnonzero((error > BACKWARD_ERROR_LIMIT) & np.all(np.isfinite(y), axis=0))
            if bad.size == 0:
                break
            y[:, bad] += apply_inverse(residual[:, bad])
            residual[:, bad] = b[:, bad] - operator_apply(matrix, y[:, bad], transpose, conjugate)
            steps[bad] += 1
            error[bad] = error_of(bad, norm)
        x = scale(y, shift[None, :])
        ok = (error <= BACKWARD_ERROR_LIMIT) & np.all(np.isfinite(x), axis=0)
        status = np.where(ok, Status.OK, Status.SINGULAR).astype(np.int32)
        # b is scaled to at most 1: its 2-norm cannot overflow; a residual that could
        # (a column that failed anyway) takes the scaled norm.
        num = np.linalg.norm(residual, axis=0)
        if not np.all(np.isfinite(num)):
            num = column_norms(residual)
        den = np.linalg.norm(b, axis=0)
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), num)
    return SolveResult(x, status, steps, ratio)
