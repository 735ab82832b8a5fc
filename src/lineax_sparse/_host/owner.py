"""The owner thread on which native work runs, and the worker threads beside it.

The owner (worker 0) exists because XLA calls callbacks from several threads while native
libraries need one owner per object (scipy leaks a SuperLU factor freed on another thread;
cvxopt's CHOLMOD has one global `cholmod_common`): every host call runs on it, callers
block until it is done. Workers 1, 2, ... run the independent native work of a batch beside
it (`pool.py`); each native object is released on the worker that made it (`release_on`).
The owner also drains in-flight work at exit, survives `fork` (workers stopped before,
replaced in the child) and tunes glibc's allocator at the first native call: the reasons
and measurements are in docs/design.md and docs/guides/threads.md; the details of exit
and fork beside the functions that do them.
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


class _Worker:
    """A thread that runs the native work handed to it, in order; worker 0 is the owner."""

    def __init__(self, index: int):
        self.index = index
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


_workers: list[_Worker] = [_Worker(0)]
_local = threading.local()  # `index`: the worker this thread is, on worker threads
_exit_hooks: list[Callable[[], None]] = []
_fork_hooks: list[Callable[[], None]] = []
_in_flight = 0
_in_flight_lock = threading.Lock()
_start_lock = threading.Lock()
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


def _serve(worker: _Worker) -> None:
    _default_floating_point_environment()
    _local.index = worker.index
    jobs = worker.jobs
    while True:
        job = jobs.get()
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


def _start(index: int) -> _Worker:
    """The running worker `index` (0: the owner), started on first use (in this process)."""
    with _start_lock:
        while len(_workers) <= index:
            _workers.append(_Worker(len(_workers)))
        worker = _workers[index]
        if not worker.alive():
            name = "lineax-sparse-host" + (f"-{index}" if index else "")
            worker.thread = threading.Thread(target=_serve, args=(worker,), name=name, daemon=True)
            worker.thread.start()
            while index == 0 and _first_jobs:
                fn, args = _first_jobs.pop(0)
                worker.jobs.put(_Job(fn, args))  # runs first; nobody waits for it
        return worker


def current_worker() -> int | None:
    """The index of the worker thread this runs on (0: the owner), or None elsewhere."""
    return getattr(_local, "index", None)


def submit(index: int, fn: Callable[..., Any], *args) -> _Job:
    """Queue `fn(*args)` on worker `index` (started if needed); `wait` for its result."""
    job = _Job(fn, args)
    _start(index).jobs.put(job)
    return job


def wait(job: _Job, index: int) -> Any:
    """The result of a `submit`ted job (or its error, raised), once worker `index` ran it."""
    while not job.done.acquire(timeout=0.5):
        # Never wait on a thread that is gone (stopped for a fork while this job was
        # queued): start a new one, which takes the job from the queue.
        if not _workers[index].alive():
            _start(index)
    if job.error is not None:
        raise job.error
    result, job.result = job.result, None
    return result


def release_on(index: int, obj: Any) -> bool:
    """Hand `obj` to worker `index`, to be dropped there: a native object is released on
    the thread that made it (scipy leaks a SuperLU factor freed on another thread: 750 MB
    per 300 factors of Poisson 200^2, made on a pool thread and freed on another). False,
    and the caller drops it, when this is that thread or that worker is gone."""
    if index == current_worker() or index >= len(_workers) or not _workers[index].alive():
        return False
    _workers[index].jobs.put(_Job(_drop, (obj,)))
    return True


def _drop(obj: Any) -> None:
    del obj


#: None until the first native call; then whether `mallopt` was applied (module docstring).
malloc_tuned: bool | None = None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's largest settable mmap threshold (half its 64 MiB heaps).
_MMAP_THRESHOLD_BYTES = 32 << 20
#: Freed memory each allocator arena keeps for reuse: set from the cache budget when the
#: registry is made (`keep_freed_memory`).
trim_threshold_bytes = 128 << 20


def keep_freed_memory(cache_limit: int) -> None:
    """Keep up to a quarter of the cache budget of freed memory per allocator arena (at
    least 128 MiB, at most 1 GiB), so that a batch remakes its factorizations in the
    memory the previous batch's freed, instead of faulting fresh pages in: the 32-material
    sweep of examples/batched_solves.py faulted 170 MB per call with 128 MiB (its batch on
    two threads 0.86x the Python loop's time, 0.59x with 1 GiB; docs/guides/batches.md).
    Takes effect at the first native call."""
    global trim_threshold_bytes
    trim_threshold_bytes = min(1 << 30, max(128 << 20, cache_limit // 4))


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
        and mallopt(_M_TRIM_THRESHOLD, trim_threshold_bytes)
    )


def run(fn: Callable[..., _T], *args) -> _T:
    """Run `fn(*args)` on the owner thread and return its result (or raise its error)."""
    global _in_flight, malloc_tuned
    if malloc_tuned is None:
        malloc_tuned = _tune_malloc()
    if current_worker() == 0:
        return fn(*args)
    with _in_flight_lock:
        _in_flight += 1
    try:
        return wait(submit(0, fn, *args), 0)
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
    """Stop the idle worker threads before a fork (they are restarted on next use).

    A thread that has run scipy's SuperLU and is alive at a fork makes CPython's own
    after-fork handler in the child fail noisily ("SystemError: ... returned a result
    with an exception set"); with the thread stopped the child starts clean. Work in
    progress is waited for, at most `_FORK_WAIT` seconds.
    """
    if current_worker() is not None:
        return
    running = [worker for worker in _workers if worker.alive()]
    for worker in running:
        worker.jobs.put(_STOP)  # type: ignore[arg-type]
    for worker in running:
        worker.thread.join(_FORK_WAIT)  # type: ignore[union-attr]


_FORK_WAIT = 10.0


def _after_fork_in_child() -> None:
    global _workers, _local, _in_flight, _in_flight_lock, _start_lock, _forked
    _workers = [_Worker(0)]
    _local = threading.local()
    _in_flight = 0
    _in_flight_lock = threading.Lock()
    _start_lock = threading.Lock()
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
    # The hooks released objects made on other workers by handing them over: let every
    # worker finish what it was handed before the interpreter goes.
    for worker in list(_workers[1:]):
        if worker.alive():
            wait(submit(worker.index, _drop, None), worker.index)


atexit.register(_shutdown)


lifecycle.install_exit_runner(run_at_exit)
