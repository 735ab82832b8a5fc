"""Cholmod and AutoSparse specifics; the shared grid is in test_solvers.py."""

import cvxopt
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from cvxopt import cholmod

import lineax_sparse as lxs

from .helpers import (
    assert_close,
    elasticity2d,
    load,
    matrix,
    matrix_operator,
    operator,
    random_sparse,
    random_vector,
    with_data,
)


PSD = lx.positive_semidefinite_tag
CHOLMOD = lxs.Cholmod()


def unchecked(op, b, solver=CHOLMOD):
    return lx.linear_solve(op, b, solver=solver, throw=False)


def _failed(solution, result=lx.RESULTS.singular):
    assert solution.result == result, lx.RESULTS[solution.result]
    assert np.all(np.isnan(solution.value))


@pytest.mark.parametrize("name", ["494_bus", "poisson", "elasticity"])
def test_agrees_with_cvxopt_called_directly(name, getkey):
    dense = matrix(name).tocoo()
    b = random_vector(getkey(), dense.shape[0], jnp.float64)
    x = lx.linear_solve(matrix_operator(name), b, solver=lxs.Cholmod()).value
    native = cvxopt.matrix(np.asarray(b))
    cholmod.linsolve(
        cvxopt.spmatrix(dense.data, dense.row.tolist(), dense.col.tolist(), dense.shape), native
    )
    np.testing.assert_allclose(x, np.asarray(native).ravel(), rtol=1e-9)


@pytest.mark.parametrize(
    "options",
    [
        dict(mode="supernodal"),
        dict(mode="simplicial"),
        dict(mode="simplicial", factorization="LDL"),
        dict(mode="auto", factorization="LDL"),
        dict(ordering="natural"),
    ],
)
@pytest.mark.parametrize("name", ["elasticity", "random-hpd", "494_bus"])
def test_modes_and_orderings(options, name, getkey):
    dense = matrix(name)
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    x = lx.linear_solve(matrix_operator(name), b, solver=lxs.Cholmod(**options)).value
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    assert np.max(np.abs(x - expected)) / np.max(np.abs(expected)) <= 1e-8


def test_indefinite_matrix_is_reported_not_solved(getkey):
    op = operator(load("hangGlider_2.mtx"), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    _failed(jax.jit(unchecked)(op, b))
    _failed(unchecked(op, b, lxs.Cholmod(mode="simplicial", factorization="LDL")))
    with pytest.raises(Exception, match="non-finite"):
        lx.linear_solve(op, b, solver=lxs.Cholmod()).value.block_until_ready()


def test_singular_matrix_is_reported(getkey):
    op = operator(load("zenios.mtx"), PSD)
    _failed(unchecked(op, random_vector(getkey(), op.size, jnp.float64)))
    # A pure-Neumann Laplacian: singular, positive semidefinite, factors with noise pivots.
    path = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(50, 50)).tolil()
    path[0, 0] = path[49, 49] = 1.0
    laplacian = sp.kron(sp.eye_array(50), path) + sp.kron(path, sp.eye_array(50))
    for solver in (lxs.Cholmod(), lxs.Cholmod(mode="simplicial", factorization="LDL")):
        _failed(unchecked(operator(laplacian.tocsr(), PSD), jnp.ones(2500), solver))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_values_are_reported(bad, getkey):
    op = matrix_operator("random-spd")
    # Keep the values symmetric so that only finiteness is at fault.
    diagonal = int(jnp.flatnonzero(op.indices[:, 0] == op.indices[:, 1])[0])
    data = op.data.at[diagonal].set(bad)
    b = random_vector(getkey(), op.size, jnp.float64)
    _failed(jax.jit(lambda d: unchecked(with_data(op, d), b))(data), lx.RESULTS.nonfinite_input)


def test_values_that_are_not_symmetric_are_reported(getkey):
    """CHOLMOD alone would silently use the lower triangle and return a wrong answer."""
    dense = random_sparse(40, 0.1, np.float64, seed=50)  # not symmetric
    op = operator(dense, PSD)
    _failed(unchecked(op, random_vector(getkey(), 40, jnp.float64)))
    # Rounding-level asymmetry from assembly is accepted.
    spd = matrix("random-spd").tocoo()
    noisy = spd.data * (1 + 1e-15 * np.cos(np.arange(spd.nnz)))
    op = operator(sp.coo_matrix((noisy, (spd.row, spd.col)), shape=spd.shape), PSD)
    assert unchecked(op, jnp.ones(op.size)).result == lx.RESULTS.successful


