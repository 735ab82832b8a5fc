"""`AbstractDirectHostSolver`: a host solver that factorizes (`SuperLU`, `Cholmod`,
`AutoSparse`): it takes no initial guesses and builds on no auxiliary arrays."""

from typing import ClassVar

from .base import AbstractHostSolver


class AbstractDirectHostSolver(AbstractHostSolver):
    """Base class of the direct solvers: a factorization, no `options`."""

    takes_guesses: ClassVar[bool] = False
    # equinox lets a class variable implement an `AbstractVar`; pyright reads the abstract
    # declaration as an instance field.
    near_nullspace: ClassVar[None] = None  # pyright: ignore[reportIncompatibleVariableOverride]
