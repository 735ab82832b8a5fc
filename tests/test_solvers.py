"""Every lineax-sparse solver on the same grid (`helpers.GRID`, made from the library's table
of solvers): solves and every transformation, each against an independent reference (dense
solves, dense autodiff, finite differences). The table itself: what the package exports,
and what each solver says about its backends."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import lineax_sparse as lxs
from lineax_sparse._solver.table import MATRIX_KINDS, SOLVERS as TABLE
from lineax_sparse.backends.catalog import backend_class

from .helpers import (
    assert_close,
    assert_solves,
    cases,
    dense_from_data,
    eps,
    finite_difference,
    GRID,
    grid,
    is_complex,
    kind,
    MATRICES,
    matrix,
    matrix_condition,
    matrix_operator,
    random_vector,
    symmetric_direction,
    with_data,
)


CASES = [
    case.param(name, jit, id=f"{jit}-{case.name}-{name}")
    for case in cases()
    for name in case.matrices
    for jit in (False, True)
    # Eager solves through `Materialise` are `test_materialise`'s; here they run under `jit`.
    if jit or not case.materialise
]
GRADIENT_CASES = [
    case.param(name, id=f"{case.name}-{name}") for case in cases() for name in case.gradients
]
#: Every case (`Materialise` ones included), and the solvers alone.
ALL = grid()
PLAIN = grid(materialise=False)


def solve(op, b, solver, **kwargs):
    return lx.linear_solve(op, b, solver=solver, **kwargs).value


def _relative_error(x, expected):
    return float(np.max(np.abs(np.asarray(x) - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("case, name, jit", CASES)
def test_solve_matches_dense(case, name, jit, getkey):
    op, dense = matrix_operator(name), matrix(name)
    solver = case.solver_for(op)
    b = random_vector(getkey(), op.size, dense.dtype)
    fn = lambda o, v: solve(case.operator(o), v, solver)  # noqa: E731
    x = (jax.jit(fn) if jit else fn)(op, b)
    assert x.dtype == dense.dtype
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    # Backward stable (or converged), and as close to LAPACK's answer as condition numbers
    # up to 5e11 allow.
    case.check(dense, x, b, reference=expected, condition=matrix_condition(name))


SINGLE_PRECISION_CASES = [
    case.param(dtype, id=f"{dtype.__name__}-{case.name}")
    for case in cases()
    for dtype in (jnp.float32, jnp.complex64)
    if dtype == jnp.float32 or case.row.complex
]


@pytest.mark.parametrize("case, dtype", SINGLE_PRECISION_CASES)
def test_single_precision_in_single_precision_out(case, dtype, getkey):
    name = "random-spd" if dtype == jnp.float32 else "random-hpd"
    op = matrix_operator(name)
    op = with_data(op, op.data.astype(dtype))
    b = random_vector(getkey(), op.size, dtype)
    x = jax.jit(lambda o, v: solve(case.operator(o), v, case.solver_for(op)))(op, b)
    assert x.dtype == dtype
    # Factorized (or iterated) in double precision on the host: the double-precision
    # solution of the single-precision system, rounded (its own error, kappa eps of double
    # or the tolerance, is far below).
    single = matrix(name).astype(dtype)
    wide = np.complex128 if dtype == jnp.complex64 else np.float64
    expected = np.linalg.solve(single.toarray().astype(wide), np.asarray(b).astype(wide))
    assert_solves(single, x, b, reference=expected)
    assert _relative_error(x, expected) <= eps(dtype)


@pytest.mark.parametrize("case, name", GRADIENT_CASES)
def test_transpose_and_conj_states_reuse_the_factorization(case, name, getkey):
    op, dense = matrix_operator(name), matrix(name).toarray()
    solver = case.solver_for(op)
    b = random_vector(getkey(), op.size, dense.dtype)
    state = solver.init(case.operator(op), {})
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
        case.check(reference, x, b, reference=expected, condition=matrix_condition(name))
    # One factorization; an iterative solver sets up `A^T` apart when `A` is not symmetric.
    assert lxs.cache_info().factorizations == case.setups(name)


def _losses(case, op, weights):
    """A scalar loss through `case`'s solve, and the same loss through a dense jnp solve."""
    solver = case.solver_for(op)

    def ours(data, b):
        x = solve(case.operator(with_data(op, data)), b, solver)
        return jnp.real(jnp.vdot(weights, x * x))

    def dense(data, b):
        x = jnp.linalg.solve(dense_from_data(op, data), b)
        return jnp.real(jnp.vdot(weights, x * x))

    return ours, dense


