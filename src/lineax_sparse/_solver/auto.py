"""`AutoSparse`: a direct solver chosen from the operator's tags, kind and size (CHOLMOD,
PARDISO, UMFPACK, SuperLU), and small systems factorized densely in XLA (`dense.py`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, PyTree

from .._matrixfree.structure import Structure
from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.options import check_bool
from ..backends.pardiso.locate import candidates as mkl_candidates
from ..backends.statistics import statistics_shapes
from . import dense, dense_solve
from .cholmod import Cholmod
from .dense import DenseState, Entries
from .direct import AbstractDirectHostSolver
from .equilibration import Equilibrated, from_dense, from_entries
from .pardiso import Pardiso
from .superlu import SuperLU
from .umfpack import UMFPACK


#: The solvers chosen from, with their default options (orderings included).
_CHOLESKY = Cholmod()
_LU = SuperLU()
_MULTIFRONTAL_LU = UMFPACK()


def _indefinite() -> Pardiso | None:
    """PARDISO's `L D L^T` for symmetric indefinite systems, or None without MKL."""
    return Pardiso(matrix_type="symmetric_indefinite") if mkl_candidates() else None


#: Systems smaller than this are factorized densely in XLA by default. Measured on two
#: cores, one BLAS thread (`benchmarks/bench_small.py --parts threshold`), the dense path's
#: time over the host path's: 0.72 / 0.89 / 1.15 at n = 338 / 392 / 450 on the Brusselator
#: with diffrax's Kvaerno5 (about ten solves per factorization), 1.00 / 1.12 / 1.32 at
#: n = 336 / 368 / 400 in a Newton-like loop (one solve per factorization); 0.13 at n = 128
#: and 3.97 at n = 800 on the Brusselator. At 384 neither is more than 1.2x the faster path.
DENSE_BELOW = 384


#: Untagged systems with at least this many unknowns are factorized by UMFPACK, smaller ones
#: by SuperLU. Measured (`benchmarks/bench_direct.py --parts sizes`, one thread, factorization
#: and one solve of a fresh matrix, load 0.2-0.6), UMFPACK's time over SuperLU's: on
#: convection-diffusion (diagonal pivots, where SuperLU's minimum degree on A^T + A shines)
#: 1.15 / 1.13 / 1.24 / 1.14 / 0.92 at n = 576 / 1,600 / 10,000 / 25,600 / 65,536; on Stokes
#: saddle points left untagged 1.12 / 1.06 / 0.78 / 0.65 / 0.44 at n = 290 / 842 / 2,210 /
#: 5,042 / 14,162. Untagged, the kind is unknown at trace time: SuperLU until both gain.
UMFPACK_FROM = 40_000
#: The same for systems tagged symmetric (not positive definite) when MKL is absent: saddle
#: points above all, where UMFPACK gains from a few thousand unknowns (above).
SYMMETRIC_UMFPACK_FROM = 2_000


def _fallback(primary: BackendSpec, secondary: BackendSpec) -> BackendSpec:
    """The spec of `backends.fallback`: `primary`, then `secondary` for a matrix that
    `primary` finds not positive definite or not symmetric. That backend checks symmetry
    itself (it needs no symmetric values: it falls back)."""
    return "fallback", (("primary", primary), ("secondary", secondary))


def _check_dense_below(value: Any) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"`AutoSparse(dense_below=...)` must be a non-negative int (a number of "
            f"unknowns), got {value!r}. Use 0 to never factorize densely."
        )
    if value < 0:
        raise ValueError(
            f"`AutoSparse(dense_below=...)` must be a non-negative int, got {value}. Use 0 "
            "to never factorize densely."
        )


