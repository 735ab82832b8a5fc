"""The PETSc process functions: sharing solves over MPI ranks, and each rank's memory."""

from __future__ import annotations

from ._host import owner as _host
from ._solver.petsc import require_petsc4py
from .backends.petsc import mpi as petsc_mpi


def petsc_serve(exit: bool = True) -> int:
    """Share the PETSc solves of a program run under `mpiexec -n P` across its P ranks.

    Call it near the top of the program, on every rank, before any solve:

    ```python
    import lineax_sparse as lxs

    lxs.petsc_serve()  # rank 0 returns; the other ranks serve it, then exit
    ...  # the JAX program, unchanged: lxs.PETSc() solves are now distributed
    ```

    and run `mpiexec -n 2 python program.py`. On rank 0 it returns at once and the program
    runs as it would alone, except that every `lineax_sparse.PETSc` setup and solve is
    distributed by rows over all ranks (parallel AIJ), made collectively, with the solution
    gathered back to rank 0. On the other ranks it serves rank 0 until rank 0 ends
    (normally, by an exception, or by dying: the ranks are released in every case), and
    then ends the process (`exit=True`) or returns the rank (`exit=False`: the caller must
    then not run the JAX program). Without `mpiexec`, or on one rank, it does nothing.
    Under `mpiexec -n P` (P > 1), a `lineax_sparse.PETSc` solve on a rank that did not call
    it raises a `RuntimeError` that says so, at trace time.

    **Returns:** this process's rank (0 on the rank that runs the program).
    """
    return petsc_mpi.serve(exit)


def petsc_ranks() -> int:
    """How many MPI ranks share the PETSc solves of this program (1 unless `petsc_serve`
    was called under `mpiexec -n P`, P > 1)."""
    return petsc_mpi.ranks()


def petsc_peak_memory() -> list[int]:
    """The peak resident memory of each rank that takes part in PETSc solves, in bytes
    (rank 0 first; one entry without `mpiexec`)."""
    require_petsc4py()
    return _host.run(lambda: petsc_mpi.channel().peak_memory())


def petsc_held_memory() -> list[int]:
    """The memory held by the live PETSc objects (matrices, hierarchies, factorizations) of
    each rank, in bytes (rank 0 first): how much each rank's heap grew when they were set
    up. Under `mpiexec -n P` it shows how a factorization or hierarchy is split."""
    require_petsc4py()
    return _host.run(lambda: petsc_mpi.channel().held_memory())
