"""PETSc (through petsc4py): its Krylov methods, preconditioners and direct solvers, in this
process or over MPI ranks. How it works: `docs/backends/petsc.md`."""

from .backend import PETScBackend as Backend


__all__ = ["Backend"]
