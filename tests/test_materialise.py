"""Matrix-free operators as sparse matrices: `SparseOperator.from_operator`, `Materialise`
and `detect_sparsity`, each against dense JAX (`jax.jacfwd`, `jnp.linalg`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from jax.experimental import sparse as jsparse
from jax.flatten_util import ravel_pytree

import lineax_sparse as lxs
from lineax_sparse._matrixfree.jacobian import as_pattern

from .helpers import grid


PSD = lx.positive_semidefinite_tag
#: The direct solvers of the grid (these tests' tolerances are those of a direct solve;
#: `tests/test_solvers.py` runs `Materialise` over every solver), for general operators
#: and for the normal equations of least squares (positive definite).
GENERAL = grid(materialise=False, kinds=("general",), direct_only=True)
DEFINITE = grid(materialise=False, kinds=("spd",), direct_only=True)


def diffusion_residual(u, kappa):
    """-div((1 + kappa u^2) grad u) - 1 on a 2D grid (Dirichlet zero), as PDE codes write it."""
    m = u.shape[0]
    h = 1.0 / (m + 1)
    up = jnp.pad(u, 1)
    k = 1 + kappa * up**2
    kx = 0.5 * (k[1:, 1:-1] + k[:-1, 1:-1])
    ky = 0.5 * (k[1:-1, 1:] + k[1:-1, :-1])
    fx = kx * (up[1:, 1:-1] - up[:-1, 1:-1])
    fy = ky * (up[1:-1, 1:] - up[1:-1, :-1])
    return (-(fx[1:] - fx[:-1]) - (fy[:, 1:] - fy[:, :-1])) / h**2 - 1.0


def brusselator(y, params):
    """A periodic 2D reaction-diffusion system with two fields (a pytree of 2-D arrays)."""
    u, v = y
    a, b = params
    m = u.shape[0]

    def lap(w):
        rolled = jnp.roll(w, 1, 0) + jnp.roll(w, -1, 0) + jnp.roll(w, 1, 1) + jnp.roll(w, -1, 1)
        return (rolled - 4 * w) * m**2

    return (a + u**2 * v - (b + 1) * u + 0.01 * lap(u), b * u - u**2 * v + 0.01 * lap(v))


def dense_jacobian(fn, x):
    flat, unravel = ravel_pytree(x)
    return np.asarray(jax.jacfwd(lambda z: ravel_pytree(fn(unravel(z)))[0])(flat))


def grid_state(m, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.uniform(0.5, 1.5, (m, m))), jnp.asarray(rng.uniform(0.5, 1.5, (m, m))))


# ------------------------------------------------------------------ patterns


def test_every_form_of_pattern_gives_the_same_pattern():
    dense = np.zeros((5, 5), dtype=bool)
    dense[[0, 1, 2, 3, 4, 0], [0, 1, 2, 3, 4, 3]] = True
    rows, cols = np.nonzero(dense)
    import asdex

    forms = [
        sp.csr_matrix(dense.astype(float)),
        sp.coo_array(dense.astype(float)),
        jsparse.BCOO.fromdense(jnp.asarray(dense.astype(float))),
        dense,
        jnp.asarray(dense),
        (rows, cols),
        asdex.SparsityPattern.from_dense(dense),
        asdex.jacobian_coloring_from_sparsity(asdex.SparsityPattern.from_dense(dense)),
    ]
    expected = as_pattern(dense)
    for form in forms:
        pattern = as_pattern(form).bind(5, 5)
        assert pattern == expected.bind(5, 5), type(form)
        assert hash(pattern) == hash(expected.bind(5, 5))


def test_a_traced_pattern_says_what_to_do():
    @jax.jit
    def solve(pattern_array, b):
        return lxs.Materialise(lxs.SuperLU(), pattern_array)

    with pytest.raises(ValueError, match="concrete"):
        solve(jnp.eye(3, dtype=bool), jnp.ones(3))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((3, 3, 3)), "must be"),
        (("a", "b"), "integer"),
        ((np.array([0, 1]), np.array([0])), "as many"),
        (sp.eye(4), None),  # fine as a pattern, wrong for a 3 x 3 operator
    ],
)
def test_malformed_patterns_are_refused(bad, message):
    op = lx.MatrixLinearOperator(jnp.eye(3))
    with pytest.raises(ValueError, match=message or "columns|rows|outside"):
        lxs.SparseOperator.from_operator(op, bad)


# ------------------------------------------------------------------ from_operator


@pytest.mark.parametrize("kind", ["function", "jacobian"])
def test_from_operator_matches_the_dense_jacobian_with_pytrees(kind):
    y = grid_state(6)
    params = (1.0, 3.0)
    fn = lambda state: brusselator(state, params)  # noqa: E731
    pattern = lxs.detect_sparsity(fn, y)
    if kind == "function":
        _, linear = jax.linearize(fn, y)
        op = lx.FunctionLinearOperator(linear, jax.eval_shape(lambda: y))
    else:
        op = lx.JacobianLinearOperator(lambda state, args: fn(state), y)
    sparse = eqx.filter_jit(lambda o: lxs.SparseOperator.from_operator(o, pattern))(op)
    np.testing.assert_allclose(sparse.as_matrix(), dense_jacobian(fn, y), rtol=1e-13, atol=1e-12)


def test_inputs_and_outputs_of_different_structures():
    """A dict of outputs from a tuple of inputs, of mixed shapes."""

    def fn(y):
        a, b = y
        return {"first": a[1:] * b[0], "second": jnp.concatenate([a[:1] ** 2, b * a[-1]])}

    y = (jnp.linspace(1.0, 2.0, 4), jnp.linspace(-1.0, 1.0, 3))
    op = lx.JacobianLinearOperator(lambda state, args: fn(state), y)
    sparse = lxs.SparseOperator.from_operator(op, lxs.detect_sparsity(fn, y))
    np.testing.assert_allclose(sparse.as_matrix(), dense_jacobian(fn, y), rtol=1e-14)


def test_row_colouring_is_used_when_it_needs_fewer_colours():
    """A dense row (an integral constraint) makes every column conflict: VJPs win."""
    n = 40

    def fn(x):
        return jnp.concatenate([x[:-1] ** 2 + x[1:], jnp.sum(x**3)[None]])

    x = jnp.linspace(0.1, 1.0, n)
    pattern = lxs.detect_sparsity(fn, x)
    coloring = as_pattern(pattern).bind(n, n).coloring()
    assert coloring.mode == "rev" and coloring.num_colors <= 4
    op = lx.JacobianLinearOperator(lambda z, args: fn(z), x)
    sparse = lxs.SparseOperator.from_operator(op, pattern)
    np.testing.assert_allclose(sparse.as_matrix(), dense_jacobian(fn, x), rtol=1e-13)


def test_from_operator_differentiates_through_the_operator_parameters():
    """Gradients flow to what the operator closes over (implicit differentiation of a
    matrix-free solve with respect to its parameters)."""
    m = 5
    u = jnp.asarray(np.random.default_rng(1).uniform(size=(m, m)))
    pattern = lxs.detect_sparsity(lambda w: diffusion_residual(w, 1.0), u)
    b = jnp.linspace(1.0, 2.0, m * m)

    def loss(kappa):
        op = lx.JacobianLinearOperator(lambda w, args: diffusion_residual(w, kappa), u)
        sparse = lxs.SparseOperator.from_operator(op, pattern)
        return jnp.sum(lx.linear_solve(sparse, b, solver=lxs.SuperLU()).value ** 2)

    def dense_loss(kappa):
        matrix = jax.jacfwd(lambda w: diffusion_residual(w.reshape(m, m), kappa).ravel())(u.ravel())
        return jnp.sum(jnp.linalg.solve(matrix, b) ** 2)

    np.testing.assert_allclose(loss(0.7), dense_loss(0.7), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(loss)(0.7), jax.grad(dense_loss)(0.7), rtol=1e-9)


def test_square_patterns_include_the_diagonal():
    # I - h J with a J whose pattern has no diagonal (a pure transport stencil).
    n = 10
    fn = lambda x: jnp.roll(x, 1) - jnp.roll(x, -1)  # noqa: E731
    pattern = lxs.detect_sparsity(fn, jnp.zeros(n))
    jac = lx.JacobianLinearOperator(lambda z, args: fn(z), jnp.zeros(n))
    op = lx.IdentityLinearOperator(jac.in_structure()) - 0.1 * jac
    sparse = lxs.SparseOperator.from_operator(op, pattern)
    np.testing.assert_allclose(sparse.as_matrix(), np.asarray(op.as_matrix()), rtol=1e-15)


# ------------------------------------------------------------------ Materialise


def _newton_operator(m=6):
    y = grid_state(m, seed=3)
    fn = lambda state: brusselator(state, (1.0, 3.0))  # noqa: E731
    _, linear = jax.linearize(fn, y)
    jac = lx.FunctionLinearOperator(linear, jax.eval_shape(lambda: y))
    op = lx.IdentityLinearOperator(jac.in_structure()) - 0.05 * jac
    return op, lxs.detect_sparsity(fn, y), y


@pytest.mark.parametrize("case", GENERAL)
def test_materialise_solves_pytree_operators_under_every_transformation(case):
    op, pattern, y = _newton_operator()
    solver = lxs.Materialise(case.solver, pattern)
    dense = np.asarray(op.as_matrix())
    b = (jnp.cos(jnp.arange(36.0)).reshape(6, 6), jnp.sin(jnp.arange(36.0)).reshape(6, 6))
    flat_b, _ = ravel_pytree(b)
    expected = np.linalg.solve(dense, flat_b)

    def solve(vector):
        return lx.linear_solve(op, vector, solver=solver).value

    x = jax.jit(solve)(b)
    np.testing.assert_allclose(ravel_pytree(x)[0], expected, rtol=1e-10)
    # grad with respect to b: a transposed solve
    gradient = jax.grad(lambda v: jnp.sum(ravel_pytree(solve(v))[0] ** 3))(b)
    reference = np.linalg.solve(dense.T, 3 * expected**2)
    np.testing.assert_allclose(ravel_pytree(gradient)[0], reference, rtol=1e-9)
    # jvp
    _, tangent = jax.jvp(solve, (b,), (b,))
    np.testing.assert_allclose(ravel_pytree(tangent)[0], expected, rtol=1e-10)
    # vmap over right-hand sides
    batch = jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf, 2 * leaf]), b)
    xs = jax.vmap(solve)(batch)
    np.testing.assert_allclose(xs[1][1], 2 * x[1], rtol=1e-12)
    # throw=False and the result
    sol = lx.linear_solve(op, b, solver=solver, throw=False)
    assert sol.result == lx.RESULTS.successful


def test_tags_carry_over_and_sparse_operators_pass_through():
    m = 5
    u = jnp.ones((m, m))
    fn = lambda w: diffusion_residual(w, 0.0)  # noqa: E731  (linear, SPD)
    pattern = lxs.detect_sparsity(fn, u)
    jac = lx.JacobianLinearOperator(lambda w, args: fn(w), u, tags=PSD)
    # The host path (this system is small enough for the dense one).
    solver = lxs.Materialise(lxs.AutoSparse(dense_below=0), pattern)
    state = solver.init(jac, {})
    assert state.inner.spec[0] == "cholmod"  # picked from the tag
    untagged = solver.init(lx.JacobianLinearOperator(lambda w, args: fn(w), u), {})
    assert untagged.inner.spec[0] == "superlu"
    sparse = lxs.SparseOperator.from_operator(jac, pattern)
    assert lx.is_positive_semidefinite(sparse)
    passed = solver.init(sparse, {})
    assert passed.inner.spec[0] == "cholmod" and passed.pattern is None
    b = jnp.ones(m * m)
    np.testing.assert_allclose(
        lx.linear_solve(sparse, b, solver=solver).value,
        np.linalg.solve(np.asarray(sparse.as_matrix()), b),
        rtol=1e-12,
    )


def test_materialise_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="lineax-sparse solver"):
        lxs.Materialise(lx.LU(), np.eye(3, dtype=bool))
    wide = lx.MatrixLinearOperator(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="underdetermined"):
        lx.linear_solve(wide, jnp.ones(2), solver=lxs.Materialise(lxs.Cholmod(), np.ones((2, 3))))


# ------------------------------------------------------------------ least squares


def _least_squares_problem(m=30, n=12, seed=4):
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < 0.25
    mask[np.arange(n), np.arange(n)] = True  # full column rank
    matrix = np.where(mask, rng.standard_normal((m, n)), 0.0)
    return matrix, mask


@pytest.mark.parametrize("case", DEFINITE)
def test_overdetermined_operators_are_solved_in_the_least_squares_sense(case):
    matrix, mask = _least_squares_problem()
    op = lx.FunctionLinearOperator(
        lambda x: jnp.asarray(matrix) @ x, jax.ShapeDtypeStruct((12,), jnp.float64)
    )
    b = jnp.asarray(np.random.default_rng(5).standard_normal(30))
    solver = lxs.Materialise(case.solver, mask)
    x = lx.linear_solve(op, b, solver=solver).value
    np.testing.assert_allclose(x, np.linalg.lstsq(matrix, b, rcond=None)[0], rtol=1e-10)
    # The gradient with respect to b goes through the minimum-norm transposed solve.
    grad = jax.grad(lambda v: jnp.sum(lx.linear_solve(op, v, solver=solver).value ** 2))(b)
    dense = jax.grad(lambda v: jnp.sum(lx.linear_solve(op, v, solver=lx.QR()).value ** 2))(b)
    np.testing.assert_allclose(grad, dense, rtol=1e-9)


def test_least_squares_gradient_with_respect_to_the_operator():
    matrix, mask = _least_squares_problem()
    b = jnp.asarray(np.random.default_rng(6).standard_normal(30))

    def loss(scale, solver):
        op = lx.FunctionLinearOperator(
            lambda x: jnp.asarray(matrix) @ x + scale * jnp.concatenate([x, jnp.zeros(18)]),
            jax.ShapeDtypeStruct((12,), jnp.float64),
        )
        return jnp.sum(lx.linear_solve(op, b, solver=solver).value ** 2)

    sparse = lxs.Materialise(lxs.Cholmod(), mask)
    np.testing.assert_allclose(jax.grad(loss)(0.3, sparse), jax.grad(loss)(0.3, lx.QR()), rtol=1e-8)


def test_damped_operators_get_their_diagonal_block():
    """Levenberg-Marquardt's `[J; sqrt(lambda) I]` with the pattern of `J` alone."""
    matrix, mask = _least_squares_problem()
    lam = 0.7
    op = lx.FunctionLinearOperator(
        lambda x: (jnp.asarray(matrix) @ x, jnp.sqrt(lam) * x),
        jax.ShapeDtypeStruct((12,), jnp.float64),
    )
    b = jnp.asarray(np.random.default_rng(7).standard_normal(30))
    x = lx.linear_solve(op, (b, jnp.zeros(12)), solver=lxs.Materialise(lxs.Cholmod(), mask)).value
    expected = np.linalg.solve(matrix.T @ matrix + lam * np.eye(12), matrix.T @ np.asarray(b))
    np.testing.assert_allclose(x, expected, rtol=1e-10)