def _double_precision() -> bool:
    """Whether XLA computes in double precision here (`jax_enable_x64`)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.dtype(jnp.float64)


def _equilibrated(operator: SparseOperator, symmetric: bool) -> Equilibrated:
    """The operator's matrix, equilibrated (`equilibration`). The entries of a static
    pattern without duplicates or padding are equilibrated as they are stored (O(nnz)) and
    placed; otherwise duplicates are summed into a dense matrix first (in XLA, which
    flushes subnormal numbers in a sum)."""
    _, data = operator._static_pattern_and_data()  # guarded: the indices are the pattern's
    rows, cols = operator._rows_cols()
    key = operator.pattern_key
    if key is not None and key.nnz == key.nse:
        return from_entries(data, rows, cols, operator.size, symmetric)
    return from_dense(operator._dense(), symmetric)


def _lu_for(size: int, symmetric: bool) -> AbstractDirectHostSolver:
    """The LU solver for a system of `size` unknowns (tagged `symmetric` or not)."""
    threshold = SYMMETRIC_UMFPACK_FROM if symmetric else UMFPACK_FROM
    return _MULTIFRONTAL_LU if size >= threshold else _LU


class AutoSparse(AbstractDirectHostSolver):
    """Chooses a direct solver from the operator's size and tags.

    - Systems smaller than `dense_below` unknowns (384 by default) are factorized as dense
      matrices, inside XLA: Cholesky for operators tagged `lineax.positive_semidefinite_tag`,
      LU with partial pivoting otherwise. Below a few hundred unknowns a dense
      factorization costs less than one crossing to a native library on the host (about
      1 ms with its checks): measured on the Brusselator with diffrax's Kvaerno5, the dense
      path takes 0.13x the host path's time at n = 128 and 0.89x at n = 392, 1.15x at
      n = 450; in a loop of one factorization and one solve, 1.12x at n = 368. The checks
      are the host's: equilibration by powers of two, singularity from the pivots and a
      condition estimate, the backward error of every solve (with iterative refinement
      when it asks for it), the same `lineax.RESULTS` and statistics.
    - Operators tagged `lineax.positive_semidefinite_tag` are solved with `Cholmod()`
      (its default options, ordering included).
    - Operators tagged `lineax.symmetric_tag` (and not positive semidefinite: saddle
      points, KKT systems, indefinite stiffness) are solved with
      `Pardiso(matrix_type="symmetric_indefinite")`, an `L D L^T` factorization that also
      reports the inertia in `stats["inertia"]`, when MKL is installed (the `pardiso`
      extra): on the Taylor-Hood Stokes system with 201,602 unknowns, factorization and
      solve take 2.0 s against 19.6 s with SuperLU and 3.6 s with UMFPACK, one thread
      (`benchmarks/bench_direct.py`). Without MKL, they take the
      LU below, UMFPACK from 2,000 unknowns (saddle points: 0.78x SuperLU's time at
      n = 2,210, 0.44x at n = 14,162).
    - Untagged operators are solved with `SuperLU()` below 40,000 unknowns and with
      `UMFPACK()` from there: SuperLU's minimum degree ordering is the faster one on
      matrices whose diagonal holds the pivots up to a few tens of thousands of unknowns
      (UMFPACK 1.13-1.24x its time at n = 1,600-25,600 on convection-diffusion, 0.92x at
      65,536), UMFPACK's multifrontal LU on larger ones and on saddle points.

    With `fallback=True`, a matrix tagged positive semidefinite that CHOLMOD finds not to be
    positive definite, or one tagged symmetric whose values are not symmetric, is
    factorized with the LU of its size instead of being reported as a failure; without it,
    the failure is reported. Small systems
    behave alike: LU for every matrix with `fallback=True`, Cholesky (failures reported)
    without.

    The dense path needs double precision in XLA (`jax_enable_x64`): without it every
    system takes the host, which factorizes in double precision.

    This solver takes no `options`.
    """

    fallback: bool = False
    dense_below: int = DENSE_BELOW

    def __check_init__(self):
        check_bool("AutoSparse", "fallback", self.fallback)
        _check_dense_below(self.dense_below)

    def factorizes_densely(self, size: int) -> bool:
        """Whether a system of `size` unknowns is factorized densely in XLA."""
        return 0 < size < self.dense_below and _double_precision()

    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        symmetric = lx.is_symmetric(operator) and not lx.is_positive_semidefinite(operator)
        lu = _lu_for(operator.size, symmetric).backend_spec(operator)
        if lx.is_positive_semidefinite(operator):
            first = _CHOLESKY.backend_spec(operator)
        elif lx.is_symmetric(operator) and (indefinite := _indefinite()) is not None:
            first = indefinite.backend_spec(operator)
        else:
            return lu
        return _fallback(first, lu) if self.fallback else first

    def backend_specs(self) -> dict[BackendSpec, bool]:
        lus = {**_LU.backend_specs(), **_MULTIFRONTAL_LU.backend_specs()}
        indefinite = _indefinite()
        firsts = {**_CHOLESKY.backend_specs(), **(indefinite.backend_specs() if indefinite else {})}
        if not self.fallback:
            return {**lus, **firsts}
        specs = dict(lus)
        for first in firsts:
            for lu in lus:
                specs[_fallback(first, lu)] = False
        return specs

    def materialises_densely(self, size: int, colours: int) -> bool:
        """Whether `Materialise` should build the matrix of a matrix-free operator of `size`
        unknowns densely (one product per unknown, `dense_jacobian`) rather than from
        `colours` coloured products and a probe: when it factorizes densely and colouring
        saves at most one product. Measured on ROBER (n = 3, 3 colours): 7% less time per
        KenCarp4 step; on the Brusselator at n = 32 (9 colours) colouring is 10% faster."""
        return self.factorizes_densely(size) and size <= colours + 1

    def init_dense(self, matrix: Array, tags: frozenset[object]) -> DenseState:
        """The state of a dense `matrix` (square, of an operator with `tags`): what `init`
        makes of a small operator, for `Materialise`."""
        cholesky = lx.positive_semidefinite_tag in tags and not self.fallback
        return dense.factor(from_dense(matrix, cholesky), matrix.dtype, cholesky)

    # The four methods of lineax's protocol choose between the dense path and the host
    # solver's (inherited) ones: a state says which path made it.
    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        sparse = self._check_operator(operator)
        if not self.factorizes_densely(sparse.size):
            return super().init(sparse, options)
        cholesky = lx.is_positive_semidefinite(sparse) and not self.fallback
        state = dense.factor(_equilibrated(sparse, cholesky), sparse.data.dtype, cholesky)
        # The host path's statistics (PARDISO's inertia), unknown here: the same keys.
        statistics = tuple(sorted(statistics_shapes(self.backend_spec(sparse)).items()))
        return dataclasses.replace(state, statistics=statistics)

    def compute(
        self, state: Any, vector: PyTree[Array], options: dict[str, Any]
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        if not isinstance(state, DenseState):
            return super().compute(state, vector, options)
        _check_dense_state(state, vector)
        solution, result, stats = dense_solve.solve(state, vector)
        for name, shape in state.statistics:
            stats[name] = jnp.full(shape, -1, dtype=jnp.int32)
        return solution, result, stats

    def transpose(self, state: Any, options: dict[str, Any]):
        if not isinstance(state, DenseState):
            return super().transpose(state, options)
        return dense.transpose(state), {}

    def conj(self, state: Any, options: dict[str, Any]):
        if not isinstance(state, DenseState):
            return super().conj(state, options)
        return dense.conj(state), {}


def dense_jacobian(
    operator: lx.AbstractLinearOperator, inputs: Structure, outputs: Structure
) -> Array:
    """The matrix of `operator` (flattened as `Materialise` flattens), from one product per
    unknown, all at once under `vmap`."""
    dtype = jnp.result_type(inputs.dtype, outputs.dtype)

    def column(unit):
        return outputs.flatten(operator.mv(inputs.unflatten(unit)), dtype)

    return jax.vmap(column)(jnp.eye(inputs.size, dtype=dtype)).T


def _check_dense_state(state: DenseState, vector: Any) -> None:
    """Trace-time checks of a dense state passed by the user (`linear_solve(..., state=)`)."""
    shape = jnp.shape(state.factor)
    n = shape[0] if len(shape) == 2 and shape[0] == shape[1] else None
    problems = [] if n is not None else [f"`factor` must be square, got {shape}"]
    for name in ("permutation", "row_exponents", "column_exponents"):
        if n is not None and jnp.shape(getattr(state, name)) != (n,):
            problems.append(
                f"`{name}` must have shape ({n},), got {jnp.shape(getattr(state, name))}"
            )
    matrix = state.matrix
    if isinstance(matrix, Entries):
        shapes = {jnp.shape(part) for part in (matrix.values, matrix.rows, matrix.columns)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            problems.append(f"`matrix` entries must be vectors of one length, got {shapes}")
    elif n is not None and jnp.shape(matrix) != (n, n):
        problems.append(f"`matrix` must have shape ({n}, {n}), got {jnp.shape(matrix)}")
    if problems:
        raise ValueError("`AutoSparse` was given a malformed state: " + "; ".join(problems) + ".")
    if not eqx.is_array(vector) or jnp.shape(vector) != (n,):
        raise ValueError(
            f"`AutoSparse` solves against a vector of shape ({n},), got {jnp.shape(vector)}."
        )


AutoSparse.__init__.__doc__ = """**Arguments:**

- `fallback`: whether to fall back to SuperLU when a matrix tagged positive semidefinite
    turns out not to be (default `False`: report it).
- `dense_below`: systems with fewer unknowns than this are factorized densely in XLA
    (default 384, where the two paths cost alike); 0 never does, a large value always
    does (a dense factorization costs n^3 and n^2 memory).
"""
