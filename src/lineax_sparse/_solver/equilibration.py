"""The matrix the dense path factorizes: `S = R A C` in double precision, and what its
checks need to know of it (`Equilibrated`).

Rows, then columns, are scaled by powers of two to a largest magnitude in `[0.5, 1)` (as
LAPACK's `xGEEQUB` and the host's `backends.numerics.equilibrate`), or symmetrically from
the diagonal (`D A D`, diagonal in `[0.25, 1)`) for a Cholesky factorization. Powers of two
scale exactly, so the factorization, its norms and its products never overflow, and a
matrix scaled by any power of two solves alike. The exponents are computed from the bits
(`exact.decompose`): XLA on CPU flushes subnormal numbers to zero in arithmetic, which
would take a matrix scaled by 1e-310 for the zero matrix.

`from_entries` works on the stored entries of a pattern without duplicates, O(nnz) before
the one scatter that makes the dense matrix; `from_dense` on a dense matrix (duplicates
summed), O(n^2). At n = 400, each pass over a dense matrix costs about a tenth of its LU.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Inexact, Int

from .exact import decompose, power_of_two


#: Exponents of empty rows and columns (zero entries) in the maxima below.
_NONE = -(2**30)


class Equilibrated(NamedTuple):
    """`S = R A C`, `R = diag(2^-rows)`, `C = diag(2^-columns)`, in double precision:
    dense, and as entries (`values` at `(entry_rows, entry_columns)`, index `n` for
    padding) for products in O(nnz)."""

    matrix: Inexact[Array, "n n"]
    values: Inexact[Array, " nse"]
    entry_rows: Int[Array, " nse"]
    entry_columns: Int[Array, " nse"]
    rows: Int[Array, " n"]
    columns: Int[Array, " n"]
    #: Whether every entry of `A` is finite.
    finite: Bool[Array, ""]
    #: The largest magnitude of each column of `S`, and `max(|S|_1, |S|_inf)`.
    column_max: Float[Array, " n"]
    norm: Float[Array, ""]


def working_dtype(dtype) -> jnp.dtype:
    """Double precision of the kind of `dtype`: what the host factorizes in too."""
    return jnp.dtype(jnp.complex128 if jnp.issubdtype(dtype, jnp.complexfloating) else jnp.float64)


def parts(x: Array) -> list[Array]:
    """The real parts a value is made of: itself, or its real and imaginary parts."""
    return [x.real, x.imag] if jnp.iscomplexobj(x) else [x]


def _or_zero(exponent: Int[Array, "..."]) -> Int[Array, "..."]:
    return jnp.where(exponent == _NONE, 0, exponent)


def _exponents(pieces) -> Int[Array, "..."]:
    """The exponent of each entry's larger part, `_NONE` for zeros."""
    exponents = [jnp.where(m != 0, e, _NONE) for m, e in pieces]
    return exponents[0] if len(exponents) == 1 else jnp.maximum(*exponents)


def scale_back(pieces, exponents: Int[Array, "..."]) -> Array:
    """`sum m 2^(e - exponents)` over decomposed parts `(m, e)` (real, or real and
    imaginary), in double precision: exact, results below the normal range flushed."""
    values = [m * power_of_two(e - exponents) for m, e in pieces]
    return values[0] if len(values) == 1 else jax.lax.complex(*values)


def from_entries(
    values: Inexact[Array, " nse"],
    rows: Int[Array, " nse"],
    cols: Int[Array, " nse"],
    n: int,
    symmetric: bool,
) -> Equilibrated:
    """`S` from the entries of a matrix, none at the same position (indices equal to `n`
    are padding and left out): exponents, scaling, column maxima and norms in O(nnz),
    then one scatter into the dense matrix."""
    work = working_dtype(values.dtype)
    pieces = [decompose(part) for part in parts(values)]
    exponent = _exponents(pieces)
    none = jnp.full(n, _NONE, jnp.int32)
    if symmetric:
        diagonal = none.at[rows].max(jnp.where(rows == cols, exponent, _NONE), mode="drop")
        row_exponents = column_exponents = (_or_zero(diagonal) + 1) // 2
    else:
        row_exponents = _or_zero(none.at[rows].max(exponent, mode="drop"))
        row_of = row_exponents.at[rows].get(mode="fill", fill_value=0)
        column_exponents = _or_zero(none.at[cols].max(exponent - row_of, mode="drop"))
    shift = row_exponents.at[rows].get(mode="fill", fill_value=0) + column_exponents.at[cols].get(
        mode="fill", fill_value=0
    )
    scaled = scale_back(pieces, shift).astype(work)
    magnitude = jnp.abs(scaled)
    zeros = jnp.zeros(n, magnitude.dtype)
    column_sums = zeros.at[cols].add(magnitude, mode="drop")
    row_sums = zeros.at[rows].add(magnitude, mode="drop")
    valid = (rows < n) & (cols < n)
    return Equilibrated(
        jnp.zeros((n, n), work).at[rows, cols].set(scaled, mode="drop"),
        scaled,
        rows,
        cols,
        row_exponents,
        column_exponents,
        jnp.all(jnp.isfinite(values) | ~valid),
        zeros.at[cols].max(magnitude, mode="drop"),
        jnp.maximum(jnp.max(column_sums), jnp.max(row_sums)),
    )


def from_dense(matrix: Inexact[Array, "n n"], symmetric: bool) -> Equilibrated:
    """`S` from a dense matrix of any floating dtype, O(n^2)."""
    work = working_dtype(matrix.dtype)
    pieces = [decompose(part) for part in parts(matrix)]
    exponent = _exponents(pieces)
    if symmetric:
        row_exponents = column_exponents = (_or_zero(jnp.diagonal(exponent)) + 1) // 2
    else:
        row_exponents = _or_zero(jnp.max(exponent, axis=1))
        column_exponents = _or_zero(jnp.max(exponent - row_exponents[:, None], axis=0))
    s = scale_back(pieces, row_exponents[:, None] + column_exponents[None, :]).astype(work)
    magnitude = jnp.abs(s)
    norm = jnp.maximum(jnp.max(jnp.sum(magnitude, axis=0)), jnp.max(jnp.sum(magnitude, axis=1)))
    n = s.shape[0]
    index = jnp.arange(n * n, dtype=jnp.int32)
    return Equilibrated(
        s,
        s.ravel(),
        index // n,
        index % n,
        row_exponents,
        column_exponents,
        jnp.all(jnp.isfinite(matrix)),
        jnp.max(magnitude, axis=0),
        norm,
    )
