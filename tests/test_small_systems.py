"""`AutoSparse`'s dense path: systems below `dense_below` unknowns factorized in XLA.

Every promise of the host path, checked against an independent reference (LAPACK through
numpy, dense jnp autodiff, finite differences) and against the host path itself
(`AutoSparse(dense_below=0)`, which the shared grid of test_solvers.py runs): solves,
statistics, failures and their codes, scalings, derivatives, vmap, states; the threshold;
and the clients (optimistix, diffrax through `Materialise`).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp

import lineax_sparse as lxs
from lineax_sparse._solver.auto import DENSE_BELOW
from lineax_sparse._solver.base import HostSolverState
from lineax_sparse._solver.dense import DenseState

from .helpers import (
    assert_solves,
    dense_from_data,
    eps,
    finite_difference,
    GRID,
    matrix,
    matrix_condition,
    matrix_operator,
    operator,
    poisson2d,
    random_vector,
    with_data,
)


PSD = lx.positive_semidefinite_tag
DENSE = lxs.AutoSparse()
HOST = lxs.AutoSparse(dense_below=0)
NAMES = ["random-real", "random-complex", "random-spd", "random-hpd", "random-symmetric"]


def unchecked(op, b, solver, **kwargs):
    return lx.linear_solve(op, b, solver=solver, throw=False, **kwargs)


def expect_failure(solution, result):
    assert solution.result == result, lx.RESULTS[solution.result]
    assert np.all(np.isnan(np.asarray(solution.value)))


# ------------------------------------------------------------------ the threshold


def test_the_threshold_chooses_the_path():
    op = matrix_operator("random-real")  # n = 60
    assert op.size < DENSE_BELOW
    assert isinstance(DENSE.init(op, {}), DenseState)
    assert isinstance(HOST.init(op, {}), HostSolverState)
    assert isinstance(lxs.AutoSparse(dense_below=60).init(op, {}), HostSolverState)
    assert isinstance(lxs.AutoSparse(dense_below=61).init(op, {}), DenseState)
    large = operator(poisson2d(20))  # n = 400
    assert large.size >= DENSE_BELOW
    assert isinstance(DENSE.init(large, {}), HostSolverState)
    assert isinstance(lxs.AutoSparse(dense_below=401).init(large, {}), DenseState)


@pytest.mark.parametrize("value", [-1, 1.5, True, "100", None])
def test_dense_below_is_validated(value):
    with pytest.raises(ValueError, match="dense_below") as error:
        lxs.AutoSparse(dense_below=value)  # type: ignore[arg-type]
    assert "0 to never" in str(error.value)


def test_the_grid_keeps_covering_the_host_path():
    for name in ("auto", "auto-fallback"):
        assert GRID[name].solver.dense_below == 0


def test_without_double_precision_small_systems_take_the_host():
    """XLA has no double precision without `jax_enable_x64`: the host factorizes in it."""
    program = (
        "import jax, jax.numpy as jnp, lineax as lx, scipy.sparse as sp\n"
        "import lineax_sparse as lxs\n"
        "from lineax_sparse._solver.base import HostSolverState\n"
        "op = lxs.SparseOperator.from_scipy(sp.eye(5, format='csr').astype('float32') * 2)\n"
        "assert isinstance(lxs.AutoSparse().init(op, {}), HostSolverState)\n"
        "x = lx.linear_solve(op, jnp.ones(5, jnp.float32), lxs.AutoSparse()).value\n"
        "assert x.dtype == jnp.float32 and bool(jnp.all(x == 0.5))\n"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


# ------------------------------------------------------------------ solves


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_solve_matches_lapack_and_the_host(name, jit, getkey):
    op, dense = matrix_operator(name), matrix(name)
    b = random_vector(getkey(), op.size, dense.dtype)

    def solve(o, v, solver):
        return lx.linear_solve(o, v, solver)

    run = jax.jit(solve, static_argnums=2) if jit else solve
    ours, host = run(op, b, DENSE), run(op, b, HOST)
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    assert ours.value.dtype == dense.dtype
    assert_solves(dense, ours.value, b, reference=expected, condition=matrix_condition(name))
    assert_solves(dense, ours.value, b, reference=host.value, condition=matrix_condition(name))
    # The statistics of the host's solves: same keys, dtypes and meaning; a factorization
    # statistic of the host's backend (PARDISO's inertia for symmetric matrices) is unknown
    # (-1) on the dense path.
    assert ours.stats.keys() == host.stats.keys()
    assert {"num_steps", "relative_residual", "reason"} <= ours.stats.keys()
    for key in ours.stats:
        assert ours.stats[key].dtype == host.stats[key].dtype
    for key in ours.stats.keys() - {"num_steps", "relative_residual", "reason"}:
        assert ours.stats[key].shape == host.stats[key].shape
        assert np.all(np.asarray(ours.stats[key]) == -1)
    assert int(ours.stats["num_steps"]) == 0
    residual = np.linalg.norm(dense @ np.asarray(ours.value) - np.asarray(b))
    relative = residual / np.linalg.norm(np.asarray(b))
    assert float(ours.stats["relative_residual"]) <= 10 * max(relative, eps(np.float64))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64, jnp.float16])
def test_single_and_half_precision_in_and_out(dtype, getkey):
    """float16 takes the checked route (its numbers are too close to underflow for the
    multiplicative one)."""
    name = "random-spd" if dtype != jnp.complex64 else "random-hpd"
    op = matrix_operator(name)
    op = with_data(op, op.data.astype(dtype))
    b = random_vector(getkey(), op.size, dtype)
    x = jax.jit(lambda o, v: lx.linear_solve(o, v, DENSE).value)(op, b)
    host = jax.jit(lambda o, v: lx.linear_solve(o, v, HOST).value)(op, b)
    assert x.dtype == host.dtype == dtype
    # Factorized in double precision, as the host does: the same rounded solution.
    wide = np.complex128 if dtype == jnp.complex64 else np.float64
    single = np.asarray(dense_from_data(op, op.data)).astype(wide)  # the rounded values
    expected = np.linalg.solve(single, np.asarray(b).astype(wide))
    error = np.max(np.abs(np.asarray(x, wide) - expected)) / np.max(np.abs(expected))
    assert error <= eps(dtype)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(host))


def test_a_complex_right_hand_side_of_a_real_matrix(getkey):
    op, dense = matrix_operator("random-real"), matrix("random-real").toarray()
    b = random_vector(getkey(), op.size, jnp.complex128)
    state = DENSE.init(op, {})
    for transposed, reference in ((False, dense), (True, dense.T)):
        st = DENSE.transpose(state, {})[0] if transposed else state
        x, result, stats = DENSE.compute(st, b, {})
        assert result == lx.RESULTS.successful and x.dtype == jnp.complex128
        assert_solves(reference, x, b, reference=np.linalg.solve(reference, np.asarray(b)))


@pytest.mark.parametrize("name", ["random-real", "random-complex", "random-hpd"])
def test_transpose_and_conj_states(name, getkey):
    op, dense = matrix_operator(name), matrix(name).toarray()
    b = random_vector(getkey(), op.size, dense.dtype)
    state = DENSE.init(op, {})
    transposed, _ = DENSE.transpose(state, {})
    conjugated, _ = DENSE.conj(state, {})
    adjoint, _ = DENSE.conj(transposed, {})
    for st, reference in (
        (transposed, dense.T),
        (conjugated, dense.conj()),
        (adjoint, dense.conj().T),
    ):
        x = DENSE.compute(st, b, {})[0]
        assert_solves(reference, x, b, reference=np.linalg.solve(reference, np.asarray(b)))


def test_state_reuse_and_malformed_states(getkey):
    op, dense = matrix_operator("random-real"), matrix("random-real").toarray()
    state = DENSE.init(op, {})
    run = jax.jit(lambda o, v, s: lx.linear_solve(o, v, DENSE, state=s).value)
    for _ in range(2):
        b = random_vector(getkey(), op.size, jnp.float64)
        assert_solves(dense, run(op, b, state), b, reference=np.linalg.solve(dense, np.asarray(b)))
    # A dense state solves whatever `dense_below` the solver given it has.
    b = random_vector(getkey(), op.size, jnp.float64)
    assert_solves(dense, lx.linear_solve(op, b, HOST, state=state).value, b)
    with pytest.raises(ValueError, match="malformed state"):
        DENSE.compute(DenseState(**{**vars(state), "permutation": jnp.zeros(3, jnp.int32)}), b, {})
    with pytest.raises(ValueError, match="vector of shape"):
        DENSE.compute(state, jnp.ones(7), {})
    with pytest.raises(ValueError, match="AutoSparse"):
        DENSE.compute(lx.LU().init(lx.MatrixLinearOperator(jnp.eye(3)), {}), jnp.ones(3), {})


def test_zero_right_hand_side_and_one_by_one():
    op = operator(poisson2d(6), PSD)
    solution = unchecked(op, jnp.zeros(36), DENSE)
    assert solution.result == lx.RESULTS.successful
    np.testing.assert_array_equal(solution.value, np.zeros(36))
    one = operator(sp.csr_matrix(np.array([[4.0]])))
    assert float(lx.linear_solve(one, jnp.array([2.0]), DENSE).value[0]) == 0.5


def test_duplicates_and_padding_of_traced_indices(getkey):
    """Indices traced under `jit` take the general route (duplicates summed in XLA)."""
    dense = matrix("random-real").toarray()
    op = matrix_operator("random-real")
    doubled = jnp.concatenate([op.indices, op.indices, jnp.full((3, 2), op.size)])
    data = jnp.concatenate([op.data / 2, op.data / 2, jnp.array([jnp.nan, 1.0, 2.0])])
    b = random_vector(getkey(), op.size, jnp.float64)

    @jax.jit
    def run(indices, data, b):
        bcoo = jax.experimental.sparse.BCOO((data, indices), shape=(op.size, op.size))
        return lx.linear_solve(lxs.SparseOperator(bcoo), b, DENSE).value

    assert_solves(dense, run(doubled, data, b), b, reference=np.linalg.solve(dense, np.asarray(b)))


# ------------------------------------------------------------------ failures


def rank_deficient(n: int, rank: int, dtype, seed: int):
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((n, rank))
    if np.dtype(dtype).kind == "c":
        left = left + 1j * rng.standard_normal((n, rank))
    return sp.csr_matrix(left @ rng.standard_normal((rank, n)))


def neumann2d(m: int):
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m)).tolil()
    t[0, 0] = t[m - 1, m - 1] = 1.0
    return (sp.kron(sp.eye_array(m), t) + sp.kron(t, sp.eye_array(m))).tocsr()


def upper_ones(n: int):
    """1 on the diagonal, -1 above: every LU pivot is 1, yet the condition number is 2^n."""
    return sp.csr_matrix(np.eye(n) - np.triu(np.ones((n, n)), 1))


SINGULAR = {
    "zero-pivot": lambda: sp.csr_matrix(np.outer(np.arange(1.0, 9.0), np.ones(8))),
    "neumann": lambda: neumann2d(10),
    "rank-deficient-real": lambda: rank_deficient(40, 10, np.float64, seed=2),
    "rank-deficient-complex": lambda: rank_deficient(40, 39, np.complex128, seed=3),
    "upper-ones": lambda: upper_ones(80),
}


@pytest.mark.parametrize("name", SINGULAR)
def test_singular_matrices_are_reported(name, getkey):
    matrix_ = SINGULAR[name]()
    dtype = jnp.complex128 if np.iscomplexobj(matrix_.data) else jnp.float64
    op = operator(matrix_)
    b = random_vector(getkey(), op.size, dtype)
    expect_failure(unchecked(op, b, DENSE), lx.RESULTS.singular)
    expect_failure(jax.jit(lambda o, v: unchecked(o, v, DENSE))(op, b), lx.RESULTS.singular)
    assert unchecked(op, b, HOST).result == lx.RESULTS.singular  # as the host says
    with pytest.raises(Exception, match="non-finite"):
        jax.grad(lambda v: jnp.sum(jnp.abs(lx.linear_solve(op, v, DENSE).value)))(b)


def test_nonfinite_input_gives_the_code_of_the_host(getkey):
    op = matrix_operator("random-real")
    b = random_vector(getkey(), op.size, jnp.float64)
    for data, rhs in (
        (op.data.at[3].set(jnp.nan), b),
        (op.data.at[0].set(jnp.inf), b),
        (op.data, b.at[5].set(jnp.inf)),
        (op.data, b.at[0].set(jnp.nan)),
    ):
        bad = with_data(op, data)
        host = unchecked(bad, rhs, HOST)
        assert host.result == lx.RESULTS.nonfinite_input
        expect_failure(unchecked(bad, rhs, DENSE), host.result)
        expect_failure(jax.jit(lambda o, v: unchecked(o, v, DENSE))(bad, rhs), host.result)


def test_tagged_positive_semidefinite_matrices(getkey):
    """Cholesky for tagged matrices: a matrix that is not positive definite, or whose
    values are not symmetric, is reported, or solved by LU with `fallback=True`."""
    b = jnp.asarray(np.linspace(1.0, 2.0, 60))
    indefinite = matrix("random-symmetric")
    asymmetric = matrix("random-real")
    for bad in (indefinite, asymmetric):
        expect_failure(unchecked(operator(bad, PSD), b, DENSE), lx.RESULTS.singular)
        solution = unchecked(operator(bad, PSD), b, lxs.AutoSparse(fallback=True))
        assert solution.result == lx.RESULTS.successful
        assert_solves(bad, solution.value, b)
    # A pair off by more than rounding is not excused by a large entry elsewhere.
    penalised = sp.lil_matrix(poisson2d(8))
    penalised[0, 0] += 1e20
    penalised[20, 21] += 1.0
    penalised[21, 20] -= 1.0
    expect_failure(
        unchecked(operator(penalised.tocsr(), PSD), jnp.ones(64), DENSE), lx.RESULTS.singular
    )


def test_ill_conditioned_but_nonsingular_solves():
    """Hilbert's matrix of order 9 (condition 5e11): solvable, and solved."""
    n = 9
    hilbert = 1.0 / (np.arange(n)[:, None] + np.arange(n)[None, :] + 1.0)
    b = np.linspace(1.0, 2.0, n)
    solution = unchecked(operator(sp.csr_matrix(hilbert)), jnp.asarray(b), DENSE)
    assert solution.result == lx.RESULTS.successful
    assert_solves(hilbert, solution.value, b, reference=np.linalg.solve(hilbert, b))