def _gradient_factor(case, name):
    # Gradients inherit the conditioning: relative tolerance ~ cond(A) * eps (or the
    # tolerance of an iterative solve).
    return max(MATRICES[name][1] / 1e-11, case.close_factor(name))


@pytest.mark.parametrize("case, name", GRADIENT_CASES)
def test_gradients_match_dense_autodiff(case, name, getkey):
    op, dtype = matrix_operator(name), matrix(name).dtype
    b = random_vector(getkey(), op.size, dtype)
    ours, dense = _losses(case, op, random_vector(getkey(), op.size, dtype))
    value, grads = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(op.data, b)
    value_d, grads_d = jax.value_and_grad(dense, argnums=(0, 1))(op.data, b)
    factor = _gradient_factor(case, name)
    assert_close(value, value_d, dtype, factor)
    for g, g_d in zip(grads, grads_d, strict=True):
        assert_close(g, g_d, dtype, factor)
    assert lxs.cache_info().factorizations == case.setups(name)  # the backward pass reused it


@pytest.mark.parametrize("case", PLAIN)
def test_gradients_match_finite_differences(case, getkey):
    op = matrix_operator(case.gradients[0])
    b = random_vector(getkey(), op.size, jnp.float64)
    ours, _ = _losses(case, op, random_vector(getkey(), op.size, jnp.float64))
    g_data, g_b = jax.grad(ours, argnums=(0, 1))(op.data, b)
    direction = symmetric_direction(op)  # values stay valid for a symmetric solver
    fd = finite_difference(lambda d: ours(d, b), op.data, direction)
    np.testing.assert_allclose(jnp.dot(g_data, direction), fd, rtol=1e-6)
    direction = random_vector(getkey(), op.size, jnp.float64)
    fd = finite_difference(lambda v: ours(op.data, v), b, direction)
    np.testing.assert_allclose(jnp.dot(g_b, direction), fd, rtol=1e-6)


@pytest.mark.parametrize("case", PLAIN)
def test_jvp_and_hessian_vector_product(case, getkey):
    solver, name = case.solver, case.gradients[0]
    op = matrix_operator(name)
    b = random_vector(getkey(), op.size, jnp.float64)
    ours, dense = _losses(case, op, random_vector(getkey(), op.size, jnp.float64))
    t_data = symmetric_direction(op)
    t_b = random_vector(getkey(), op.size, jnp.float64)
    ours_x = lambda d, v: solve(with_data(op, d), v, solver)
    dense_x = lambda d, v: jnp.linalg.solve(dense_from_data(op, d), v)
    _, jvp = jax.jit(lambda d, v: jax.jvp(ours_x, (d, v), (t_data, t_b)))(op.data, b)
    _, jvp_d = jax.jvp(dense_x, (op.data, b), (t_data, t_b))
    factor = case.close_factor(name)
    assert_close(jvp, jvp_d, jnp.float64, factor)

    def hvp(loss, data):
        return jax.jvp(jax.grad(loss), (data,), (t_data,))[1]

    h = jax.jit(lambda d: hvp(lambda x: ours(x, b), d))(op.data)
    assert_close(h, hvp(lambda x: dense(x, b), op.data), jnp.float64, factor=10 * factor)