# ------------------------------------------------------------------ detect_sparsity


def _fem_residual(u, connectivity, ke):
    element = u[connectivity]  # gather
    forces = jnp.einsum("ij,ej->ei", ke, element * (1 + element**2))
    return jnp.zeros_like(u).at[connectivity].add(forces)  # scatter-add


CASES = {
    "elementwise+broadcast": (lambda x: jnp.sin(x) * x[0] + jnp.exp(x) ** 2, jnp.ones(7)),
    "slicing": (lambda x: x[1:] - x[:-1], jnp.ones(9)),
    "pad+concatenate": (lambda x: jnp.concatenate([jnp.pad(x, 1)[:-2] * x, x[:3]]), jnp.ones(6)),
    "reshape+roll": (lambda x: jnp.roll(x.reshape(3, 4), 1, axis=1).reshape(-1) * x, jnp.ones(12)),
    "reductions+where": (
        lambda x: jnp.where(x > 0, x**2, jnp.sum(x[:3])) + jnp.max(x[-2:]),
        jnp.ones(8),
    ),
    "dot_general-constant": (
        lambda x: jnp.asarray(np.triu(np.ones((6, 6)))) @ x,
        jnp.ones(6),
    ),
    "fem-gather-scatter": (
        lambda u: _fem_residual(
            u,
            jnp.asarray([[0, 1, 4, 5], [1, 2, 5, 6], [4, 5, 8, 9]]),
            jnp.asarray(np.eye(4) * 2 - 0.5),
        ),
        jnp.ones(10),
    ),
    "brusselator-pytree": (lambda y: brusselator(y, (1.0, 3.0)), grid_state(4)),
    "nonlinear-diffusion": (lambda u: diffusion_residual(u, 1.0), jnp.ones((5, 5))),
}


