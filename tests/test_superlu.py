"""SuperLU: solves, transformations and cache behaviour, each against an independent reference."""

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse.linalg as spla

import lineax_sparse as lxs

from .helpers import (
    assert_close,
    dense_from_data,
    finite_difference,
    load,
    operator,
    poisson2d,
    random_sparse,
    random_vector,
    with_data,
)


SOLVER = lxs.SuperLU()


def solve(op, b, solver=SOLVER, **kwargs):
    return lx.linear_solve(op, b, solver=solver, **kwargs).value


# name -> (scipy matrix factory, relative forward-error tolerance vs a dense solve).
# The tolerance is about cond(A) * 1e-15: the accuracy any backward-stable solver can promise.
MATRICES = {
    "random-real": (lambda: random_sparse(60, 0.08, np.float64, seed=10), 1e-11),
    "random-complex": (lambda: random_sparse(60, 0.08, np.complex128, seed=11), 1e-11),
    "poisson": (lambda: poisson2d(12), 1e-11),
    "494_bus": (lambda: load("494_bus.mtx"), 1e-8),
    "bcsstk13": (lambda: load("bcsstk13.mtx"), 1e-4),
    "west0479": (lambda: load("west0479.mtx"), 1e-3),
    "rajat19": (lambda: load("rajat19.mtx"), 1e-4),
    "young1c": (lambda: load("young1c.mtx"), 1e-11),
    "hangGlider_2": (lambda: load("hangGlider_2.mtx"), 1e-3),
}