@pytest.mark.parametrize("case", ALL)
def test_user_provided_state(case, getkey):
    name = case.gradients[0]
    op, dense = matrix_operator(name), matrix(name).toarray()
    solver = case.solver_for(op)
    state = solver.init(case.operator(op), {})
    b1, b2 = (random_vector(getkey(), op.size, jnp.float64) for _ in range(2))
    f = jax.jit(lambda o, v, s: solve(case.operator(o), v, solver, state=s))
    factor = case.close_factor(name)
    for b in (b1, b2):
        assert_close(f(op, b, state), np.linalg.solve(dense, b), jnp.float64, factor)
    g = jax.grad(lambda v: jnp.sum(solve(case.operator(op), v, solver, state=state)))(b1)
    assert_close(g, np.linalg.solve(dense.T, np.ones(op.size)), jnp.float64, factor)
    assert lxs.cache_info().factorizations == case.setups(name)


@pytest.mark.parametrize("case", PLAIN)
def test_inside_scan(case, getkey):
    solver = case.solver
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
    factor = case.close_factor("poisson")
    assert_close(sums, sums_d, jnp.float64, factor)
    assert_close(final, final_d, jnp.float64, factor)
    g = jax.grad(lambda b: jnp.sum(run(b, solver)[1]))(b)
    g_d = jax.grad(lambda b: jnp.sum(run(b, None)[1]))(b)
    assert_close(g, g_d, jnp.float64, factor=10 * factor)
    assert lxs.cache_info().analyses == 1


@pytest.mark.parametrize("case", ALL)
def test_vmap_over_right_hand_sides_is_one_factorization(case, getkey):
    name = case.gradients[-1]
    op, dense = matrix_operator(name), matrix(name).toarray()
    solver = case.solver_for(op)
    bs = jnp.stack([random_vector(getkey(), op.size, dense.dtype) for _ in range(8)])
    solve_one = lambda o, v: solve(case.operator(o), v, solver)  # noqa: E731
    xs = jax.jit(jax.vmap(solve_one, in_axes=(None, 0)))(op, bs)
    expected = np.linalg.solve(dense, np.asarray(bs).T).T
    for x, b, reference in zip(xs, bs, expected, strict=True):
        case.check(dense, x, b, reference=reference, condition=matrix_condition(name))
    info = lxs.cache_info()
    assert info.factorizations == 1 and info.misses == 0
    assert info.host_calls == 1  # one call: one factorization, one solve of all 8


def _batched_data(op, count):
    return jnp.stack([op.data * (1.0 + 0.25 * i) for i in range(count)])


@pytest.mark.parametrize("case", PLAIN)
def test_vmap_over_values_and_both(case, getkey):
    solver = case.solver
    # complex where the solver takes complex matrices
    name = next((n for n in case.gradients if is_complex(n)), case.gradients[-1])
    op = matrix_operator(name)
    dtype = op.data.dtype
    factor = case.close_factor(name)
    datas = _batched_data(op, 4)
    bs = jnp.stack([random_vector(getkey(), op.size, dtype) for _ in range(4)])
    solve_data = lambda d, v: solve(with_data(op, d), v, solver)
    dense = [np.asarray(dense_from_data(op, d)) for d in datas]

    xs = jax.jit(jax.vmap(solve_data, in_axes=(0, None)))(datas, bs[0])
    for i in range(4):
        assert_close(xs[i], np.linalg.solve(dense[i], bs[0]), dtype, factor)
    info = lxs.cache_info()
    assert info.analyses == 1 and info.factorizations == 4
    assert info.host_calls == 1  # the batch of 4 matrices is one call

    xs = jax.jit(jax.vmap(solve_data))(datas, bs)
    for i in range(4):
        assert_close(xs[i], np.linalg.solve(dense[i], bs[i]), dtype, factor)

    nested = jax.jit(jax.vmap(jax.vmap(solve_data, in_axes=(None, 0)), in_axes=(0, None)))
    xs = nested(datas, bs)
    assert xs.shape == (4, 4, op.size)
    for i in range(4):
        for j in range(4):
            assert_close(xs[i, j], np.linalg.solve(dense[i], bs[j]), dtype, factor)


