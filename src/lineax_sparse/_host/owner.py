"""The single owner thread on which all native work runs; callers block until it is done.

It exists because XLA calls callbacks from several threads while native libraries need one
(scipy leaks a SuperLU factor freed on another thread; cvxopt's CHOLMOD has one global
`cholmod_common`). It also drains in-flight work at exit, survives `fork` (stopped before,
replaced in the child) and tunes glibc's allocator at the first native call: the reasons
and measurements are in the README's Design section ("One owner thread", "glibc's
allocator"); the details of exit and fork beside the functions that do them.
"""

from __future__ import annotations

import _thread
import atexit
import ctypes
import os
import platform
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from ..backends import lifecycle


_T = TypeVar("_T")


class _Job:
    __slots__ = ("fn", "args", "done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple):
        self.fn, self.args = fn, args
        # A bare lock, held until the job is done: the cheapest way to wait for it (an
        # Event's condition variable costs more per job, and solves are many and short).
        self.done = _thread.allocate_lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None


_jobs: queue.SimpleQueue = queue.SimpleQueue()
_exit_hooks: list[Callable[[], None]] = []
_fork_hooks: list[Callable[[], None]] = []
_in_flight = 0
_in_flight_lock = threading.Lock()
_start_lock = threading.Lock()
_owner: threading.Thread | None = None
#: Work to run on a new owner thread before any other (the release of inherited objects).
_first_jobs: list[tuple[Callable[..., Any], tuple]] = []


def _subnormals_work() -> bool:
    tiny = float.fromhex("0x0.0000000000001p-1022")  # the smallest subnormal double
    return tiny * 2.0 > 0.0


def _default_floating_point_environment() -> None:
    """Clear flush-to-zero / denormals-are-zero on this thread.

    A thread inherits its creator's floating-point environment, and the owner thread is
    started from whichever thread first needs it, often one of XLA's, which run with
    subnormals flushed to zero. Native work must see subnormal values as they are (an
    equilibrated matrix may hold them for a moment; a subnormal matrix must solve).
    """
    if _subnormals_work() or sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        fesetenv = ctypes.CDLL(None).fesetenv
    except (OSError, AttributeError):
        return
    fesetenv.argtypes, fesetenv.restype = [ctypes.c_void_p], ctypes.c_int
    fesetenv(ctypes.c_void_p(-1))  # glibc's FE_DFL_ENV


_STOP = object()  # a job that ends the owner thread (before a fork)


def _serve() -> None:
    _default_floating_point_environment()
    while True:
        job = _jobs.get()
        if job is _STOP:
            return
        try:
            job.result = job.fn(*job.args)
        except BaseException as error:  # handed back to the caller, re-raised there
            # Keep file and line of every frame but drop their locals, which may hold
            # native objects that must not be released on the caller's thread.
            traceback.clear_frames(error.__traceback__)
            job.error = error
        finally:
            # Drop references here so that native objects are released on this thread.
            job.fn = job.args = None  # type: ignore[assignment]
            job.done.release()


def _start_owner() -> threading.Thread:
    """The running owner thread, started on first use (in this process)."""
    global _owner
    with _start_lock:
        if _owner is None or not _owner.is_alive():
            _owner = threading.Thread(target=_serve, name="lineax-sparse-host", daemon=True)
            _owner.start()
            while _first_jobs:
                fn, args = _first_jobs.pop(0)
                _jobs.put(_Job(fn, args))  # runs first; nobody waits for it
        return _owner


#: None until the first native call; then whether `mallopt` was applied (module docstring).
malloc_tuned: bool | None = None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES, _TRIM_THRESHOLD_BYTES = 32 << 20, 128 << 20


def _tune_malloc() -> bool:
    if os.environ.get("LINEAX_SPARSE_MALLOC_TUNING", "1").strip() in ("0", "false", "no"):
        return False
    if "GLIBC_TUNABLES" in os.environ or any(name.startswith("MALLOC_") for name in os.environ):
        return False  # the user tunes malloc already
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    )


def run(fn: Callable[..., _T], *args) -> _T:
    """Run `fn(*args)` on the owner thread and return its result (or raise its error)."""
    global _in_flight, malloc_tuned
    if malloc_tuned is None:
        malloc_tuned = _tune_malloc()
    if threading.current_thread() is _owner:
        return fn(*args)
    owner = _start_owner()
    with _in_flight_lock:
        _in_flight += 1
    try:
        job = _Job(fn, args)
        _jobs.put(job)
        # Never wait on a thread that is gone (stopped for a fork while this job was
        # queued): start a new one, which takes the job from the queue.
        while not job.done.acquire(timeout=0.5):
            if not owner.is_alive():
                owner = _start_owner()
        if job.error is not None:
            raise job.error
        result, job.result = job.result, None
        return result
    finally:
        with _in_flight_lock:
            _in_flight -= 1


def _drain(quiet: float = 0.05, timeout: float = 60.0) -> None:
    """Wait until dispatched computations are done and no host work ran for `quiet` s."""
    try:
        import jax

        for array in jax.live_arrays():
            try:
                array.block_until_ready()
            except Exception:  # a failed computation is no reason to hang the exit
                pass
    except Exception:
        pass
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        if _in_flight:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= quiet:
            return
        time.sleep(0.005)


def at_exit(hook: Callable[[], None]) -> None:
    """Run `hook` on the owner thread at interpreter exit, after in-flight work is done.

    Native objects must be released on the thread that made them: a SuperLU factor freed
    by the main thread during finalization corrupts the interpreter's shutdown.
    """
    _exit_hooks.append(hook)


def run_at_exit(hook: Callable[[], None]) -> None:
    """Wait for in-flight work as the exit does, then run `hook` on the owner thread.

    For exit handlers registered after this module's own (so run before it): a native
    library initialized late (PETSc) registers its finalization then, and its objects must
    be released before that runs.
    """
    if not _forked:
        _drain()
    run(hook)


def at_fork(hook: Callable[[], None]) -> None:
    """Call `hook()` in the child after a fork (it must not block; no thread is running)."""
    _fork_hooks.append(hook)


def release_in_child(fn: Callable[..., Any], *args) -> None:
    """Run `fn(*args)` on the child's owner thread as soon as it starts (from a fork hook)."""
    _first_jobs.append((fn, args))


def _before_fork() -> None:
    """Stop an idle owner thread before a fork (it is restarted on next use).

    A thread that has run scipy's SuperLU and is alive at a fork makes CPython's own
    after-fork handler in the child fail noisily ("SystemError: ... returned a result
    with an exception set"); with the thread stopped the child starts clean. Work in
    progress is waited for, at most `_FORK_WAIT` seconds.
    """
    owner = _owner
    if owner is None or not owner.is_alive() or threading.current_thread() is owner:
        return
    _jobs.put(_STOP)  # type: ignore[arg-type]
    owner.join(_FORK_WAIT)


_FORK_WAIT = 10.0


def _after_fork_in_child() -> None:
    global _jobs, _in_flight, _in_flight_lock, _start_lock, _owner, _forked
    _jobs = queue.SimpleQueue()
    _in_flight = 0
    _in_flight_lock = threading.Lock()
    _start_lock = threading.Lock()
    _owner = None
    _forked = True
    for hook in _fork_hooks:
        hook()


_forked = False

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _shutdown() -> None:
    if not _forked:  # JAX does not work in a forked child: nothing of it to wait for
        _drain()
    for hook in _exit_hooks:
        run(hook)


atexit.register(_shutdown)


lifecycle.install_exit_runner(run_at_exit)
