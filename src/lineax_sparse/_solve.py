"""`linear_solve`: `lineax.linear_solve` for sparse matrices as users hold them (a scipy
sparse matrix, a BCOO, or a `SparseOperator`), with `AutoSparse` by default, initial guesses
that may carry tangents, and failures that say why (`explain`)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import scipy.sparse
from jax.experimental import sparse as jsparse
from jaxtyping import PyTree

from ._bridge.reasons import error_index, error_messages, explain as explain
from ._operator.operator import SparseOperator
from ._solver.auto import AutoSparse
from ._solver.base import GUESS_OPTIONS


_SENTINEL: Any = object()
_AUTO = lx.AutoLinearSolver(well_posed=True)  # lineax's own default, for dense operators


def linear_solve(
    operator: Any,
    vector: PyTree[Any],
    solver: lx.AbstractLinearSolver | None = None,
    *,
    options: dict[str, Any] | None = None,
    state: PyTree[Any] = _SENTINEL,
    throw: bool = True,
) -> lx.Solution:
    """`lineax.linear_solve` for sparse matrices.

    **Arguments:**

    - `operator`: a `SparseOperator`, a `jax.experimental.sparse.BCOO`, a scipy sparse
        matrix or array of any format (both wrapped in `SparseOperator`, untagged), or any
        other lineax operator.
    - `vector`: the right-hand side.
    - `solver`: the solver; by default `AutoSparse()` for a sparse operator (lineax's
        default, a dense LU, for any other operator).
    - `options`, `state`: as for `lineax.linear_solve`. The initial guesses in `options`
        (`y0`, `adjoint_y0`) are detached from differentiation: lineax refuses an option
        that carries a tangent ("Unexpected tangent"), which is what a guess computed from
        differentiated values is (the previous step's solution, say). A guess does not
        change the solution a solver returns (within its tolerance), so its derivative is
        zero, and `jax.grad`, `jax.jvp` and `jax.vmap` work with any guess.
    - `throw`: whether a failed solve raises. With the lineax-sparse solvers the error says
        what happened and what to do (the `explain` sentence of `stats["reason"]`), rather
        than lineax's generic text. Under `jax.jit` it arrives wrapped in JAX's
        `JaxRuntimeError: INTERNAL: CpuCallback error` (`equinox.filter_jit` shows it
        alone); with `throw=False` the solution carries the code, see `explain`.

    **Returns:** a `lineax.Solution`.
    """
    operator = _as_operator(operator)
    if solver is None:
        solver = AutoSparse() if _is_sparse(operator) else _AUTO
    if isinstance(solver, type) and issubclass(solver, lx.AbstractLinearSolver):
        raise ValueError(
            f"`solver` must be a solver instance, got the class {solver.__name__}: call it, "
            f"`solver={solver.__name__}()`."
        )
    if not isinstance(solver, lx.AbstractLinearSolver):
        raise ValueError(
            f"`solver` must be a lineax solver (e.g. `lineax_sparse.AutoSparse()`), got "
            f"{type(solver).__name__}: {solver!r}."
        )
    if options is not None:
        options = {
            key: jax.lax.stop_gradient(value)
            if key in GUESS_OPTIONS and value is not None
            else value
            for key, value in options.items()
        }
    extra = {} if state is _SENTINEL else {"state": state}
    solution = lx.linear_solve(operator, vector, solver, options=options, throw=False, **extra)
    reason = solution.stats.get("reason") if isinstance(solution.stats, dict) else None
    if not throw:
        return solution
    if reason is None:  # not one of ours: lineax's own check and message
        value = solution.result.error_if(solution.value, solution.result != lx.RESULTS.successful)
    else:
        failed = solution.result != lx.RESULTS.successful
        index = error_index(reason, solution.result)
        value = eqx.branched_error_if(solution.value, failed, index, error_messages())
    return eqx.tree_at(lambda s: s.value, solution, value)


def _is_sparse(operator: Any) -> bool:
    return isinstance(operator, SparseOperator) or (
        isinstance(operator, lx.TaggedLinearOperator)
        and isinstance(operator.operator, SparseOperator)
    )


def _as_operator(operator: Any) -> Any:
    """`operator` as a lineax operator: scipy sparse matrices and BCOO are wrapped."""
    if isinstance(operator, lx.AbstractLinearOperator):
        return operator
    if isinstance(operator, jsparse.BCOO):
        return SparseOperator(operator)
    if scipy.sparse.issparse(operator):
        return SparseOperator.from_scipy(operator)
    kind = type(operator).__name__
    if isinstance(operator, (jax.Array, jnp.ndarray)) or hasattr(operator, "__array__"):
        raise ValueError(
            f"`operator` must be a lineax operator or a sparse matrix, got a dense {kind} of "
            f"shape {jnp.shape(operator)}: wrap a sparse matrix with "
            "`scipy.sparse.csr_array(matrix)` or `jax.experimental.sparse.BCOO.fromdense`, "
            "or solve a dense one with `lineax.linear_solve(lineax.MatrixLinearOperator"
            "(matrix), vector)`."
        )
    raise ValueError(
        f"`operator` must be a lineax operator, a scipy.sparse matrix or a "
        f"`jax.experimental.sparse.BCOO`, got {kind}."
    )
