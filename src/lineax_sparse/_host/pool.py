"""The worker pool: how many threads the host uses, and `run_parallel` to use them.

A vmapped batch of distinct matrices (a material sweep, a Monte Carlo batch, independent
systems) makes independent factorizations and solves. The owner thread (worker 0) keeps the
bookkeeping; the native work of the batch runs on workers 0, 1, ... side by side, for the
backends whose native calls release the GIL and share no state (`AbstractBackend.parallel`).

The number of threads is the number of cores this process may run on, or the environment
variable `LINEAX_SPARSE_NUM_THREADS` when the package is imported, or `set_num_threads`.
During a parallel run, numpy's and scipy's BLAS are held to one thread (as backends hold it
around every native call), so that the pool's threads do not oversubscribe the cores
(cvxopt's bundled OpenBLAS is single-threaded already).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..backends.blas import parallel_run
from . import owner


NUM_THREADS_VARIABLE = "LINEAX_SPARSE_NUM_THREADS"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; `os.cpu_count()` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _threads_from_environment() -> int:
    text = os.environ.get(NUM_THREADS_VARIABLE, "").strip()
    if not text:
        return available_cores()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"The environment variable {NUM_THREADS_VARIABLE} must be a positive integer "
            f"(the number of threads lineax-sparse runs native work on), got {text!r}."
        )
    return value


_num_threads = _threads_from_environment()


def set_num_threads(threads: int | None) -> None:
    """Set how many threads lineax-sparse runs native work on.

    The independent factorizations and solves of a vmapped batch (distinct matrices: a
    material sweep, independent systems, patterns equal or not) run on up to this many
    threads at once, for the solvers whose native library allows it (`SuperLU`, `Cholmod`;
    `AMG`'s pyamg kernels hold Python's GIL, so its matrices run one after another). A
    single matrix always runs on one thread. Results do not depend on the number of
    threads. BLAS is held to one thread meanwhile, so that the threads do not
    oversubscribe the cores.

    The default is the number of cores the process may run on, or the environment variable
    `LINEAX_SPARSE_NUM_THREADS` when the package is imported.

    **Arguments:**

    - `threads`: a positive integer, or None for the default (the cores available).
    """
    global _num_threads
    if threads is None:
        threads = available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"`set_num_threads(threads=...)` must be a positive integer or None, got {threads!r}."
        )
    _num_threads = threads


def num_threads() -> int:
    """The number of threads lineax-sparse runs native work on (see `set_num_threads`)."""
    return _num_threads


def run_parallel(
    tasks: Sequence[Callable[[], Any]], threads: int | None = None
) -> list[tuple[bool, Any, int]]:
    """Run independent `tasks` on the owner (which calls this) and up to `threads - 1` other
    workers; for each task in order, `(ok, result or exception, worker index)`.

    Tasks are taken in order by whichever worker is free, so that uneven tasks balance. A
    task's exception is returned, not raised (the caller reports it as a status).
    """
    threads = min(len(tasks), _num_threads if threads is None else threads)
    results: list[Any] = [None] * len(tasks)
    pending = collections.deque(range(len(tasks)))

    def work() -> None:
        worker = owner.current_worker()
        while True:
            try:
                index = pending.popleft()
            except IndexError:
                return
            try:
                results[index] = (True, tasks[index](), worker)
            except Exception as error:  # noqa: BLE001 - returned to the caller
                results[index] = (False, error, worker)

    if threads <= 1:
        work()
        return results
    # Backends hold BLAS to one thread around their native calls; held here for the whole
    # run, so that one thread's restoring never lets another's BLAS spread meanwhile, and
    # PARDISO's own threads are held to one per call.
    with parallel_run():
        jobs = [(index, owner.submit(index, work)) for index in range(1, threads)]
        work()
        for index, job in jobs:
            owner.wait(job, index)
    return results
