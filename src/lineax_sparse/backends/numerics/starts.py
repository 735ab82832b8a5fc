"""Starting guesses of the iterative backends: residual norms that never overflow, and the
choice between a user's guess, a warm start and zero (`best_start`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .norms import column_norms
from .scaling import exponents, scale


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
