"""What the dense path (`dense.py`) asks of a matrix beyond its factorization, in XLA: a
condition estimate (`reciprocal_condition`, as `backends.numerics.estimate_rcond`) and
the symmetry a Cholesky factorization needs (`hermitian`, as
`backends.numerics.is_hermitian`). The thresholds are the host's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Inexact

from ..backends.numerics import SYMMETRY_FLOOR, SYMMETRY_RTOL


#: Steps of the estimator after its first (LAPACK's `xLACN2` takes at most 5 in all).
ESTIMATOR_STEPS = 4


def _sign(y: Array) -> Array:
    """`y / |y|` (1 where `y` is 0): the vector the 1-norm's subgradient is made of."""
    magnitude = jnp.abs(y)
    positive = magnitude > 0
    unit = y / jnp.where(positive, magnitude, 1.0).astype(y.dtype)
    return jnp.where(positive, unit, jnp.ones_like(y))


def reciprocal_condition(
    solve: Callable[[Array], Array],
    solve_adjoint: Callable[[Array], Array],
    n: int,
    norm1: Float[Array, ""],
    dtype,
) -> Float[Array, ""]:
    """`1 / (|S|_1 est(|S^-1|_1))` for a factorized `S` of size `n`: `solve` applies
    `S^-1` and `solve_adjoint` applies `S^-H` to a block `(n, 1)`.

    Hager and Higham's 1-norm estimator (LAPACK's `xLACN2`): each estimate is `|S^-1 x|_1`
    for some `|x|_1 = 1`, a lower bound of `|S^-1|_1`, so the reciprocal condition number
    is never estimated below the true one: a well-conditioned matrix is never taken for a
    singular one. 0 when the estimate is not finite.
    """

    def estimate_from(x):
        y = solve(x)
        return jnp.sum(jnp.abs(y)), y

    est, y = estimate_from(jnp.full((n, 1), 1.0 / n, dtype))
    z = solve_adjoint(_sign(y))
    j = jnp.argmax(jnp.abs(z[:, 0]))

    def step(carry):
        k, j, est, _ = carry
        new, y = estimate_from(jnp.zeros((n, 1), dtype).at[j, 0].set(1.0))
        z = jnp.abs(solve_adjoint(_sign(y))[:, 0])
        j_new = jnp.argmax(z)
        # Stop when the estimate no longer grows or the same column comes back.
        done = (new <= est) | (z[j_new] <= z[j])
        return k + 1, j_new, jnp.maximum(est, new), done

    def going(carry):
        k, _, est, done = carry
        return (k < ESTIMATOR_STEPS) & ~done & jnp.isfinite(est)

    _, _, est, _ = jax.lax.while_loop(going, step, (0, j, est, jnp.array(False)))
    # Higham's alternative vector, for the matrices the iteration underestimates.
    i = np.arange(n)
    alternative = (-1.0) ** i * (1.0 + i / max(n - 1, 1))
    extra, _ = estimate_from(jnp.asarray(alternative / np.sum(np.abs(alternative)), dtype)[:, None])
    est = jnp.maximum(est, extra)
    rcond = 1.0 / (norm1 * est)
    return jnp.where(jnp.isfinite(est) & (est > 0), rcond, 0.0)


def hermitian(s: Inexact[Array, "n n"]) -> Bool[Array, ""]:
    """Whether `s` is symmetric (real) or Hermitian (complex) within rounding, decided pair
    by pair: `|s_ij - conj(s_ji)| <= SYMMETRY_RTOL max(|s_ij|, |s_ji|) + SYMMETRY_FLOOR
    sqrt(|s_ii| |s_jj|)` (so no large entry elsewhere excuses an asymmetric pair), and a
    diagonal whose imaginary part is within `SYMMETRY_RTOL` of its entry."""
    mirror = jnp.conj(s.T)
    diagonal = jnp.diagonal(s)
    root = jnp.sqrt(jnp.abs(diagonal))
    floor = SYMMETRY_FLOOR * root[:, None] * root[None, :]
    larger = jnp.maximum(jnp.abs(s), jnp.abs(mirror))
    pairs = jnp.all(jnp.abs(s - mirror) <= SYMMETRY_RTOL * larger + floor)
    if not jnp.iscomplexobj(s):
        return pairs
    return pairs & jnp.all(jnp.abs(diagonal.imag) <= SYMMETRY_RTOL * jnp.abs(diagonal))
