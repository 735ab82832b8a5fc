"""PETSc through petsc4py: a KSP (Krylov method and preconditioner) per matrix.

Options (the `PETSc` solver's static fields): `ksp_type`, `pc_type` (PETSc's names), `rtol`,
`atol`, `max_steps`, `adjoint_rtol` as for `AMG`; `options`, PETSc options-database names and
values applied under a prefix of this KSP's own (so they reach only it: `pc_hypre_type`,
`pc_factor_mat_solver_type`, `pc_gamg_threshold`, `mat_mumps_icntl_14`, ...); `norm`: how
the convergence test measures the residual ("unpreconditioned" for CG, "right" for GMRES
with right preconditioning, whose residual is the true one; "" leaves PETSc's default);
`block_size`: unknowns per mesh node (3 for 3D elasticity), which GAMG aggregates together;
`direct`: whether the KSP is a direct solve (`preonly` with a factorization).

Where the objects live. `petsc_mpi.channel()` is this process (`COMM_SELF`) or, after
`lineax_sparse.petsc_serve()` under `mpiexec`, every rank of `MPI_COMM_WORLD`, each holding
consecutive rows; this module only sees rank 0's view: the whole matrix (kept as scipy CSC
for the checks) and whole vectors.

Checks. PETSc's convergence test is not trusted: after every solve the true residual
`|b - op(A) x|` is recomputed here. An iterative solve is `OK` only if it meets
`max(rtol |b|, atol)` itself; one that PETSc calls converged but that does not (a
preconditioned-norm test, a transpose the preconditioner does not really apply: hypre's
BoomerAMG "converges" in 0 iterations with the residual of a zero solution) continues from
its iterate with a tighter tolerance while that makes progress. An initial guess (`y0`)
is used, column by column, only where its residual is smaller than zero's
(`checks.best_start`): a guess of 1e100 or 1e300 was a breakdown at step 0. A direct solve
(`direct`) goes through `checks.checked_solve` (backward error, iterative refinement) like
CHOLMOD's and SuperLU's. `KSPConvergedReason` maps onto statuses: `DIVERGED_ITS` ->
`MAX_STEPS_REACHED`; a failed factorization (`DIVERGED_PC_FAILED`, zero pivot) ->
`SINGULAR` for a direct solve; an indefinite matrix or preconditioner under CG ->
`NOT_POSITIVE_DEFINITE`; every other divergence, PETSc error and non-finite iterate ->
`BREAKDOWN`.

Transposed solves (the backward pass). Exactly symmetric values use the same KSP with
`KSPSolve`. A direct solve by PETSc's or MUMPS's factorization uses `KSPSolveTranspose`
(the same factors). Every other transposed solve uses a KSP of `A^T` (the CSC arrays of `A`
are the CSR arrays of `A^T`), built at the first transposed solve and kept with the factor,
as `AMG` does: see `TRANSPOSE_SOLVERS` for why the preconditioners' own transposes are
never tried.

A PETSc error inside a solve marks the factor broken: its later solves report `BREAKDOWN`
without calling PETSc, and its objects are never destroyed (PETSc 3.18 can leave a KSP
corrupted by an error; destroying it then crashed the process).

Scaling. The matrix is scaled by a power of two to a largest entry in [0.5, 1), each
right-hand side likewise (exact), so no norm of the iteration overflows or underflows.

Memory. `nbytes` is the growth of the C heap across the setup on every rank (PETSc, hypre
and MUMPS allocate with malloc; see `_petsc_objects.heap_in_use`), plus the values kept
here (the matrix given to `factor`, unscaled: with a static pattern, the cache entry's own
array). Exactly symmetric values go to PETSc straight from the CSC arrays, which are then
the CSR arrays; others through the pattern's CSR structure.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..blas import single_threaded_blas
from ..numerics import (
    best_start,
    checked_solve,
    Condition,
    confirm,
    estimate_rcond,
    exponents,
    matrix_norm,
    NormBound,
    one_norm,
    scale,
    singular_result,
    solve_split,
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
#: Rounds of a solve that PETSc calls converged but whose true residual is above the
#: tolerance (each continues from the iterate with a tolerance tightened by the gap).
ROUNDS = 4

_REASON_MAX_IT = -3
_REASON_INDEFINITE = (-8, -10)
_REASON_PC_FAILED = -11

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
        if self._symmetric is None:
            lower, upper, unpaired = self.pattern.symmetry_pairs()
            data = self.matrix.data
            self._symmetric = unpaired.size == 0 and np.array_equal(data[lower], data[upper])
        return self._symmetric


def _scaled_product(factor: _Factor, block: np.ndarray, transpose: bool) -> np.ndarray:
    """`op(S) block` for `S = 2^-exponent A` from the kept `A`, without overflow for
    entries of `block` at most 1: a large `A` meets a scaled-down block."""
    up = max(factor.exponent, 0)
    operator = factor.matrix.T if transpose else factor.matrix
    return scale(operator @ scale(block, -up), up - factor.exponent)


class PETScBackend:
    requires_symmetric = False
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
        self.pc_type, self.direct = pc_type, direct
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

    def setups(self, factor: _Factor) -> int:
        return factor.setups

    def nbytes(self, factor: _Factor) -> int:
        return factor.nbytes

    def answers_for(self, factor: _Factor, asked: tuple, known: tuple) -> bool:
        """A solve with flags `known` answers one with `asked` for exactly symmetric values
        when the asked tolerance is no tighter (the adjoint of a compliance)."""
        if self.direct:
            return factor.exactly_symmetric()

        def tolerance(flags):
            return self.adjoint_rtol if flags[0] else self.rtol

        return tolerance(asked) >= tolerance(known) and factor.exactly_symmetric()

    # ------------------------------------------------------------ solve

    def solve(
        self,
        factor: _Factor,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        del conjugate  # a real matrix: conj(A) = A
        with single_threaded_blas(), np.errstate(all="ignore"):
            if np.iscomplexobj(rhs):
                return solve_split(
                    lambda block, start: self._solve(factor, block, transpose, start), rhs, guess
                )
            return self._solve(factor, np.asarray(rhs, dtype=np.float64), transpose, guess)

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

    def _solve(self, factor, rhs, transpose, guess) -> SolveResult:
        n, k = rhs.shape
        if self.direct:
            return self._solve_direct(factor, rhs, transpose)
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
        rtol = self.adjoint_rtol if transpose else self.rtol
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
            outcome = self._iterate(
                factor, mode, transpose, work[:, column], x0, rtol, atol[column]
            )
            x[:, column], status[column], steps[column], residual[column] = outcome
        x = scale(x, shift[None, :] - factor.exponent)
        status[(status == Status.OK) & ~np.all(np.isfinite(x), axis=0)] = Status.BREAKDOWN
        return SolveResult(x, status, steps, residual)

    def _iterate(self, factor, mode, transpose, b, x0, rtol, atol):
        """One column: `(x, status, steps, relative residual)`, checked on the true residual."""
        channel = petsc_mpi.channel()
        operator = factor.matrix.T if transpose else factor.matrix  # A = 2^exponent S
        down = np.ldexp(1.0, -factor.exponent)
        norm_b = float(np.linalg.norm(b))
        target = max(rtol * norm_b, atol)
        steps, tolerance, previous, true = 0, rtol, np.inf, norm_b
        x = x0
        for _ in range(ROUNDS):
            budget = self.max_steps - steps
            if budget <= 0:
                return x, Status.MAX_STEPS_REACHED, steps, true / norm_b
            x, reason, taken, message = channel.solve(
                factor.ident, mode, b, x, tolerance, atol, budget
            )
            steps += taken
            if message:
                factor.broken = True
                return np.nan, Status.BREAKDOWN, steps, np.nan
            if not np.all(np.isfinite(x)):
                return np.nan, Status.BREAKDOWN, steps, np.nan
            true = float(np.linalg.norm(b - down * (operator @ x)))
            ratio = true / norm_b
            if true <= target:
                return x, Status.OK, steps, ratio
            if reason == _REASON_MAX_IT or steps >= self.max_steps:
                return x, Status.MAX_STEPS_REACHED, steps, ratio
            if reason in _REASON_INDEFINITE:
                return x, Status.NOT_POSITIVE_DEFINITE, steps, ratio
            if reason < 0 or true >= previous:
                return x, Status.BREAKDOWN, steps, ratio
            # PETSc stopped on its own norm (the preconditioned residual, which a user's
            # KSP type or options may choose): go on from here, the tolerance tightened by
            # the gap.
            previous = true
            tolerance = max(tolerance * 0.5 * target / true, 1e-300)
        return x, Status.BREAKDOWN, steps, true / norm_b

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
