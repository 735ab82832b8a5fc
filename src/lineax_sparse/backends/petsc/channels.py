"""The exchange between rank 0 and PETSc's worker ranks: both sides of it.

Rank 0's owner thread reaches its PETSc objects through a channel: `Local` makes sequential
objects in this process (`COMM_SELF`); `Distributed` sends every operation to the workers
and takes rank 0's own share of it, collectively on `MPI_COMM_WORLD`: it sends each worker
its rows of a matrix (consecutive rows, CSR with global column indices, assembled into
PETSc's parallel AIJ), and gathers the solutions. `serve_worker` is a worker's side: it
does rank 0's commands until told to stop. When and where each side runs (launching,
refusal, exit): `mpi.py`.

A worker waits for commands by probing with sleeps (20 us growing to 2 ms), not in a
blocking receive, so that an idle worker does not spin a core that rank 0's JAX program
needs; one that fails outside PETSc (a bug) still replies, with a failure status, and keeps
serving, so rank 0 never waits for a reply that will not come. Objects are freed by rank
0's factors' finalizers, which only queue their ids (a finalizer can run in the middle of
another exchange); the queue is flushed, locally and to every worker, at the start of the
next operation and at exit.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from ..status import Status
from .objects import Config, Objects, peak_resident, petsc


#: MPI tags of rank 0's commands and of the workers' replies.
COMMAND, REPLY = 7301, 7302
_POLL_FIRST, _POLL_MOST = 20e-6, 2e-3


def serve_worker(comm, world) -> None:
    """A worker rank's side: do rank 0's commands on this rank's share until "stop"."""
    objects = Objects()
    pause = _POLL_FIRST
    while True:
        if not world.Iprobe(source=0, tag=COMMAND):
            time.sleep(pause)
            pause = min(2 * pause, _POLL_MOST)
            continue
        pause = _POLL_FIRST
        command = comm.recv(source=0, tag=COMMAND)
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
            comm.send(answer, dest=0, tag=REPLY)


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
        self.comm.send(command, dest=rank, tag=COMMAND)

    def _replies(self) -> list[Any]:
        answers = [self.comm.recv(source=rank, tag=REPLY) for rank in range(1, self.ranks)]
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
