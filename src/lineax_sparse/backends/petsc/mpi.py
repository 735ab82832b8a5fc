"""Where PETSc's work runs: in this process, or across the ranks of `mpiexec`.

`serve()` (public as `lineax_sparse.petsc_serve`) is called near the top of a program by
every rank. On rank 0 it returns at once and the program goes on; on every other rank it
serves rank 0's PETSc work until rank 0 finishes, then ends the process. Rank 0's owner
thread then talks to the workers through a `Distributed` channel (`channels.py`, which
holds both sides of the exchange); without `serve()`, or on one rank, the `Local` channel
makes sequential PETSc objects in this process. `channel()` is the one of this process.

Ranks that did not call `serve()` are refused (`check_served`), and no rank is ever left
waiting: why, and how each way a program can end releases the others, is in
`docs/backends/petsc.md` ("Several ranks").
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from .. import lifecycle
from . import objects as _petsc_objects
from .channels import COMMAND, Distributed, Local, serve_worker
from .objects import INSTALL_HINT, petsc


_lock = threading.Lock()
_channel: Any = None  # the channel every PETSc factor of this process uses
_world: Any = None  # (pkl5 communicator, size) on a rank 0 that serves workers
_served = False
_refused = False  # whether `check_served` raised here (and registered `_release_servers`)


def _mpi():
    try:
        from mpi4py import MPI
        from mpi4py.util import pkl5
    except ImportError as error:
        raise ImportError(
            "`lineax_sparse.petsc_serve` needs mpi4py, built against the MPI that PETSc "
            "uses. " + INSTALL_HINT
        ) from error
    return MPI, pkl5


def serve(exit: bool = True) -> int:
    """Make the ranks of `mpiexec` serve rank 0's PETSc solves; see `lineax_sparse.petsc_serve`."""
    global _world, _served
    if _launched_ranks() <= 1 and not _importable("mpi4py"):
        return 0  # a plain process: nothing to serve, whatever is installed
    MPI, pkl5 = _mpi()
    with _lock:
        if _served:
            return MPI.COMM_WORLD.Get_rank()
        if _channel is not None:
            raise RuntimeError(
                "`lineax_sparse.petsc_serve()` must be called before the first PETSc solve "
                "(near the top of the program, on every rank)."
            )
        _served = True
    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    if size == 1:
        return 0
    comm = pkl5.Intracomm(world)
    if rank == 0:
        _world = (comm, size)
        _petsc_objects.before_initialize = _initialize_workers
        atexit.register(_stop_workers)
        return 0
    serve_worker(comm, world)
    if exit:
        # The user's program must not run on a worker: end here, finalizing PETSc and MPI.
        sys.exit(0)
    return rank


def _initialize_workers() -> None:
    """Rank 0, just before it initializes PETSc: the workers initialize it with it."""
    comm, size = _world
    for rank in range(1, size):
        comm.send(("init",), dest=rank, tag=COMMAND)


#: What MPI launchers tell each process: Open MPI, MPICH / Intel MPI (PMI), PMIx.
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def _launched_ranks() -> int:
    """The number of ranks `mpiexec` started (1 without a launcher): from MPI if this
    process initialized it already (with mpi4py), else from the launcher's environment."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
        return MPI.COMM_WORLD.Get_size()
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def channel() -> Local:
    """The channel of this process (on its owner thread), made on first use."""
    global _channel
    if _channel is None:
        # Before PETSc is initialized: `PetscInitialize` is collective, and workers that
        # serve a rank 0 that did not call `serve()` never join it (they wait for "init").
        check_served()
        # MPI's own size, once PETSc initialized it: a launcher whose environment
        # `_launched_ranks` does not know.
        check_served(petsc().COMM_WORLD.getSize())
    with _lock:
        if _channel is None:
            _channel = Local() if _world is None else Distributed(*_world)
            # Registered after petsc4py's own exit handler, so it runs first: every object
            # is destroyed (and the workers stopped) while PETSc and MPI are alive, on the
            # owner thread, after in-flight solves.
            lifecycle.at_exit(_channel.close)
        return _channel


def _stop_workers() -> None:
    """Rank 0's exit: stop the workers even if no PETSc solve ever ran."""
    if _channel is None:
        MPI, _ = _mpi()
        comm, size = _world
        if not MPI.Is_finalized():
            for rank in range(1, size):
                comm.send(("stop",), dest=rank, tag=COMMAND)
    # Otherwise the channel's own exit hook (registered later, so run earlier) stopped them.


def check_served(size: int | None = None) -> None:
    """Raise unless PETSc may run here: this process is not one of several MPI ranks
    (`size`, or the launcher's count), or it called `serve()` as rank 0."""
    global _refused
    size = _launched_ranks() if size is None else size
    if size <= 1 or _world is not None:
        return
    if not _refused:
        _refused = True
        atexit.register(_release_servers)
    if _served:  # a worker whose `serve(exit=False)` returned
        raise RuntimeError(
            "`lineax_sparse.PETSc` solves on rank 0 only: this rank served with "
            "`lineax_sparse.petsc_serve(exit=False)`, which returned when rank 0 ended; it "
            "must not solve afterwards (end the process instead)."
        )
    raise RuntimeError(
        f"`lineax_sparse.PETSc` was used in a program launched on {size} MPI ranks, but "
        "this rank did not call `lineax_sparse.petsc_serve()`: call `lxs.petsc_serve()` "
        "near the top of the program, on every rank, before the first solve. Rank 0 then "
        "runs the program and the other ranks serve its PETSc solves, which are shared "
        "between them. Without it, ranks waiting to serve would never exit, and ranks "
        "running the program would each solve alone."
    )


def _release_servers() -> None:
    """A refused rank 0's exit: stop the ranks that serve it (they called `serve()`, it
    did not), or `MPI_Finalize` would wait for them forever.

    Only when MPI is initialized already (by the user's mpi4py or by PETSc): initializing
    it here would wait forever for ranks that never do (measured: Open MPI 4.1's
    `MPI_Init` on one rank of two, the other exited without MPI). Ranks that are not
    serving (they were refused too) leave the message unread.
    """
    if _world is not None:
        return  # `serve()` was called after all: its own exit hook stops the workers
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None:
        if "petsc4py.PETSc" not in sys.modules or not _importable("mpi4py"):
            return
        from mpi4py import MPI  # initialized by PETSc: importing it initializes nothing
    if not MPI.Is_initialized() or MPI.Is_finalized():
        return
    world = MPI.COMM_WORLD
    if world.Get_rank() != 0:
        return
    from mpi4py.util import pkl5

    comm = pkl5.Intracomm(world)
    for rank in range(1, world.Get_size()):
        comm.send(("stop",), dest=rank, tag=COMMAND)


def ranks() -> int:
    """How many ranks share PETSc's work: `mpiexec`'s size after `serve()`, else 1."""
    return 1 if _world is None else _world[1]
