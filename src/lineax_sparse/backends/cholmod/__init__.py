"""CHOLMOD (through cvxopt): supernodal or simplicial Cholesky of symmetric positive definite
matrices. How it works and the measurements behind each choice: `docs/backends/cholmod.md`."""

from .backend import CholmodBackend as Backend


__all__ = ["Backend"]
