"""Numerical checks shared by the backends; numpy and scipy only, never jax.

Everything a backend uses to decide that a result may be reported as a success lives here,
written so that no scale of the input can fool it:

- power-of-two scaling (`exponents`, `scale`): exact, so a matrix or a right-hand side
  near the overflow or underflow thresholds is moved to a safe range and back without
  rounding;
- `equilibrate`: row and column scaling by powers of two, applied before a factorization
  when the values are extreme (LU of `[[1, 1e308], [-1, 1e308]]` overflows otherwise);
- `column_norms` and the backward error: overflow- and underflow-safe;
- `checked_solve`: a direct solve with the right-hand side scaled, checked by its normwise
  backward error and repaired by iterative refinement;
- `estimate_rcond`: the reciprocal 1-norm condition number of a factorized, equilibrated
  matrix (Higham and Tisseur's block estimator, `scipy.sparse.linalg.onenormest`), which is
  what tells a singular matrix from an ill-conditioned one: a backward-stable solve of a
  singular system has a tiny backward error and a solution of size 1e15;
- `is_hermitian`: symmetry of assembled values, decided per mirrored pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..status import SolveResult, Status


#: A direct solve whose normwise backward error exceeds this is reported as singular. Stable
#: solves sit near 1e-16 even for condition numbers of 1e12; garbage sits near 1.
BACKWARD_ERROR_LIMIT = 1e-8
#: Steps of iterative refinement tried before a direct solve is reported as failed.
REFINEMENT_STEPS = 3
#: An equilibrated matrix whose estimated reciprocal condition number is below this is
#: singular to working precision (LAPACK's definition: rcond < eps), whatever it is solved
#: against. Measured (docs/reliability.md): singular matrices (Neumann and graph Laplacians,
#: rank-deficient products, n = 100 .. 490,000) estimate 4e-19 .. 6e-17, the estimate
#: growing slowly with n (rounding accumulates in the factorization); the most
#: ill-conditioned real matrices of tests/data 6e-10 (rajat19, hangGlider_2).
RCOND_LIMIT = float(np.finfo(np.float64).eps)
#: Between `RCOND_LIMIT` and this, a solve must also leave a residual that a
#: backward-stable solve leaves: `|r| / |b| <= SUSPECT_RESIDUAL * eps / rcond`, else it is
#: `SINGULAR`. A singular matrix too large for its estimate to fall below `RCOND_LIMIT`,
#: solved against a physical load, leaves `|r| / |b|` of order 1. A topology-optimization
#: design with floating islands held by E_min = 1e-9 (estimates 5e-15 .. 1e-11) leaves
#: 2e-3 .. 0.1 times `eps / rcond`, the most with loads on the islands themselves
#: (docs/reliability.md). At and above 1e-12 nothing more is asked: condition numbers up
#: to 1e12 must solve.
RCOND_SUSPECT = 1e-12
SUSPECT_RESIDUAL = 0.5
#: A pivot below this fraction of the largest entry of its column asks for a condition
#: estimate. Singular matrices leave pivots of 1e-15 .. 1e-12 of their column (growing
#: slowly with n); well-conditioned ones rarely go below 1e-2.
PIVOT_GATE = 1e-6
#: A solve whose `|b - Ax| / |b|` exceeds this asks for a condition estimate of its factor
#: (once per factor): a backward-stable solve of a well-posed system stays far below it
#: unless the matrix is very ill-conditioned, which the estimate then tells apart.
RESIDUAL_TRIGGER = 1e-6
#: Values whose magnitude leaves [2^-400, 2^400] are equilibrated before a factorization:
#: far enough from the overflow threshold that no norm, product or growth of the factors
#: overflows, and from the underflow threshold that no pivot becomes subnormal.
EXTREME_EXPONENT = 400


# ---------------------------------------------------------------- power-of-two scaling


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


# ---------------------------------------------------------------- norms


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


# ---------------------------------------------------------------- checked direct solves


def operator_apply(
    matrix: sp.csc_matrix, x: np.ndarray, transpose: bool, conjugate: bool
) -> np.ndarray:
    """`op(A) @ x` with `op` as in `Backend.solve`."""
    if conjugate:
        x = x.conj()
    y = matrix.T @ x if transpose else matrix @ x
    return y.conj() if conjugate else y


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


def residual_norms(
    apply: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """`|rhs - S x|_2` per column without overflow, for `apply(v) = S v` and `|rhs|_inf <=
    1`; inf where `x` is not finite or the norm truly overflows.

    Each column of `x` is scaled by a power of two `2^p` (p >= 0) to entries at most 1
    before `apply`, so that no product overflows (a guess of 1e300 would make `S x` inf and
    its residual NaN), and the norm of `2^-p rhs - S 2^-p x` is scaled back.
    """
    with np.errstate(all="ignore"):
        largest = np.max(np.abs(x), axis=0, initial=0.0)
        finite = np.isfinite(largest)
        p = np.maximum(exponents(np.where(finite, largest, 0.0)), 0)
        scaled = scale(np.where(finite[None, :], x, 0), -p[None, :])
        norms = np.ldexp(column_norms(scale(rhs, -p[None, :]) - apply(scaled)), p)
    return np.where(finite & ~np.isnan(norms), norms, np.inf)


def best_start(
    apply: Callable[[np.ndarray], np.ndarray],
    rhs: np.ndarray,
    candidates: Sequence[np.ndarray],
) -> np.ndarray:
    """The start of an iterative solve of `S x = rhs`, per column: the candidate (a user's
    initial guess, a warm start) that leaves the smallest residual, or zero if none leaves
    less than zero does (`|rhs|_2`).

    A start only decides where the iteration begins, and one worse than zero costs steps
    for nothing: a guess 1e100 times too large took 256 steps to undo where zero took 5,
    and one of 1e160, whose residual norm overflows, was a breakdown at step 0. The
    residuals are compared with `residual_norms` (overflow-safe), so a huge, non-finite or
    overflowing candidate is never chosen. `apply(v)` is `S v` for a block `v` with entries
    at most 1; `rhs` is scaled to `|rhs|_inf <= 1`, as the iterative backends scale it.
    """
    best = np.zeros_like(rhs)
    best_norm = column_norms(rhs)
    for candidate in candidates:
        norm = residual_norms(apply, rhs, candidate)
        better = norm < best_norm
        if better.any():
            best = np.where(better[None, :], candidate, best)
            best_norm = np.where(better, norm, best_norm)
    return best


def solve_split(
    solve: Callable[[np.ndarray, np.ndarray | None], SolveResult],
    rhs: np.ndarray,
    guess: np.ndarray | None,
) -> SolveResult:
    """A complex right-hand side of a real matrix, which is real-linear: `solve(block,
    start)` solves the real and imaginary parts as 2k real columns, and the parts' results
    are combined (the worse status of each pair, the larger step count, the residual of
    the complex column relative to its own norm)."""
    k = rhs.shape[1]
    both = np.concatenate([rhs.real, rhs.imag], axis=1)
    start = None if guess is None else np.concatenate([guess.real, guess.imag], axis=1)
    parts = solve(both, start)
    x = parts.solution[:, :k] + 1j * parts.solution[:, k:]
    first, second = parts.status[:k], parts.status[k:]
    status = np.where(first != Status.OK, first, second).astype(np.int32)
    steps = np.maximum(parts.num_steps[:k], parts.num_steps[k:]).astype(np.int32)
    norm = column_norms(rhs)
    with np.errstate(all="ignore"):
        safe = np.where(norm > 0, norm, 1.0)
        absolute = np.hypot(
            parts.relative_residual[:k] * column_norms(rhs.real),
            parts.relative_residual[k:] * column_norms(rhs.imag),
        )
        residual = np.where(norm > 0, absolute / safe, 0.0)
    return SolveResult(x, status, steps, residual)


# ---------------------------------------------------------------- condition estimation


@contextlib.contextmanager
def seeded_global_random(seed: int = 0x5EED):
    """Seed numpy's global generator for library code that draws from it, then give the
    user's state back: results are reproducible and the user's random stream untouched
    (pyamg's setup and scipy's `onenormest` both draw from `np.random`)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def estimate_rcond(
    solve: Callable[[np.ndarray], np.ndarray],
    solve_adjoint: Callable[[np.ndarray], np.ndarray],
    n: int,
    norm1: float,
    dtype,
) -> float:
    """`1 / (|S|_1 est(|S^-1|_1))` for a factorized `S`: `solve(B)` applies `S^-1` and
    `solve_adjoint(B)` applies `S^-H` to a block.

    The estimate of `|S^-1|_1` is a lower bound (Higham and Tisseur's block 1-norm
    estimator with two columns, typically 4 to 6 block solves), so the estimated reciprocal
    condition number is never smaller than the true one: a well-conditioned matrix is never
    taken for a singular one. 0.0 when the estimate is not finite.
    """
    if n == 0 or norm1 == 0:
        return 0.0 if n else np.inf

    def block(apply):
        return lambda v: apply(np.asarray(v, dtype=dtype).reshape(n, -1))

    inverse = spla.LinearOperator(
        (n, n),
        matvec=block(solve),
        matmat=block(solve),
        rmatvec=block(solve_adjoint),
        rmatmat=block(solve_adjoint),
        dtype=dtype,
    )
    with seeded_global_random(), np.errstate(all="ignore"):
        estimate = float(spla.onenormest(inverse, t=2))
    if not np.isfinite(estimate) or estimate <= 0:
        return 0.0
    with np.errstate(all="ignore"):
        return float(1.0 / (norm1 * estimate))


