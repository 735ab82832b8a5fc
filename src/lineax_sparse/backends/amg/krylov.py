"""AMG's iteration for one column: scipy's Krylov methods preconditioned by one multigrid
cycle (a round of `AbstractIterativeBackend._restarted`), or stand-alone cycles.

scipy's methods are used, not pyamg's (through `ml.solve(accel=...)`): they take an
absolute tolerance, and scipy's GMRES restarts (pyamg's keeps `maxiter` Krylov vectors of
length n) and tests the true residual at each restart, where pyamg's stops on the
preconditioned one (observed: 4e-7 true relative residual at tol=1e-8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..iterative import Outcome, Round
from ..status import Status


#: Inner iterations between restarts of GMRES (scipy's default): memory is (restart+1) * n.
GMRES_RESTART = 20
#: A stand-alone cycle whose residual grows past this many times |b| (or the initial
#: residual) has diverged; it stops with `BREAKDOWN` instead of running to `max_steps`.
DIVERGENCE = 1e8


class System(NamedTuple):
    """One column's system `operator x = b`, preconditioned by `precondition` (`r -> B r`),
    to be solved to the absolute tolerance `target`."""

    operator: sp.csr_matrix
    precondition: Callable[[np.ndarray], np.ndarray]
    b: np.ndarray
    target: float


def residual(system: System, x: np.ndarray) -> float:
    """The true residual `|b - A x|_2`."""
    return float(np.linalg.norm(system.b - system.operator @ x))


def krylov_round(krylov: str, system: System, x: np.ndarray | None, budget: int) -> Round:
    """One run of scipy's `krylov` ("cg", "bicgstab" or "gmres") from `x`, at most `budget`
    iterations, stopped by scipy at `|b - A x| <= target` on its own residual."""
    operator, b, target = system.operator, system.b, system.target
    n = b.shape[0]
    calls = [0]

    def psolve(r):
        calls[0] += 1
        return system.precondition(r)

    M = spla.LinearOperator((n, n), matvec=psolve, dtype=b.dtype)
    if krylov == "cg":
        x, _ = spla.cg(operator, b, x0=x, rtol=0.0, atol=target, maxiter=budget, M=M)
        return Round(x, calls[0])  # one preconditioner application per iteration
    if krylov == "bicgstab":
        x, _ = spla.bicgstab(operator, b, x0=x, rtol=0.0, atol=target, maxiter=budget, M=M)
        return Round(x, (calls[0] + 1) // 2)  # two per iteration (one at a half-step exit)
    inner = [0]

    def count(_):
        inner[0] += 1

    x, _ = spla.gmres(
        operator,
        b,
        x0=x,
        rtol=0.0,
        atol=target,
        restart=min(GMRES_RESTART, budget),
        maxiter=budget,  # with the "legacy" callback: inner iterations in all
        M=M,
        callback=count,
        callback_type="legacy",
    )
    return Round(x, inner[0])


def cycles(system: System, x: np.ndarray, norm_b: float, max_steps: int) -> Outcome:
    """Stand-alone cycles `x += B (b - A x)` from `x` (updated in place), the true residual
    checked after each: `OK` when it meets the target, `BREAKDOWN` when it grows past
    `DIVERGENCE` times its start (or |b|) or is not finite, else `MAX_STEPS_REACHED` after
    `max_steps` cycles."""
    operator, b, target = system.operator, system.b, system.target
    r = b - operator @ x
    norm_r = float(np.linalg.norm(r))
    ceiling = DIVERGENCE * max(norm_r, norm_b)
    steps = 0
    while norm_r > target and steps < max_steps:
        x += system.precondition(r)
        steps += 1
        r = b - operator @ x
        norm_r = float(np.linalg.norm(r))
        if not norm_r <= ceiling:  # diverging, or not finite
            return Outcome(x, steps, Status.BREAKDOWN, norm_r / norm_b)
    status = Status.OK if norm_r <= target else Status.MAX_STEPS_REACHED
    return Outcome(x, steps, status, norm_r / norm_b)
