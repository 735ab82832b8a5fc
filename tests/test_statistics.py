"""`stats["relative_residual"]` describes the solution returned, in its dtype.

The host solves in double precision; a float32 or complex64 caller gets the solution
rounded to its dtype, and the statistic is that rounded solution's residual, checked here
against numpy's float64 `|b - op(A) x| / |b|` of the solution as returned.
"""

import cvxopt  # noqa: F401  (before anything that could load CHOLMOD)
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import lineax_sparse as lxs

from . import helpers


def _problem(case):
    if case == "cholmod":
        return helpers.poisson2d(24), lxs.Cholmod(), (lx.positive_semidefinite_tag,)
    if case == "superlu":
        return helpers.random_sparse(300, 0.02, np.float64, seed=3), lxs.SuperLU(), ()
    return helpers.random_sparse(300, 0.02, np.complex128, seed=5), lxs.SuperLU(), ()


def _reference(matrix, x, b, transpose=False):
    """numpy's float64 (complex128) relative residual of `x` as given."""
    a = matrix.astype(np.complex128 if np.iscomplexobj(x) else np.float64)
    a = a.T if transpose else a
    x, b = np.asarray(x).astype(a.dtype), np.asarray(b).astype(a.dtype)
    return np.linalg.norm(b - a @ x) / np.linalg.norm(b)


def _narrow(case):
    return np.complex64 if case == "complex" else np.float32


@pytest.mark.parametrize("case", ["cholmod", "superlu", "complex"])
def test_the_residual_is_that_of_the_narrow_solution_returned(case):
    matrix, solver, tags = _problem(case)
    dtype = _narrow(case)
    operator = helpers.operator(matrix.astype(dtype), tags)
    rng = np.random.default_rng(0)
    b = rng.standard_normal(matrix.shape[0]).astype(dtype)
    if case == "complex":
        b = (b + 1j * rng.standard_normal(matrix.shape[0])).astype(dtype)
    sol = jax.jit(lambda v: lx.linear_solve(operator, v, solver))(jnp.asarray(b))
    assert sol.value.dtype == dtype
    reported = float(sol.stats["relative_residual"])
    expected = _reference(matrix.astype(dtype), sol.value, b)
    # A float32 solution's residual is rounding-sized, far above the host's float64 one.
    assert expected > 1e-9
    np.testing.assert_allclose(reported, expected, rtol=1e-6)


def test_transposed_and_batched_narrow_solves_report_their_own_residuals():
    matrix, solver, tags = _problem("superlu")
    operator = helpers.operator(matrix.astype(np.float32), tags)
    rng = np.random.default_rng(1)
    bs = rng.standard_normal((3, matrix.shape[0])).astype(np.float32)
    state = solver.init(operator, {})
    transposed, options = solver.transpose(state, {})
    for tstate, transpose in ((state, False), (transposed, True)):
        solve = jax.vmap(lambda v, s=tstate: solver.compute(s, v, {}))
        xs, _, stats = solve(jnp.asarray(bs))
        for x, b, reported in zip(xs, bs, stats["relative_residual"], strict=True):
            expected = _reference(matrix.astype(np.float32), x, b, transpose)
            assert expected > 1e-9
            np.testing.assert_allclose(float(reported), expected, rtol=1e-6)


def test_double_precision_keeps_the_host_residual():
    matrix, solver, tags = _problem("superlu")
    operator = helpers.operator(matrix, tags)
    b = np.random.default_rng(2).standard_normal(matrix.shape[0])
    sol = lx.linear_solve(operator, jnp.asarray(b), solver)
    reported = float(sol.stats["relative_residual"])
    assert reported < 1e-13
    assert reported == pytest.approx(_reference(matrix, sol.value, b), abs=1e-15)
