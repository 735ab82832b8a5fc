"""Many columns at once: CG and stand-alone cycles in lockstep over a block of right-hand
sides, each column with its own scalars, tolerance, step budget and status.

Every step applies the operator and one multigrid cycle to the `(n, m)` block of the
columns still iterating, so that each sparse product reads the matrix once for all of them
and the Gauss-Seidel sweeps run over the block (`cycle.py`, `kernels.py`). A column leaves
the block when it finishes: the others never wait for it, and it never takes a step more
than it would alone.

Each column follows exactly the rules of its one-column solve: `cg` is scipy's CG (its
recurrences, its stopping test `|r| < target` on the updated residual, `budget` steps per
round) run in rounds by `AbstractIterativeBackend._restarted` with the start checked first,
and `cycles` is `krylov.cycles`. So a column converges to the same tolerance, judged by the
same true residual, in the same number of steps up to rounding (the block's dot products
and norms sum in another order than BLAS's). One difference: a CG round whose updated
residual is no longer finite ends there (its true residual then decides, as at any round's
end) instead of running out its budget on NaNs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..status import Status
from .krylov import DIVERGENCE


#: The Krylov methods that run in lockstep over a block (the others run column by column).
BLOCK_KRYLOV = ("cg", "none")


class Block(NamedTuple):
    """The systems `operator x_j = b[:, j]` of a block of columns, preconditioned by
    `precondition` (`R -> B R` on a C-ordered block), each solved from `x0[:, j]` to the
    absolute tolerance `target[j]` in at most `max_steps[j]` steps."""

    operator: sp.csr_matrix
    precondition: Callable[[np.ndarray], np.ndarray]
    b: np.ndarray
    x0: np.ndarray
    target: np.ndarray
    norm_b: np.ndarray
    max_steps: np.ndarray


class Outcomes(NamedTuple):
    """Per column: its iterate, steps, status and relative true residual."""

    x: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    residual: np.ndarray


class _Results:
    """The outcomes of a block, filled in as its columns finish."""

    def __init__(self, block: Block):
        n, m = block.b.shape
        self.x = np.empty((n, m), dtype=block.x0.dtype)
        self.steps = np.zeros(m, dtype=np.int64)
        self.status = np.zeros(m, dtype=np.int32)
        self.residual = np.zeros(m, dtype=np.float64)

    def finish(self, columns, x, steps, status, residual) -> None:
        self.x[:, columns] = x
        self.steps[columns] = steps
        self.status[columns] = status
        self.residual[columns] = residual

    def outcomes(self) -> Outcomes:
        return Outcomes(self.x, self.steps, self.status, self.residual)


def solve(krylov: str, block: Block) -> Outcomes:
    """Solve every column of `block` with `krylov` ("cg" or "none") in lockstep."""
    assert krylov in BLOCK_KRYLOV, krylov
    # Divisions by a zero curvature and non-finite iterates are reported per column, by
    # the true residual, as one-column solves report them.
    with np.errstate(all="ignore"):
        return cg(block) if krylov == "cg" else cycles(block)


def column_norms(block: np.ndarray) -> np.ndarray:
    return np.linalg.norm(block, axis=0)


def _column_dots(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`vdot(u[:, j], v[:, j])` for every column (scipy's CG takes `vdot` for complex)."""
    return np.einsum("ij,ij->j", u.conj() if np.iscomplexobj(u) else u, v)