@pytest.mark.parametrize("name", CASES)
def test_detect_sparsity_is_exact_on_pde_structures(name):
    fn, x = CASES[name]
    pattern = as_pattern(lxs.detect_sparsity(fn, x))
    # At a generic point, every structural entry is numerically nonzero.
    generic = jax.tree_util.tree_map(
        lambda leaf: leaf * jnp.linspace(0.37, 1.91, leaf.size).reshape(leaf.shape), x
    )
    dense = dense_jacobian(fn, generic)
    detected = np.zeros(dense.shape, dtype=bool)
    detected[pattern.rows, pattern.cols] = True
    assert pattern.shape == dense.shape
    assert np.all(detected[dense != 0]), "a nonzero is missing from the pattern"
    # Conservative where a structural dependence is numerically zero: `where` keeps both
    # branches', and a padded zero times x still depends on x.
    if name not in ("reductions+where", "pad+concatenate"):
        np.testing.assert_array_equal(detected, dense != 0)


def test_an_unsupported_function_says_to_pass_the_pattern_by_hand():
    @jax.custom_jvp
    def host_sin(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    @host_sin.defjvp
    def host_sin_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return host_sin(x), jax.pure_callback(lambda x, t: np.cos(x) * t, shape, x, t)

    # asdex treats callbacks conservatively (dense): a valid, if full, pattern.
    pattern = lxs.detect_sparsity(host_sin, jnp.ones(3))
    assert pattern.nnz == 9
    # A callback without a derivative rule has no Jacobian for `Materialise` to evaluate:
    # JAX's own error says what to do.
    with pytest.raises(ValueError, match="custom_jvp"):
        lxs.detect_sparsity(
            lambda x: jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x),
            jnp.ones(3),
        )
    # asdex has no rule for `fft` (nor `triangular_solve`): a clear error, not a guess.
    for unsupported in (
        lambda x: jnp.fft.fft(x).real,
        lambda x: jax.scipy.linalg.solve_triangular(jnp.tril(jnp.ones((3, 3))), x, lower=True),
    ):
        with pytest.raises(ValueError, match="sparsity=") as error:
            lxs.detect_sparsity(unsupported, jnp.ones(3))
        assert "by hand" in str(error.value)