SCALES = [(1e307, 1.0), (1e300, 1e300), (1e-310, 1e-310), (1e-300, 1e-300), (1.0, 1e-170)]


@pytest.mark.parametrize("matrix_scale, rhs_scale", SCALES)
@pytest.mark.parametrize("tags", [(), PSD], ids=["lu", "cholesky"])
def test_any_scaling_of_a_solvable_system_solves(matrix_scale, rhs_scale, tags):
    """Subnormal matrices and right-hand sides included: XLA flushes them in arithmetic,
    the dense path scales them from their bits."""
    poisson = poisson2d(8)
    op = operator(poisson * matrix_scale, tags)
    b = jnp.asarray(np.linspace(1.0, 2.0, 64) * rhs_scale)  # made by numpy: not flushed
    solution = unchecked(op, b, DENSE)
    assert solution.result == lx.RESULTS.successful, lx.RESULTS[solution.result]
    expected = np.linalg.solve(poisson.toarray(), np.linspace(1.0, 2.0, 64)) * (
        rhs_scale / matrix_scale
    )
    np.testing.assert_allclose(solution.value, expected, rtol=1e-12)


def test_lu_overflow_and_a_subnormal_solution():
    """The LU of [[1, 1e308], [-1, 1e308]] overflows without equilibration; the solution's
    second entry, 1.5e-308, is subnormal."""
    op = operator(sp.csr_matrix(np.array([[1.0, 1e308], [-1.0, 1e308]])))
    solution = unchecked(op, jnp.array([1.0, 2.0]), DENSE)
    assert solution.result == lx.RESULTS.successful
    np.testing.assert_allclose(solution.value, [-0.5, 1.5e-308], rtol=1e-15)


