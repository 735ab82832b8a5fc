"""UMFPACK (through the library bundled with cvxopt): multifrontal LU of general square
matrices. How it works and the measurements behind each choice: `docs/backends/umfpack.md`."""

from .backend import UMFPACKBackend as Backend


__all__ = ["Backend"]