# ------------------------------------------------------------------ verification


N_PERIODIC = 16


def periodic_residual(u, k):
    """A periodic 1D reaction-diffusion residual: its Jacobian couples the first and last
    points, which a tridiagonal pattern (the classic slip) misses."""
    n = u.shape[0]
    return k * u**3 - (jnp.roll(u, 1) - 2 * u + jnp.roll(u, -1)) * n**2


def _tridiagonal(n, extra_rows=()):
    """The pattern of a periodic stencil without its wrap-around corners."""
    pattern = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 1
    return np.concatenate([pattern, *extra_rows]) if extra_rows else pattern


def _periodic_case(case):
    """`(operator, pattern without the corners, exact pattern)` for each way of
    materialising: column colouring, row colouring (a dense row), least squares (more
    rows than columns), complex values."""
    n = N_PERIODIC
    u = jnp.linspace(0.5, 1.5, n)
    if case == "square":
        fn = lambda w: periodic_residual(w, 1.0)  # noqa: E731
        wrong = _tridiagonal(n)
    elif case == "rows":
        # An integral constraint in the last row: every column conflicts, rows win.
        fn = lambda w: jnp.concatenate([periodic_residual(w, 1.0)[:-1], jnp.sum(w)[None]])  # noqa: E731
        wrong = np.concatenate([_tridiagonal(n)[:-1], np.ones((1, n), bool)])
    elif case == "least-squares":
        fn = lambda w: (periodic_residual(w, 1.0), 3.0 * w)  # noqa: E731
        wrong = _tridiagonal(n, [np.eye(n, dtype=bool)])
    else:  # complex
        u = u.astype(jnp.complex128) * (1 + 0.5j)
        fn = lambda w: (1 + 2j) * periodic_residual(w, 1.0)  # noqa: E731
        wrong = _tridiagonal(n)
    _, linear = jax.linearize(fn, u)
    op = lx.FunctionLinearOperator(linear, jax.eval_shape(lambda: u))
    return op, wrong, lxs.detect_sparsity(fn, u)


