"""`Materialise` under optimistix's least-squares solvers, on optimistix's own test problems.

The problems are those of optimistix's test suite (`tests/helpers.py`), written again here
at small sizes: the Rosenbrock residual (square for two unknowns, overdetermined above)
and the diagonal quadratic bowl (square, a pytree in and out). `GaussNewton` hands its
linear solver the Jacobian itself, whatever its shape; `LevenbergMarquardt` hands it the
damped operator `[J; sqrt(lambda) I]`, always overdetermined. Each sparse solve is compared
with the same optimistix solver using its default dense linear solver.
"""

import cvxopt  # noqa: F401  (before anything that could load CHOLMOD)
import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import lineax_sparse as lxs


def rosenbrock(tree, args):
    """optimistix's least-squares Rosenbrock: `2 (n - 1)` residuals of `n` unknowns."""
    y, _ = jfu.ravel_pytree(tree)
    return (100 * (y[1:] - y[:-1]), args - y[:-1])


def diagonal_quadratic_bowl(tree, args):
    """optimistix's diagonal bowl: one residual per unknown, the pytree's structure."""
    return jax.tree_util.tree_map(lambda y, w: jnp.square(y) * (0.1 + w), tree, args)


def _bowl_problem():
    y0 = ({"a": 0.05 * jnp.ones((2, 3, 3))}, 0.05 * jnp.ones(2))
    leaves, treedef = jax.tree_util.tree_flatten(y0)
    keys = jr.split(jr.PRNGKey(17), len(leaves))
    pairs = zip(keys, leaves, strict=True)
    weights = [jr.normal(k, leaf.shape, leaf.dtype) ** 2 for k, leaf in pairs]
    return diagonal_quadratic_bowl, y0, treedef.unflatten(weights)


def _rosenbrock_problem(n):
    return rosenbrock, [jnp.array(1.5)] * n, jnp.array(1.0)


PROBLEMS = {
    "rosenbrock-square": lambda: _rosenbrock_problem(2),  # 2 residuals, 2 unknowns
    "bowl-square": _bowl_problem,  # 20 residuals, 20 unknowns, a pytree
    "rosenbrock-rectangular": lambda: _rosenbrock_problem(6),  # 10 residuals, 6 unknowns
}
SOLVERS = {"GaussNewton": optx.GaussNewton, "LevenbergMarquardt": optx.LevenbergMarquardt}
INNER = {"Cholmod": lxs.Cholmod, "AutoSparse": lxs.AutoSparse}


def _solve(fn, y0, args, solver):
    run = eqx.filter_jit(
        lambda y, a: optx.least_squares(fn, solver, y, a, max_steps=1024, throw=False)
    )
    return run(y0, args)


@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    "problem",
    # The pytree bowl: about 100 s over its four cases on 2 cores (compilation).
    [
        pytest.param(name, marks=pytest.mark.slow) if name == "bowl-square" else name
        for name in PROBLEMS
    ],
)
def test_least_squares_agree_with_the_dense_default(problem, solver, inner):
    fn, y0, args = PROBLEMS[problem]()
    pattern = lxs.detect_sparsity(lambda y: fn(y, args), y0)
    linear_solver = lxs.Materialise(INNER[inner](), pattern)
    tol = 1e-8  # optimistix's own; the bowl's singular minimum takes LM 408 steps
    sparse_solver = SOLVERS[solver](tol, tol, linear_solver=linear_solver)
    if inner == "Cholmod" and solver == "GaussNewton" and "square" in problem:
        # GaussNewton solves a square Jacobian as it is, and nothing tells `Materialise`
        # that a least-squares solver asks: Cholmod refuses it and says what to use.
        with pytest.raises(ValueError, match=r"square operator.*Materialise\(lineax_sparse"):
            _solve(fn, y0, args, sparse_solver)
        return
    sparse = _solve(fn, y0, args, sparse_solver)
    dense = _solve(fn, y0, args, SOLVERS[solver](tol, tol))
    assert dense.result == optx.RESULTS.successful
    assert sparse.result == optx.RESULTS.successful
    a, _ = jfu.ravel_pytree(sparse.value)
    b, _ = jfu.ravel_pytree(dense.value)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_a_square_jacobian_tagged_positive_semidefinite_goes_to_cholmod():
    """The bowl's Jacobian is diagonal and positive along the path: tagged so, Cholmod
    solves it as it is (the tag reaches the operator through optimistix's `tags=`)."""
    fn, y0, args = _bowl_problem()
    pattern = lxs.detect_sparsity(lambda y: fn(y, args), y0)
    tol = 1e-8
    linear_solver = lxs.Materialise(lxs.Cholmod(), pattern)
    sparse_solver = optx.GaussNewton(tol, tol, linear_solver=linear_solver)
    run = eqx.filter_jit(
        lambda solver: optx.least_squares(
            fn, solver, y0, args, max_steps=1024, tags=frozenset({lx.positive_semidefinite_tag})
        )
    )
    sparse, dense = run(sparse_solver), run(optx.GaussNewton(tol, tol))
    a, _ = jfu.ravel_pytree(sparse.value)
    b, _ = jfu.ravel_pytree(dense.value)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
