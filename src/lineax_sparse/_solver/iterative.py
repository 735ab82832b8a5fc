"""`AbstractIterativeHostSolver`: a host solver whose solves start from initial guesses."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .base import AbstractHostSolver, HostSolverState


#: The `options` an iterative solver reads: initial guesses of the solve and of its transpose.
GUESS_OPTIONS = ("y0", "adjoint_y0")


class AbstractIterativeHostSolver(AbstractHostSolver):
    """Base class of the iterative solvers (`AMG`, `PETSc`): `options["y0"]` starts the
    solve, `options["adjoint_y0"]` its transpose (the backward pass). A guess changes where
    the iteration starts, never what it converges to, so it carries no derivative."""

    def _initial_guess(self, vector: Array, options: dict[str, Any]) -> Array | None:
        y0 = options.get("y0")
        if y0 is None:
            return None
        if not eqx.is_array(y0) or y0.shape != vector.shape:
            raise ValueError(
                f"`{self._name()}` option `y0` must be an array of shape {vector.shape}, got "
                f"{jnp.shape(y0)}."
            )
        return jax.lax.stop_gradient(y0.astype(vector.dtype))

    def transpose(self, state: HostSolverState, options: dict[str, Any]):
        # The forward guess is no guess for the adjoint system: the transposed solve starts
        # from `adjoint_y0` if given (else as the solver decides), and its transpose (the
        # forward solve) from `y0`.
        transposed, _ = super().transpose(state, {})
        swapped = {}
        if options.get("adjoint_y0") is not None:
            swapped["y0"] = options["adjoint_y0"]
        if options.get("y0") is not None:
            swapped["adjoint_y0"] = options["y0"]
        return transposed, swapped

    def conj(self, state: HostSolverState, options: dict[str, Any]):
        conjugated, _ = super().conj(state, {})
        return conjugated, {
            key: jax.tree_util.tree_map(jnp.conj, options[key])
            for key in GUESS_OPTIONS
            if options.get(key) is not None
        }


def near_nullspace(value: Any, solver: str) -> Array | None:
    """`solver(near_nullspace=...)` as an (n, k) array leaf of the solver, without tangents."""
    if value is None:
        return None
    array = jnp.asarray(value)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] == 0 or array.shape[0] == 0:
        raise ValueError(
            f"`{solver}(near_nullspace=...)` must be an array of shape (n, k) with k >= 1 "
            f"vectors, got shape {np.shape(value)}."
        )
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise ValueError(
            f"`{solver}(near_nullspace=...)` must be real floating point, got {array.dtype}."
        )
    if not isinstance(array, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(array))):
        raise ValueError(f"`{solver}(near_nullspace=...)` must be finite.")
    # The vectors steer the hierarchy, not the solution: they carry no derivative.
    return jax.lax.stop_gradient(array)