@pytest.mark.parametrize("case", ["square", "rows", "least-squares", "complex"])
def test_a_pattern_that_misses_entries_is_an_error_not_a_wrong_answer(case):
    op, wrong, exact = _periodic_case(case)
    if case == "rows":
        m, n = (N_PERIODIC, N_PERIODIC)
        assert as_pattern(wrong).bind(m, n).coloring().mode == "rev"
    inner = lxs.Cholmod() if case == "least-squares" else lxs.SuperLU()
    b = jax.tree_util.tree_map(
        lambda leaf: jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype)).reshape(leaf.shape),
        op.out_structure(),
    )
    dense = np.asarray(op.as_matrix())
    flat_b = np.asarray(ravel_pytree(b)[0])
    expected = np.linalg.lstsq(dense, flat_b, rcond=None)[0]

    def solve(pattern, verify=True):
        solver = lxs.Materialise(inner, pattern, verify=verify)
        return eqx.filter_jit(lambda b: lx.linear_solve(op, b, solver=solver, throw=False))(b)

    good = solve(exact)
    assert good.result == lx.RESULTS.successful
    np.testing.assert_allclose(good.value, expected, rtol=1e-9)
    # Unchecked, the wrong pattern is a wrong answer reported as a success: what the
    # probe stops.
    unchecked = solve(wrong, verify=False)
    assert unchecked.result == lx.RESULTS.successful
    error = np.linalg.norm(unchecked.value - expected) / np.linalg.norm(expected)
    assert error > 1e-3
    with pytest.raises(RuntimeError, match="`Materialise\\(sparsity=...\\)` misses nonzero"):
        jax.block_until_ready(solve(wrong).value)


