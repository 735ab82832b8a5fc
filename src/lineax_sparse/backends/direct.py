"""`AbstractDirectBackend`: a backend whose solve applies a factorization's inverse, checked.

The direct backends (CHOLMOD, SuperLU) share one solve: `numerics.checked_solve` (each
right-hand side scaled, the backward error checked, iterative refinement), then
`numerics.confirm` (a residual no backward-stable solve of a well-posed system leaves asks
for the factor's condition estimate, which decides). A subclass says how its factor
applies the inverse and estimates its condition, and which matrix it factorized.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .base import AbstractBackend
from .numerics import (
    checked_solve,
    Condition,
    confirm,
    equilibrate,
    estimate_rcond,
    NormBound,
    one_norm,
    PIVOT_GATE,
    RCOND_LIMIT,
)
from .status import FactorError, SolveResult, Status


class Factored(NamedTuple):
    """What the checks need to know of a factorization of `S`."""

    #: `S`, the matrix factorized: `A`, or its equilibration `R A C`.
    matrix: sp.csc_matrix
    #: `max(|S|_1, |S|_inf)`, or a `NormBound` of it.
    norm: float | NormBound
    #: `R = diag(2^-row_exponents)` and `C = diag(2^-column_exponents)` when `S` is an
    #: equilibrated `R A C`; None otherwise.
    row_exponents: np.ndarray | None
    column_exponents: np.ndarray | None
    #: The factor's conditioning, estimated at most once.
    condition: Condition


class AbstractDirectBackend(AbstractBackend):
    """A backend that factorizes a matrix and solves by applying the factors' inverse."""

    @abc.abstractmethod
    def factored(self, factor: Any) -> Factored:
        """The matrix `factor` factorizes, its norm and scaling, and its `Condition`."""

    @abc.abstractmethod
    def apply_inverse(
        self, factor: Any, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> np.ndarray:
        """`op(S)^-1 rhs` for a block `rhs` (n, k), real only for a real factor, with `op`
        as in `solve`."""

    def reciprocal_condition(self, factor: Any) -> float:
        """An estimate of the reciprocal 1-norm condition number of the equilibrated `S`
        (`numerics.estimate_rcond`), never below the true one.

        `S` (`A`, or an already equilibrated `R A C`) is equilibrated here for the estimate
        only: `A`'s own condition number would call a matrix with a 1e20 penalty row
        singular, while a pivoting factorization solves it accurately.
        """
        factored = self.factored(factor)
        matrix = factored.matrix
        n = matrix.shape[0]
        dtype = np.result_type(matrix.dtype, np.float64)
        if factored.row_exponents is None:
            equilibrated, r, c = equilibrate(matrix)
        else:  # already equilibrated
            equilibrated = matrix
            r = c = np.zeros(n, dtype=np.int64)
        # With S and E = R' S C' its equilibration: E^-1 = C'^-1 S^-1 R'^-1 and
        # E^-H = R'^-1 S^-H C'^-1 (the scalings are real).
        up_r, up_c = np.ldexp(1.0, r)[:, None], np.ldexp(1.0, c)[:, None]

        def solve(block):
            return self.estimate_inverse(factor, block * up_r, False, False) * up_c

        def solve_adjoint(block):
            return self.estimate_inverse(factor, block * up_c, True, True) * up_r

        return estimate_rcond(solve, solve_adjoint, n, one_norm(equilibrated), dtype)

    def estimate_inverse(
        self, factor: Any, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> np.ndarray:
        """`apply_inverse` as the condition estimate uses it (a backend may leave out a
        refinement the estimate does not need)."""
        return self.apply_inverse(factor, rhs, transpose, conjugate)

    def gate_pivots(
        self, factor: Any, pivots: np.ndarray | None, ratios: np.ndarray | None, library: str
    ) -> None:
        """Raise `SINGULAR` for a matrix singular to working precision: `pivots` that
        overflowed; a pivot below `PIVOT_GATE` of its column (`ratios`) asks for a
        condition estimate, which decides. Pivots that cannot be read (None) ask for one."""
        if pivots is not None:
            if not np.all(np.isfinite(pivots)):
                raise FactorError(Status.SINGULAR, f"{library}: the factorization overflowed")
            if np.all(ratios >= PIVOT_GATE):  # NaN (0 / 0: an empty column) fails
                return
        rcond = self._rcond(factor)
        if rcond < RCOND_LIMIT:
            raise FactorError(
                Status.SINGULAR,
                f"{library}: the matrix is singular to working precision (estimated "
                f"reciprocal condition number {rcond:.1e} < {RCOND_LIMIT:.0e})",
            )

    def _rcond(self, factor: Any) -> float:
        """`reciprocal_condition(factor)`, estimated once per factor (kept in its
        `Condition`)."""
        condition = self.factored(factor).condition
        if condition.rcond is None:
            with np.errstate(all="ignore"):
                condition.rcond = self.reciprocal_condition(factor)
        return condition.rcond

    def _solve(
        self,
        factor: Any,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        del guess  # a direct solve needs none
        factored = self.factored(factor)
        result = checked_solve(
            lambda b: self.apply_inverse(factor, b, transpose, conjugate),
            factored.matrix,
            factored.norm,
            rhs,
            transpose,
            conjugate,
            factored.row_exponents,
            factored.column_exponents,
        )
        return confirm(result, factored.condition, lambda: self._rcond(factor))

    def is_complex(self, factor: Any) -> bool:
        return np.iscomplexobj(self.factored(factor).matrix.data)