@pytest.mark.parametrize("case", PLAIN)
def test_grad_of_vmap_and_vmap_of_grad(case, getkey):
    solver, name = case.solver, case.gradients[0]
    op = matrix_operator(name)
    factor = case.close_factor(name)
    datas = _batched_data(op, 3)
    b = random_vector(getkey(), op.size, jnp.float64)
    ours = lambda d, v: solve(with_data(op, d), v, solver)
    dense = lambda d, v: jnp.linalg.solve(dense_from_data(op, d), v)

    def total(datas, b, fn):
        return jnp.sum(jax.vmap(lambda d: fn(d, b))(datas) ** 2)

    g = jax.jit(jax.grad(total, argnums=(0, 1)), static_argnums=2)(datas, b, ours)
    g_d = jax.grad(total, argnums=(0, 1))(datas, b, dense)
    for a, e in zip(g, g_d, strict=True):
        assert_close(a, e, jnp.float64, factor)
    per = jax.vmap(jax.grad(lambda d: jnp.sum(ours(d, b) ** 2)))(datas)
    per_d = jax.vmap(jax.grad(lambda d: jnp.sum(dense(d, b) ** 2)))(datas)
    assert_close(per, per_d, jnp.float64, factor)


@pytest.mark.parametrize("case", PLAIN)
def test_one_factorization_and_one_analysis_per_value_and_grad_call(case, getkey):
    solver = case.solver
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


@pytest.mark.parametrize("case", PLAIN)
def test_repeated_solves_with_equal_values_reuse_the_factorization(case, getkey):
    solver = case.solver
    op = matrix_operator("poisson")
    b = random_vector(getkey(), op.size, jnp.float64)
    first = solve(op, b, solver)
    for _ in range(3):
        np.testing.assert_array_equal(solve(op, b, solver), first)
        np.testing.assert_array_equal(jax.jit(solve, static_argnums=2)(op, b, solver), first)
    assert lxs.cache_info().factorizations == 1


@pytest.mark.parametrize("case", PLAIN)
def test_tagged_operator_is_unwrapped(case, getkey):
    solver = case.solver
    dense = matrix("random-spd")
    op = lx.TaggedLinearOperator(lxs.SparseOperator.from_scipy(dense), lx.positive_semidefinite_tag)
    b = random_vector(getkey(), op.in_size(), jnp.float64)
    expected = np.linalg.solve(dense.toarray(), b)
    assert_close(solve(op, b, solver), expected, jnp.float64, case.close_factor("random-spd"))


@pytest.mark.parametrize("case", PLAIN)
def test_does_not_mutate_inputs(case, getkey):
    solver = case.solver
    op = matrix_operator("random-spd")
    data_before = np.array(op.data)
    b = random_vector(getkey(), op.size, jnp.float64)
    b_before = np.array(b)
    jax.grad(lambda d, v: jnp.sum(solve(with_data(op, d), v, solver)), argnums=(0, 1))(op.data, b)
    np.testing.assert_array_equal(op.data, data_before)
    np.testing.assert_array_equal(b, b_before)


@pytest.mark.parametrize("case", PLAIN)
def test_dense_operator_is_a_trace_time_error(case):
    solver = case.solver
    name = type(solver).__name__
    with pytest.raises(ValueError, match=f"`{name}` may only be used with"):
        lx.linear_solve(lx.MatrixLinearOperator(jnp.eye(3)), jnp.ones(3), solver=solver)


@pytest.mark.parametrize("case", ALL)
def test_statistics_are_arrays_under_jit_and_vmap(case, getkey):
    name = case.gradients[0]
    op, dense = matrix_operator(name), matrix(name)
    solver = case.solver_for(op)
    bs = jnp.stack([random_vector(getkey(), op.size, jnp.float64) for _ in range(3)])

    @jax.jit
    @jax.vmap
    def stats(b):
        return lx.linear_solve(case.operator(op), b, solver=solver).stats

    out = stats(bs)
    assert out["num_steps"].shape == (3,) and out["relative_residual"].shape == (3,)
    xs = np.linalg.solve(dense.toarray(), np.asarray(bs).T).T
    expected = np.linalg.norm(bs - (dense @ xs.T).T, axis=1) / np.linalg.norm(bs, axis=1)
    assert np.all(expected <= 1e-13)
    if case.rtol is None:
        assert np.all(out["relative_residual"] <= 1e-13)
        assert np.all(out["num_steps"] == 0)  # well conditioned: no refinement needed
    else:
        assert np.all(out["relative_residual"] <= case.rtol)
        assert np.all(out["num_steps"] >= 1)