def test_the_probe_check_works_under_grad_and_vmap_and_names_the_rows():
    n = N_PERIODIC
    u = jnp.linspace(0.5, 1.5, n)
    wrong, exact = _tridiagonal(n), lxs.detect_sparsity(lambda w: periodic_residual(w, 1.0), u)
    b = jnp.linspace(1.0, 2.0, n)

    def loss(k, pattern):
        op = lx.JacobianLinearOperator(lambda w, args: periodic_residual(w, k), u)
        sparse = lxs.SparseOperator.from_operator(op, pattern)
        return jnp.sum(lx.linear_solve(sparse, b, solver=lxs.SuperLU()).value ** 2)

    def dense_loss(k):
        matrix = jax.jacfwd(lambda w: periodic_residual(w, k))(u)
        return jnp.sum(jnp.linalg.solve(matrix, b) ** 2)

    ks = jnp.asarray([0.5, 1.0])
    np.testing.assert_allclose(jax.grad(loss)(0.7, exact), jax.grad(dense_loss)(0.7), rtol=1e-9)
    np.testing.assert_allclose(
        jax.vmap(lambda k: loss(k, exact))(ks), jax.vmap(dense_loss)(ks), rtol=1e-10
    )
    for transformed, argument in (
        (jax.grad(lambda k: loss(k, wrong)), ks[1]),
        (jax.jit(jax.grad(lambda k: loss(k, wrong))), ks[1]),
        (jax.vmap(lambda k: loss(k, wrong)), ks),
    ):
        with pytest.raises(RuntimeError, match="misses nonzero entries"):
            jax.block_until_ready(transformed(argument))
    # Outside a trace the rows are known when the error is raised.
    op = lx.JacobianLinearOperator(lambda w, args: periodic_residual(w, 1.0), u)
    with pytest.raises(RuntimeError, match=r"from_operator\(sparsity=...\)` misses.*in rows 0, 15"):
        lxs.SparseOperator.from_operator(op, wrong)
    unchecked = lxs.SparseOperator.from_operator(op, wrong, verify=False)
    assert np.abs(unchecked.as_matrix() - op.as_matrix()).max() == n**2  # the two corners


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128])
def test_the_probe_check_never_trips_on_an_exact_pattern(dtype):
    """Rounding never trips it: rows scaled over 30 orders of magnitude, a stage matrix
    `I - c J` whose diagonal cancels to 1e-3 of its terms, every dtype."""
    n = 64
    real = jnp.finfo(dtype).dtype
    scales = jnp.asarray(10.0 ** np.linspace(-15, 15, n), dtype)
    u = jnp.asarray(np.linspace(0.5, 1.5, n), dtype)
    c = jnp.asarray(0.999 / (2 * n**2 + 3 * 1.5**2), dtype)  # c J's diagonal is about 1

    def fn(w):
        return scales * (w - c * periodic_residual(w, jnp.asarray(-1.0, dtype)))

    pattern = lxs.detect_sparsity(fn, u)
    op = lx.JacobianLinearOperator(lambda w, args: fn(w), u)
    sparse = eqx.filter_jit(lambda o: lxs.SparseOperator.from_operator(o, pattern))(op)
    unscale = 1 / np.abs(np.asarray(scales))[:, None]  # rows of terms of size 1
    np.testing.assert_allclose(
        np.asarray(sparse.as_matrix()) * unscale,
        np.asarray(op.as_matrix()) * unscale,
        atol=100 * float(jnp.finfo(real).eps),
    )
    batched = jax.vmap(
        lambda s: (
            lxs.SparseOperator.from_operator(
                lx.JacobianLinearOperator(lambda w, args: s * fn(w), u), pattern
            ).data
        )
    )(jnp.asarray([1.0, 1e-30], dtype))
    assert batched.shape == (2, sparse.data.shape[0])


