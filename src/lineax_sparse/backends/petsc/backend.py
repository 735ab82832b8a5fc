"""`PETScBackend`: PETSc through petsc4py, a KSP (Krylov method and preconditioner) per
matrix, in this process or over MPI ranks (`mpi.py`).

This module only sees rank 0's view: the whole matrix (kept as scipy CSC for the checks)
and whole vectors. PETSc's convergence test is not trusted: every solve is judged by the
true residual on the host (`AbstractIterativeBackend._restarted`), a direct one by
`checks.checked_solve`. How it works, and why: `docs/backends/petsc.md`.
"""

from __future__ import annotations

import itertools
import math
import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..blas import single_threaded_blas
from ..iterative import AbstractIterativeBackend, Round
from ..numerics import (
    best_start,
    checked_solve,
    Condition,
    confirm,
    estimate_rcond,
    exactly_symmetric,
    exponents,
    matrix_norm,
    NormBound,
    one_norm,
    scale,
    singular_result,
)
from ..pattern import Pattern
from ..status import FactorError, SolveResult, Status
from . import mpi as petsc_mpi
from .objects import Config, petsc


#: Direct solvers whose `MatSolveTranspose` a transposed solve uses (`KSPSolveTranspose`).
#: Iterative KSPs never call it: a preconditioner that cannot apply its transpose (SOR, as
#: used by GAMG for non-symmetric matrices, hypre, ML) makes PETSc 3.18 raise an error and
#: leaves the KSP corrupted (destroying it later crashed the process, measured), or, for
#: hypre's BoomerAMG, report convergence in 0 iterations with the residual of x = 0.
TRANSPOSE_SOLVERS = ("", "petsc", "mumps")
#: Rounds of PETSc's solve per column: a solve that PETSc calls converged but whose true
#: residual is above the tolerance continues from its iterate with a tolerance tightened
#: by the gap, at most this many times in all.
ROUNDS = 4

_REASON_MAX_IT = -3
_REASON_INDEFINITE = (-8, -10)
_REASON_PC_FAILED = -11


def _reported(reason: int) -> Status | None:
    """The status PETSc's `KSPConvergedReason` decides for a solve that missed the
    tolerance: None when PETSc called it converged (the solve then goes on)."""
    if reason == _REASON_MAX_IT:
        return Status.MAX_STEPS_REACHED
    if reason in _REASON_INDEFINITE:  # an indefinite matrix or preconditioner under CG
        return Status.NOT_POSITIVE_DEFINITE
    if reason < 0:
        return Status.BREAKDOWN
    return None


_idents = itertools.count(1)


class _Factor:
    __slots__ = (
        "ident",
        "pattern",
        "matrix",
        "exponent",
        "transposed",
        "broken",
        "condition",
        "nbytes",
        "setups",
        "_symmetric",
        "__weakref__",
    )

    def __init__(self, ident, pattern, matrix, exponent, nbytes):
        self.ident, self.pattern = ident, pattern
        self.matrix = matrix  # A itself (unscaled), for the checks
        self.exponent, self.nbytes = exponent, nbytes
        self.transposed = False  # whether a KSP of A^T was built
        self.broken = False  # a PETSc error in a solve: the KSP is not used again
        self.condition = Condition()  # a direct solve's conditioning, once estimated
        self.setups = 1
        self._symmetric: bool | None = None

    def exactly_symmetric(self) -> bool:
        """Whether `A^T == A` exactly (computed once): then the CSC arrays are the CSR
        arrays, and one KSP serves transposed solves too."""
        if self._symmetric is None:
            self._symmetric = exactly_symmetric(self.pattern, self.matrix.data)
        return self._symmetric


class _Column:
    """One right-hand side column solved through PETSc in rounds: what `_round` and
    `_residual` need, and the relative tolerance of the next round."""

    __slots__ = ("factor", "mode", "transpose", "b", "atol", "target", "tolerance", "rounds")

    def __init__(self, factor, mode, transpose, b, atol, rtol, target):
        self.factor, self.mode, self.transpose = factor, mode, transpose
        self.b, self.atol, self.target = b, atol, target
        self.tolerance = rtol
        self.rounds = 0


def _scaled_product(factor: _Factor, block: np.ndarray, transpose: bool) -> np.ndarray:
    """`op(S) block` for `S = 2^-exponent A` from the kept `A`, without overflow for
    entries of `block` at most 1: a large `A` meets a scaled-down block."""
    up = max(factor.exponent, 0)
    operator = factor.matrix.T if transpose else factor.matrix
    return scale(operator @ scale(block, -up), up - factor.exponent)


