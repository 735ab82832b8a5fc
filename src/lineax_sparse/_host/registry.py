"""The handle table: keys -> host objects, in one byte-bounded LRU.

A handle is a 64-bit digest of a matrix, made in the computation and passed through JAX as
two int32 so that it works with `jax_enable_x64` off (see `_bridge.handle`).
Factorizations are filed under keys made of the solver configuration, the handle and a probe
number (`cache.py`). Keys are never pointers, and every entry is verified against the matrix
before use: a forged or stale handle can only cost a factorization. The same table also holds
the per-pattern symbolic analyses, so that one budget bounds all the memory lineax-sparse
keeps alive.

Every mutation happens on the owner thread (see `owner`), so that native objects are freed
there; the lock additionally makes `cache_info()` safe from any thread.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

from . import owner


#: The default byte budget is this fraction of the memory available to the process when
#: the package is imported (overridable by the environment variable below or
#: `set_cache_limit`): a fixed 1 GiB is too small for the largest problems of a large
#: machine, and most of a small container's memory.
DEFAULT_CACHE_FRACTION = 0.25
#: The default when the available memory cannot be read.
FALLBACK_CACHE_LIMIT = 1 << 30
#: The least default, however little memory is available.
MIN_DEFAULT_CACHE_LIMIT = 256 << 20
CACHE_LIMIT_VARIABLE = "LINEAX_SPARSE_CACHE_BYTES"


def available_memory() -> int | None:
    """Bytes of memory this process may still use: the system's available memory (Linux
    `MemAvailable`, else free physical pages), capped by a cgroup v2 limit (containers);
    None when it cannot be read."""
    found = []
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as limit:
            text = limit.read().strip()
        if text != "max":
            found.append(int(text))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def default_cache_limit() -> int:
    """`DEFAULT_CACHE_FRACTION` of `available_memory()`, at least `MIN_DEFAULT_CACHE_LIMIT`
    (`FALLBACK_CACHE_LIMIT` when it cannot be read)."""
    available = available_memory()
    if available is None:
        return FALLBACK_CACHE_LIMIT
    return max(MIN_DEFAULT_CACHE_LIMIT, int(available * DEFAULT_CACHE_FRACTION))


class CacheInfo(NamedTuple):
    """A snapshot of the cache's contents and counters (all since the last `clear_cache`).

    - `entries`: objects held (factorizations, hierarchies and symbolic analyses).
    - `nbytes`: their estimated size in bytes.
    - `limit`: the byte budget.
    - `hits`: solves (of each distinct matrix of a batch) served by a factorization made
      earlier: the backward pass of a solve, a tangent solve, a `state=` solve, a later
      solve of the same values.
    - `misses`: solves that had to factorize again a matrix (same handle and values) whose
      factorization had been made earlier and was dropped since, by eviction or
      retirement. A loop that never repeats a matrix has none; many misses mean the budget
      is too small for a workload that does.
    - `factorizations`: numeric factorizations or hierarchy setups, misses included. The
      first solve of a matrix factorizes it.
    - `analyses`: symbolic analyses (one per sparsity pattern and solver configuration).
    - `evictions`: objects dropped because the byte budget was exceeded (least recently
      used first): what `set_cache_limit` controls.
    - `retirements`: factorizations dropped on purpose when a newer one of the same
      pattern and solver was made (one is kept per pattern; two once a matrix of the
      pattern came back after its factorization was dropped, or for AMG with `reuse`): an
      optimization or Newton loop retires one per step, which frees its memory for the
      next one. Not a sign of a small budget.
    - `host_calls`: callbacks into the host (one per solve, however many systems a vmapped
      batch holds: a forward solve is one, a `value_and_grad` two).
    - `reused_solutions`: solves answered with a solution already computed, because the
      same factorization was asked the same right-hand side again (compared exactly): the
      adjoint solve of a self-adjoint loss (compliance), or a repeated solve.
    """

    entries: int
    nbytes: int
    limit: int
    hits: int
    misses: int
    factorizations: int
    analyses: int
    evictions: int
    retirements: int
    host_calls: int
    reused_solutions: int


def _limit_from_environment() -> int:
    text = os.environ.get(CACHE_LIMIT_VARIABLE)
    if text is None:
        return default_cache_limit()
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"{CACHE_LIMIT_VARIABLE}={text!r} is not a number of bytes.") from None
    if value < 0:
        raise ValueError(f"{CACHE_LIMIT_VARIABLE}={text!r} must not be negative.")
    return value


class _Entry(NamedTuple):
    value: Any
    nbytes: int


class Registry:
    def __init__(self, limit: int):
        self._lock = threading.RLock()
        self._entries: collections.OrderedDict[Hashable, _Entry] = collections.OrderedDict()
        self._nbytes = 0
        self._limit = limit
        self._counts = dict.fromkeys(CacheInfo._fields[3:], 0)
        self._clear_hooks: list[Callable[[], None]] = []

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Insert `value`, evicting least recently used entries beyond the budget.

        The newest entry is kept even if it alone exceeds the budget, so that the solve that
        made it can use it; memory is bounded by `max(limit, largest single entry)`.
        """
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
            self._entries[key] = _Entry(value, nbytes)
            self._nbytes += nbytes
            self._evict()

    def size_of(self, key: Hashable) -> int | None:
        """The bytes `key` was filed with, or None if absent (no recency update)."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry.nbytes

    def evict(self, key: Hashable, counter: str = "evictions") -> None:
        """Drop `key` if present, counted under `counter` ("evictions" or "retirements")."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._nbytes -= entry.nbytes
                self._counts[counter] += 1

    def _evict(self) -> None:
        while self._nbytes > self._limit and len(self._entries) > 1:
            _, entry = self._entries.popitem(last=False)
            self._nbytes -= entry.nbytes
            self._counts["evictions"] += 1

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self._limit = limit
            self._evict()

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: a new lock (the parent's may have been held at
        the fork), no entries, zero counters. The inherited entries are released on the
        child's owner thread when it starts."""
        self._lock = threading.RLock()
        inherited = list(self._entries.values())
        self._entries = collections.OrderedDict()
        self._nbytes = 0
        self._counts = dict.fromkeys(self._counts, 0)
        for hook in self._clear_hooks:
            hook()
        owner.release_in_child(inherited.clear)

    def on_clear(self, hook: Callable[[], None]) -> None:
        """Call `hook()` at every later `clear` (for bookkeeping kept beside the table)."""
        self._clear_hooks.append(hook)

    def clear(self) -> None:
        with self._lock:
            for hook in self._clear_hooks:
                hook()
            self._entries.clear()
            self._nbytes = 0
            self._counts = dict.fromkeys(self._counts, 0)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(
                entries=len(self._entries),
                nbytes=self._nbytes,
                limit=self._limit,
                **self._counts,
            )


