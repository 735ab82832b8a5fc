"""MKL PARDISO (through MKL's runtime library, `pip install mkl`): Cholesky, `L D L^T` with
inertia, and LU of real and complex matrices. How it works and the measurements behind each
choice: `docs/backends/pardiso.md`.

`Backend` is imported on first access, so that `locate` can tell whether MKL is installed
without loading it.
"""

from __future__ import annotations

from typing import Any


__all__ = ["Backend"]


def __getattr__(name: str) -> Any:
    if name == "Backend":
        from .backend import PardisoBackend

        return PardisoBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