# ------------------------------------------------------------------ custom derivative rules


@jax.custom_jvp
def identity_with_coupled_jvp(x):
    return x


@identity_with_coupled_jvp.defjvp
def _coupled_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return x, t + 0.5 * jnp.roll(t, 1)


@jax.custom_vjp
def square_with_coupled_vjp(x):
    return x**2


def _square_fwd(x):
    return x**2, x


def _square_bwd(x, cotangent):
    return (2 * x * cotangent + 0.5 * jnp.roll(cotangent, -1),)


square_with_coupled_vjp.defvjp(_square_fwd, _square_bwd)


def test_detect_sparsity_follows_custom_jvp_rules():
    """An identity whose JVP couples neighbours: its primal's pattern has 6 of the 12
    entries `Materialise` evaluates, which gave a `successful` answer 15% off."""
    n = 6
    x = jnp.linspace(1.0, 2.0, n)
    pattern = lxs.detect_sparsity(identity_with_coupled_jvp, x)
    dense = dense_jacobian(identity_with_coupled_jvp, x)
    assert pattern.nnz == 12 and np.count_nonzero(dense) == 12
    _, linear = jax.linearize(identity_with_coupled_jvp, x)
    op = lx.FunctionLinearOperator(linear, jax.eval_shape(lambda: x))
    b = jnp.linspace(1.0, 3.0, n)
    x_sparse = lx.linear_solve(op, b, solver=lxs.Materialise(lxs.SuperLU(), pattern)).value
    np.testing.assert_allclose(x_sparse, np.linalg.solve(dense, b), rtol=1e-12)
    # The primal's pattern (asdex on the function itself) is caught by the probe.
    import asdex

    primal = asdex.jacobian_sparsity(identity_with_coupled_jvp, x)
    assert primal.nnz == n
    with pytest.raises(RuntimeError, match="misses nonzero entries"):
        lx.linear_solve(op, b, solver=lxs.Materialise(lxs.SuperLU(), primal))


@pytest.mark.parametrize("operator", ["jacobian-bwd", "linearize-rows"])
def test_detect_sparsity_follows_custom_vjp_rules(operator):
    """A `custom_vjp` function has no JVP: `Materialise` evaluates its `bwd` rule (VJPs
    for row colourings, or their transpose through `JacobianLinearOperator(jac="bwd")`),
    and detection follows that rule, not the primal."""
    n = 6
    x = jnp.linspace(1.0, 2.0, n)
    if operator == "jacobian-bwd":
        fn = square_with_coupled_vjp
    else:  # a dense last row makes row colouring (VJPs) the cheaper, so usable, mode

        def fn(y):
            return jnp.concatenate([square_with_coupled_vjp(y)[:-1], jnp.sum(y**2)[None]])

    dense = np.asarray(jax.jacrev(fn)(x))
    pattern = lxs.detect_sparsity(fn, x)
    detected = np.zeros((n, n), bool)
    detected[pattern.rows, pattern.cols] = True
    np.testing.assert_array_equal(detected, dense != 0)
    if operator == "jacobian-bwd":
        op = lx.JacobianLinearOperator(lambda y, args: fn(y), x, jac="bwd")
    else:
        _, linear = jax.linearize(fn, x)
        op = lx.FunctionLinearOperator(linear, jax.eval_shape(lambda: x))
        assert as_pattern(pattern).bind(n, n).coloring().mode == "rev"
    sparse = lxs.SparseOperator.from_operator(op, pattern)
    np.testing.assert_allclose(sparse.as_matrix(), dense, rtol=1e-14)
    import asdex

    primal = asdex.jacobian_sparsity(fn, x)
    assert primal.nnz < pattern.nnz
    with pytest.raises(RuntimeError, match="misses nonzero entries"):
        lxs.SparseOperator.from_operator(op, primal)


# ------------------------------------------------------------------ closures over tracers