class PETScBackend(AbstractIterativeBackend):
    """PETSc's KSPs; options as resolved by `lxs.PETSc`."""

    # A KSP holds a hierarchy or a factorization: free the old one before the next setup.
    factors_per_pattern = 1

    def __init__(
        self,
        ksp_type: str,
        pc_type: str,
        rtol: float,
        atol: float,
        max_steps: int,
        adjoint_rtol: float,
        options: tuple[tuple[str, str], ...],
        norm: str,
        block_size: int,
        direct: bool,
    ):
        self.rtol, self.atol, self.max_steps = rtol, atol, max_steps
        self.adjoint_rtol = adjoint_rtol
        self.direct = direct
        self.config: Config = (ksp_type, pc_type, tuple(options), norm, block_size)

    # ------------------------------------------------------------ factor

    def analyse(self, pattern: Pattern) -> Any:
        del pattern  # the CSR structure is derived only when the values need it
        petsc()  # PETSc initialized on the owner thread, and import errors raised, here
        return None

    def factor(self, pattern: Pattern, analysis: Any, matrix: sp.csc_matrix, aux) -> _Factor:
        del analysis
        if np.iscomplexobj(matrix.data):
            # PETSc is built for one scalar type; Debian's and conda-forge's default is real.
            raise FactorError(Status.BREAKDOWN, "this PETSc is built for real matrices")
        n = pattern.n
        channel = petsc_mpi.channel()
        block_size = self.config[4]
        if n % block_size:
            raise FactorError(Status.BREAKDOWN, f"n = {n} is not a multiple of {block_size}")
        largest = float(np.max(np.abs(matrix.data), initial=0.0))
        if largest == 0 and n > 0:
            # The zero matrix is singular; PETSc's smoothers (SOR's diagonal inversion, 3.18)
            # crash the process on a matrix without stored entries instead of reporting it.
            raise FactorError(Status.SINGULAR, "the matrix is zero")
        exponent = int(exponents(np.array([largest]))[0])
        # The factor keeps `matrix` itself (the cache entry's own values: no copy) for the
        # checks; PETSc gets S = 2^-exponent A, in CSR order. Exactly symmetric values (FEM
        # stiffness matrices) are their own transpose: the CSC arrays are the CSR arrays,
        # and neither the CSR structure (12 bytes an entry, kept per pattern) nor a gather
        # is needed.
        factor = _Factor(0, pattern, matrix, exponent, 0)
        if factor.exactly_symmetric():
            csr = (pattern.indptr, pattern.row_indices, scale(matrix.data, -exponent))
        else:
            positions, indptr, indices = pattern.csr_structure()
            csr = (indptr, indices, scale(matrix.data[positions], -exponent))
        nullspace = None
        if aux is not None:
            # Orthonormal, as PETSc's debug builds require; the span is what is used.
            nullspace = np.linalg.qr(np.asarray(aux, dtype=np.float64))[0]
        factor.ident = next(_idents)
        status, message, nbytes = channel.build(factor.ident, n, csr, nullspace, self.config)
        del csr
        if status != Status.OK:
            raise FactorError(Status(status), message)
        factor.nbytes = nbytes + matrix.data.nbytes
        weakref.finalize(factor, channel.release, factor.ident)
        return factor

    def is_complex(self, factor: _Factor) -> bool:
        del factor  # `factor` refuses complex values
        return False

    def setups(self, factor: _Factor) -> int:
        return factor.setups

    def nbytes(self, factor: _Factor) -> int:
        return factor.nbytes

    # ------------------------------------------------------------ solve

    def _mode(self, factor: _Factor, transpose: bool) -> str:
        if not transpose or factor.exactly_symmetric():
            return "forward"
        if self.direct and dict(self.config[2]).get("pc_factor_mat_solver_type", "") in (
            TRANSPOSE_SOLVERS
        ):
            return "transpose"
        if not factor.transposed:
            self._build_transposed(factor)
        return "transposed"

    def _build_transposed(self, factor: _Factor) -> None:
        matrix = factor.matrix  # the CSC arrays of A are the CSR arrays of A^T
        status, message, nbytes = petsc_mpi.channel().build_transposed(
            factor.ident,
            matrix.shape[0],
            (matrix.indptr, matrix.indices, scale(matrix.data, -factor.exponent)),
            None,
        )
        if status != Status.OK:
            raise FactorError(Status(status), message)
        factor.transposed = True
        factor.setups += 1
        factor.nbytes += nbytes

    def _solve(self, factor: _Factor, rhs, transpose, conjugate, guess) -> SolveResult:
        del conjugate  # a real matrix: conj(A) = A
        with single_threaded_blas():
            rhs = np.asarray(rhs, dtype=np.float64)
            if self.direct:
                return self._solve_direct(factor, rhs, transpose)
            return self._solve_iterative(factor, rhs, transpose, guess)

    def _solve_iterative(self, factor: _Factor, rhs, transpose, guess) -> SolveResult:
        n, k = rhs.shape
        # S = 2^-e A, b = 2^f b': A x = b  <=>  S x' = b', x = 2^(f - e) x'.
        shift = exponents(np.max(np.abs(rhs), axis=0, initial=0.0))
        work = scale(rhs, -shift[None, :])
        start = None
        if guess is not None:
            # The guess is used only where it leaves a smaller residual than zero.
            start = best_start(
                lambda block: _scaled_product(factor, block, transpose),
                work,
                [scale(guess, factor.exponent - shift[None, :])],
            )
        atol = np.ldexp(self.atol, -shift)
        rtol = self.relative_tolerance(transpose)
        x = np.zeros((n, k))
        status = np.zeros(k, dtype=np.int32)
        steps = np.zeros(k, dtype=np.int32)
        residual = np.zeros(k)
        for column in np.flatnonzero(np.any(work != 0, axis=0)):  # b = 0: x = 0, OK
            if factor.broken:
                status[column] = Status.BREAKDOWN
                x[:, column] = np.nan
                continue
            x0 = None if start is None or not start[:, column].any() else start[:, column].copy()
            try:
                mode = self._mode(factor, transpose)
            except FactorError as error:
                status[column] = error.status
                x[:, column] = np.nan
                continue
            b = work[:, column]
            norm_b = float(np.linalg.norm(b))
            target = max(rtol * norm_b, atol[column])
            system = _Column(factor, mode, transpose, b, atol[column], rtol, target)
            # PETSc's own test judges the start (`check_start=False`).
            outcome = self._restarted(system, norm_b, target, x0, self.max_steps, False)
            x[:, column], status[column] = outcome.x, outcome.status
            steps[column], residual[column] = outcome.steps, outcome.residual
        x = scale(x, shift[None, :] - factor.exponent)
        status[(status == Status.OK) & ~np.all(np.isfinite(x), axis=0)] = Status.BREAKDOWN
        return SolveResult(x, status, steps, residual)

    def _round(self, system: _Column, x, budget: int, residual: float | None) -> Round:
        if residual is not None:
            # PETSc stopped on its own norm (the preconditioned residual, which a user's
            # KSP type or options may choose): go on from here, the tolerance tightened by
            # the gap.
            system.tolerance = max(system.tolerance * 0.5 * system.target / residual, 1e-300)
        system.rounds += 1
        factor = system.factor
        x, reason, taken, message = petsc_mpi.channel().solve(
            factor.ident, system.mode, system.b, x, system.tolerance, system.atol, budget
        )
        if message:  # PETSc raised: its objects are not used again
            factor.broken = True
            return Round(np.full(system.b.shape, np.nan), taken, Status.BREAKDOWN)
        reported = _reported(reason)
        if reported is None and system.rounds == ROUNDS:
            reported = Status.BREAKDOWN
        return Round(x, taken, reported)

    def _residual(self, system: _Column, x: np.ndarray) -> float:
        if not np.all(np.isfinite(x)):
            return math.nan
        factor = system.factor
        operator = factor.matrix.T if system.transpose else factor.matrix  # A = 2^exponent S
        down = np.ldexp(1.0, -factor.exponent)
        return float(np.linalg.norm(system.b - down * (operator @ x)))

    def _apply_inverse(self, factor: _Factor, block: np.ndarray, transpose: bool) -> np.ndarray:
        """`op(A)^-1 block` through the factorization of S = 2^-e A, column by column; NaN
        columns where the factorization failed (`DIVERGED_PC_FAILED`) or PETSc raised."""
        channel = petsc_mpi.channel()
        out = np.full(block.shape, np.nan)
        if factor.broken:
            return out
        mode = self._mode(factor, transpose)
        for column in range(block.shape[1]):
            x, reason, _, message = channel.solve(
                factor.ident, mode, np.ascontiguousarray(block[:, column]), None, 0.0, 0.0, 1
            )
            if message:
                factor.broken = True
                return out
            if reason != _REASON_PC_FAILED:
                out[:, column] = x
        # S y = b  <=>  A (2^-e y) = b: exact, and the checks see A itself.
        return scale(out, -factor.exponent)

    def _solve_direct(self, factor, rhs, transpose) -> SolveResult:
        matrix = factor.matrix
        norm = NormBound(0.0, lambda: matrix_norm(matrix))
        try:
            result = checked_solve(
                lambda block: self._apply_inverse(factor, block, transpose),
                matrix,
                norm,
                rhs,
                transpose,
                False,
            )
        except FactorError as error:  # a KSP of A^T that could not be set up
            n, k = rhs.shape
            result = singular_result(n, k, np.float64)
            result.status[:] = error.status
            return result

        def estimate() -> float:
            # Pivots alone miss a singular matrix factorized with rounding-level pivots
            # (its solves have a tiny backward error and a huge solution).
            return estimate_rcond(
                lambda block: self._apply_inverse(factor, block, False),
                lambda block: self._apply_inverse(factor, block, True),
                matrix.shape[0],
                one_norm(matrix),
                np.float64,
            )

        return confirm(result, factor.condition, estimate)