@dataclasses.dataclass
class Condition:
    """What is known of a factorized matrix's conditioning; one per factor."""

    rcond: float | None = None  # the estimate, once computed
    singular: bool = False  # found singular to working precision after factorization


def singular_result(n: int, k: int, dtype) -> SolveResult:
    """Every column `SINGULAR`, with NaN solutions."""
    return SolveResult(
        np.full((n, k), np.nan, dtype=dtype),
        np.full(k, Status.SINGULAR, dtype=np.int32),
        np.zeros(k, dtype=np.int32),
        np.full(k, np.nan),
    )


def confirm(
    result: SolveResult, condition: Condition, estimate: Callable[[], float]
) -> SolveResult:
    """`result`, checked against the matrix's conditioning when its residual asks for it.

    A column reported `OK` whose relative residual exceeds `RESIDUAL_TRIGGER` has the
    condition number estimated (`estimate()`, once per factor). Below `RCOND_LIMIT` the
    matrix is singular to working precision: every column of this and later solves is
    `SINGULAR`. Below `RCOND_SUSPECT`, so are the columns whose residual exceeds what a
    backward-stable solve of a well-posed system leaves (`SUSPECT_RESIDUAL`).

    This catches what pivots alone can miss: a singular matrix whose factorization ended in
    a pivot not quite at rounding level, whose solves have a tiny backward error, a huge
    solution and a residual of the order of `b`.
    """
    n, k = result.solution.shape
    if condition.singular:
        return singular_result(n, k, result.solution.dtype)
    suspicious = (result.relative_residual > RESIDUAL_TRIGGER) & (result.status == Status.OK)
    if not np.any(suspicious):
        return result
    if condition.rcond is None:
        condition.rcond = estimate()
    if condition.rcond < RCOND_LIMIT:
        condition.singular = True
        return singular_result(n, k, result.solution.dtype)
    if condition.rcond >= RCOND_SUSPECT:
        return result
    suspicious &= result.relative_residual > SUSPECT_RESIDUAL * RCOND_LIMIT / condition.rcond
    if not np.any(suspicious):
        return result
    solution, status = result.solution.copy(), result.status.copy()
    solution[:, suspicious] = np.nan
    status[suspicious] = Status.SINGULAR
    return SolveResult(solution, status, result.num_steps, result.relative_residual)


# ---------------------------------------------------------------- symmetry of values