def cg(block: Block) -> Outcomes:
    """CG in rounds on every column (see the module docstring): each round starts from the
    true residual of the column's iterate, and ends when the updated residual drops below
    the target (or is not finite) or the round's budget is spent; the true residual then
    decides: `OK` within the target; else `MAX_STEPS_REACHED` out of steps, `BREAKDOWN` not
    finite or no smaller than at the round's start; else another round."""
    A, precondition = block.operator, block.precondition
    results = _Results(block)
    columns = np.arange(block.b.shape[1])
    b, target, norm_b, max_steps = block.b, block.target, block.norm_b, block.max_steps
    x = np.array(block.x0, dtype=results.x.dtype, order="C")
    r = b - A @ x
    previous = column_norms(r)
    # The start: checked first, as `_restarted(check_start=True)` does.
    status = np.where(np.isfinite(previous), Status.OK, Status.BREAKDOWN)
    done = ~np.isfinite(previous) | (previous <= target)
    results.finish(columns[done], x[:, done], 0, status[done], previous[done] / norm_b[done])
    keep = ~done
    columns, x, r, b, target, norm_b, max_steps, previous = _kept(
        keep, columns, x, r, b, target, norm_b, max_steps, previous
    )
    m = columns.size
    steps = np.zeros(m, dtype=np.int64)
    budget = max_steps.copy()  # of the current round
    taken = np.zeros(m, dtype=np.int64)  # steps of the current round
    p = np.zeros_like(x)
    rho_previous = np.ones(m, dtype=x.dtype)
    while columns.size:
        # scipy's test at the top of each iteration: |r| < target ends the round; so does
        # a spent budget (its loop ends) or a non-finite residual (see the module docstring).
        ending = (taken >= budget) | ~(column_norms(r) >= target)
        if np.any(ending):
            ended = np.flatnonzero(ending)
            true = b[:, ended] - A @ x[:, ended]
            residual = column_norms(true)
            status = np.full(ended.size, -1, dtype=np.int32)  # -1: another round
            status[residual <= target[ended]] = Status.OK
            undecided = status < 0
            out = undecided & (steps[ended] >= max_steps[ended])
            status[out] = Status.MAX_STEPS_REACHED
            stalled = undecided & ~out & ~(residual < previous[ended])  # or not finite
            status[stalled] = Status.BREAKDOWN
            status[~np.isfinite(residual)] = Status.BREAKDOWN
            again = ended[status < 0]
            r[:, again] = true[:, status < 0]  # scipy's round starts from b - A x
            previous[again] = residual[status < 0]
            budget[again] = max_steps[again] - steps[again]
            taken[again] = 0
            finished = status >= 0
            if np.any(finished):
                gone = ended[finished]
                results.finish(
                    columns[gone],
                    x[:, gone],
                    steps[gone],
                    status[finished],
                    residual[finished] / norm_b[gone],
                )
                keep = np.ones(columns.size, dtype=bool)
                keep[gone] = False
                (columns, x, r, p, b, target, norm_b, max_steps, previous) = _kept(
                    keep, columns, x, r, p, b, target, norm_b, max_steps, previous
                )
                steps, budget, taken, rho_previous = _kept(keep, steps, budget, taken, rho_previous)
                if not columns.size:
                    break
        z = precondition(r)
        rho = _column_dots(r, z)
        first = taken == 0
        p = np.where(first, z, (rho / rho_previous) * p + z)
        q = A @ p
        alpha = rho / _column_dots(p, q)
        x += alpha * p
        r -= alpha * q
        rho_previous = rho
        taken += 1
        steps += 1
    return results.outcomes()


def cycles(block: Block) -> Outcomes:
    """Stand-alone cycles `x += B (b - A x)` on every column, as `krylov.cycles`: `OK` once
    the true residual meets the target, `BREAKDOWN` when it grows past `DIVERGENCE` times
    its start (or |b|) or is not finite, else `MAX_STEPS_REACHED` after `max_steps`."""
    A, precondition = block.operator, block.precondition
    results = _Results(block)
    columns = np.arange(block.b.shape[1])
    b, target, norm_b, max_steps = block.b, block.target, block.norm_b, block.max_steps
    x = np.array(block.x0, dtype=results.x.dtype, order="C")
    r = b - A @ x
    norm_r = column_norms(r)
    ceiling = DIVERGENCE * np.maximum(norm_r, norm_b)
    steps = np.zeros(columns.size, dtype=np.int64)
    diverged = np.zeros(columns.size, dtype=bool)
    while True:
        going = (norm_r > target) & (steps < max_steps) & ~diverged
        finished = ~going
        if np.any(finished):
            status = np.full(np.count_nonzero(finished), Status.MAX_STEPS_REACHED, np.int32)
            status[norm_r[finished] <= target[finished]] = Status.OK
            status[diverged[finished]] = Status.BREAKDOWN
            results.finish(
                columns[finished],
                x[:, finished],
                steps[finished],
                status,
                norm_r[finished] / norm_b[finished],
            )
            columns, x, r, b, target, norm_b, max_steps, norm_r, ceiling, steps = _kept(
                going, columns, x, r, b, target, norm_b, max_steps, norm_r, ceiling, steps
            )
            if not columns.size:
                return results.outcomes()
        x += precondition(r)
        steps += 1
        r = b - A @ x
        norm_r = column_norms(r)
        diverged = ~(norm_r <= ceiling)  # diverging, or not finite


def _kept(keep: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each array restricted to the columns (last axis) `keep`, C-ordered."""
    return tuple(np.ascontiguousarray(array[..., keep]) for array in arrays)
