"""The settings every cvxopt call of this backend runs with.

`cholmod.options` and `amd.options` are global dicts read by every cvxopt call. Around each
call (on the owner thread) the backend replaces their contents with exactly its own
settings, so that no user setting changes its factorizations, and puts the previous
contents back afterwards, so that it changes none of the user's calls (with `nmethods=1`
left behind, any other `cholmod.symbolic(A)` without `p` fails: docs/backends/cholmod.md).
A lock makes that swap whole when several threads call cvxopt (analyses of different
patterns may run on different threads; cvxopt's calls hold the GIL, so nothing is lost).
"""

from __future__ import annotations

import contextlib
import threading


#: `mode` -> `cholmod.options["supernodal"]`.
SUPERNODAL = {"auto": 1, "supernodal": 2, "simplicial": 0}
#: Held around every cvxopt call made with `global_options`.
_lock = threading.RLock()
#: AMD's defaults.
AMD_OPTIONS = {"AMD_DENSE": 10.0, "AMD_AGGRESSIVE": 1}


def cholmod_options(supernodal: int) -> dict:
    """`cholmod.options` for a factorization: the given kind, "use the given ordering
    only" (`nmethods=1`, so that a cached ordering saves CHOLMOD's own AMD run), a
    postordered elimination tree, no pivot bound and no printing."""
    return {"supernodal": supernodal, "nmethods": 1, "postorder": True, "dbound": 0.0, "print": 0}


@contextlib.contextmanager
def global_options(options: dict, values: dict):
    """Run a cvxopt call with `options` (a module's global dict) holding exactly `values`."""
    with _lock:
        saved = dict(options)
        options.clear()
        options.update(values)
        try:
            yield
        finally:
            options.clear()
            options.update(saved)