def test_requires_the_positive_semidefinite_tag():
    op = operator(matrix("random-spd"))
    with pytest.raises(ValueError, match="positive_semidefinite_tag.*SuperLU"):
        lx.linear_solve(op, jnp.ones(op.size), solver=lxs.Cholmod())
    negative = operator(-matrix("random-spd"), lx.negative_semidefinite_tag)
    with pytest.raises(ValueError, match="negated"):
        lx.linear_solve(negative, jnp.ones(op.size), solver=lxs.Cholmod())


def test_options_are_checked():
    with pytest.raises(ValueError, match="mode"):
        lxs.Cholmod(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factorization"):
        lxs.Cholmod(factorization="LU")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ordering"):
        lxs.Cholmod(ordering="metis")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="simplicial"):
        lxs.Cholmod(mode="supernodal", factorization="LDL")


def test_several_live_factors_of_one_pattern(getkey):
    """`numeric` overwrites its factor in place: live factors must never share one."""
    op = operator(elasticity2d(30, 10), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    solver = lxs.Cholmod()
    scales = [1.0, 2.0, 5.0]
    states = [solver.init(with_data(op, op.data * s), {}) for s in scales]
    reference = np.linalg.solve(np.asarray(op.as_matrix()), np.asarray(b))
    for _ in range(2):
        for s, state in zip(scales, states, strict=True):
            x = lx.linear_solve(op, b, solver=solver, state=state).value
            assert_close(x * s, reference, jnp.float64, factor=100)
    info = lxs.cache_info()
    assert info.factorizations == 3 and info.analyses == 1 and info.misses == 0


def test_optimization_loop_analyses_the_pattern_once(getkey):
    op = operator(elasticity2d(30, 10), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    loss = jax.jit(
        jax.value_and_grad(
            lambda d: jnp.sum(lx.linear_solve(with_data(op, d), b, solver=lxs.Cholmod()).value ** 2)
        )
    )
    for i in range(6):
        jax.block_until_ready(loss(op.data * (1.0 + 0.1 * i)))
    info = lxs.cache_info()
    assert (info.analyses, info.factorizations, info.misses) == (1, 6, 0)


def test_cvxopt_global_options_are_left_as_the_user_set_them(getkey):
    before = dict(cholmod.options)
    cholmod.options["supernodal"] = 0
    try:
        snapshot = dict(cholmod.options)
        lx.linear_solve(matrix_operator("poisson"), jnp.ones(144), solver=lxs.Cholmod())
        assert dict(cholmod.options) == snapshot
    finally:
        cholmod.options.clear()
        cholmod.options.update(before)


def test_auto_sparse_chooses_by_tags(getkey):
    spd, general = matrix_operator("random-spd"), matrix_operator("random-real")
    auto = lxs.AutoSparse()
    assert auto.init(spd, {}).spec[0] == "cholmod"
    assert auto.init(general, {}).spec[0] == "superlu"
    for op, name in ((spd, "random-spd"), (general, "random-real")):
        b = random_vector(getkey(), op.size, jnp.float64)
        g = jax.grad(
            lambda d, v, op=op: jnp.sum(
                lx.linear_solve(with_data(op, d), v, solver=auto).value ** 2
            ),
            argnums=1,
        )(op.data, b)
        dense = matrix(name).toarray()
        x = np.linalg.solve(dense, np.asarray(b))
        assert_close(g, np.linalg.solve(dense.T, 2 * x), jnp.float64)


def test_auto_sparse_fallback(getkey):
    op = operator(load("hangGlider_2.mtx"), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    _failed(unchecked(op, b, lxs.AutoSparse()))
    x = lx.linear_solve(op, b, solver=lxs.AutoSparse(fallback=True)).value
    expected = np.linalg.solve(load("hangGlider_2.mtx").toarray(), np.asarray(b))
    assert np.max(np.abs(x - expected)) / np.max(np.abs(expected)) <= 1e-3
    # A tagged matrix whose values are not symmetric also falls back.
    dense = random_sparse(30, 0.1, np.float64, seed=51)
    x = lx.linear_solve(operator(dense, PSD), jnp.ones(30), solver=lxs.AutoSparse(True)).value
    assert_close(x, np.linalg.solve(dense.toarray(), np.ones(30)), jnp.float64)
    with pytest.raises(ValueError, match="fallback"):
        lxs.AutoSparse(fallback="yes")  # type: ignore[arg-type]
