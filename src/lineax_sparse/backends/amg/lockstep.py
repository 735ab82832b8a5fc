"""One lockstep iteration of CG or BiCGStab over the columns of a block, each column with
its own scalars: scipy's recurrences and stopping tests (`scipy.sparse.linalg.cg` and
`bicgstab`), written for a block. The rounds around them (restarts on the true residual,
statuses) are `blocks.rounds`'.

A method keeps its vectors and scalars in the `Columns` of the block, so that a column
that finishes leaves every array at once.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


class Columns:
    """Arrays of the columns still iterating, by name; the last axis is the column."""

    def __init__(self, **arrays: np.ndarray):
        vars(self).update(arrays)

    def keep(self, mask: np.ndarray) -> None:
        """Keep the columns `mask` selects, in every array (C-ordered)."""
        for name, array in list(vars(self).items()):
            setattr(self, name, np.ascontiguousarray(array[..., mask]))


def column_norms(block: np.ndarray) -> np.ndarray:
    return np.linalg.norm(block, axis=0)


def column_dots(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`vdot(u[:, j], v[:, j])` for every column (scipy takes `vdot` for complex)."""
    return np.einsum("ij,ij->j", u.conj() if np.iscomplexobj(u) else u, v)


Precondition = Callable[[np.ndarray], np.ndarray]


class AbstractLockstep(abc.ABC):
    """A Krylov method in lockstep. `Columns` carries, besides the method's own arrays,
    `x`, `r` (the updated residual), `target`, `taken` (iterations of the current round)
    and `budget` (the round's most iterations); `blocks.rounds` starts and judges rounds."""

    @abc.abstractmethod
    def start(self, c: Columns) -> None:
        """Add the method's arrays: a round starts for every column."""

    @abc.abstractmethod
    def restart(self, c: Columns, which: np.ndarray) -> None:
        """A round starts for the columns `which` (their `r` is the true residual)."""

    @abc.abstractmethod
    def ending(self, c: Columns) -> np.ndarray:
        """The columns whose round ends at the top of this iteration."""

    @abc.abstractmethod
    def step(self, c: Columns, A: sp.csr_matrix, precondition: Precondition) -> np.ndarray:
        """One iteration of every column; the columns whose round ended during it."""

    @abc.abstractmethod
    def round_steps(self, c: Columns) -> np.ndarray:
        """The steps each column's current round has taken."""


class CG(AbstractLockstep):
    """scipy's `cg`: one preconditioner application per iteration; a round ends when
    `|r| < target` at the top of an iteration or its budget is spent."""

    def start(self, c: Columns) -> None:
        c.p = np.zeros_like(c.x)
        c.rho_previous = np.ones(c.x.shape[1], dtype=c.x.dtype)

    def restart(self, c: Columns, which: np.ndarray) -> None:
        del c, which  # the first iteration of a round is told by `taken == 0`

    def ending(self, c: Columns) -> np.ndarray:
        # (A non-finite residual ends the round too: see `blocks`.)
        return (c.taken >= c.budget) | ~(column_norms(c.r) >= c.target)

    def step(self, c: Columns, A: sp.csr_matrix, precondition: Precondition) -> np.ndarray:
        z = precondition(c.r)
        rho = column_dots(c.r, z)
        c.p = np.where(c.taken == 0, z, (rho / c.rho_previous) * c.p + z)
        q = A @ c.p
        alpha = rho / column_dots(c.p, q)
        c.x += alpha * c.p
        c.r -= alpha * q
        c.rho_previous = rho
        c.taken += 1
        return np.zeros(c.taken.size, dtype=bool)

    def round_steps(self, c: Columns) -> np.ndarray:
        return c.taken


class BiCGStab(AbstractLockstep):
    """scipy's `bicgstab`: two preconditioner applications per iteration, one when the
    half step meets the target (it then ends the round); a round also ends at a breakdown
    (`rho`, `omega` below `eps^2`, `rtilde . v == 0`). Steps are iterations, a half step
    counting as one, as `krylov.krylov_round` counts them."""

    def start(self, c: Columns) -> None:
        m = c.x.shape[1]
        c.rtilde = c.r.copy()
        c.p = np.zeros_like(c.x)
        c.v = np.zeros_like(c.x)
        for name in ("rho", "rho_previous", "alpha", "omega"):
            setattr(c, name, np.ones(m, dtype=c.x.dtype))
        c.calls = np.zeros(m, dtype=np.int64)

    def restart(self, c: Columns, which: np.ndarray) -> None:
        c.rtilde[:, which] = c.r[:, which]
        c.calls[which] = 0

    def ending(self, c: Columns) -> np.ndarray:
        tolerance = np.finfo(c.x.dtype).eps ** 2  # scipy's rhotol and omegatol
        c.rho = column_dots(c.rtilde, c.r)
        return (
            (c.taken >= c.budget)
            | ~(column_norms(c.r) >= c.target)
            | ~(np.abs(c.rho) >= tolerance)
            | ((c.taken > 0) & ~(np.abs(c.omega) >= tolerance))
        )

    def step(self, c: Columns, A: sp.csr_matrix, precondition: Precondition) -> np.ndarray:
        beta = (c.rho / c.rho_previous) * (c.alpha / c.omega)
        c.p = np.where(c.taken == 0, c.r, (c.p - c.omega * c.v) * beta + c.r)
        phat = precondition(c.p)
        c.v = A @ phat
        rv = column_dots(c.rtilde, c.v)
        c.calls += 1
        c.taken += 1
        broken = rv == 0  # the round ends with x as it was
        c.alpha = c.rho / rv
        c.r -= c.alpha * c.v
        half = ~broken & (column_norms(c.r) < c.target)
        rest = ~broken & ~half
        if np.any(half):
            which = np.flatnonzero(half)
            c.x[:, which] += c.alpha[which] * phat[:, which]
        if np.all(rest):
            self._second_half(c, A, precondition, phat, slice(None))
        elif np.any(rest):
            self._second_half(c, A, precondition, phat, np.flatnonzero(rest))
        return ~rest

    @staticmethod
    def _second_half(c: Columns, A, precondition: Precondition, phat, which) -> None:
        s = np.ascontiguousarray(c.r[:, which])
        shat = precondition(s)
        t = A @ shat
        omega = column_dots(t, s) / column_dots(t, t)
        alpha = c.alpha[which]
        x = c.x[:, which]
        x += alpha * phat[:, which]
        x += omega * shat
        c.x[:, which] = x
        c.r[:, which] = s - omega * t
        c.omega[which] = omega
        c.rho_previous[which] = c.rho[which]
        c.calls[which] += 1

    def round_steps(self, c: Columns) -> np.ndarray:
        return (c.calls + 1) // 2
