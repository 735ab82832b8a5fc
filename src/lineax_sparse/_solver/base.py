"""`AbstractHostSolver`: a lineax solver whose numerics run in a native library on the host.

Concrete solvers are thin and declarative: they name a backend, list its static options,
and say which operators they accept. This class turns that into lineax's solver protocol:

- `init` makes the matrix's handle (a digest of its arrays, computed without a host call) and
  returns a state holding the handle *and* the matrix arrays (the arrays are what make the
  handle safe to lose);
- `compute` solves through one callback, which factorizes the matrix under its handle the
  first time and finds that factorization every later time; host statuses are mapped onto
  `lineax.RESULTS`;
- `transpose` and `conj` flip static flags on the same handle: the backward pass reuses
  the forward factorization.

The factorization is thus made by the first solve, not by `init`: a forward solve is one
host call, a `value_and_grad` two (see `_bridge` for the measured reason).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Inexact, Int, PyTree

from .._bridge import handle as _handle, solve as _bridge
from .._host.patterns import PatternKey
from .._operator.operator import SparseOperator
from .._operator.pattern import coalesce, plainly_valid
from ..backends.base import BackendSpec
from ..backends.catalog import backend_class


class HostSolverState(eqx.Module):
    """Solver state: the handle of a host factorization, plus what it is made from: the
    matrix and the solver's auxiliary arrays (AMG's near-nullspace vectors, or None).

    With a static pattern (`pattern`, its key), `data` holds the coalesced CSC values
    (summed in XLA); otherwise the operator's COO values. `indices` are always the
    operator's: with a static pattern they cross to the host only if the pattern was
    released meanwhile (`clear_cache`), to be interned again there.
    """

    handle: Int[Array, "2"]
    data: Inexact[Array, " nse"]
    indices: Int[Array, "nse 2"]
    aux: Array | None
    size: int = eqx.field(static=True)
    spec: BackendSpec = eqx.field(static=True)
    transpose: bool = eqx.field(static=True)
    conjugate: bool = eqx.field(static=True)
    pattern: PatternKey | None = eqx.field(static=True, default=None)


class AbstractHostSolver(lx.AbstractLinearSolver[HostSolverState]):
    """Base class of the lineax-sparse solvers; see `SuperLU`, `Cholmod`, `AMG`."""

    @abc.abstractmethod
    def _backend_spec(self, operator: SparseOperator) -> BackendSpec:
        """The backend name and its static options for `operator`.

        Raises `ValueError` at trace time for an operator this solver cannot take.
        """

    @abc.abstractmethod
    def _accepted_specs(self) -> tuple[BackendSpec, ...]:
        """Every spec `_backend_spec` can return, whatever the operator (to check states)."""

    def _aux(self, operator: SparseOperator) -> Array | None:
        """The solver's arrays the factorization depends on (none for direct solvers)."""
        del operator
        return None

    def _name(self) -> str:
        return type(self).__name__

    def _check_operator(self, operator: Any) -> SparseOperator:
        if isinstance(operator, lx.TaggedLinearOperator) and isinstance(
            operator.operator, SparseOperator
        ):
            inner = operator.operator
            operator = inner._with_tags(inner.tags | operator.tags)
        if not isinstance(operator, SparseOperator):
            raise ValueError(_not_sparse_message(self._name(), operator))
        return operator

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        del options
        operator = self._check_operator(operator)
        spec = self._backend_spec(operator)
        aux = self._aux(operator)
        pattern, data = operator._static_pattern_and_data()
        if pattern is None:
            key = None
        else:  # only the summed values will cross to the host
            key, data = pattern.key, coalesce(data, pattern)
        handle = _handle.make_handle(data, operator.indices if key is None else None, aux, key)
        return HostSolverState(
            handle, data, operator.indices, aux, operator.size, spec, False, False, key
        )

    def _check_state(self, state: Any) -> None:
        """Trace-time checks of a state passed by the user (`linear_solve(..., state=)`)."""
        name = self._name()
        if not isinstance(state, HostSolverState):
            raise ValueError(
                f"`{name}` needs a state made by `{name}().init(operator, options)`, got "
                f"{type(state).__name__}."
            )
        if state.spec not in self._accepted_specs():
            raise ValueError(
                f"`{name}` was given a state made by another solver or configuration "
                f"(backend {state.spec[0]!r} with options {dict(state.spec[1])}): make it "
                f"with this solver's `init`."
            )
        problems = []
        if jnp.shape(state.handle) != (2,) or jnp.result_type(state.handle) != jnp.int32:
            problems.append(
                f"`handle` must be int32 of shape (2,), got {jnp.result_type(state.handle)} "
                f"{jnp.shape(state.handle)}"
            )
        if not isinstance(state.size, int) or isinstance(state.size, bool) or state.size < 0:
            problems.append(f"`size` must be a non-negative int, got {state.size!r}")
        if jnp.ndim(state.data) != 1 or not jnp.issubdtype(
            jnp.result_type(state.data), jnp.inexact
        ):
            problems.append(
                f"`data` must be a floating or complex vector, got {jnp.result_type(state.data)} "
                f"of shape {jnp.shape(state.data)}"
            )
        indices_shape = () if state.indices is None else jnp.shape(state.indices)
        if state.indices is None or (
            len(indices_shape) != 2
            or indices_shape[1:] != (2,)
            or not jnp.issubdtype(jnp.result_type(state.indices), jnp.integer)
        ):
            problems.append(
                f"`indices` must be integers of shape (nse, 2), got "
                f"{jnp.result_type(state.indices)} {indices_shape}"
            )
        elif state.pattern is not None:
            if not isinstance(state.pattern, PatternKey) or state.pattern.n != state.size:
                problems.append(
                    f"`pattern` must be the PatternKey of a StaticPattern of size {state.size}"
                )
            elif indices_shape[0] != state.pattern.nse:
                problems.append(
                    f"`indices` must hold the pattern's {state.pattern.nse} entries, got "
                    f"{indices_shape}"
                )
            elif jnp.shape(state.data)[:1] != (state.pattern.nnz,):
                problems.append(
                    f"`data` must hold the pattern's {state.pattern.nnz} summed values, got "
                    f"{jnp.shape(state.data)}"
                )
        elif jnp.shape(state.data)[:1] != indices_shape[:1]:
            problems.append(
                f"`data` and `indices` must hold as many entries, got {jnp.shape(state.data)} "
                f"and {indices_shape}"
            )
        if state.aux is not None and (
            jnp.ndim(state.aux) != 2 or jnp.shape(state.aux)[0] != state.size
        ):
            problems.append(f"`aux` must have shape ({state.size}, k), got {jnp.shape(state.aux)}")
        if problems:
            raise ValueError(f"`{name}` was given a malformed state: " + "; ".join(problems) + ".")

    def compute(
        self, state: HostSolverState, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        self._check_state(state)
        if not eqx.is_array(vector) or vector.shape != (state.size,):
            raise ValueError(
                f"`{self._name()}` solves against a vector of shape ({state.size},), got "
                f"{jnp.shape(vector)}."
            )
        valid = None
        # None when released since `init` (`clear_cache`): the host interns it again.
        pattern = None if state.pattern is None else state.pattern.resolve()
        if pattern is not None and backend_class(state.spec[0]).requires_symmetric:
            # From the values the host receives (not kept in the state, so no state can
            # vouch for values it does not hold).
            valid = plainly_valid(jax.lax.stop_gradient(state.data), pattern)
        solution, result, stats = _bridge.solve(
            state.spec,
            state.size,
            state.transpose,
            state.conjugate,
            state.handle,
            state.data,
            state.indices,
            vector,
            self._initial_guess(vector, options),
            state.aux,
            state.pattern,
            pattern,
            valid,
        )
        return solution, result, stats

    def _initial_guess(self, vector: Array, options: dict[str, Any]) -> Array | None:
        """The initial guess passed to the host; direct solvers take none."""
        del vector, options
        return None

    def transpose(self, state: HostSolverState, options: dict[str, Any]):
        del options
        return dataclasses.replace(state, transpose=not state.transpose), {}

    def conj(self, state: HostSolverState, options: dict[str, Any]):
        del options
        return dataclasses.replace(state, conjugate=not state.conjugate), {}

    def assume_full_rank(self) -> bool:
        return True


def _not_sparse_message(solver: str, operator: Any) -> str:
    """What went wrong and what to do, for an operator that is not a `SparseOperator`."""
    kind = type(operator).__name__
    if isinstance(operator, lx.AbstractLinearOperator):
        matrix_free = isinstance(
            operator,
            (lx.FunctionLinearOperator, lx.JacobianLinearOperator, lx.TaggedLinearOperator),
        ) or kind in ("AddLinearOperator", "ComposedLinearOperator", "MulLinearOperator")
        if matrix_free:
            return (
                f"`{solver}` needs the matrix's sparsity, but was given a matrix-free "
                f"`lineax.{kind}` (the kind optimistix and diffrax pass to their linear "
                "solver): it only knows how to multiply by a vector. Give the solver the "
                "operator's sparsity pattern and it materialises the matrix itself: "
                f"`lineax_sparse.Materialise({solver}(), sparsity)`, with `sparsity` from "
                "`lineax_sparse.detect_sparsity(fn, x)` or a scipy.sparse pattern; or build "
                "`lineax_sparse.SparseOperator(bcoo)` if you hold the assembled matrix."
            )
        return (
            f"`{solver}` may only be used with `lineax_sparse.SparseOperator`, got the dense "
            f"`lineax.{kind}`. Convert it with `SparseOperator(BCOO.fromdense(matrix))`, or "
            "use a dense lineax solver (`lineax.LU()`) for dense matrices."
        )
    return (
        f"`{solver}` may only be used with a lineax operator, got {kind}. Wrap the matrix "
        "with `lineax_sparse.SparseOperator(bcoo)` or `SparseOperator.from_scipy(A)`."
    )
