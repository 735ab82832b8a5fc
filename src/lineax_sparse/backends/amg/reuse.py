"""What AMG keeps per sparsity pattern between factorizations: the latest hierarchy (for
`reuse`), the reuse back-off, and the last solutions (for `warm_start`).

How hierarchy reuse works and what it saves: `docs/backends/amg.md`, "Hierarchy reuse".
"""

from __future__ import annotations

import weakref

import numpy as np

from ..status import Status
from .hierarchy import Hierarchies


#: The most factorizations that skip hierarchy reuse after reused hierarchies failed.
MAX_SKIP = 16


class PatternState:
    """The per-pattern analysis: the latest hierarchy set made for this pattern (weakly),
    the reuse back-off, and the last solutions per direction (for `warm_start`).

    Weakly, so that every hierarchy stays owned by the factors that use it and counted in
    their `nbytes`: once the cache has evicted all of them, the next factorization builds
    a new hierarchy instead of reusing one held outside the cache's budget. The solutions
    are held here, not by a factor: the factor of the previous values is retired before
    the next one is made. `nbytes` counts them, and the analysis is filed in the cache with
    that size, so they live within its budget and are dropped with the analysis.

    Back-off: `skip` is the number of coming factorizations that build a fresh hierarchy
    without trying the remembered one, set to `penalty` (1, 2, 4, ... up to `MAX_SKIP`)
    each time a reused hierarchy had to be rebuilt, and `penalty` halves when a reused one
    does its job. So a pattern whose values change too fast for reuse stops paying for
    reuse attempts, and one whose values settle gets reuse back.
    """

    def __init__(self):
        self.latest: weakref.ref | None = None
        self.skip = 0
        self.penalty = 0
        # transpose flag -> the last two solution blocks, oldest first
        self.warm: dict[bool, list[np.ndarray]] = {}

    def remembered(self) -> Hierarchies | None:
        return None if self.latest is None else self.latest()

    def remember(self, hierarchies: Hierarchies) -> None:
        self.latest = weakref.ref(hierarchies)

    def reusable(self, is_complex: bool) -> Hierarchies | None:
        """The hierarchy a new factorization of this pattern should reuse, or None (then it
        builds one): none while the back-off skips, nor a stale one, nor one of values of
        another kind (real / complex)."""
        if self.skip > 0:  # reuse failed lately: build afresh
            self.skip -= 1
            return None
        remembered = self.remembered()
        if remembered is None or remembered.stale or remembered.is_complex != is_complex:
            return None
        return remembered

    def reuse_failed(self) -> None:
        self.penalty = min(max(1, 2 * self.penalty), MAX_SKIP)
        self.skip = self.penalty

    def reuse_worked(self) -> None:
        self.penalty //= 2

    def nbytes(self) -> int:
        return int(sum(x.nbytes for kept in self.warm.values() for x in kept))

    def keep(self, transpose: bool, x: np.ndarray) -> None:
        kept = self.warm.setdefault(transpose, [])
        if kept and (kept[-1].shape != x.shape or kept[-1].dtype != x.dtype):
            kept.clear()
        kept.append(x)
        del kept[:-2]

    def warm_candidates(self, transpose: bool, work: np.ndarray) -> list[np.ndarray]:
        """The starts `warm_start` offers a solve without a guess, per column: the last
        solution of this direction and, given two, its linear extrapolation `2 x_1 - x_0`
        (`best_start` keeps whichever leaves the smaller residual, or zero). The solutions
        are kept in the iteration's coordinates (after the conjugation of a conjugated
        solve); a block of another width is no start, except a single column, which starts
        every column."""
        n, k = work.shape
        candidates = []
        for x in self.warm.get(transpose, []):
            if x.shape[0] != n or x.dtype != work.dtype or x.shape[1] not in (1, k):
                return []
            candidates.append(np.broadcast_to(x, (n, k)))
        if len(candidates) == 2:
            return [candidates[1], 2 * candidates[1] - candidates[0]]
        return candidates


def reuse_budget(hierarchies: Hierarchies, direction: str, reuse: int, max_steps: int) -> int:
    """The steps a column may take with a reused hierarchy: `reuse` times its baseline (past
    that it has degraded, and a rebuilt one finishes the solve, cheaper than letting the old
    one crawl on), at most `max_steps`; `max_steps` until a baseline is known."""
    baseline = hierarchies.baseline.get(direction)
    if baseline is None:
        return max_steps
    return min(max_steps, max(reuse * baseline, 1))


def record_baseline(hierarchies: Hierarchies, direction: str, steps, status) -> None:
    """The first converged solve with a hierarchy sets its baseline iteration count."""
    if direction in hierarchies.baseline:
        return
    converged = steps[(status == Status.OK) & (steps > 0)]
    if converged.size:
        hierarchies.baseline[direction] = int(converged.max())
