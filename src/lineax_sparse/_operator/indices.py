"""Trace-time checks of COO indices, and reading values known at trace time."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def concrete_value(x: Any) -> np.ndarray | None:
    """`x` as NumPy if its value is known at trace time, else None.

    Under `jit`, JAX 0.10 stages even constants (a NumPy array closed over, or converted by
    `BCOO`) as tracers; those tracers still hold their value (`get_const`), and a pattern
    built from NumPy indices inside a jitted function is exactly such a constant.
    """
    if _is_concrete(x):
        return np.asarray(x)
    get_const = getattr(x, "get_const", None)
    value = get_const() if callable(get_const) else None
    return None if value is None else np.asarray(value)


def validate_indices(indices: Any, n: int, argument: str, data: Any = None) -> None:
    """Trace-time checks of COO `indices` (and of `data` beside them); concrete indices are
    also range-checked. Raises `ValueError` naming `argument`."""
    dtype = jnp.result_type(indices)
    if not jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_:
        raise ValueError(f"`{argument}` indices must be integers, got {dtype}.")
    if jnp.ndim(indices) != 2 or jnp.shape(indices)[1] != 2:
        raise ValueError(
            f"`{argument}` indices must have shape (nse, 2), got "
            f"indices.shape={jnp.shape(indices)}."
        )
    if data is not None and jnp.shape(data) != jnp.shape(indices)[:1]:
        raise ValueError(
            f"`{argument}` needs one value per index pair, got "
            f"matrix.data.shape={jnp.shape(data)} and indices.shape={jnp.shape(indices)}."
        )
    concrete = concrete_value(indices)
    if concrete is not None:
        # An index equal to n is BCOO padding and allowed; anything else outside [0, n) is not.
        bad = np.flatnonzero(((concrete < 0) | (concrete > n)).any(axis=1))
        if bad.size:
            first = int(bad[0])
            raise ValueError(
                f"`{argument}` has {bad.size} index pair(s) outside [0, {n}) for "
                f"shape=({n}, {n}); the first is entry {first}: "
                f"{tuple(int(v) for v in concrete[first])}."
            )
