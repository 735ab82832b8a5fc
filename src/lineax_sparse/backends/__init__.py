"""Host-side backends: numpy, scipy, cvxopt and pyamg only, never jax.

`make_backend(name, options)` is the one list of backends; each is imported lazily so that an
optional native library is only needed when its solver is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Backend


_BACKENDS = {
    "amg": ("lineax_sparse.backends.amg", "AMGBackend", "pyamg"),
    "cholmod": ("lineax_sparse.backends.cholmod", "CholmodBackend", "cvxopt"),
    "petsc": ("lineax_sparse.backends.petsc", "PETScBackend", "petsc4py"),
    "fallback": ("lineax_sparse.backends.fallback", "FallbackBackend", "scipy"),
    "superlu": ("lineax_sparse.backends.superlu", "SuperLUBackend", "scipy"),
}


def _backend_class(name: str) -> type:
    module_name, class_name, package = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"The `{name}` backend of lineax-sparse needs `{package}`: `pip install {package}`."
        ) from error
    return getattr(module, class_name)


def make_backend(name: str, options: tuple[tuple[str, Any], ...]) -> Backend:
    return _backend_class(name)(**dict(options))


def requires_symmetric(name: str) -> bool:
    """Whether backend `name` needs symmetric (Hermitian) values (its class attribute)."""
    return bool(_backend_class(name).requires_symmetric)
