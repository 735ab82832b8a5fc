"""Algebraic multigrid (pyamg) as a preconditioner of a Krylov method. How it works and the
measurements behind each choice: `docs/backends/amg.md`."""

from .backend import AMGBackend as Backend


__all__ = ["Backend"]