def test_a_solution_too_large_to_represent_is_reported():
    op = operator(poisson2d(6) * 1e-300, PSD)
    solution = unchecked(op, jnp.asarray(np.full(36, 1e100)), DENSE)
    assert solution.result == lx.RESULTS.singular


# ------------------------------------------------------------------ derivatives, vmap


def _loss(op, solver):
    weights = jnp.cos(jnp.arange(op.size, dtype=jnp.float64))

    def loss(data, b):
        x = lx.linear_solve(with_data(op, data), b, solver).value
        return jnp.sum(weights * jnp.abs(x) ** 2)

    return loss


@pytest.mark.parametrize("name", ["random-real", "random-complex", "random-spd"])
def test_gradients_match_the_host_and_dense_autodiff(name, getkey):
    op = matrix_operator(name)
    b = random_vector(getkey(), op.size, op.data.dtype)
    ours = jax.jit(jax.grad(_loss(op, DENSE), argnums=(0, 1)))(op.data, b)
    host = jax.grad(_loss(op, HOST), argnums=(0, 1))(op.data, b)
    weights = jnp.cos(jnp.arange(op.size, dtype=jnp.float64))

    def reference(data, b):
        x = jnp.linalg.solve(dense_from_data(op, data), b)
        return jnp.sum(weights * jnp.abs(x) ** 2)

    expected = jax.grad(reference, argnums=(0, 1))(op.data, b)
    for mine, theirs, autodiff in zip(ours, host, expected, strict=True):
        scale = float(jnp.max(jnp.abs(autodiff)))
        assert float(jnp.max(jnp.abs(mine - theirs))) <= 1e-11 * scale
        assert float(jnp.max(jnp.abs(mine - autodiff))) <= 1e-11 * scale


