"""Trace-time checks of a sparse matrix and its COO indices, and reading values known at
trace time."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse


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


def validate_matrix(matrix: Any) -> None:
    """Trace-time checks of the BCOO given to `SparseOperator` (raises `ValueError`)."""
    if not isinstance(matrix, jsparse.BCOO):
        hint = (
            " Use `SparseOperator.from_scipy(...)` for a scipy.sparse matrix."
            if hasattr(matrix, "tocoo")
            else ""
        )
        raise ValueError(
            "`SparseOperator(matrix=...)` must be a `jax.experimental.sparse.BCOO`, got "
            f"{type(matrix).__name__}.{hint}"
        )
    if matrix.n_batch != 0 or matrix.n_dense != 0:
        raise ValueError(
            "`SparseOperator(matrix=...)` must be an unbatched BCOO without dense blocks "
            f"(n_batch=0, n_dense=0), got {matrix.n_batch=}, {matrix.n_dense=}. To solve "
            "a batch of matrices, `jax.vmap` over their `data` instead."
        )
    shape = matrix.shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"`SparseOperator(matrix=...)` must be square, got {shape=}.")
    if not jnp.issubdtype(matrix.data.dtype, jnp.inexact):
        raise ValueError(
            "`SparseOperator(matrix=...)` must have a floating or complex dtype (float16, "
            "bfloat16, float32, float64, complex64 or complex128), got "
            f"{matrix.data.dtype}. Convert it first, e.g. `matrix.astype(jnp.float64)`."
        )
    validate_indices(matrix.indices, shape[0], "SparseOperator(matrix=...)", matrix.data)
