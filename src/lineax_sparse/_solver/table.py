"""The solvers of lineax-sparse, one row each, with what each one takes.

The one list of solvers: `Materialise` names the solvers it wraps from it, and the tests
build their grid from it and check that the package exports exactly these solvers (and
`Materialise`, which wraps each of them).
"""

from __future__ import annotations

import dataclasses
from typing import get_args, Literal

from .amg import AMG
from .auto import AutoSparse
from .base import AbstractHostSolver
from .cholmod import Cholmod
from .iterative import AbstractIterativeHostSolver
from .pardiso import Pardiso
from .petsc import PETSc
from .superlu import SuperLU
from .umfpack import UMFPACK


#: Operators by what their tags promise: "spd" tagged `lineax.positive_semidefinite_tag`
#: (and positive definite), "symmetric" tagged `lineax.symmetric_tag` (and indefinite),
#: "general" untagged (not symmetric).
MatrixKind = Literal["spd", "symmetric", "general"]
MATRIX_KINDS = get_args(MatrixKind)


@dataclasses.dataclass(frozen=True)
class SolverRow:
    """A solver and what it takes. Every solver solves transposed and conjugated systems
    (the backward pass) with the factorization or hierarchy of the forward solve."""

    solver: type[AbstractHostSolver]
    #: The kinds of operator it is meant for.
    kinds: tuple[MatrixKind, ...]
    #: Whether it solves complex matrices (every solver takes a complex right-hand side).
    complex: bool
    #: The optional package it needs beyond the default dependencies, or None.
    requires: str | None = None

    @property
    def iterative(self) -> bool:
        """Whether it iterates to a tolerance (else it factorizes, backward stable)."""
        return issubclass(self.solver, AbstractIterativeHostSolver)

    @property
    def name(self) -> str:
        return self.solver.__name__


SOLVERS = (
    SolverRow(SuperLU, ("spd", "symmetric", "general"), complex=True),
    SolverRow(Cholmod, ("spd",), complex=True),
    SolverRow(UMFPACK, ("spd", "symmetric", "general"), complex=True),
    SolverRow(AutoSparse, ("spd", "symmetric", "general"), complex=True),
    SolverRow(Pardiso, ("spd", "symmetric", "general"), complex=True, requires="mkl"),
    # Multigrid is for elliptic problems: positive definite ones, and non-symmetric ones
    # such as convection-diffusion; complex ones through smoothed aggregation.
    SolverRow(AMG, ("spd", "general"), complex=True),
    # PETSc is built for one scalar type, real in the usual builds.
    SolverRow(PETSc, ("spd", "general"), complex=False, requires="petsc4py"),
)


def solver_names() -> str:
    """The solvers as a user calls them: "`SuperLU()`, `Cholmod()`, ..."."""
    return ", ".join(f"`{row.name}()`" for row in SOLVERS)
