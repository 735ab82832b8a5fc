"""How many threads a PARDISO call runs on: the library's thread setting, one inside a batch.

MKL's thread-local setting (`mkl_set_num_threads_local`) is set around every call, so that
nothing else in the process that uses MKL is affected. The number follows
`lineax_sparse.set_num_threads`: the solver class installs the host's setting here
(`follow`), since a backend does not import the host. While another PARDISO call runs on
another thread, or inside a parallel batch (`blas.in_parallel_run`), a call takes one thread,
so that the pool's threads do not oversubscribe the cores. The number of threads never
changes the result: PARDISO runs in its reproducible mode (`iparm[33]`), the same bits on
any number of threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from .. import blas
from . import library


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_source: Callable[[], int] = _cores
_lock = threading.Lock()
_running = 0


def follow(source: Callable[[], int]) -> None:
    """Take the number of threads from `source` (the host's `num_threads`) from now on."""
    global _source
    _source = source


class for_call:
    """The context of one PARDISO call: MKL held to the threads it may use."""

    __slots__ = ("_threads",)

    def __enter__(self):
        global _running
        with _lock:
            alone = _running == 0 and not blas.in_parallel_run()
            _running += 1
        self._threads = library.local_threads(max(1, _source()) if alone else 1)
        self._threads.__enter__()
        return self

    def __exit__(self, *exc_info):
        global _running
        self._threads.__exit__(*exc_info)
        with _lock:
            _running -= 1
        return False
