from __future__ import annotations

import lineax as lx

from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from .base import AbstractHostSolver
from .cholmod import Cholmod
from .superlu import SuperLU


class AutoSparse(AbstractHostSolver):
    """Chooses a direct solver from the operator's tags.

    - Operators tagged `lineax.positive_semidefinite_tag` are solved with `Cholmod()`
      (its default options, ordering included).
    - All others are solved with `SuperLU()`, whose `ordering="auto"` chooses for each
      matrix: minimum degree on A^T + A where the diagonal holds the pivots, COLAMD for
      saddle points and other matrices whose diagonal does not.

    With `fallback=True`, a matrix tagged positive semidefinite that CHOLMOD finds not to be
    positive definite (or whose values are not symmetric) is factorized with SuperLU instead
    of being reported as a failure; without it, the failure is reported.

    This solver takes no `options`.
    """

    fallback: bool = False

    def __check_init__(self):
        if not isinstance(self.fallback, bool):
            raise ValueError(f"`AutoSparse(fallback=...)` must be a bool, got {self.fallback!r}.")

    def _backend_spec(self, operator: SparseOperator) -> BackendSpec:
        lu, definite = self._accepted_specs()
        return definite if lx.is_positive_semidefinite(operator) else lu

    def _accepted_specs(self) -> tuple[BackendSpec, ...]:
        """(the spec for other operators, the spec for positive semidefinite ones)."""
        lu = SuperLU()._spec()
        cholesky = Cholmod()._spec()
        if self.fallback:
            return lu, ("fallback", (("primary", cholesky), ("secondary", lu)))
        return lu, cholesky


AutoSparse.__init__.__doc__ = """**Arguments:**

- `fallback`: whether to fall back to SuperLU when a matrix tagged positive semidefinite
    turns out not to be (default `False`: report it).
"""
