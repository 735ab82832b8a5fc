"""Multigrid cycles of a pyamg hierarchy, applied to one vector or to a block of them.

`Cycle(ml, cycle, plain_gauss_seidel)(r)` is `B r`: one V-, W- or F-cycle from a zero
initial guess, the preconditioner of the Krylov methods. It takes one vector `(n,)` (the
iteration of one column, `krylov.py`) or a block `(n, k)` (the lockstep iterations of
many columns, `blocks.py`), which goes through every level as one C-ordered block: the
residual and the grid transfers become sparse-times-block products (SciPy reads the matrix
once for all columns: 0.08 ms per column for 16 columns against 0.25 ms for one vector,
unstructured 2D Poisson, n = 32k), and symmetric Gauss-Seidel sweeps all columns at once
(`kernels.py`). A 16-column block cost 0.5 ms per column against 2.6 ms for one vector
there.

It does what pyamg's own recursive cycle (`MultilevelSolver.__solve`) does, level by
level: presmooth, residual, restrict, recurse (twice for W; F then V for F), prolong,
postsmooth, and pyamg's coarse solver on the last level. On a level whose matrix is CSR,
or BSR with 1 x 1 blocks (smoothed aggregation stores its coarse levels of a scalar
problem that way), and whose smoother is pyamg's symmetric Gauss-Seidel
(`plain_gauss_seidel`: the default smoother of smoothed aggregation and Ruge-Stuben, and
`smoother="gauss_seidel"`), the sweeps run on a CSR copy of the level's matrix made once:
`amg_core.gauss_seidel` for a vector, `kernels.gauss_seidel_block` for a block, the same
arithmetic for every column. pyamg itself runs `amg_core.bsr_gauss_seidel` with blocks of
one entry there, the same arithmetic much more slowly (one forward sweep on the 3,206-row
second level of an unstructured 2D Poisson problem with n = 32k: 0.49 ms through pyamg
against 0.027 ms on CSR; pyamg's sweeps there took 38% of its cycle, which went from 5.2
to 3.2 ms). Every other smoother (Jacobi, SOR, Chebyshev, AIR's F/C Jacobi, block
Gauss-Seidel with real blocks) is pyamg's own function, called as pyamg calls it, one
column at a time (pyamg's relaxation functions refuse a 2-D `x`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pyamg import amg_core

from .kernels import gauss_seidel_block


def _scalar_csr(matrix: Any) -> sp.csr_matrix | None:
    """`matrix` as CSR when it has scalar entries (CSR, or BSR with 1 x 1 blocks)."""
    if not sp.issparse(matrix):
        return None
    if matrix.format == "csr":
        return matrix
    if matrix.format == "bsr" and tuple(matrix.blocksize) == (1, 1):
        csr = sp.csr_matrix(matrix)
        csr.sort_indices()
        return csr
    return None


def _product_operator(matrix: Any) -> Any:
    """The level's `P` or `R` for products with blocks (CSR when entries are scalar)."""
    csr = _scalar_csr(matrix)
    return csr if csr is not None else matrix


class _Level:
    __slots__ = ("A", "original", "gauss_seidel", "presmoother", "postsmoother", "P", "R")

    def __init__(self, level: Any, plain_gauss_seidel: bool):
        self.original = level.A
        scalar = _scalar_csr(level.A)
        self.A = scalar if scalar is not None else level.A
        self.gauss_seidel = plain_gauss_seidel and scalar is not None
        if self.gauss_seidel:
            self.A = sp.csr_matrix(
                (
                    np.ascontiguousarray(scalar.data),
                    np.ascontiguousarray(scalar.indices),
                    np.ascontiguousarray(scalar.indptr),
                ),
                shape=scalar.shape,
            )
        self.presmoother = getattr(level, "presmoother", None)
        self.postsmoother = getattr(level, "postsmoother", None)
        self.P = _product_operator(level.P) if hasattr(level, "P") else None
        self.R = _product_operator(level.R) if hasattr(level, "R") else None

    def smooth(self, which: str, x: np.ndarray, b: np.ndarray) -> None:
        """One smoothing step on every column of `x` (C-ordered, in place)."""
        vector = x.shape[1] == 1  # (n, 1): its column is contiguous
        if self.gauss_seidel:
            A = self.A
            if not vector:
                gauss_seidel_block(A, x, b, symmetric=True)
                return
            n = A.shape[0]
            column, rhs = x[:, 0], b[:, 0]
            # pyamg's symmetric sweep: forward, then backward.
            amg_core.gauss_seidel(A.indptr, A.indices, A.data, column, rhs, 0, n, 1)
            amg_core.gauss_seidel(A.indptr, A.indices, A.data, column, rhs, n - 1, -1, -1)
            return
        smoother = self.presmoother if which == "pre" else self.postsmoother
        for j in range(x.shape[1]):
            column = x[:, j] if vector else np.ascontiguousarray(x[:, j])
            smoother(self.original, column, np.ascontiguousarray(b[:, j]))
            if not vector:
                x[:, j] = column


class Cycle:
    """`r -> B r` for one multigrid cycle of `ml` (see the module docstring)."""

    def __init__(self, ml: Any, cycle: str, plain_gauss_seidel: bool):
        if cycle not in ("V", "W", "F"):
            raise ValueError(f"unknown cycle {cycle!r}")
        self.cycle = cycle
        self.levels = [_Level(level, plain_gauss_seidel) for level in ml.levels]
        self.coarse_solver = ml.coarse_solver
        self.coarsest = ml.levels[-1].A

    def __call__(self, r: np.ndarray) -> np.ndarray:
        vector = r.ndim == 1
        dtype = np.result_type(r.dtype, self.levels[0].A.dtype)
        b = np.ascontiguousarray(r[:, None] if vector else r, dtype=dtype)
        x = np.zeros(b.shape, dtype=dtype)
        if len(self.levels) == 1:
            self._coarse(x, b)
        else:
            self._solve(0, x, b, self.cycle)
        return x[:, 0] if vector else x

    def _coarse(self, x: np.ndarray, b: np.ndarray) -> None:
        for j in range(b.shape[1]):
            solution = self.coarse_solver(self.coarsest, np.ascontiguousarray(b[:, j]))
            x[:, j] = np.asarray(solution).reshape(-1)

    def _solve(self, lvl: int, x: np.ndarray, b: np.ndarray, cycle: str) -> None:
        level = self.levels[lvl]
        level.smooth("pre", x, b)
        residual = b - level.A @ x
        coarse_b = np.ascontiguousarray(level.R @ residual)
        coarse_x = np.zeros_like(coarse_b)
        if lvl == len(self.levels) - 2:
            self._coarse(coarse_x, coarse_b)
        elif cycle == "V":
            self._solve(lvl + 1, coarse_x, coarse_b, "V")
        elif cycle == "W":
            self._solve(lvl + 1, coarse_x, coarse_b, "W")
            self._solve(lvl + 1, coarse_x, coarse_b, "W")
        else:  # F
            self._solve(lvl + 1, coarse_x, coarse_b, "F")
            self._solve(lvl + 1, coarse_x, coarse_b, "V")
        x += level.P @ coarse_x
        level.smooth("post", x, b)
