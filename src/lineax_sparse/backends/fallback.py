"""A backend that tries one factorization and falls back to another.

Used by `AutoSparse(fallback=True)`: CHOLMOD first, SuperLU when the matrix turns out not to
be positive definite or not symmetric. Each inner backend's analysis is made on first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import AbstractBackend
from .catalog import make_backend
from .numerics import is_hermitian
from .pattern import Pattern
from .status import FactorError, SolveResult, Status


_FALL_BACK_ON = (Status.NOT_POSITIVE_DEFINITE, Status.NOT_SYMMETRIC)


class FallbackBackend(AbstractBackend):
    """`primary` (a backend spec) first; `secondary` when the matrix is not symmetric or
    not positive definite. A factor is `(backend, its factor)`, solved by that backend."""

    def __init__(self, primary: tuple, secondary: tuple):
        self.primary: AbstractBackend = make_backend(primary)
        self.secondary: AbstractBackend = make_backend(secondary)

    def statistics(self, factor: tuple[AbstractBackend, Any]) -> dict[str, np.ndarray]:
        backend, inner = factor
        return backend.statistics(inner)

    def analyse(self, pattern: Pattern) -> dict[str, Any]:
        del pattern
        return {}

    def _analysis(self, which: str, backend: AbstractBackend, pattern: Pattern, analyses: dict):
        if which not in analyses:
            analyses[which] = backend.analyse(pattern)
        return analyses[which]

    def factor(self, pattern: Pattern, analysis: dict, matrix, aux) -> tuple[AbstractBackend, Any]:
        try:
            if self.primary.requires_symmetric and not is_hermitian(pattern, matrix.data):
                raise FactorError(Status.NOT_SYMMETRIC)
            primary = self._analysis("primary", self.primary, pattern, analysis)
            return self.primary, self.primary.factor(pattern, primary, matrix, aux)
        except FactorError as error:
            if error.status not in _FALL_BACK_ON:
                raise
        secondary = self._analysis("secondary", self.secondary, pattern, analysis)
        return self.secondary, self.secondary.factor(pattern, secondary, matrix, aux)

    def setups(self, factor: tuple[AbstractBackend, Any]) -> int:
        backend, inner = factor
        return backend.setups(inner)

    def _solve(
        self,
        factor: tuple[AbstractBackend, Any],
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        backend, inner = factor
        return backend.solve(inner, rhs, transpose, conjugate, guess)

    def is_complex(self, factor: tuple[AbstractBackend, Any]) -> bool:
        backend, inner = factor
        return backend.is_complex(inner)

    def nbytes(self, factor: tuple[AbstractBackend, Any]) -> int:
        backend, inner = factor
        return backend.nbytes(inner)


Backend = FallbackBackend
