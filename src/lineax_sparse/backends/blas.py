"""`single_threaded_blas`: BLAS held to one thread around native work; `parallel_run`: the
same for a run of native calls side by side on the pool's threads, which backends with their
own threads (PARDISO's) ask about (`in_parallel_run`) to take one thread each."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import threadpoolctl


_blas_controller: threadpoolctl.ThreadpoolController | None = None


class _SingleThreadedBlas:
    """Every BLAS library held to one thread inside the context, restored after.

    threadpoolctl finds the libraries (once: ~6 ms); their thread counts are then read and
    set directly (a ctypes call each), which costs a few microseconds where
    `ThreadpoolController.limit` cost 11-50: a stiff ODE integration makes thousands of
    small solves. Nested contexts restore only what the outermost changed.
    """

    __slots__ = ("_saved",)

    def __enter__(self):
        global _blas_controller
        if _blas_controller is None:
            _blas_controller = threadpoolctl.ThreadpoolController()
        libraries = [lib for lib in _blas_controller.lib_controllers if lib.user_api == "blas"]
        self._saved = [(lib, lib.num_threads) for lib in libraries]
        for lib, threads in self._saved:
            if threads != 1:
                lib.set_num_threads(1)
        return self

    def __exit__(self, *exc_info):
        for lib, threads in self._saved:
            if threads != 1:
                lib.set_num_threads(threads)
        return False


def single_threaded_blas() -> _SingleThreadedBlas:
    """A context holding BLAS to one thread around native work.

    Threaded BLAS gains little in triangular solves and multigrid cycles and is up to 10x
    slower when other processes (or XLA's own threads) compete for the cores.
    """
    return _SingleThreadedBlas()


_parallel_lock = threading.Lock()
_parallel_runs = 0


@contextlib.contextmanager
def parallel_run() -> Iterator[None]:
    """The context of native calls running side by side on several threads: BLAS held to
    one thread throughout, and `in_parallel_run()` true, so that a library with threads of
    its own runs each call on one (the pool's threads already use the cores)."""
    global _parallel_runs
    with _parallel_lock:
        _parallel_runs += 1
    try:
        with single_threaded_blas():
            yield
    finally:
        with _parallel_lock:
            _parallel_runs -= 1


def in_parallel_run() -> bool:
    """Whether native calls are running side by side on the pool's threads now."""
    return _parallel_runs > 0
