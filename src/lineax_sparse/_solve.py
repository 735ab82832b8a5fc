"""`linear_solve`: `lineax.linear_solve` with initial guesses that may carry tangents."""

from __future__ import annotations

from typing import Any

import jax
import lineax as lx
from jaxtyping import PyTree

from ._solver.base import GUESS_OPTIONS


_SENTINEL: Any = object()
_AUTO = lx.AutoLinearSolver(well_posed=True)  # lineax's own default


def linear_solve(
    operator: lx.AbstractLinearOperator,
    vector: PyTree[Any],
    solver: lx.AbstractLinearSolver = _AUTO,
    *,
    options: dict[str, Any] | None = None,
    state: PyTree[Any] = _SENTINEL,
    throw: bool = True,
) -> lx.Solution:
    """`lineax.linear_solve`, with the initial guesses in `options` (`y0`, `adjoint_y0`)
    detached from differentiation.

    lineax refuses an `options` entry that carries a tangent ("Unexpected tangent"), which
    is what an initial guess computed from differentiated values does (the previous step's
    solution in an optimization loop, say). A guess does not change the solution a solver
    returns (within its tolerance), so its derivative is zero: this function passes the
    guesses through `jax.lax.stop_gradient` and otherwise calls `lineax.linear_solve`
    unchanged, so `jax.grad`, `jax.jvp` and `jax.vmap` work with any guess.
    """
    if options is not None:
        options = {
            key: jax.lax.stop_gradient(value)
            if key in GUESS_OPTIONS and value is not None
            else value
            for key, value in options.items()
        }
    if state is _SENTINEL:
        return lx.linear_solve(operator, vector, solver, options=options, throw=throw)
    return lx.linear_solve(operator, vector, solver, options=options, state=state, throw=throw)