def test_jvp_matches_finite_differences(getkey):
    op = matrix_operator("random-real")
    b = random_vector(getkey(), op.size, jnp.float64)
    loss = _loss(op, DENSE)
    directions = (
        random_vector(getkey(), op.data.size, jnp.float64),
        random_vector(getkey(), op.size, jnp.float64),
    )
    _, tangent = jax.jvp(loss, (op.data, b), directions)
    difference = finite_difference(
        lambda t: loss(op.data + t * directions[0], b + t * directions[1]), 0.0, 1.0
    )
    np.testing.assert_allclose(float(tangent), float(difference), rtol=1e-6)


def test_vmap_over_values_and_right_hand_sides(getkey):
    op = matrix_operator("random-real")
    scales = jnp.linspace(0.5, 2.0, 4)
    data = scales[:, None] * op.data[None, :]
    bs = jnp.stack([random_vector(getkey(), op.size, jnp.float64) for _ in range(4)])

    def solve(d, b):
        return lx.linear_solve(with_data(op, d), b, DENSE).value

    both = jax.jit(jax.vmap(solve))(data, bs)
    rhs_only = jax.vmap(solve, in_axes=(None, 0))(op.data, bs)
    values_only = jax.vmap(solve, in_axes=(0, None))(data, bs[0])
    for k in range(4):
        dense = matrix("random-real") * float(scales[k])
        assert_solves(dense, both[k], bs[k])
        assert_solves(matrix("random-real"), rhs_only[k], bs[k])
        assert_solves(dense, values_only[k], bs[0])


