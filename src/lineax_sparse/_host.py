"""The single owner thread on which all native work runs.

XLA invokes host callbacks from several threads. scipy leaks a SuperLU factor that is freed on
another thread than the one that created it (scipy issue 15921), and cvxopt's CHOLMOD keeps one
global `cholmod_common`. Running every factorization, solve and release on one dedicated thread
removes both hazards; callers block until their work is done.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar


_T = TypeVar("_T")

_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="lineax-sparse-host"
)
_owner_ident: int | None = None


def _record_owner() -> int:
    global _owner_ident
    _owner_ident = threading.get_ident()
    return _owner_ident


def run(fn: Callable[..., _T], *args) -> _T:
    """Run `fn(*args)` on the owner thread and return its result (or raise its error)."""
    if _owner_ident is not None and threading.get_ident() == _owner_ident:
        return fn(*args)
    return _executor.submit(fn, *args).result()


run(_record_owner)