@functools.cache
def _matrix(name):
    return MATRICES[name][0]()


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("jit", [False, True])
def test_solve_matches_dense(name, jit, getkey):
    matrix = _matrix(name)
    op = operator(matrix)
    b = random_vector(getkey(), op.size, matrix.dtype)
    fn = jax.jit(solve) if jit else solve
    x = fn(op, b)
    expected = np.linalg.solve(matrix.toarray(), np.asarray(b))
    error = np.max(np.abs(x - expected)) / np.max(np.abs(expected))
    assert error <= MATRICES[name][1], error
    residual = np.max(np.abs(matrix @ np.asarray(x) - b)) / (
        abs(matrix).sum(axis=1).max() * np.max(np.abs(x)) + np.max(np.abs(b))
    )
    assert residual <= 1e-14
    # The native library called directly agrees to rounding.
    native = spla.splu(matrix.tocsc()).solve(np.asarray(b))
    np.testing.assert_allclose(x, native, rtol=MATRICES[name][1], atol=0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_single_precision_in_single_precision_out(dtype, getkey):
    matrix = random_sparse(50, 0.1, dtype, seed=12)
    op = operator(matrix)
    b = random_vector(getkey(), 50, dtype)
    x = jax.jit(solve)(op, b)
    assert x.dtype == dtype
    # Factorized in double precision on the host: as accurate as float32 can hold.
    expected = np.linalg.solve(matrix.toarray().astype(np.complex128), np.asarray(b))
    assert_close(x, expected, dtype, factor=0.1)


@pytest.mark.parametrize("ordering", ["COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"])
def test_orderings_and_symmetric_mode(ordering, getkey):
    matrix = _matrix("rajat19")
    b = random_vector(getkey(), matrix.shape[0], jnp.float64)
    expected = np.linalg.solve(matrix.toarray(), np.asarray(b))
    for solver in (lxs.SuperLU(ordering=ordering), lxs.SuperLU(ordering, 0.1, True)):
        x = solve(operator(matrix), b, solver)
        assert np.max(np.abs(x - expected)) / np.max(np.abs(expected)) <= 1e-4


@pytest.mark.parametrize("name", ["random-real", "random-complex", "west0479", "young1c"])
def test_transpose_and_conj_states_reuse_the_factorization(name, getkey):
    matrix = _matrix(name)
    op = operator(matrix)
    dense = matrix.toarray()
    b = random_vector(getkey(), op.size, matrix.dtype)
    state = SOLVER.init(op, {})
    transposed, _ = SOLVER.transpose(state, {})
    conjugated, _ = SOLVER.conj(state, {})
    adjoint, _ = SOLVER.conj(transposed, {})
    tol = MATRICES[name][1]
    for st, op_, reference in (
        (transposed, op.transpose(), dense.T),
        (conjugated, lx.conj(op), dense.conj()),
        (adjoint, lx.conj(op.transpose()), dense.conj().T),
    ):
        x = solve(op_, b, state=st)
        expected = np.linalg.solve(reference, np.asarray(b))
        assert np.max(np.abs(x - expected)) / np.max(np.abs(expected)) <= tol
    assert lxs.cache_info().factorizations == 1


def _loss_pair(op, b_weights):
    """A scalar loss through our solve and the same loss through a dense jnp solve."""

    def ours(data, b):
        x = solve(with_data(op, data), b)
        return jnp.real(jnp.vdot(b_weights, x * x))

    def dense(data, b):
        x = jnp.linalg.solve(dense_from_data(op, data), b)
        return jnp.real(jnp.vdot(b_weights, x * x))

    return ours, dense


@pytest.mark.parametrize("name", ["random-real", "random-complex", "poisson", "rajat19"])
def test_gradients_match_dense_autodiff(name, getkey):
    matrix = _matrix(name)
    op = operator(matrix)
    b = random_vector(getkey(), op.size, matrix.dtype)
    weights = random_vector(getkey(), op.size, matrix.dtype)
    ours, dense = _loss_pair(op, weights)
    value, (g_data, g_b) = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(op.data, b)
    value_d, (gd_data, gd_b) = jax.value_and_grad(dense, argnums=(0, 1))(op.data, b)
    factor = 1.0 if name != "rajat19" else 1e6
    assert_close(value, value_d, matrix.dtype, factor)
    assert_close(g_data, gd_data, matrix.dtype, factor)
    assert_close(g_b, gd_b, matrix.dtype, factor)


def test_gradients_match_finite_differences(getkey):
    matrix = _matrix("random-real")
    op = operator(matrix)
    b = random_vector(getkey(), op.size, jnp.float64)
    weights = random_vector(getkey(), op.size, jnp.float64)
    ours, _ = _loss_pair(op, weights)
    g_data, g_b = jax.grad(ours, argnums=(0, 1))(op.data, b)
    for arg, grad in ((0, g_data), (1, g_b)):
        direction = random_vector(getkey(), grad.shape[0], jnp.float64)
        if arg == 0:
            fd = finite_difference(lambda d: ours(d, b), op.data, direction)
        else:
            fd = finite_difference(lambda v: ours(op.data, v), b, direction)
        np.testing.assert_allclose(jnp.dot(grad, direction), fd, rtol=1e-6)


def test_jvp_and_hessian_vector_product(getkey):
    matrix = _matrix("random-real")
    op = operator(matrix)
    b = random_vector(getkey(), op.size, jnp.float64)
    weights = random_vector(getkey(), op.size, jnp.float64)
    ours, dense = _loss_pair(op, weights)
    t_data = random_vector(getkey(), op.data.shape[0], jnp.float64)
    t_b = random_vector(getkey(), op.size, jnp.float64)

    def solution(fn_solve, data, b):
        return fn_solve(data, b)

    ours_x = lambda d, v: solve(with_data(op, d), v)
    dense_x = lambda d, v: jnp.linalg.solve(dense_from_data(op, d), v)
    _, jvp = jax.jit(lambda d, v: jax.jvp(ours_x, (d, v), (t_data, t_b)))(op.data, b)
    _, jvp_d = jax.jvp(dense_x, (op.data, b), (t_data, t_b))
    assert_close(jvp, jvp_d, jnp.float64)

    def hvp(loss, data):
        return jax.jvp(jax.grad(loss), (data,), (t_data,))[1]

    h = jax.jit(lambda d: hvp(lambda x: ours(x, b), d))(op.data)
    h_d = hvp(lambda x: dense(x, b), op.data)
    assert_close(h, h_d, jnp.float64, factor=10)


def test_user_provided_state(getkey):
    matrix = _matrix("random-real")
    op = operator(matrix)
    state = SOLVER.init(op, {})
    b1, b2 = (random_vector(getkey(), op.size, jnp.float64) for _ in range(2))
    dense = matrix.toarray()
    for b in (b1, b2):
        x = jax.jit(lambda o, v, s: solve(o, v, state=s))(op, b, state)
        assert_close(x, np.linalg.solve(dense, b), jnp.float64)
    # Gradients with respect to b through a solve with a given state.
    g = jax.grad(lambda v: jnp.sum(solve(op, v, state=state)))(b1)
    assert_close(g, np.linalg.solve(dense.T, np.ones(op.size)), jnp.float64)
    assert lxs.cache_info().factorizations == 1


def test_inside_scan(getkey):
    matrix = _matrix("poisson")
    op = operator(matrix)
    b = random_vector(getkey(), op.size, jnp.float64)

    def step(carry, scale):
        x = solve(with_data(op, op.data * scale), carry)
        return x / jnp.linalg.norm(x), jnp.sum(x)

    scales = jnp.linspace(1.0, 2.0, 5)
    final, sums = jax.jit(lambda b: jax.lax.scan(step, b, scales))(b)
    carry, expected = np.asarray(b), []
    for s in np.asarray(scales):
        x = np.linalg.solve(matrix.toarray() * s, carry)
        expected.append(x.sum())
        carry = x / np.linalg.norm(x)
    assert_close(sums, np.array(expected), jnp.float64)
    assert_close(final, carry, jnp.float64)
    # Gradient through the whole loop, against dense autodiff.
    dense_step = lambda c, s: (
        (y := jnp.linalg.solve(dense_from_data(op, op.data * s), c)) / jnp.linalg.norm(y),
        jnp.sum(y),
    )
    g = jax.grad(lambda b: jnp.sum(jax.lax.scan(step, b, scales)[1]))(b)
    g_d = jax.grad(lambda b: jnp.sum(jax.lax.scan(dense_step, b, scales)[1]))(b)
    assert_close(g, g_d, jnp.float64, factor=10)


def _batched_data(op, count):
    return jnp.stack([op.data * (1.0 + 0.25 * i) for i in range(count)])


def test_vmap_over_right_hand_sides_is_one_factorization(getkey):
    matrix = _matrix("rajat19")
    op = operator(matrix)
    bs = jnp.stack([random_vector(getkey(), op.size, jnp.float64) for _ in range(8)])
    xs = jax.jit(jax.vmap(solve, in_axes=(None, 0)))(op, bs)
    expected = np.linalg.solve(matrix.toarray(), np.asarray(bs).T).T
    assert np.max(np.abs(xs - expected)) / np.max(np.abs(expected)) <= 1e-4
    info = lxs.cache_info()
    assert info.factorizations == 1 and info.misses == 0


def test_vmap_over_values_and_both(getkey):
    matrix = _matrix("random-complex")
    op = operator(matrix)
    datas = _batched_data(op, 4)
    bs = jnp.stack([random_vector(getkey(), op.size, jnp.complex128) for _ in range(4)])
    solve_data = lambda d, v: solve(with_data(op, d), v)
    dense = [np.asarray(dense_from_data(op, d)) for d in datas]

    xs = jax.jit(jax.vmap(solve_data, in_axes=(0, None)))(datas, bs[0])
    for i in range(4):
        assert_close(xs[i], np.linalg.solve(dense[i], bs[0]), jnp.complex128)
    info = lxs.cache_info()
    assert info.analyses == 1 and info.factorizations == 4

    xs = jax.jit(jax.vmap(solve_data))(datas, bs)
    for i in range(4):
        assert_close(xs[i], np.linalg.solve(dense[i], bs[i]), jnp.complex128)

    # Nested: outer over matrices, inner over right-hand sides.
    nested = jax.jit(jax.vmap(jax.vmap(solve_data, in_axes=(None, 0)), in_axes=(0, None)))
    xs = nested(datas, bs)
    assert xs.shape == (4, 4, op.size)
    for i in range(4):
        for j in range(4):
            assert_close(xs[i, j], np.linalg.solve(dense[i], bs[j]), jnp.complex128)


def test_grad_of_vmap(getkey):
    matrix = _matrix("random-real")
    op = operator(matrix)
    datas = _batched_data(op, 3)
    b = random_vector(getkey(), op.size, jnp.float64)

    def total(datas, b, solver):
        xs = jax.vmap(lambda d: solver(d, b))(datas)
        return jnp.sum(xs**2)

    ours = lambda d, v: solve(with_data(op, d), v)
    dense = lambda d, v: jnp.linalg.solve(dense_from_data(op, d), v)
    g = jax.jit(jax.grad(total, argnums=(0, 1)), static_argnums=2)(datas, b, ours)
    g_d = jax.grad(total, argnums=(0, 1))(datas, b, dense)
    assert_close(g[0], g_d[0], jnp.float64)
    assert_close(g[1], g_d[1], jnp.float64)
    # vmap of grad too.
    per = jax.vmap(jax.grad(lambda d: jnp.sum(ours(d, b) ** 2)))(datas)
    per_d = jax.vmap(jax.grad(lambda d: jnp.sum(dense(d, b) ** 2)))(datas)
    assert_close(per, per_d, jnp.float64)


def test_one_factorization_per_value_and_grad_call(getkey):
    matrix = _matrix("poisson")
    op = operator(matrix)
    b = random_vector(getkey(), op.size, jnp.float64)
    loss = lambda d, v: jnp.sum(solve(with_data(op, d), v) ** 2)
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    for i in range(3):
        step(op.data * (1.0 + i), b)
        info = lxs.cache_info()
        assert info.factorizations == i + 1
        assert info.analyses == 1  # the column ordering is computed once per pattern
        assert info.misses == 0


def test_repeated_solves_with_equal_values_reuse_the_factorization(getkey):
    op = operator(_matrix("poisson"))
    b = random_vector(getkey(), op.size, jnp.float64)
    first = solve(op, b)
    for _ in range(3):
        np.testing.assert_array_equal(solve(op, b), first)
        np.testing.assert_array_equal(jax.jit(solve)(op, b), first)
    assert lxs.cache_info().factorizations == 1


def test_structural_errors_at_trace_time():
    with pytest.raises(ValueError, match="`SuperLU` may only be used with"):
        lx.linear_solve(lx.MatrixLinearOperator(jnp.eye(3)), jnp.ones(3), solver=SOLVER)
    with pytest.raises(ValueError, match="ordering"):
        lxs.SuperLU(ordering="AMD")
    with pytest.raises(ValueError, match="pivot_threshold"):
        lxs.SuperLU(pivot_threshold=2.0)


def test_tagged_operator_is_unwrapped(getkey):
    matrix = _matrix("random-real")
    op = lx.TaggedLinearOperator(operator(matrix), lx.symmetric_tag)
    b = random_vector(getkey(), matrix.shape[0], jnp.float64)
    x = solve(op, b)
    assert_close(x, np.linalg.solve(matrix.toarray(), b), jnp.float64)


def test_does_not_mutate_inputs(getkey):
    matrix = _matrix("random-real")
    op = operator(matrix)
    data_before = np.array(op.data)
    b = random_vector(getkey(), op.size, jnp.float64)
    b_before = np.array(b)
    solve(op, b)
    np.testing.assert_array_equal(op.data, data_before)
    np.testing.assert_array_equal(b, b_before)
