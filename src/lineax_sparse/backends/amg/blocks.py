"""Many columns at once: CG, BiCGStab and stand-alone cycles in lockstep over a block of
right-hand sides, each column with its own scalars, tolerance, step budget and status.

Every step applies the operator and one multigrid cycle to the `(n, m)` block of the
columns still iterating, so that each sparse product reads the matrix once for all of them
and the Gauss-Seidel sweeps run over the block (`cycle.py`, `kernels.py`). A column leaves
the block when it finishes: the others never wait for it, and it never takes a step more
than it would alone. GMRES solves the columns one after another (`backend.py`).

Each column follows exactly the rules of its one-column solve: CG and BiCGStab are scipy's
(their recurrences, stopping tests and breakdown tests, `lockstep.py`) run in rounds as
`AbstractIterativeBackend._restarted` runs them, the start checked first (`rounds`), and
`cycles` is `krylov.cycles`. So a column converges to the same tolerance, judged by the same
true residual, in the same number of steps up to rounding (the block's dot products and
norms sum in another order than BLAS's). One difference: a round whose updated residual is
no longer finite ends there (its true residual then decides, as at any round's end) instead
of running out its budget on NaNs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..status import Status
from .krylov import DIVERGENCE
from .lockstep import AbstractLockstep, BiCGStab, CG, column_norms, Columns


#: The Krylov methods that run in lockstep over a block (the others run column by column).
BLOCK_KRYLOV = ("cg", "bicgstab", "none")


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
    """Solve every column of `block` with `krylov` ("cg", "bicgstab" or "none") in lockstep."""
    assert krylov in BLOCK_KRYLOV, krylov
    # Divisions by a zero curvature and non-finite iterates are reported per column, by
    # the true residual, as one-column solves report them.
    with np.errstate(all="ignore"):
        if krylov == "none":
            return cycles(block)
        return rounds(block, CG() if krylov == "cg" else BiCGStab())


def rounds(block: Block, method: AbstractLockstep) -> Outcomes:
    """`method` in rounds on every column, as `AbstractIterativeBackend._restarted` runs a
    one-column solve (the start checked first): each round starts from the true residual of
    the column's iterate and runs until `method` ends it (its stopping test, a breakdown or
    a spent budget); the true residual then decides: `OK` within the target; else
    `MAX_STEPS_REACHED` out of steps, `BREAKDOWN` not finite, `STAGNATED` no smaller than at
    the round's start; else another round."""
    A, precondition = block.operator, block.precondition
    results = _Results(block)
    m = block.b.shape[1]
    x = np.array(block.x0, dtype=results.x.dtype, order="C")
    r = block.b - A @ x
    residual = column_norms(r)
    c = Columns(
        columns=np.arange(m),
        x=x,
        r=r,
        b=block.b,
        target=block.target,
        norm_b=block.norm_b,
        max_steps=block.max_steps,
        previous=residual,
        steps=np.zeros(m, dtype=np.int64),
        budget=block.max_steps.copy(),  # of the current round
        taken=np.zeros(m, dtype=np.int64),  # iterations of the current round
    )
    finite = np.isfinite(residual)
    done = ~finite | (residual <= block.target)
    status = np.where(finite, Status.OK, Status.BREAKDOWN)
    results.finish(c.columns[done], x[:, done], 0, status[done], residual[done] / c.norm_b[done])
    c.keep(~done)
    method.start(c)
    ended = np.zeros(c.columns.size, dtype=bool)  # during the last step
    while c.columns.size:
        ended |= method.ending(c)
        if not np.any(ended):
            ended = method.step(c, A, precondition)
            continue
        _end_rounds(c, np.flatnonzero(ended), A, method, results)
        # A restarted column meets the top of its new round's first iteration next.
        ended = np.zeros(c.columns.size, dtype=bool)
    return results.outcomes()


def _end_rounds(c: Columns, ended: np.ndarray, A, method: AbstractLockstep, results) -> None:
    """Judge the columns `ended` by their true residual: finish them, or start a round."""
    true = c.b[:, ended] - A @ c.x[:, ended]
    residual = column_norms(true)
    c.steps[ended] += method.round_steps(c)[ended]
    status = np.full(ended.size, -1, dtype=np.int32)  # -1: another round
    status[residual <= c.target[ended]] = Status.OK
    undecided = status < 0
    out = undecided & (c.steps[ended] >= c.max_steps[ended])
    status[out] = Status.MAX_STEPS_REACHED
    status[undecided & ~out & ~(residual < c.previous[ended])] = Status.STAGNATED
    status[~np.isfinite(residual)] = Status.BREAKDOWN
    again = status < 0
    if np.any(again):
        which = ended[again]
        c.r[:, which] = true[:, again]  # scipy's round starts from b - A x
        c.previous[which] = residual[again]
        c.budget[which] = c.max_steps[which] - c.steps[which]
        c.taken[which] = 0
        method.restart(c, which)
    finished = ~again
    if np.any(finished):
        gone = ended[finished]
        results.finish(
            c.columns[gone],
            c.x[:, gone],
            c.steps[gone],
            status[finished],
            residual[finished] / c.norm_b[gone],
        )
        keep = np.ones(c.columns.size, dtype=bool)
        keep[gone] = False
        c.keep(keep)


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
