"""SuperLU (through scipy): LU with partial pivoting of general square matrices. How it works
and the measurements behind each choice: `docs/backends/superlu.md`."""

from .backend import SuperLUBackend as Backend


__all__ = ["Backend"]
