"""Condition estimates: what tells a singular matrix from an ill-conditioned one.

A backward-stable solve of a singular system has a tiny backward error and a solution of
size 1e15, so the backward error alone cannot decide. `estimate_rcond` estimates the
reciprocal 1-norm condition number of a factorized, equilibrated matrix (Higham and
Tisseur's block estimator, `scipy.sparse.linalg.onenormest`); `confirm` asks for it when a
solve's residual is suspicious and decides by it; `Condition` keeps it, once per factor.
The thresholds (`RCOND_*`, `PIVOT_GATE`, `RESIDUAL_TRIGGER`) and their measurements live here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as spla

from ..status import SolveResult, Status
from .seeding import seeded_global_random


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
