"""`make_backend`: a backend instance from its spec, the backend package imported lazily.

A spec's name is the name of a package of `lineax_sparse.backends` (or of the module
`fallback`), which exports its backend class as `Backend`; an optional native library is
only imported when a solver that needs it is used.
"""

from __future__ import annotations

import importlib

from .base import AbstractBackend, BackendSpec


def backend_class(name: str) -> type[AbstractBackend]:
    """The backend class of package `name`, with an install hint if its library is missing."""
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ImportError as error:
        missing = error.name or "its native library"
        if missing.startswith(__package__ or "lineax_sparse"):
            raise
        raise ImportError(
            f"The `{name}` backend of lineax-sparse needs `{missing}`: `pip install {missing}`."
        ) from error
    return module.Backend


def make_backend(spec: BackendSpec) -> AbstractBackend:
    name, options = spec
    return backend_class(name)(**dict(options))
