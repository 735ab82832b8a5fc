"""`AbstractHostSolver`: a lineax solver whose numerics run in a native library on the host.

Concrete solvers are thin and declarative: they name a backend and its static options for
an operator (`backend_spec`), list every spec they can use (`backend_specs`) and say whether
they take initial guesses and auxiliary arrays. This class turns that into lineax's solver
protocol:

- `init` makes the matrix's handle (a digest of its arrays, computed without a host call) and
  returns a state holding the handle *and* the matrix arrays (the arrays are what make the
  handle safe to lose);
- `compute` solves through one callback, which factorizes the matrix under its handle the
  first time and finds that factorization every later time; host statuses are mapped onto
  `lineax.RESULTS`;
- `transpose` and `conj` flip static flags on the same handle: the backward pass reuses
  the forward factorization (and swaps or conjugates the initial guesses).

The factorization is thus made by the first solve, not by `init`: a forward solve is one
host call, a `value_and_grad` two (see `_bridge` for the measured reason).
"""

import abc
import dataclasses
from typing import Any, TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Inexact, Int, PyTree

from .._bridge import handle as _handle, solve as _bridge
from .._host.patterns import PatternKey
from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec


if TYPE_CHECKING:  # pyright's reading of equinox's abstract class variables
    from typing import ClassVar as AbstractClassVar
else:
    from equinox import AbstractClassVar


#: The `options` a solver that takes guesses reads: initial guesses of the solve and of its
#: transpose (the backward pass).
GUESS_OPTIONS = ("y0", "adjoint_y0")


class HostSolverState(eqx.Module):
    """Solver state: the handle of a host factorization, plus what it is made from: the
    matrix and the solver's auxiliary arrays (AMG's near-nullspace vectors, or None).

    `data` holds the operator's COO values, `indices` its indices. With a static pattern
    (`pattern`, its key) only the values cross to the host, which sums them into the
    pattern's CSC slots; the indices cross only if the pattern was released meanwhile
    (`clear_cache`), to be interned again there.
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
    """Base class of the lineax-sparse solvers; see `SuperLU`, `Cholmod`, `AMG`.

    A concrete solver implements `backend_spec` and `backend_specs`, and declares:

    - `takes_guesses`: whether `options["y0"]` starts its solves and
      `options["adjoint_y0"]` its transposed ones (the backward pass). A guess changes
      where an iteration starts, never what it converges to, so it carries no derivative;
      solvers that take none ignore them.
    - `near_nullspace`: `(n, k)` vectors the factorization is built with (AMG's and
      PETSc's multigrid), or None: they travel with the matrix to the host.
    """

    takes_guesses: AbstractClassVar[bool]
    near_nullspace: eqx.AbstractVar[Array | None]

    @abc.abstractmethod
    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        """The backend package and its static options this solver uses for `operator`.

        Raises `ValueError` at trace time for an operator this solver cannot take.
        """

    @abc.abstractmethod
    def backend_specs(self) -> dict[BackendSpec, bool]:
        """Every spec `backend_spec` can return whatever the operator (states are checked
        against them), each with whether its backend needs symmetric (Hermitian) values:
        the `requires_symmetric` of its backend class, known here without importing the
        backend's native library."""

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
        spec = self.backend_spec(operator)
        aux = self.near_nullspace
        if aux is not None and aux.shape[0] != operator.size:
            raise ValueError(
                f"`{self._name()}(near_nullspace=...)` has vectors of length {aux.shape[0]} "
                f"for an operator of size {operator.size}."
            )
        pattern, data = operator._static_pattern_and_data()
        # With a static pattern only the values will cross to the host, which holds the rest.
        key = None if pattern is None else pattern.key
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
        if state.spec not in self.backend_specs():
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
        elif state.pattern is not None and (
            not isinstance(state.pattern, PatternKey) or state.pattern.n != state.size
        ):
            problems.append(
                f"`pattern` must be the PatternKey of a StaticPattern of size {state.size}"
            )
        elif state.pattern is not None and indices_shape[0] != state.pattern.nse:
            problems.append(
                f"`indices` must hold the pattern's {state.pattern.nse} entries, got "
                f"{indices_shape}"
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
        # None when released since `init` (`clear_cache`): the host interns it again.
        pattern = None if state.pattern is None else state.pattern.resolve()
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
        )
        return solution, result, stats

    def _initial_guess(self, vector: Array, options: dict[str, Any]) -> Array | None:
        """The initial guess `options["y0"]` passed to the host, or None."""
        y0 = options.get("y0") if self.takes_guesses else None
        if y0 is None:
            return None
        if not eqx.is_array(y0) or y0.shape != vector.shape:
            raise ValueError(
                f"`{self._name()}` option `y0` must be an array of shape {vector.shape}, got "
                f"{jnp.shape(y0)}."
            )
        return jax.lax.stop_gradient(y0.astype(vector.dtype))

    def transpose(self, state: HostSolverState, options: dict[str, Any]):
        transposed = dataclasses.replace(state, transpose=not state.transpose)
        if not self.takes_guesses:
            return transposed, {}
        # The forward guess is no guess for the adjoint system: the transposed solve starts
        # from `adjoint_y0` if given (else as the solver decides), and its transpose (the
        # forward solve) from `y0`.
        swapped = {}
        if options.get("adjoint_y0") is not None:
            swapped["y0"] = options["adjoint_y0"]
        if options.get("y0") is not None:
            swapped["adjoint_y0"] = options["y0"]
        return transposed, swapped

    def conj(self, state: HostSolverState, options: dict[str, Any]):
        conjugated = dataclasses.replace(state, conjugate=not state.conjugate)
        if not self.takes_guesses:
            return conjugated, {}
        return conjugated, {
            key: jax.tree_util.tree_map(jnp.conj, options[key])
            for key in GUESS_OPTIONS
            if options.get(key) is not None
        }

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
