"""`AbstractIterativeHostSolver`: a host solver that iterates to a tolerance (`AMG`,
`PETSc`): its tolerances and their rules, its initial guesses, its near-nullspace vectors."""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..backends.options import check_tolerances
from .base import AbstractHostSolver


class AbstractIterativeHostSolver(AbstractHostSolver):
    """Base class of the iterative solvers (`AMG`, `PETSc`).

    Converged means `|b - A x| <= max(rtol |b|, atol)` within `max_steps` steps, checked on
    the host against the true residual; `adjoint_rtol` (default `rtol`) is the relative
    tolerance of transposed solves (the backward pass). `options["y0"]` starts the solve,
    `options["adjoint_y0"]` its transpose.
    """

    takes_guesses: ClassVar[bool] = True
    rtol: eqx.AbstractVar[float]
    atol: eqx.AbstractVar[float]
    max_steps: eqx.AbstractVar[int]
    adjoint_rtol: eqx.AbstractVar[float | None]

    @abc.abstractmethod
    def _iterates(self) -> bool:
        """Whether this configuration iterates to a tolerance (PETSc's direct solves do not:
        their tolerances may both be zero)."""

    def __check_init__(self):
        check_tolerances(
            self._name(),
            self.rtol,
            self.atol,
            self.max_steps,
            self.adjoint_rtol,
            iterates=self._iterates(),
        )

    def _tolerances(self) -> tuple[tuple[str, Any], ...]:
        """The tolerances as backend options (`adjoint_rtol` resolved)."""
        adjoint_rtol = self.rtol if self.adjoint_rtol is None else self.adjoint_rtol
        return (
            ("rtol", float(self.rtol)),
            ("atol", float(self.atol)),
            ("max_steps", int(self.max_steps)),
            ("adjoint_rtol", float(adjoint_rtol)),
        )


def as_near_nullspace(value: Any, solver: str) -> Array | None:
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
