"""Reproducible draws of library code that uses numpy's global random generator
(`seeded_global_random`), without touching the user's random stream."""

from __future__ import annotations

import contextlib

import numpy as np


@contextlib.contextmanager
def seeded_global_random(seed: int = 0x5EED):
    """Seed numpy's global generator for library code that draws from it, then give the
    user's state back: results are reproducible and the user's random stream untouched
    (pyamg's setup and scipy's `onenormest` both draw from `np.random`)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