def test_detect_sparsity_through_closures_over_traced_values():
    """Inside `jit`, `grad` and `vmap` of a loss whose residual closes over the parameter
    (as diffrax's implicit-closure tests write it): the pattern, not a tracer error."""
    n = 8
    expected = lxs.detect_sparsity(lambda y: 2.0 * y + jnp.roll(y, 1) ** 2, jnp.ones(n))
    patterns = []

    def loss(x):
        pattern = lxs.detect_sparsity(lambda y: x * y + jnp.roll(y, 1) ** 2, jnp.ones(n))
        patterns.append(pattern)
        op = lx.JacobianLinearOperator(lambda y, args: x * y + jnp.roll(y, 1) ** 2, jnp.ones(n))
        solver = lxs.Materialise(lxs.SuperLU(), pattern)
        return jnp.sum(lx.linear_solve(op, jnp.ones(n), solver=solver).value * x)

    def dense_loss(x):
        matrix = jax.jacfwd(lambda y: x * y + jnp.roll(y, 1) ** 2)(jnp.ones(n))
        return jnp.sum(jnp.linalg.solve(matrix, jnp.ones(n)) * x)

    x = jnp.linspace(3.0, 4.0, n)
    np.testing.assert_allclose(jax.jit(loss)(x), dense_loss(x), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(loss)(x), jax.grad(dense_loss)(x), rtol=1e-10)
    xs = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(jax.vmap(loss)(xs), jax.vmap(dense_loss)(xs), rtol=1e-12)
    assert len(patterns) == 3
    for pattern in patterns:
        assert as_pattern(pattern) == as_pattern(expected)
    # A traced index array is an unknown value: the pattern holds for every value it takes.
    index = np.arange(n)[::-1].copy()

    @jax.jit
    def traced_gather(idx):
        return lxs.detect_sparsity(lambda y: y * y[idx], jnp.ones(n)).nnz

    assert lxs.detect_sparsity(lambda y: y * y[index], jnp.ones(n)).nnz == 2 * n
    assert traced_gather(index) == n * n  # conservative, not an error


def test_no_dependency_warning_reaches_code_that_runs_with_warnings_as_errors():
    """asdex warns (`DenseColoringWarning`) when a pattern needs as many colours as the
    dense Jacobian; optimistix's tests run with `-W error`. A dense pattern is correct, and
    silent."""
    import warnings

    n = 5

    def fn(x):
        return jnp.sum(x) * x + x**2

    x = jnp.linspace(1.0, 2.0, n)
    b = jnp.ones(n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pattern = lxs.detect_sparsity(fn, x)
        assert pattern.nnz == n * n
        op = lx.JacobianLinearOperator(lambda y, args: fn(y), x)
        solution = lx.linear_solve(op, b, solver=lxs.Materialise(lxs.SuperLU(), pattern)).value
    np.testing.assert_allclose(solution, np.linalg.solve(dense_jacobian(fn, x), b), rtol=1e-12)


def _solve_with_distinct_patterns(count: int) -> list:
    """Solve through `Materialise` solvers of `count` distinct patterns, each dropped after
    its solve (in a frame of its own, whose locals die with it); weak references to the
    patterns."""
    import weakref

    n = 30
    b = jnp.ones(n)
    refs = []
    for k in range(count):
        matrix = sp.diags(
            [np.full(n, 8.0), np.ones(n - 1 - k), np.ones(n - 1 - k)], [0, 1 + k, -1 - k]
        )
        dense = jnp.asarray(matrix.toarray())
        op = lx.FunctionLinearOperator(
            lambda v, a=dense: a @ v, jax.ShapeDtypeStruct((n,), jnp.float64)
        )
        solver = lxs.Materialise(lxs.SuperLU(), matrix.tocsr())
        refs.append(weakref.ref(solver.sparsity))
        x = lx.linear_solve(op, b, solver=solver).value
        np.testing.assert_allclose(x, jnp.linalg.solve(dense, b), rtol=1e-10)
    return refs


def test_materialise_patterns_are_released_by_the_caches_that_hold_them():
    """A `Materialise` passed through `lx.linear_solve` (whose treedefs JAX keeps in caches
    that `jax.clear_caches` does not empty) holds its pattern's key in its static field:
    once the solvers are dropped, `lxs.clear_cache()` and `jax.clear_caches()` release
    every pattern."""
    import gc

    refs = _solve_with_distinct_patterns(10)
    lxs.clear_cache()
    jax.clear_caches()
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []


def test_copies_of_a_materialise_find_its_pattern():
    """Copies made by transformations hold the key; the solver built holds the pattern."""
    pattern = sp.eye(5, format="csr")
    solver = lxs.Materialise(lxs.SuperLU(), pattern)
    copy = jax.tree.map(lambda leaf: leaf, solver)
    lxs.clear_cache()
    jax.clear_caches()
    assert copy.sparsity is solver.sparsity and copy == solver
    del solver
    import gc

    gc.collect()
    with pytest.raises(ValueError, match="no longer held"):
        copy.sparsity.bind(5, 5)
