"""`AbstractIterativeBackend`: what the iterative backends (`amg/`, `petsc/`) share.

Their tolerances; the loop that runs the library's Krylov method in rounds, judges each
round by the true residual recomputed on the host and restarts from the iterate while that
makes progress (`_restarted`); and when a solve of one direction also answers another
(`answers_for`). A backend fills in one round of its library's method (`_round`) and the
true residual (`_residual`).
"""

from __future__ import annotations

import abc
import math
from typing import Any, NamedTuple

import numpy as np

from .base import AbstractBackend
from .status import Status


class Round(NamedTuple):
    """What one run of a library's Krylov method gave."""

    x: np.ndarray
    #: Steps taken (Krylov iterations; GMRES: inner iterations).
    steps: int
    #: The status the library's own outcome decides when the true residual misses the
    #: tolerance (its iteration limit, an indefinite matrix, a breakdown); None: restart
    #: while the true residual decreases.
    reported: Status | None = None


class Outcome(NamedTuple):
    """One column's solve: its iterate, steps, status and relative true residual."""

    x: np.ndarray
    steps: int
    status: Status
    residual: float


class AbstractIterativeBackend(AbstractBackend):
    """A backend whose solves iterate to a tolerance, checked on the true residual.

    Converged means `|b - op(A) x|_2 <= max(rtol |b|_2, atol)`, with `adjoint_rtol` for
    transposed solves (the backward pass); `max_steps` bounds the steps of one solve.
    """

    rtol: float
    atol: float
    max_steps: int
    adjoint_rtol: float
    #: Whether solves are direct (a factorization applied once, checked like the direct
    #: backends'): tolerances then do not apply.
    direct: bool = False

    def relative_tolerance(self, transpose: bool) -> float:
        """`rtol` of a solve with `A` (or `conj(A)`), `adjoint_rtol` of one with `A^T`, `A^H`."""
        return self.adjoint_rtol if transpose else self.rtol

    def answers_for(self, factor: Any, asked: tuple, known: tuple) -> bool:
        """For exactly symmetric real values `op(A) = A` under every flag, so a solve with
        the flags `known` answers one with the flags `asked` when the asked tolerance is no
        tighter (always, for a direct solve): the adjoint of a compliance is then free, as
        for CHOLMOD. `factor.exactly_symmetric()` is computed once per factor."""
        if not factor.exactly_symmetric():
            return False
        tighter = self.relative_tolerance(asked[0]) < self.relative_tolerance(known[0])
        return self.direct or not tighter

    def _restarted(
        self,
        system: Any,
        norm_b: float,
        target: float,
        x: np.ndarray | None,
        max_steps: int,
        check_start: bool,
    ) -> Outcome:
        """Solve `system` from `x` (None: zero) in rounds of `_round` until the true residual
        meets `target`, in at most `max_steps` steps.

        After every round the true residual is recomputed (`_residual`), never taken from the
        library: a round that stopped early without meeting the target (its recursively
        updated or preconditioned residual said so, or it broke down) is restarted from its
        iterate while the true residual decreases. Not finite: `BREAKDOWN`; out of steps:
        `MAX_STEPS_REACHED`; else the status the library reported, if any; a round that
        makes no progress: `STAGNATED`. With `check_start` the start's residual is checked
        first (a start that meets the target takes no step) and the first round must improve
        on it; without, the library's own test judges the start, and the first round is
        judged by its result alone. The relative residual is the true one over `norm_b`.
        """
        steps, previous, residual = 0, math.inf, None
        if check_start:
            assert x is not None  # a start whose residual is checked is given
            residual = self._residual(system, x)
            if not math.isfinite(residual):
                return Outcome(x, 0, Status.BREAKDOWN, residual / norm_b)
            if residual <= target:
                return Outcome(x, 0, Status.OK, residual / norm_b)
            previous = residual
        assert max_steps >= 1, max_steps
        while True:
            taken = self._round(system, x, max_steps - steps, residual)
            x, steps = taken.x, steps + taken.steps
            residual = self._residual(system, x)
            if not math.isfinite(residual):
                status = Status.BREAKDOWN
            elif residual <= target:
                status = Status.OK
            elif steps >= max_steps:
                status = Status.MAX_STEPS_REACHED
            elif taken.reported is not None:
                status = taken.reported
            elif not residual < previous:  # finite, above the target, no better
                status = Status.STAGNATED
            else:
                previous = residual
                continue
            return Outcome(x, steps, status, residual / norm_b)

    @abc.abstractmethod
    def _round(
        self, system: Any, x: np.ndarray | None, budget: int, residual: float | None
    ) -> Round:
        """One run of the library's Krylov method on `system` from `x` (None: zero), of at
        most `budget` steps. `residual` is the true residual of `x` (None when the start's
        was not computed)."""

    @abc.abstractmethod
    def _residual(self, system: Any, x: np.ndarray) -> float:
        """The true residual `|b - op(A) x|_2` of `system` at `x` (NaN or inf when `x` or
        the product is not finite)."""
