"""The dense path of `AutoSparse`: small systems factorized in XLA, checked as the host
checks its factorizations; `dense_solve` solves with them.

A solve on the host costs a callback and its checks, about 1 ms whatever the size, which
is most of the time of a small system (`benchmarks/bench_small.py`). Below a size,
`AutoSparse` factorizes the dense matrix in XLA instead (`factor`), with the host's
promises (`backends.numerics`: same thresholds, same statuses):

- the matrix is equilibrated by powers of two (`equilibration.py`), exactly and subnormal
  numbers included, so that no factorization, norm or product overflows;
- LU with partial pivoting, or Cholesky for operators tagged positive semidefinite
  (values checked Hermitian pair by pair, as `backends.numerics.is_hermitian`); a zero,
  non-finite or (Cholesky) non-positive pivot fails at once, a pivot below `PIVOT_GATE`
  of its column asks for a condition estimate (`condition.py`), below `RCOND_LIMIT`
  singular.

Everything is ordinary JAX (`jit`, `vmap`); derivatives go through `lineax.linear_solve`,
whose backward pass solves with `transpose`d and `conj`ugated states of one factorization.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Inexact, Int

from ..backends.numerics import (
    PIVOT_GATE,
    RCOND_LIMIT,
)
from ..backends.status import Status
from .condition import hermitian, reciprocal_condition
from .equilibration import Equilibrated


#: Row and column exponents within this (and right-hand sides within 2^+-FAST_EXPONENT) let
#: a solve scale by multiplying with powers of two: nothing it computes then overflows, and
#: what underflows is below 2^-600 of its vector (`dense_solve`).
FAST_EXPONENT = 200
#: A Cholesky pivot within this many eps (at least `n` eps) of its column's largest entry is
#: zero to working precision: the rule of the host's CHOLMOD check.
PIVOT_FLOOR = 100
_EPS = float(jnp.finfo(jnp.float64).eps)
T = TypeVar("T")


#: The residuals' products use the dense `S` when `n^2 <= DENSE_PRODUCT * nse`, else its
#: entries: a scatter costs about 30x a dense multiply-add per entry on CPU (measured at
#: n = 32: 1.9 us for 1,024 entries, against 0.1 us for the dense product).
DENSE_PRODUCT = 32


class Entries(eqx.Module):
    """The stored entries of `S`, for products in O(nnz): padding moved to `(0, 0)` with
    value 0, so that every index is in bounds."""

    values: Inexact[Array, " nse"]
    rows: Int[Array, " nse"]
    columns: Int[Array, " nse"]


class DenseState(eqx.Module):
    """State of `AutoSparse`'s dense path: a factorization of `S = R A C` and what its
    checks need. `R = diag(2^-row_exponents)`, `C = diag(2^-column_exponents)`."""

    #: LU of `S[permutation]` (unit lower `L` below the diagonal, `U` above), or the lower
    #: Cholesky factor of `S`, in double precision (complex for complex matrices).
    factor: Inexact[Array, "n n"]
    permutation: Int[Array, " n"]
    #: `S` itself or its entries, for the residuals.
    matrix: Inexact[Array, "n n"] | Entries
    row_exponents: Int[Array, " n"]
    column_exponents: Int[Array, " n"]
    #: `max(|S|_1, |S|_inf)`, the scale of the backward error.
    norm: Float[Array, ""]
    #: The estimated reciprocal 1-norm condition number of `S`, NaN until estimated.
    rcond: Float[Array, ""]
    #: The factorization's `Status`.
    status: Int[Array, ""]
    #: Whether solves may take the multiplicative route (`dense_solve`).
    moderate: Bool[Array, ""]
    #: The operator's dtype (solutions are returned in the right-hand side's).
    dtype: jnp.dtype = eqx.field(static=True)
    cholesky: bool = eqx.field(static=True)
    transpose: bool = eqx.field(static=True, default=False)
    conjugate: bool = eqx.field(static=True, default=False)
    #: The factorization statistics the host path would report for this operator (name,
    #: shape): reported as -1 (unknown), so that `stats` has the same keys on both paths.
    statistics: tuple[tuple[str, tuple[int, ...]], ...] = eqx.field(static=True, default=())


def factor(system: Equilibrated, dtype, cholesky: bool) -> DenseState:
    """Factorize an equilibrated matrix (of an operator of `dtype`) in double precision:
    Cholesky (`cholesky`, for a matrix tagged positive semidefinite) or LU."""
    s, values, entry_rows, entry_columns, rows, columns, finite, column_max, norm = system
    n = s.shape[0]
    matrix = s
    if n * n > DENSE_PRODUCT * values.shape[0]:
        valid = (entry_rows < n) & (entry_columns < n)
        matrix = Entries(
            jnp.where(valid, values, 0),
            jnp.where(valid, entry_rows, 0),
            jnp.where(valid, entry_columns, 0),
        )
    status = jnp.where(finite, Status.OK, Status.NONFINITE_INPUT).astype(jnp.int32)
    if cholesky:
        factor_ = jax.lax.linalg.cholesky(s, symmetrize_input=True)
        permutation = jnp.arange(n, dtype=jnp.int32)
        ratio = jnp.abs(jnp.diagonal(factor_)) ** 2 / column_max
        status = first_failure(
            status,
            (~hermitian(s), Status.NOT_SYMMETRIC),
            (jnp.any(~jnp.isfinite(ratio) | (ratio <= 0)), Status.NOT_POSITIVE_DEFINITE),
            (jnp.any(ratio <= max(n, PIVOT_FLOOR) * _EPS), Status.SINGULAR),
        )
    else:
        factor_, _, permutation = jax.lax.linalg.lu(s)
        ratio = jnp.abs(jnp.diagonal(factor_)) / column_max
        status = first_failure(
            status, (jnp.any(~jnp.isfinite(ratio) | (ratio == 0)), Status.SINGULAR)
        )
    state = DenseState(
        factor_,
        permutation.astype(jnp.int32),
        matrix,
        rows,
        columns,
        norm,
        jnp.array(jnp.nan),
        status,
        jnp.array(False),
        jnp.dtype(dtype),
        cholesky,
    )
    # A small pivot: is the matrix singular to working precision?
    gate = (status == Status.OK) & jnp.any(ratio < PIVOT_GATE)
    rcond = when(gate, lambda: estimate_rcond(state), state.rcond)
    status = first_failure(status, (rcond < RCOND_LIMIT, Status.SINGULAR))
    # Scales within 2^+-FAST_EXPONENT let solves scale by multiplication (`dense_solve`).
    moderate = (status == Status.OK) & (
        jnp.maximum(jnp.max(jnp.abs(rows)), jnp.max(jnp.abs(columns))) <= FAST_EXPONENT
    )
    return dataclasses.replace(state, rcond=rcond, status=status, moderate=moderate)


def when(need: Bool[Array, ""], compute: Callable[[], T], default: T) -> T:
    """`compute()` if `need`, else `default`. A loop that runs its body at most once rather
    than `lax.cond`: under `vmap` a cond becomes a select that computes both branches for
    every element, while a loop runs its (masked) body only if some element needs it."""

    def body(carry):
        return jnp.array(False), compute()

    _, out = jax.lax.while_loop(lambda carry: carry[0], body, (need, default))
    return out


def first_failure(status: Int[Array, ""], *checks) -> Int[Array, ""]:
    """`status`, or the code of the first failed check when it is `OK` (checks in order
    of priority: a NaN right-hand side is `NONFINITE_INPUT`, not the `SINGULAR` it leads to)."""
    found = jnp.asarray(Status.OK, jnp.int32)
    for failed, code in reversed(checks):  # the first failed check is written last
        found = jnp.where(failed, code, found)
    return jnp.where(status == Status.OK, found, status).astype(jnp.int32)


def estimate_rcond(state: DenseState) -> Float[Array, ""]:
    n = state.factor.shape[0]
    if isinstance(state.matrix, Entries):
        magnitude = jnp.abs(state.matrix.values)
        column_sums = jnp.zeros(n, magnitude.dtype).at[state.matrix.columns].add(magnitude)
    else:
        column_sums = jnp.sum(jnp.abs(state.matrix), axis=0)
    return reciprocal_condition(
        lambda v: apply_inverse(state, v, False, False),
        lambda v: apply_inverse(state, v, True, True),
        n,
        jnp.max(column_sums),
        state.factor.dtype,
    )


def apply_inverse(state: DenseState, block: Array, transpose: bool, conjugate: bool) -> Array:
    """`op(S)^-1 block` for a block `(n, k)` of the factor's dtype (real for a real one)."""
    triangular = jax.lax.linalg.triangular_solve
    if state.cholesky:  # S is Hermitian: S^T = conj(S), so only the conjugation remains
        conjugate = conjugate != transpose
        work = jnp.conj(block) if conjugate else block
        half = triangular(state.factor, work, left_side=True, lower=True)
        x = triangular(
            state.factor, half, left_side=True, lower=True, transpose_a=True, conjugate_a=True
        )
        return jnp.conj(x) if conjugate else x
    # S[p] = L U:  S x = b <=> L U x = b[p];  S^T x = b <=> U^T L^T (x[p]) = b.
    # conj(S) x = b <=> S conj(x) = conj(b).
    work = jnp.conj(block) if conjugate else block
    lu, p = state.factor, state.permutation
    if not transpose:
        gathered = work.at[p].get(mode="promise_in_bounds")
        half = triangular(lu, gathered, left_side=True, lower=True, unit_diagonal=True)
        x = triangular(lu, half, left_side=True, lower=False)
    else:
        half = triangular(lu, work, left_side=True, lower=False, transpose_a=True)
        y = triangular(lu, half, left_side=True, lower=True, transpose_a=True, unit_diagonal=True)
        x = jnp.zeros_like(y).at[p].set(y, mode="promise_in_bounds")
    return jnp.conj(x) if conjugate else x


def product(state: DenseState, y: Array) -> Array:
    """`op(S) y` with the state's flags, for a block `y` `(n, k)`."""
    if not isinstance(state.matrix, Entries):
        matrix = state.matrix.T if state.transpose else state.matrix
        return jnp.conj(matrix @ jnp.conj(y)) if state.conjugate else matrix @ y
    rows, columns = state.matrix.rows, state.matrix.columns
    if state.transpose:
        rows, columns = columns, rows
    values = jnp.conj(state.matrix.values) if state.conjugate else state.matrix.values
    gathered = y.at[columns].get(mode="promise_in_bounds")
    return jnp.zeros_like(y).at[rows].add(values[:, None] * gathered, mode="promise_in_bounds")


def transpose(state: DenseState) -> DenseState:
    return dataclasses.replace(state, transpose=not state.transpose)


def conj(state: DenseState) -> DenseState:
    return dataclasses.replace(state, conjugate=not state.conjugate)
