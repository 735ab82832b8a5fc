"""How a backend releases native objects at interpreter exit.

Native objects must be released on the thread that made them, after the work in flight:
the host runtime installs its way of doing that (`lineax_sparse._host.owner` installs
`run_at_exit`) when it is imported. A backend used on its own, without the runtime, has
its hooks run by `atexit` directly.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable


_runner: Callable[[Callable[[], None]], None] | None = None


def install_exit_runner(runner: Callable[[Callable[[], None]], None]) -> None:
    """Run every later `at_exit` hook through `runner(hook)`."""
    global _runner
    _runner = runner


def at_exit(hook: Callable[[], None]) -> None:
    """Register `hook` with `atexit` now (exit handlers run last-registered first), to be
    run through the installed runner."""
    atexit.register(hook if _runner is None else functools.partial(_runner, hook))
