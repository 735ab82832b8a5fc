"""A complex right-hand side of a real matrix, solved as one real block (`solve_split`).

A real matrix is real-linear: the real and imaginary parts of a complex block are solved as
2k real columns, each checked like any other column, and the results recombined.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..status import SolveResult, Status
from .norms import column_norms


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
