"""Probes into lineax-sparse's host side for figures its public API does not report.

The one place the benchmarks reach into the library's backends to count (not to change)
what they do, so that a change of the backends' layout is mended here.
"""

from __future__ import annotations


_amg_solves: list[tuple[bool, int]] | None = None


def record_amg_solves() -> list[tuple[bool, int]]:
    """The `(transposed, Krylov steps)` of every host solve of lineax-sparse's AMG backend
    from now on, in order (clear the list to start again): its `solve` is wrapped once per
    process, instrumentation only (the call runs unchanged)."""
    global _amg_solves
    if _amg_solves is None:
        from lineax_sparse.backends.amg import Backend

        solves: list[tuple[bool, int]] = []
        original = Backend.solve

        def solve(backend, factor, rhs, transpose, *args, **kwargs):
            result = original(backend, factor, rhs, transpose, *args, **kwargs)
            solves.append((bool(transpose), int(result.num_steps.sum())))
            return result

        Backend.solve = solve
        _amg_solves = solves
    return _amg_solves