# ------------------------------------------------------------------ the table of solvers


def test_the_package_exports_exactly_the_solvers_of_the_table():
    """`lineax_sparse.__init__` lists its solvers by hand (for type checkers): every solver
    of the table, and `Materialise`, which wraps each of them; nothing else."""
    exported = {
        name: value
        for name, value in vars(lxs).items()
        if isinstance(value, type)
        and issubclass(value, lx.AbstractLinearSolver)
        and not name.startswith("Abstract")
    }
    expected = {row.name: row.solver for row in TABLE} | {"Materialise": lxs.Materialise}
    assert exported == expected


@pytest.mark.parametrize("case", PLAIN)
def test_defaults_of_the_constructor_are_those_of_the_fields(case):
    """Solvers whose `__init__` is written out repeat their fields' defaults (which make
    the repr short): they must agree."""
    solver = type(case.solver)()
    for field in dataclasses.fields(solver):
        assert getattr(solver, field.name) == field.default, field.name


def test_the_grid_covers_every_solver_with_each_kind_it_takes():
    """Each solver of the table is in the grid alone and inside `Materialise`; each case
    solves a matrix of every kind its solver takes (complex ones too if it takes them), and
    none it does not take."""
    for row in TABLE:
        cases = [case for case in GRID.values() if case.row is row]
        assert {case.materialise for case in cases} == {False, True}, row.name
        for case in cases:
            kinds = {kind(name) for name in case.matrices}
            expected = set(row.kinds) if not case.materialise else kinds
            assert kinds == expected and kinds <= set(MATRIX_KINDS), case.name
            assert any(is_complex(name) for name in case.matrices) == row.complex, case.name
            assert not is_complex(case.gradients[0]), case.name  # tests use float64 vectors
    for name in MATRICES:
        assert any(name in case.matrices for case in GRID.values()), name


@pytest.mark.parametrize("case", PLAIN)
def test_each_solver_knows_which_backends_need_symmetric_values(case):
    """What the solver classes say at trace time (without importing a native library) is
    what the backend classes say."""
    specs = case.solver.backend_specs()
    assert specs
    for spec, symmetric in specs.items():
        assert backend_class(spec[0]).requires_symmetric is symmetric, spec


def test_tracing_a_solve_imports_no_native_library():
    """Trace-time decisions (the spec, whether values must be symmetric) never import a
    backend: only a solve that runs does."""
    code = """
import sys
import jax, jax.numpy as jnp, lineax as lx, numpy as np, scipy.sparse as sp
jax.config.update("jax_enable_x64", True)
import lineax_sparse as lxs
a = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(8, 8)).tocsr()
op = lxs.SparseOperator.from_scipy(a, lx.positive_semidefinite_tag)
for solver in (lxs.Cholmod(), lxs.AutoSparse(), lxs.AutoSparse(fallback=True), lxs.AMG()):
    jax.make_jaxpr(lambda o, v: lx.linear_solve(o, v, solver=solver).value)(op, jnp.ones(8))
loaded = [m for m in sys.modules if m.split(".")[0] in ("cvxopt", "pyamg", "petsc4py")]
loaded += [m for m in sys.modules if m.startswith("lineax_sparse.backends.") and
           m.split(".")[2] in ("cholmod", "superlu", "amg", "fallback")]
print(sorted(loaded))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_materialise_names_every_solver_it_wraps():
    with pytest.raises(ValueError, match="must be a lineax-sparse solver") as error:
        lxs.Materialise(lx.LU(), np.eye(3, dtype=bool))
    for row in TABLE:
        assert f"`{row.name}()`" in str(error.value)
