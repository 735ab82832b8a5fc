"""Where PETSc's work runs: in this process, or across the ranks of `mpiexec`.

`serve()` (public as `lineax_sparse.petsc_serve`) is called near the top of a program by
every rank. On rank 0 it returns at once and the program goes on; on every other rank it
serves rank 0's PETSc work until rank 0 finishes, then ends the process. Rank 0's owner
thread then talks to the workers through a `Distributed` channel: it sends each one its
rows of a matrix (consecutive rows, CSR with global column indices, assembled into
PETSc's parallel AIJ on `MPI_COMM_WORLD`), takes its own share of every collective
operation (setup, solve), and gathers the solutions. Without `serve()`, or on one rank,
the `Local` channel makes sequential PETSc objects in this process.

A rank of a several-rank launch that uses PETSc without having called `serve()` is refused
(`check_served`: at trace time from the launcher's environment, and again on the host from
MPI's own size). Neither joining nor going on alone is safe there: the other ranks may be
serving (they called `serve()`, this rank did not) and would wait for it forever, or running
the program themselves, each solving alone what the user meant to share, and only an
exchange with a timeout could tell which.

Nothing can be left hanging:

- rank 0 sends "stop" from an `atexit` hook (a normal end, `sys.exit`, or an uncaught
  exception), after its in-flight solves; the workers free their objects and exit;
- a rank 0 that dies without finalizing MPI (killed, `os._exit`) makes `mpiexec` end the
  job (Open MPI and MPICH both abort the other ranks when one exits without
  `MPI_Finalize`);
- a worker waits for commands by probing with sleeps (20 us growing to 2 ms), not in a
  blocking receive, so an idle worker does not spin a core that rank 0's JAX program needs;
- a worker initializes PETSc only when rank 0 does (rank 0 sends "init" first:
  `PetscInitialize` is collective), so a rank 0 that never solves leaves no worker waiting
  inside it;
- a worker that fails outside PETSc (a bug) still replies, with a failure status, and keeps
  serving: rank 0 never waits for a reply that will not come;
- a refused rank 0 (above) whose MPI is initialized stops, at its exit, any worker that
  serves it, or `MPI_Finalize` would wait for them forever; one whose MPI is not initialized
  ends with the error, and `mpiexec` ends the job on a non-zero exit status.

Objects are freed by rank 0's factors' finalizers, which only queue their ids (a
finalizer can run in the middle of another exchange); the queue is flushed, locally and
to every worker, at the start of the next operation and at exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np

from .. import lifecycle
from ..status import Status
from . import objects as _petsc_objects
from .objects import Config, INSTALL_HINT, Objects, peak_resident, petsc


_COMMAND, _REPLY = 7301, 7302
_POLL_FIRST, _POLL_MOST = 20e-6, 2e-3

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
    _serve_worker(comm, world)
    if exit:
        # The user's program must not run on a worker: end here, finalizing PETSc and MPI.
        sys.exit(0)
    return rank


def _initialize_workers() -> None:
    """Rank 0, just before it initializes PETSc: the workers initialize it with it."""
    comm, size = _world
    for rank in range(1, size):
        comm.send(("init",), dest=rank, tag=_COMMAND)


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


def _serve_worker(comm, world) -> None:
    objects = Objects()
    pause = _POLL_FIRST
    while True:
        if not world.Iprobe(source=0, tag=_COMMAND):
            time.sleep(pause)
            pause = min(2 * pause, _POLL_MOST)
            continue
        pause = _POLL_FIRST
        command = comm.recv(source=0, tag=_COMMAND)
        operation, arguments, reply = command[0], command[1:], True
        try:
            if operation == "stop":
                objects.free_all()
                return
            if operation == "init":  # with rank 0 (collective), on this (the main) thread
                petsc()
                reply = False
            elif operation == "free":
                objects.free(arguments[0])
                reply = False
            elif operation == "build":
                answer = objects.build(True, *arguments)
            elif operation == "build_transposed":
                answer = objects.build_transposed(True, *arguments)
            elif operation == "solve":
                answer = objects.solve(*arguments)
            elif operation == "peak":
                answer = peak_resident()
            elif operation == "held":
                answer = objects.held()
            else:
                answer = (int(Status.BREAKDOWN), f"unknown command {operation!r}", 0)
        except Exception:  # noqa: BLE001 - a bug must not leave rank 0 waiting
            answer = ("error", traceback.format_exc())
        if reply:
            comm.send(answer, dest=0, tag=_REPLY)


class WorkerError(RuntimeError):
    """A worker rank failed outside PETSc (a bug); carries its traceback."""


class Local:
    """PETSc objects in this process only (`COMM_SELF`)."""

    ranks = 1

    def __init__(self) -> None:
        self.objects = Objects()
        self._pending: list[int] = []

    def release(self, ident: int) -> None:
        """Queue `ident` to be freed (any thread; from a finalizer)."""
        self._pending.append(ident)

    def _take_pending(self) -> list[int]:
        # `list.pop` is atomic: a finalizer appending meanwhile loses nothing.
        pending = []
        while self._pending:
            pending.append(self._pending.pop())
        return pending

    def flush(self) -> None:
        pending = self._take_pending()
        if pending:
            self.objects.free(pending)

    def build(self, ident, n, csr, nullspace, config: Config):
        self.flush()
        return self.objects.build(False, ident, n, *csr, nullspace, config)

    def build_transposed(self, ident, n, csr, nullspace):
        self.flush()
        return self.objects.build_transposed(False, ident, n, *csr, nullspace)

    def solve(self, ident, mode, b, x0, rtol, atol, max_steps):
        self.flush()
        return self.objects.solve(ident, mode, b, x0, rtol, atol, max_steps)

    def peak_memory(self) -> list[int]:
        return [peak_resident()]

    def held_memory(self) -> list[int]:
        self.flush()
        return [self.objects.held()]

    def close(self) -> None:
        self.flush()
        self.objects.free_all()


class Distributed(Local):
    """Rank 0's side: every operation sent to the workers and done collectively."""

    def __init__(self, comm, size: int) -> None:
        super().__init__()
        self.comm, self.ranks = comm, size
        self.closed = False

    def _send(self, rank: int, *command) -> None:
        self.comm.send(command, dest=rank, tag=_COMMAND)

    def _replies(self) -> list[Any]:
        answers = [self.comm.recv(source=rank, tag=_REPLY) for rank in range(1, self.ranks)]
        for answer in answers:
            if isinstance(answer, tuple) and answer and isinstance(answer[0], str):
                raise WorkerError(f"a PETSc worker rank failed:\n{answer[1]}")
        return answers

    def flush(self) -> None:
        pending = self._take_pending()
        if pending and not self.closed:
            for rank in range(1, self.ranks):
                self._send(rank, "free", pending)
            self.objects.free(pending)

    def bounds(self, n: int, block_size: int) -> np.ndarray:
        """First row of each rank, and n: blocks of `block_size` rows split evenly."""
        blocks = n // block_size
        counts = np.full(self.ranks, blocks // self.ranks)
        counts[: blocks % self.ranks] += 1
        return np.concatenate([[0], np.cumsum(counts)]) * block_size

    @staticmethod
    def _rows(csr, nullspace, start: int, stop: int):
        indptr, indices, values = csr
        low, high = int(indptr[start]), int(indptr[stop])
        part = (indptr[start : stop + 1] - low, indices[low:high], values[low:high])
        return part, None if nullspace is None else nullspace[start:stop]

    def _collective_build(self, operation, ident, n, csr, nullspace, config, block_size):
        self.flush()
        bounds = self.bounds(n, block_size)
        for rank in range(1, self.ranks):
            part, space = self._rows(csr, nullspace, bounds[rank], bounds[rank + 1])
            extra = (config,) if operation == "build" else ()
            self._send(rank, operation, ident, n, *part, space, *extra)
        part, space = self._rows(csr, nullspace, bounds[0], bounds[1])
        if operation == "build":
            mine = self.objects.build(True, ident, n, *part, space, config)
        else:
            mine = self.objects.build_transposed(True, ident, n, *part, space)
        answers = [mine] + self._replies()
        failed = [answer for answer in answers if answer[0] != Status.OK]
        if failed:
            if operation == "build":  # a rank that succeeded frees its share
                self.release(ident)
            return failed[0][0], failed[0][1], 0
        return int(Status.OK), "", sum(answer[2] for answer in answers)

    def build(self, ident, n, csr, nullspace, config: Config):
        return self._collective_build("build", ident, n, csr, nullspace, config, config[4])

    def build_transposed(self, ident, n, csr, nullspace):
        block_size = self.objects.local[ident].config[4]
        return self._collective_build(
            "build_transposed", ident, n, csr, nullspace, None, block_size
        )

    def solve(self, ident, mode, b, x0, rtol, atol, max_steps):
        self.flush()
        n = b.shape[0]
        bounds = self.bounds(n, self.objects.local[ident].config[4])
        for rank in range(1, self.ranks):
            rows = slice(bounds[rank], bounds[rank + 1])
            start = None if x0 is None else x0[rows]
            self._send(rank, "solve", ident, mode, b[rows], start, rtol, atol, max_steps)
        rows = slice(bounds[0], bounds[1])
        x, reason, steps, message = self.objects.solve(
            ident, mode, b[rows], None if x0 is None else x0[rows], rtol, atol, max_steps
        )
        answers = self._replies()
        parts = [x] + [answer[0] for answer in answers]
        message = message or next((answer[3] for answer in answers if answer[3]), "")
        return np.concatenate(parts), reason, steps, message

    def peak_memory(self) -> list[int]:
        for rank in range(1, self.ranks):
            self._send(rank, "peak")
        return [peak_resident()] + self._replies()

    def held_memory(self) -> list[int]:
        self.flush()
        for rank in range(1, self.ranks):
            self._send(rank, "held")
        return [self.objects.held()] + self._replies()

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        # Destroying a distributed object is collective (MUMPS duplicates a communicator):
        # the workers are told first and destroy theirs in the same order.
        for rank in range(1, self.ranks):
            self._send(rank, "stop")
        self.objects.free_all()
        self.closed = True


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
                comm.send(("stop",), dest=rank, tag=_COMMAND)
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
        comm.send(("stop",), dest=rank, tag=_COMMAND)


def ranks() -> int:
    """How many ranks share PETSc's work: `mpiexec`'s size after `serve()`, else 1."""
    return 1 if _world is None else _world[1]
