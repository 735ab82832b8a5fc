"""Every lineax-sparse direct solver on the same grid: solves and every transformation,
each against an independent reference (dense solves, dense autodiff, finite differences,
the native library called directly)."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import lineax_sparse as lxs

from .helpers import (
    assert_close,
    assert_solves,
    dense_from_data,
    eps,
    finite_difference,
    MATRICES,
    matrix,
    matrix_condition,
    matrix_operator,
    random_vector,
    SOLVERS,
    symmetric_direction,
    with_data,
)


CASES = [(s, m) for s, (_, names, _) in SOLVERS.items() for m in names]
GRADIENT_CASES = [(s, m) for s, (_, _, names) in SOLVERS.items() for m in names]


def solve(op, b, solver, **kwargs):
    return lx.linear_solve(op, b, solver=solver, **kwargs).value


def _relative_error(x, expected):
    return float(np.max(np.abs(np.asarray(x) - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("solver_name, name", CASES)
@pytest.mark.parametrize("jit", [False, True])
def test_solve_matches_dense(solver_name, name, jit, getkey):
    solver = SOLVERS[solver_name][0]
    op, dense = matrix_operator(name), matrix(name)
    b = random_vector(getkey(), op.size, dense.dtype)
    fn = jax.jit(solve, static_argnums=2) if jit else solve
    x = fn(op, b, solver)
    assert x.dtype == dense.dtype
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    # Backward stable, and as close to LAPACK's answer as condition numbers up to 5e11 allow.
    assert_solves(dense, x, b, reference=expected, condition=matrix_condition(name))


@pytest.mark.parametrize("solver_name", list(SOLVERS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_single_precision_in_single_precision_out(solver_name, dtype, getkey):
    solver = SOLVERS[solver_name][0]
    name = "random-spd" if dtype == jnp.float32 else "random-hpd"
    op = matrix_operator(name)
    op = with_data(op, op.data.astype(dtype))
    b = random_vector(getkey(), op.size, dtype)
    x = jax.jit(solve, static_argnums=2)(op, b, solver)
    assert x.dtype == dtype
    # Factorized in double precision on the host: the double-precision solution of the
    # single-precision system, rounded (its own error, kappa eps of double, is far below).
    single = matrix(name).astype(dtype)
    wide = np.complex128 if dtype == jnp.complex64 else np.float64
    expected = np.linalg.solve(single.toarray().astype(wide), np.asarray(b).astype(wide))
    assert_solves(single, x, b, reference=expected)
    assert _relative_error(x, expected) <= eps(dtype)


@pytest.mark.parametrize("solver_name, name", GRADIENT_CASES)
def test_transpose_and_conj_states_reuse_the_factorization(solver_name, name, getkey):
    solver = SOLVERS[solver_name][0]
    op, dense = matrix_operator(name), matrix(name).toarray()
    b = random_vector(getkey(), op.size, dense.dtype)
    state = solver.init(op, {})
    transposed, _ = solver.transpose(state, {})
    conjugated, _ = solver.conj(state, {})
    adjoint, _ = solver.conj(transposed, {})
    for st, op_, reference in (
        (transposed, op.transpose(), dense.T),
        (conjugated, lx.conj(op), dense.conj()),
        (adjoint, lx.conj(op.transpose()), dense.conj().T),
    ):
        x = solve(op_, b, solver, state=st)
        expected = np.linalg.solve(reference, np.asarray(b))
        assert_solves(reference, x, b, reference=expected)
    assert lxs.cache_info().factorizations == 1


def _losses(op, solver, weights):
    """A scalar loss through our solve, and the same loss through a dense jnp solve."""

    def ours(data, b):
        x = solve(with_data(op, data), b, solver)
        return jnp.real(jnp.vdot(weights, x * x))

    def dense(data, b):
        x = jnp.linalg.solve(dense_from_data(op, data), b)
        return jnp.real(jnp.vdot(weights, x * x))

    return ours, dense


def _gradient_factor(name):
    # Gradients inherit the conditioning: relative tolerance ~ cond(A) * eps.
    return max(1.0, MATRICES[name][1] / 1e-11)


@pytest.mark.parametrize("solver_name, name", GRADIENT_CASES)
def test_gradients_match_dense_autodiff(solver_name, name, getkey):
    solver = SOLVERS[solver_name][0]
    op, dtype = matrix_operator(name), matrix(name).dtype
    b = random_vector(getkey(), op.size, dtype)
    ours, dense = _losses(op, solver, random_vector(getkey(), op.size, dtype))
    value, grads = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(op.data, b)
    value_d, grads_d = jax.value_and_grad(dense, argnums=(0, 1))(op.data, b)
    factor = _gradient_factor(name)
    assert_close(value, value_d, dtype, factor)
    for g, g_d in zip(grads, grads_d, strict=True):
        assert_close(g, g_d, dtype, factor)
    assert lxs.cache_info().factorizations == 1  # the backward pass reused it


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_gradients_match_finite_differences(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    op = matrix_operator(names[0])
    b = random_vector(getkey(), op.size, jnp.float64)
    ours, _ = _losses(op, solver, random_vector(getkey(), op.size, jnp.float64))
    g_data, g_b = jax.grad(ours, argnums=(0, 1))(op.data, b)
    direction = symmetric_direction(op)  # values stay valid for a symmetric solver
    fd = finite_difference(lambda d: ours(d, b), op.data, direction)
    np.testing.assert_allclose(jnp.dot(g_data, direction), fd, rtol=1e-6)
    direction = random_vector(getkey(), op.size, jnp.float64)
    fd = finite_difference(lambda v: ours(op.data, v), b, direction)
    np.testing.assert_allclose(jnp.dot(g_b, direction), fd, rtol=1e-6)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_jvp_and_hessian_vector_product(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    op = matrix_operator(names[0])
    b = random_vector(getkey(), op.size, jnp.float64)
    ours, dense = _losses(op, solver, random_vector(getkey(), op.size, jnp.float64))
    t_data = symmetric_direction(op)
    t_b = random_vector(getkey(), op.size, jnp.float64)
    ours_x = lambda d, v: solve(with_data(op, d), v, solver)
    dense_x = lambda d, v: jnp.linalg.solve(dense_from_data(op, d), v)
    _, jvp = jax.jit(lambda d, v: jax.jvp(ours_x, (d, v), (t_data, t_b)))(op.data, b)
    _, jvp_d = jax.jvp(dense_x, (op.data, b), (t_data, t_b))
    assert_close(jvp, jvp_d, jnp.float64)

    def hvp(loss, data):
        return jax.jvp(jax.grad(loss), (data,), (t_data,))[1]

    h = jax.jit(lambda d: hvp(lambda x: ours(x, b), d))(op.data)
    assert_close(h, hvp(lambda x: dense(x, b), op.data), jnp.float64, factor=10)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_user_provided_state(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    op, dense = matrix_operator(names[0]), matrix(names[0]).toarray()
    state = solver.init(op, {})
    b1, b2 = (random_vector(getkey(), op.size, jnp.float64) for _ in range(2))
    f = jax.jit(lambda o, v, s: solve(o, v, solver, state=s))
    for b in (b1, b2):
        assert_close(f(op, b, state), np.linalg.solve(dense, b), jnp.float64)
    g = jax.grad(lambda v: jnp.sum(solve(op, v, solver, state=state)))(b1)
    assert_close(g, np.linalg.solve(dense.T, np.ones(op.size)), jnp.float64)
    assert lxs.cache_info().factorizations == 1


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_inside_scan(solver_name, getkey):
    solver = SOLVERS[solver_name][0]
    op = matrix_operator("poisson")
    b = random_vector(getkey(), op.size, jnp.float64)

    def step(carry, scale, solver=solver):
        if solver is None:
            x = jnp.linalg.solve(dense_from_data(op, op.data * scale), carry)
        else:
            x = solve(with_data(op, op.data * scale), carry, solver)
        return x / jnp.linalg.norm(x), jnp.sum(x)

    scales = jnp.linspace(1.0, 2.0, 5)
    run = lambda b, s: jax.lax.scan(lambda c, x: step(c, x, s), b, scales)
    final, sums = jax.jit(lambda b: run(b, solver))(b)
    final_d, sums_d = run(b, None)
    assert_close(sums, sums_d, jnp.float64)
    assert_close(final, final_d, jnp.float64)
    g = jax.grad(lambda b: jnp.sum(run(b, solver)[1]))(b)
    g_d = jax.grad(lambda b: jnp.sum(run(b, None)[1]))(b)
    assert_close(g, g_d, jnp.float64, factor=10)
    assert lxs.cache_info().analyses == 1


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_vmap_over_right_hand_sides_is_one_factorization(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    name = names[-1]
    op, dense = matrix_operator(name), matrix(name).toarray()
    bs = jnp.stack([random_vector(getkey(), op.size, dense.dtype) for _ in range(8)])
    xs = jax.jit(jax.vmap(lambda o, v: solve(o, v, solver), in_axes=(None, 0)))(op, bs)
    expected = np.linalg.solve(dense, np.asarray(bs).T).T
    for x, b, reference in zip(xs, bs, expected, strict=True):
        assert_solves(dense, x, b, reference=reference, condition=matrix_condition(name))
    info = lxs.cache_info()
    assert info.factorizations == 1 and info.misses == 0
    assert info.host_calls == 1  # one call: one factorization, one solve of all 8


def _batched_data(op, count):
    return jnp.stack([op.data * (1.0 + 0.25 * i) for i in range(count)])


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_vmap_over_values_and_both(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    op = matrix_operator(names[1])  # complex
    dtype = op.data.dtype
    datas = _batched_data(op, 4)
    bs = jnp.stack([random_vector(getkey(), op.size, dtype) for _ in range(4)])
    solve_data = lambda d, v: solve(with_data(op, d), v, solver)
    dense = [np.asarray(dense_from_data(op, d)) for d in datas]

    xs = jax.jit(jax.vmap(solve_data, in_axes=(0, None)))(datas, bs[0])
    for i in range(4):
        assert_close(xs[i], np.linalg.solve(dense[i], bs[0]), dtype)
    info = lxs.cache_info()
    assert info.analyses == 1 and info.factorizations == 4
    assert info.host_calls == 1  # the batch of 4 matrices is one call

    xs = jax.jit(jax.vmap(solve_data))(datas, bs)
    for i in range(4):
        assert_close(xs[i], np.linalg.solve(dense[i], bs[i]), dtype)

    nested = jax.jit(jax.vmap(jax.vmap(solve_data, in_axes=(None, 0)), in_axes=(0, None)))
    xs = nested(datas, bs)
    assert xs.shape == (4, 4, op.size)
    for i in range(4):
        for j in range(4):
            assert_close(xs[i, j], np.linalg.solve(dense[i], bs[j]), dtype)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_grad_of_vmap_and_vmap_of_grad(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    op = matrix_operator(names[0])
    datas = _batched_data(op, 3)
    b = random_vector(getkey(), op.size, jnp.float64)
    ours = lambda d, v: solve(with_data(op, d), v, solver)
    dense = lambda d, v: jnp.linalg.solve(dense_from_data(op, d), v)

    def total(datas, b, fn):
        return jnp.sum(jax.vmap(lambda d: fn(d, b))(datas) ** 2)

    g = jax.jit(jax.grad(total, argnums=(0, 1)), static_argnums=2)(datas, b, ours)
    g_d = jax.grad(total, argnums=(0, 1))(datas, b, dense)
    for a, e in zip(g, g_d, strict=True):
        assert_close(a, e, jnp.float64)
    per = jax.vmap(jax.grad(lambda d: jnp.sum(ours(d, b) ** 2)))(datas)
    per_d = jax.vmap(jax.grad(lambda d: jnp.sum(dense(d, b) ** 2)))(datas)
    assert_close(per, per_d, jnp.float64)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_one_factorization_and_one_analysis_per_value_and_grad_call(solver_name, getkey):
    solver = SOLVERS[solver_name][0]
    op = matrix_operator("poisson")
    b = random_vector(getkey(), op.size, jnp.float64)
    loss = lambda d, v: jnp.sum(solve(with_data(op, d), v, solver) ** 2)
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    for i in range(3):
        jax.block_until_ready(step(op.data * (1.0 + i), b))
        info = lxs.cache_info()
        assert info.factorizations == i + 1
        assert info.analyses == 1  # symbolic work is done once per pattern
        assert info.misses == 0


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_repeated_solves_with_equal_values_reuse_the_factorization(solver_name, getkey):
    solver = SOLVERS[solver_name][0]
    op = matrix_operator("poisson")
    b = random_vector(getkey(), op.size, jnp.float64)
    first = solve(op, b, solver)
    for _ in range(3):
        np.testing.assert_array_equal(solve(op, b, solver), first)
        np.testing.assert_array_equal(jax.jit(solve, static_argnums=2)(op, b, solver), first)
    assert lxs.cache_info().factorizations == 1


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_tagged_operator_is_unwrapped(solver_name, getkey):
    solver = SOLVERS[solver_name][0]
    dense = matrix("random-spd")
    op = lx.TaggedLinearOperator(lxs.SparseOperator.from_scipy(dense), lx.positive_semidefinite_tag)
    b = random_vector(getkey(), op.in_size(), jnp.float64)
    assert_close(solve(op, b, solver), np.linalg.solve(dense.toarray(), b), jnp.float64)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_does_not_mutate_inputs(solver_name, getkey):
    solver = SOLVERS[solver_name][0]
    op = matrix_operator("random-spd")
    data_before = np.array(op.data)
    b = random_vector(getkey(), op.size, jnp.float64)
    b_before = np.array(b)
    jax.grad(lambda d, v: jnp.sum(solve(with_data(op, d), v, solver)), argnums=(0, 1))(op.data, b)
    np.testing.assert_array_equal(op.data, data_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_dense_operator_is_a_trace_time_error(solver_name):
    solver = SOLVERS[solver_name][0]
    name = type(solver).__name__
    with pytest.raises(ValueError, match=f"`{name}` may only be used with"):
        lx.linear_solve(lx.MatrixLinearOperator(jnp.eye(3)), jnp.ones(3), solver=solver)


@pytest.mark.parametrize("solver_name", list(SOLVERS))
def test_statistics_are_arrays_under_jit_and_vmap(solver_name, getkey):
    solver, _, names = SOLVERS[solver_name]
    op, dense = matrix_operator(names[0]), matrix(names[0])
    bs = jnp.stack([random_vector(getkey(), op.size, jnp.float64) for _ in range(3)])

    @jax.jit
    @jax.vmap
    def stats(b):
        return lx.linear_solve(op, b, solver=solver).stats

    out = stats(bs)
    assert out["num_steps"].shape == (3,) and out["relative_residual"].shape == (3,)
    xs = np.linalg.solve(dense.toarray(), np.asarray(bs).T).T
    expected = np.linalg.norm(bs - (dense @ xs.T).T, axis=1) / np.linalg.norm(bs, axis=1)
    assert np.all(out["relative_residual"] <= 1e-13)
    assert np.all(expected <= 1e-13)
    assert np.all(out["num_steps"] == 0)  # well conditioned: no refinement needed
