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
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Inexact, Int, PyTree

from .. import _bridge
from .._native import BackendSpec
from .._operator import SparseOperator


class HostSolverState(eqx.Module):
    """Solver state: the handle of a host factorization, plus the matrix it is made from."""

    handle: Int[Array, "2"]
    data: Inexact[Array, " nse"]
    indices: Int[Array, "nse 2"]
    size: int = eqx.field(static=True)
    spec: BackendSpec = eqx.field(static=True)
    transpose: bool = eqx.field(static=True)
    conjugate: bool = eqx.field(static=True)


class AbstractHostSolver(lx.AbstractLinearSolver[HostSolverState]):
    """Base class of the lineax-sparse solvers; see `SuperLU`, `Cholmod`, `AMG`."""

    @abc.abstractmethod
    def _backend_spec(self, operator: SparseOperator) -> BackendSpec:
        """The backend name and its static options for `operator`.

        Raises `ValueError` at trace time for an operator this solver cannot take.
        """

    def _name(self) -> str:
        return type(self).__name__

    def _check_operator(self, operator: Any) -> SparseOperator:
        if isinstance(operator, lx.TaggedLinearOperator) and isinstance(
            operator.operator, SparseOperator
        ):
            inner = operator.operator
            operator = SparseOperator(inner.matrix, inner.tags | operator.tags)
        if not isinstance(operator, SparseOperator):
            raise ValueError(
                f"`{self._name()}` may only be used with `lineax_sparse.SparseOperator`, "
                f"got {type(operator).__name__}. Wrap the matrix with "
                "`lineax_sparse.SparseOperator(bcoo)` or `SparseOperator.from_scipy(A)`."
            )
        return operator

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        del options
        operator = self._check_operator(operator)
        spec = self._backend_spec(operator)
        handle = _bridge.make_handle(operator.data, operator.indices)
        return HostSolverState(
            handle, operator.data, operator.indices, operator.size, spec, False, False
        )

    def compute(
        self, state: HostSolverState, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        if not eqx.is_array(vector) or vector.shape != (state.size,):
            raise ValueError(
                f"`{self._name()}` solves against a vector of shape ({state.size},), got "
                f"{jnp.shape(vector)}."
            )
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