def test_vmap_reports_each_element(getkey):
    """A batch holding a singular matrix: that element fails, the others solve."""
    op = matrix_operator("random-real")
    data = jnp.stack([op.data, jnp.zeros_like(op.data), 2.0 * op.data])
    b = random_vector(getkey(), op.size, jnp.float64)
    solutions = jax.vmap(lambda d: unchecked(with_data(op, d), b, DENSE))(data)
    codes = list(np.asarray(solutions.result._value))
    assert codes == [0, lx.RESULTS.singular._value, 0]
    assert np.all(np.isnan(np.asarray(solutions.value[1])))
    assert_solves(matrix("random-real") * 2.0, solutions.value[2], b)


# ------------------------------------------------------------------ clients


def test_materialise_small_operators(getkey):
    """Through `Materialise`: densely for an operator colouring saves nothing on, from
    coloured products otherwise; both against the dense solve."""
    dense = matrix("random-real").toarray()
    full = np.ones((3, 3), bool)
    small = jnp.asarray(np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 1.0], [0.2, 1.0, 5.0]]))
    for a, pattern in ((small, full), (jnp.asarray(dense), dense != 0)):
        function = lx.FunctionLinearOperator(
            lambda v, a=a: a @ v, jax.ShapeDtypeStruct((a.shape[0],), jnp.float64)
        )
        b = random_vector(getkey(), a.shape[0], jnp.float64)
        solver = lxs.Materialise(DENSE, pattern)
        state = solver.init(function, {})
        assert isinstance(state.inner, DenseState)
        x = jax.jit(lambda v, f=function, s=solver: lx.linear_solve(f, v, s).value)(b)
        assert_solves(np.asarray(a), x, b, reference=np.linalg.solve(np.asarray(a), np.asarray(b)))


