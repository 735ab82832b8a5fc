"""`AMGBackend`: algebraic multigrid through pyamg, a hierarchy per matrix preconditioning a
Krylov method (or stand-alone cycles).

The backend resolves a solve onto `A` or `A^T`, scales it, picks its start and its
preconditioner, and rebuilds a reused hierarchy that stopped working; the hierarchies are
`hierarchy.py`'s, the per-pattern state `reuse.py`'s, one column's iteration `krylov.py`'s.
How it works, the options and the measurements behind each choice: `docs/backends/amg.md`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..blas import single_threaded_blas
from ..iterative import AbstractIterativeBackend, Outcome, Round
from ..numerics import best_start, exponents, is_extreme, scale
from ..pattern import Pattern
from ..status import FactorError, SolveResult, Status
from . import blocks, krylov as krylov_
from .factor import check_matrix, Factor
from .hierarchy import (
    conjugated,
    Hierarchies,
    near_nullspace,
    new_hierarchies,
    plain_gauss_seidel,
    REAL_ONLY,
)
from .memory import nbytes as factor_nbytes
from .reuse import PatternState, record_baseline, reuse_budget


class AMGBackend(AbstractIterativeBackend):
    """pyamg's hierarchies with scipy's Krylov methods; options as resolved by `lxs.AMG`."""

    def __init__(
        self,
        *,
        method: str,
        krylov: str,
        rtol: float,
        atol: float,
        max_steps: int,
        adjoint_rtol: float,
        cycle: str,
        smoother: str,
        reuse: int,
        warm_start: bool = False,
    ):
        # The solver class checked every option and resolved "auto".
        assert method != "auto" and krylov != "auto", (method, krylov)
        self.method = method
        self.krylov = krylov
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = int(max_steps)
        self.adjoint_rtol = float(adjoint_rtol)
        self.cycle = cycle
        self.smoother = smoother
        self.reuse = int(reuse)
        self.warm_start = bool(warm_start)
        self._plain_gauss_seidel = plain_gauss_seidel(method, smoother)
        # A hierarchy is large, and freeing the old one before the next setup lets that
        # setup reuse its memory instead of page-faulting fresh memory in. With `reuse` the
        # previous one must stay: it is the hierarchy to reuse.
        self.factors_per_pattern = 2 if self.reuse else 1
        self.builds_on_previous = bool(self.reuse)

    # ------------------------------------------------------------------ setup

    def analyse(self, pattern: Pattern) -> PatternState:
        # Nothing AMG does depends on the pattern alone: strength, aggregation and
        # interpolation all read the values. The state remembers the latest hierarchy.
        del pattern
        return PatternState()

    def factor(
        self, pattern: Pattern, analysis: PatternState, matrix: sp.csc_matrix, aux: Any
    ) -> Factor:
        # Overflow and NaN are detected by the checks (setup, true residual), not warned.
        with single_threaded_blas(), np.errstate(all="ignore"):
            return self._factor(pattern, analysis, matrix, aux)

    def _factor(self, pattern, analysis: PatternState, matrix: sp.csc_matrix, aux) -> Factor:
        complex_ = bool(np.iscomplexobj(matrix.data))
        # Structural: the solver class refuses this combination at trace time.
        assert not (complex_ and self.method in REAL_ONLY), self.method
        B = near_nullspace(aux, self.method, pattern.n, complex_)
        check_matrix(pattern, matrix)
        # Values near the overflow or underflow threshold (a subnormal matrix) are scaled
        # by a power of two, exactly: S = 2^-e A. Setup, cycles and norms then work in a
        # safe range, and solves scale back (`_solve`).
        exponent = 0
        largest = float(np.max(np.abs(matrix.data), initial=0.0))
        if is_extreme(largest):
            exponent = int(exponents(np.array([largest]))[0])
            matrix = sp.csc_matrix(
                (scale(matrix.data, -exponent), matrix.indices, matrix.indptr), shape=matrix.shape
            )
        factor = Factor(pattern, matrix, analysis, B, exponent)
        if pattern.n == 0:
            return factor
        if self.reuse:
            remembered = analysis.reusable(factor.is_complex)
            if remembered is not None:
                factor.hierarchies = remembered
                factor.reused_setup = True
                return factor
        factor.hierarchies = self._new_hierarchies(factor)
        if self.reuse:
            analysis.remember(factor.hierarchies)
        return factor

    def _new_hierarchies(self, factor: Factor) -> Hierarchies:
        """Build the hierarchy of the factor's own matrix (raises `FactorError`)."""
        return new_hierarchies(
            self.method, self.smoother, factor.pattern, factor.matrix, factor.csr, factor.candidates
        )

    def is_complex(self, factor: Factor) -> bool:
        return factor.is_complex

    def setups(self, factor: Factor) -> int:
        return (0 if factor.reused_setup else 1) + factor.late_setups

    def nbytes(self, factor: Factor) -> int:
        return factor_nbytes(factor)

    def analysis_nbytes(self, analysis: PatternState) -> int:
        """Bytes the analysis holds beyond its pattern (the warm-start solutions)."""
        return analysis.nbytes()

    # ------------------------------------------------------------------ solve

    def _solve(self, factor: Factor, rhs, transpose, conjugate, guess) -> SolveResult:
        with single_threaded_blas():
            return self._solve_block(factor, rhs, transpose, conjugate, guess)

    def _solve_block(self, factor: Factor, rhs, transpose, conjugate, guess) -> SolveResult:
        n, k = rhs.shape
        dtype = np.complex128 if factor.is_complex else np.float64
        # conj(A) x = b  <=>  A conj(x) = conj(b);  A^H x = b  <=>  A^T conj(x) = conj(b).
        work = np.array(rhs, dtype=dtype)
        if conjugate:
            work = np.conj(work)
        if guess is not None:
            guess = np.array(guess, dtype=dtype)
            candidates = [np.conj(guess) if conjugate else guess]
        elif self.warm_start:
            candidates = factor.state.warm_candidates(transpose, work)
        else:
            candidates = []
        # A x = b with A = 2^e S and b = 2^f b' (|b'| in [0.5, 1) per column): S x' = b',
        # x = 2^(f - e) x', and |b - A x| <= atol  <=>  |b' - S x'| <= 2^-f atol. Every
        # norm of the iteration then stays far from overflow and underflow.
        shift = exponents(np.max(np.abs(work), axis=0, initial=0.0))
        work = scale(work, -shift[None, :])
        # A guess or warm start is used only where it leaves a smaller residual than zero.
        operator = factor.operator(transpose)
        start = best_start(
            lambda block: operator @ block,
            work,
            [scale(candidate, factor.exponent - shift[None, :]) for candidate in candidates],
        )
        atol = np.ldexp(self.atol, -shift)
        x = np.zeros((n, k), dtype=dtype)
        status = np.zeros(k, dtype=np.int32)
        steps = np.zeros(k, dtype=np.int32)
        residual = np.zeros(k, dtype=np.float64)
        columns = np.flatnonzero(np.any(work != 0, axis=0))  # b = 0: x = 0, OK
        if columns.size:
            result = (x, status, steps, residual)
            self._solve_columns(factor, transpose, atol, work, start, columns, result)
        x = scale(x, shift[None, :] - factor.exponent)
        # A solution too large to represent is no success.
        status[(status == Status.OK) & ~np.all(np.isfinite(x), axis=0)] = Status.BREAKDOWN
        if self.warm_start and np.all(status == Status.OK):
            factor.state.keep(transpose, x.copy())
        if conjugate:
            x = np.conj(x)
        return SolveResult(x, status, steps, residual)

    def _preconditioner(self, factor: Factor, transpose: bool):
        """`(direction, r -> B r)` with `B` approximating `op(A)^-1`, op(A) = A or A^T.

        The hierarchy was built for `S` (= A, or an earlier matrix of the pattern when
        reused). `S^T` is preconditioned by `S`'s hierarchy only when `S^T == S`, or, for a
        Hermitian `S` (`S^T = conj(S)`), by `r -> conj(B conj(r))`; otherwise by the
        hierarchy of `S^T`, built here on the first transposed solve and kept.
        """
        hierarchies = factor.hierarchies
        assert hierarchies is not None  # made by `factor` for n > 0
        plain = self._plain_gauss_seidel
        if not transpose or hierarchies.symmetric:
            return "forward", hierarchies.solver("forward", self.cycle, plain)
        if hierarchies.hermitian:
            return "forward", conjugated(hierarchies.solver("forward", self.cycle, plain))
        if hierarchies.transposed is None:
            hierarchies.build_transposed(self.method, self.smoother, factor.candidates)
            factor.late_setups += 1
        return "transposed", hierarchies.solver("transposed", self.cycle, plain)

    def _solve_columns(self, factor: Factor, transpose, atol, work, start, columns, result):
        x, status, steps, residual = result
        operator = factor.operator(transpose)
        rtol = self.relative_tolerance(transpose)

        def run(precondition, which, origin, budget: int | None) -> None:
            # `budget`: the total steps a column may reach; None: `max_steps` more.
            remaining = np.full(which.size, self.max_steps, dtype=np.int64)
            if budget is not None:
                remaining = budget - steps[which].astype(np.int64)
            # b is scaled to |b|_inf in [0.5, 1); one column's norm as its own solve takes it.
            norm_b = np.array([np.linalg.norm(work[:, j]) for j in which])
            target = np.maximum(rtol * norm_b, atol[which])
            if which.size > 1 and self.krylov in blocks.BLOCK_KRYLOV:
                # Several columns: in lockstep, the cycles and products on the block.
                block = blocks.Block(
                    operator,
                    precondition,
                    np.ascontiguousarray(work[:, which]),
                    np.ascontiguousarray(origin[:, which]),
                    target,
                    norm_b,
                    remaining,
                )
                outcomes = blocks.solve(self.krylov, block)
                x[:, which], status[which] = outcomes.x, outcomes.status
                residual[which] = outcomes.residual
                steps[which] += outcomes.steps.astype(steps.dtype)
                return
            for i, j in enumerate(which):
                b = work[:, j]
                system = krylov_.System(operator, precondition, b, float(target[i]))
                outcome = self._iterate(system, float(norm_b[i]), origin[:, j], int(remaining[i]))
                x[:, j], status[j], residual[j] = outcome.x, outcome.status, outcome.residual
                steps[j] += outcome.steps

        hierarchies = factor.hierarchies
        assert hierarchies is not None  # made by `factor` for n > 0
        try:
            direction, precondition = self._preconditioner(factor, transpose)
        except FactorError:
            status[columns], residual[columns] = Status.BREAKDOWN, np.nan
            return
        reused = hierarchies.source is not factor.matrix
        budget = self.max_steps
        if reused:
            budget = reuse_budget(hierarchies, direction, self.reuse, self.max_steps)
        run(precondition, columns, start, budget)
        record_baseline(hierarchies, direction, steps[columns], status[columns])
        failed = columns[status[columns] != Status.OK]
        if reused and failed.size == 0 and not factor.judged:
            factor.judged = True
            factor.state.reuse_worked()
        if not reused or failed.size == 0:
            return
        factor.judged = True
        factor.state.reuse_failed()
        # A reused hierarchy must never turn a solvable system into a failure, nor make it
        # much slower: rebuild it from this factor's own matrix (it becomes the pattern's
        # remembered hierarchy) and continue the unfinished columns from where they stopped.
        hierarchies.stale = True
        try:
            factor.hierarchies = self._new_hierarchies(factor)
            factor.late_setups += 1
            if factor.state.remembered() in (hierarchies, None):
                factor.state.remember(factor.hierarchies)
            direction, precondition = self._preconditioner(factor, transpose)
        except FactorError:
            return
        continued = np.where(np.isfinite(x), x, start)
        run(precondition, failed, continued, None)
        # No baseline from these continued solves: they start near the solution and would
        # set one too low for the hierarchy's later reuse (the next solve from zero sets it).

    def _iterate(self, system: krylov_.System, norm_b: float, x0, max_steps: int) -> Outcome:
        """Solve one column from `x0` in at most `max_steps` steps: stand-alone cycles, or
        rounds of the Krylov method restarted on the true residual (`_restarted`)."""
        x = np.array(x0)
        if self.krylov == "none":
            return krylov_.cycles(system, x, norm_b, max_steps)
        return self._restarted(system, norm_b, system.target, x, max_steps, check_start=True)

    def _round(self, system: krylov_.System, x, budget: int, residual) -> Round:
        del residual  # scipy's methods stop on `system.target` itself
        return krylov_.krylov_round(self.krylov, system, x, budget)

    def _residual(self, system: krylov_.System, x: np.ndarray) -> float:
        return krylov_.residual(system, x)