registry = Registry(_limit_from_environment())
owner.keep_freed_memory(registry.info().limit)
owner.at_exit(registry.clear)
owner.at_fork(registry.after_fork_in_child)


def set_cache_limit(nbytes: int) -> None:
    """Set the byte budget of the cache of factorizations, hierarchies and analyses.

    Entries beyond the new budget are evicted at once, least recently used first. The
    default is a quarter of the memory available to the process when the package is
    imported (`MemAvailable` on Linux, capped by a container's cgroup limit; at least
    256 MiB, 1 GiB where it cannot be read), or the value of the environment variable
    `LINEAX_SPARSE_CACHE_BYTES` then.

    **Arguments:**

    - `nbytes`: the budget in bytes, a non-negative integer. `0` keeps only the newest
        entry, which makes every solve outside one `linear_solve` call refactorize.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(
            f"`set_cache_limit(nbytes=...)` must be a non-negative integer, got {nbytes!r}."
        )
    owner.run(registry.set_limit, nbytes)


def clear_cache() -> None:
    """Drop every cached factorization, hierarchy and analysis, and reset the counters.

    Always safe: solver states carry their matrix, so a later solve whose factorization
    was dropped refactorizes (and counts a miss) instead of failing.
    """
    owner.run(registry.clear)


def cache_info() -> CacheInfo:
    """Return a [`lineax_sparse.CacheInfo`][] snapshot of the cache and its counters."""
    return registry.info()