def test_newton_through_materialise():
    optx = pytest.importorskip("optimistix")

    def residual(u, args):  # a small nonlinear diffusion problem, n = 25
        m = 5
        u2 = u.reshape(m, m)
        padded = jnp.pad(u2, 1)
        lap = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * u2
        return (-lap + u2**3 - 1.0).reshape(-1)

    y0 = jnp.zeros(25)
    pattern = lxs.detect_sparsity(lambda u: residual(u, None), y0)
    ours = optx.root_find(
        residual, optx.Newton(1e-10, 1e-10, linear_solver=lxs.Materialise(DENSE, pattern)), y0
    )
    theirs = optx.root_find(residual, optx.Newton(1e-10, 1e-10), y0)
    np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-10)


def _rober(t, y, args):
    k1, k2, k3 = 0.04, 3e7, 1e4
    return jnp.stack(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2],
            k2 * y[1] ** 2,
        ]
    )


@pytest.mark.parametrize("method", ["Kvaerno5", "KenCarp4"])
def test_rober_through_diffrax(method):
    """diffrax's stiff test problem, with diffrax's reference values (from Kvaerno5 at
    rtol = atol = 1e-20) and its default linear solver's answer."""
    diffrax = pytest.importorskip("diffrax")
    pattern = lxs.detect_sparsity(lambda y: _rober(0.0, y, None), jnp.ones(3))
    term = diffrax.ODETerm(_rober)
    if method == "KenCarp4":
        term = diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, args: jnp.zeros(3)), term)
    ts = jnp.array([0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1])

    def solve(linear_solver):
        root_finder = diffrax.VeryChord(rtol=1e-8, atol=1e-8, linear_solver=linear_solver)
        return diffrax.diffeqsolve(
            term,
            getattr(diffrax, method)(root_finder=root_finder),
            0.0,
            10.0,
            2e-4,
            jnp.array([1.0, 0.0, 0.0]),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
            max_steps=100_000,
        ).ys

    ours = solve(lxs.Materialise(DENSE, pattern))
    default = solve(lx.AutoLinearSolver(well_posed=None))
    np.testing.assert_allclose(ours, default, rtol=1e-6, atol=1e-12)
    reference = np.array(
        [
            [1.0000000000000000e00, 0.0000000000000000e00, 0.0000000000000000e00],
            [9.9999600000801137e-01, 3.9840684637775332e-06, 1.5923523513217297e-08],
            [9.9996000156321818e-01, 2.9169034944881154e-05, 1.0829401837965007e-05],
            [9.9960068268829505e-01, 3.6450478878442643e-05, 3.6286683282835678e-04],
            [9.9607774744245892e-01, 3.5804372350422432e-05, 3.8864481851928275e-03],
            [9.6645973733301294e-01, 3.0746265785786866e-05, 3.3509516401211095e-02],
            [8.4136992384147014e-01, 1.6233909379904643e-05, 1.5861384224914774e-01],
        ]
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-8)
