"""SuperLU-specific behaviour; the shared grid is in test_solvers.py."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lineax_sparse as lxs

from .helpers import (
    assert_close,
    assert_solves,
    convection_diffusion2d,
    matrix,
    matrix_condition,
    matrix_operator,
    operator,
    random_vector,
    with_data,
)


@pytest.mark.parametrize("name", ["west0479", "rajat19", "young1c", "hangGlider_2"])
def test_agrees_with_scipy_splu_called_directly(name, getkey):
    dense = matrix(name)
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    x = lx.linear_solve(matrix_operator(name), b, solver=lxs.SuperLU()).value
    native = spla.splu(dense.tocsc()).solve(np.asarray(b))
    # Condition numbers up to 5e11: two backward-stable answers agree to kappa eps, not to
    # a fixed rtol (hangGlider_2's may differ from scipy's by 1e-9 where both have
    # residuals at rounding level).
    assert_solves(dense, x, b, reference=native, condition=matrix_condition(name))


@pytest.mark.parametrize("wrong", ["every-entry", "one-entry"])
def test_the_comparison_with_scipy_rejects_a_wrong_answer(wrong, getkey):
    # The test above can fail: hangGlider_2's solution with its entries off by up to 1e-6
    # relative, or one entry off by 1e-6 of the largest, has a backward error 1e5 times
    # what it allows. (Scaling the whole solution by 1 + 1e-6 would pass, rightly: it is
    # within what any backward-stable solve may return at condition 1e11.)
    dense = matrix("hangGlider_2")
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    x = np.array(lx.linear_solve(matrix_operator("hangGlider_2"), b, solver=lxs.SuperLU()).value)
    native = spla.splu(dense.tocsc()).solve(np.asarray(b))
    if wrong == "every-entry":
        x = x * (1 + 1e-6 * np.cos(np.arange(x.size)))
    else:
        x[937] += 1e-6 * np.max(np.abs(x))
    with pytest.raises(AssertionError, match="backward error"):
        assert_solves(dense, x, b, reference=native, condition=matrix_condition("hangGlider_2"))


@pytest.mark.parametrize("ordering", ["COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"])
def test_orderings_and_symmetric_mode(ordering, getkey):
    dense = matrix("rajat19")
    b = random_vector(getkey(), dense.shape[0], jnp.float64)
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    for solver in (lxs.SuperLU(ordering=ordering), lxs.SuperLU(ordering, 0.1, True)):
        x = lx.linear_solve(matrix_operator("rajat19"), b, solver=solver).value
        assert_solves(dense, x, b, reference=expected, condition=matrix_condition("rajat19"))


def test_cached_ordering_gives_the_same_answers_as_a_fresh_factorization(getkey):
    op = matrix_operator("west0479")
    b = random_vector(getkey(), op.size, jnp.float64)
    first = lx.linear_solve(op, b, solver=lxs.SuperLU()).value
    # Same pattern, other values: factorized with the cached column ordering.
    again = lx.linear_solve(with_data(op, op.data * 2.0), b, solver=lxs.SuperLU()).value
    np.testing.assert_allclose(again * 2.0, first, rtol=1e-9)
    info = lxs.cache_info()
    assert info.analyses == 1 and info.factorizations == 2


def test_options_are_checked():
    with pytest.raises(ValueError, match="ordering"):
        lxs.SuperLU(ordering="AMD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pivot_threshold"):
        lxs.SuperLU(pivot_threshold=2.0)
    with pytest.raises(ValueError, match="symmetric_mode"):
        lxs.SuperLU(symmetric_mode=1)  # type: ignore[arg-type]


def _same_pattern_matrices(count: int, n: int = 40):
    """A random pattern (a `StaticPattern`) and the values of `count` matrices on it, their
    condition numbers in [1e2, 1e3], their entries odd multiples of 1/2 (so that pivot
    candidates tie, as in circuit matrices)."""
    rng = np.random.default_rng(0)
    structure = (sp.random(n, n, density=0.12, random_state=rng) + sp.eye(n)).tocoo()
    values = []
    while len(values) < count:
        entries = np.round(2 * rng.standard_normal(structure.nnz)) + 0.5
        dense = sp.coo_matrix((entries, (structure.row, structure.col)), shape=(n, n))
        if 1e2 <= np.linalg.cond(dense.toarray()) <= 1e3:
            values.append(jnp.asarray(entries))
    indices = np.stack([structure.row, structure.col], axis=1).astype(np.int32)
    return lxs.static_pattern(indices, n), values


@pytest.mark.parametrize(
    "solver",
    [lxs.SuperLU(pivot_threshold=0.0), lxs.SuperLU(), lxs.SuperLU("COLAMD", 0.1, True)],
    ids=["threshold-0", "default", "symmetric-mode"],
)
def test_a_factorization_does_not_depend_on_what_was_factorized_before(solver):
    # The pattern's cached column order must give the same pivots as a fresh factorization:
    # with it, `pivot_threshold=0` once gave `singular` or `successful` to the same matrix
    # depending on whether another matrix of its pattern had been factorized first.
    pattern, (first, *values) = _same_pattern_matrices(41)
    b = jnp.ones(pattern.n)

    @jax.jit
    def solve(data):
        op = lxs.SparseOperator.from_pattern(pattern, data)
        solution = lx.linear_solve(op, b, solver=solver, throw=False)
        return solution.value, solution.result == lx.RESULTS.successful

    flipped, changed = [], []
    for k, data in enumerate(values):
        lxs.clear_cache()
        fresh, fresh_ok = solve(data)
        lxs.clear_cache()
        solve(first)  # the pattern's ordering now comes from `first`
        after, after_ok = solve(data)
        assert lxs.cache_info().analyses == 1  # one pattern: `data` reused `first`'s
        if bool(after_ok) != bool(fresh_ok):
            flipped.append(k)
        if not np.array_equal(after, fresh, equal_nan=True):
            changed.append(k)
    assert not flipped, f"the status of matrices {flipped} depends on what came before"
    assert not changed, f"the solutions of matrices {changed} depend on what came before"


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("transpose", [False, True], ids=["forward", "transposed"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_complex_right_hand_side_of_a_real_matrix(dtype, transpose, jit, getkey):
    # SuperLU's real factor refuses a complex block; Cholmod and AMG solve it. The
    # transposed solve is the one a gradient makes.
    real = matrix("random-real").astype(dtype)
    complex_dtype = jnp.complex64 if dtype == jnp.float32 else jnp.complex128
    b = random_vector(getkey(), real.shape[0], complex_dtype)
    solver = lxs.SuperLU()
    state = solver.init(operator(real), {})
    if transpose:
        state, _ = solver.transpose(state, {})

    def compute(state, b):
        x, result, _ = solver.compute(state, b, {})
        return x, result == lx.RESULTS.successful

    x, ok = (jax.jit(compute) if jit else compute)(state, b)
    dense = jnp.asarray(real.toarray()).astype(complex_dtype)
    expected = jnp.linalg.solve(dense.T if transpose else dense, b)
    assert x.dtype == complex_dtype and bool(ok)
    assert_close(x, expected, complex_dtype)


def stokes2d(m: int):
    """MAC (staggered) Stokes on the unit square with m x m cells: symmetric indefinite
    `[[L, D^T], [D, 0]]`, scipy CSR, n = 2 m (m - 1) + m^2 - 1.

    `L` is the 5-point negative Laplacian of each velocity component on its interior faces
    (no-slip walls), `D` the cell divergence; the zero block is the pressure's. The last
    pressure unknown is pinned (removed): pressure is otherwise defined up to a constant.
    """
    h = 1.0 / m

    def laplacian(nx: int, ny: int):  # unknowns ordered x fastest
        tx = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(nx, nx))
        ty = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(ny, ny))
        return (sp.kron(sp.eye_array(ny), tx) + sp.kron(ty, sp.eye_array(nx))) / h**2

    # Cell i has the faces i - 1/2 and i + 1/2; the faces on the walls are not unknowns.
    difference = sp.diags_array([1.0, -1.0], offsets=[0, -1], shape=(m, m - 1)) / h
    divergence = sp.hstack(
        [sp.kron(sp.eye_array(m), difference), sp.kron(difference, sp.eye_array(m))]
    )
    velocity = sp.block_diag([laplacian(m - 1, m), laplacian(m, m - 1)])
    saddle = sp.block_array([[velocity, divergence.T], [divergence, None]]).tocsr()
    keep = saddle.shape[0] - 1
    return saddle[:keep, :keep].tocsr()


def _solution(op, solver) -> np.ndarray:
    """`op`'s solution by `solver`, from a fresh factorization: the same bits for the same
    ordering, other bits for another (its pivots and fill differ)."""
    lxs.clear_cache()
    b = jnp.cos(jnp.arange(op.size, dtype=jnp.float64)).astype(op.data.dtype)
    solution = lx.linear_solve(op, b, solver=solver, throw=False)
    assert solution.result == lx.RESULTS.successful
    return np.asarray(solution.value)


def _saddle_point(stabilization: float = 0.0):
    """A small MAC Stokes matrix, its pressure block `-stabilization I`."""
    velocities = 2 * 8 * 7
    pressure = np.r_[np.zeros(velocities), np.ones(stokes2d(8).shape[0] - velocities)]
    return (stokes2d(8) - stabilization * sp.diags(pressure)).tocsr()


def _helmholtz(grid: int = 24):
    """-Δ_h - k^2 (1 + 0.01 i), ten points per wavelength: complex symmetric, indefinite,
    its diagonal (3.6 / h^2) the largest entry of each column but not dominant."""
    h = 1.0 / (grid + 1)
    k = 2 * np.pi / (10 * h)
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(grid, grid)) / h**2
    laplacian = sp.kron(sp.eye(grid), t) + sp.kron(t, sp.eye(grid))
    return (laplacian - k**2 * (1 + 0.01j) * sp.eye(grid * grid)).tocsr()


AUTO_CASES = {
    # name: (matrix, the ordering "auto" must choose)
    "stokes": (_saddle_point, "COLAMD"),  # zero pressure block: MMD_AT_PLUS_A's fill explodes
    "stokes-stabilized": (lambda: _saddle_point(1e-3), "COLAMD"),  # small pressure block
    "hangGlider_2": (lambda: matrix("hangGlider_2"), "COLAMD"),  # 45% of its diagonal absent
    "bcsstk13": (lambda: matrix("bcsstk13"), "COLAMD"),  # SPD, 20% of its diagonal not the
    # largest entry of its column
    "rajat19": (lambda: matrix("rajat19"), "COLAMD"),  # circuits: unsymmetric patterns
    "west0479": (lambda: matrix("west0479"), "COLAMD"),
    "poisson": (lambda: matrix("poisson"), "MMD_AT_PLUS_A"),  # diagonally dominant columns
    "elasticity": (lambda: matrix("elasticity"), "MMD_AT_PLUS_A"),
    "convection-diffusion": (lambda: convection_diffusion2d(12), "MMD_AT_PLUS_A"),
    # The diagonal wins the first step only: pivots leave it later (35x the time at 256^2).
    "helmholtz": (_helmholtz, "COLAMD"),
}


@pytest.mark.parametrize("name", list(AUTO_CASES))
def test_auto_ordering(name):
    # A minimum degree ordering of A^T + A plans for pivots on the diagonal; on a saddle
    # point partial pivoting takes others, and it was 150x slower than COLAMD at n = 4,719
    # (benchmarks/bench_superlu.py --part orderings). The choice is seen in the solution's
    # bits, which are those of the ordering chosen (timings live in the benchmark).
    build, expected = AUTO_CASES[name]
    dense = build()
    other = "MMD_AT_PLUS_A" if expected == "COLAMD" else "COLAMD"
    csc = sp.csc_matrix(dense)
    assert spla.splu(csc, permc_spec=expected).nnz != spla.splu(csc, permc_spec=other).nnz
    op = operator(dense)
    chosen = _solution(op, lxs.SuperLU())
    np.testing.assert_array_equal(chosen, _solution(op, lxs.SuperLU(ordering=expected)))
    assert not np.array_equal(chosen, _solution(op, lxs.SuperLU(ordering=other)))


def test_auto_sparse_orders_a_saddle_point_with_colamd():
    op = operator(_saddle_point())
    np.testing.assert_array_equal(
        _solution(op, lxs.AutoSparse(dense_below=0)),
        _solution(op, lxs.SuperLU(ordering="COLAMD")),
    )
