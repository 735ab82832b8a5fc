"""`AutoSparse`: CHOLMOD for operators tagged positive semidefinite, SuperLU for the others."""

from __future__ import annotations

import lineax as lx

from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.options import check_bool
from .cholmod import Cholmod
from .direct import AbstractDirectHostSolver
from .superlu import SuperLU


#: The solvers chosen from, with their default options (orderings included).
_CHOLESKY = Cholmod()
_LU = SuperLU()


def _fallback(primary: BackendSpec, secondary: BackendSpec) -> BackendSpec:
    """The spec of `backends.fallback`: `primary`, then `secondary` for a matrix that
    `primary` finds not positive definite or not symmetric. That backend checks symmetry
    itself (it needs no symmetric values: it falls back)."""
    return "fallback", (("primary", primary), ("secondary", secondary))


class AutoSparse(AbstractDirectHostSolver):
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
        check_bool("AutoSparse", "fallback", self.fallback)

    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        if not lx.is_positive_semidefinite(operator):
            return _LU.backend_spec(operator)
        cholesky = _CHOLESKY.backend_spec(operator)
        if self.fallback:
            return _fallback(cholesky, _LU.backend_spec(operator))
        return cholesky

    def backend_specs(self) -> dict[BackendSpec, bool]:
        specs = dict(_LU.backend_specs())
        if not self.fallback:
            return {**specs, **_CHOLESKY.backend_specs()}
        for cholesky in _CHOLESKY.backend_specs():
            for lu in _LU.backend_specs():
                specs[_fallback(cholesky, lu)] = False
        return specs


AutoSparse.__init__.__doc__ = """**Arguments:**

- `fallback`: whether to fall back to SuperLU when a matrix tagged positive semidefinite
    turns out not to be (default `False`: report it).
"""
