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
from .numerics import checked_solve, Condition, confirm, NormBound
from .status import SolveResult


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

    @abc.abstractmethod
    def reciprocal_condition(self, factor: Any) -> float:
        """An estimate of the reciprocal 1-norm condition number of the equilibrated `S`
        (`numerics.estimate_rcond`), never below the true one."""

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
