"""lineax-sparse inside its real clients: optimistix root finders and least-squares
solvers, and diffrax's implicit solvers, through `Materialise`; each against the client's
dense default, finite differences and the cache's counters."""

import diffrax
import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import lineax_sparse as lxs

from .test_materialise import brusselator, diffusion_residual


M = 8  # grid side: n = 64 unknowns for diffusion, 128 for the Brusselator
TOL = 1e-10


def residual(u_flat, forcing):
    u = u_flat.reshape(M, M)
    return diffusion_residual(u, 1.0).ravel() - forcing


@pytest.fixture(scope="module")
def pattern():
    return lxs.detect_sparsity(lambda u: residual(u, jnp.zeros(M * M)), jnp.zeros(M * M))


def forcing(scale=10.0):
    x = np.linspace(0, 1, M * M)
    return jnp.asarray(scale * (1 + np.sin(3 * x)))


def _root(linear_solver, f, solver_class=optx.Newton, adjoint=None, throw=True):
    solver = solver_class(rtol=TOL, atol=TOL, linear_solver=linear_solver)
    kwargs = {} if adjoint is None else {"adjoint": adjoint}
    return optx.root_find(residual, solver, jnp.zeros(M * M), f, throw=throw, **kwargs)


@pytest.mark.parametrize("solver_class", [optx.Newton, optx.Chord])
def test_root_finders_agree_with_the_dense_default(pattern, solver_class):
    f = forcing(10.0 if solver_class is optx.Newton else 1.0)  # Chord converges linearly
    sparse = eqx.filter_jit(
        lambda f: _root(lxs.Materialise(lxs.SuperLU(), pattern), f, solver_class)
    )(f)
    dense = eqx.filter_jit(lambda f: _root(lx.AutoLinearSolver(well_posed=None), f, solver_class))(
        f
    )
    np.testing.assert_allclose(sparse.value, dense.value, rtol=1e-9, atol=1e-12)
    assert sparse.result == optx.RESULTS.successful
    assert np.abs(residual(sparse.value, f)).max() < 1e-8


def test_newton_refactorizes_with_one_analysis_and_chord_reuses_its_factorization(pattern):
    f = forcing()
    newton = eqx.filter_jit(lambda f: _root(lxs.Materialise(lxs.SuperLU(), pattern), f))
    lxs.clear_cache()
    sol = newton(f)
    steps = int(sol.stats["num_steps"])
    info = lxs.cache_info()
    assert info.analyses == 1 and info.factorizations == steps and info.host_calls == steps
    chord = eqx.filter_jit(lambda f: _root(lxs.Materialise(lxs.SuperLU(), pattern), f, optx.Chord))
    lxs.clear_cache()
    sol = chord(forcing(1.0))
    steps = int(sol.stats["num_steps"])
    info = lxs.cache_info()
    # One factorization at the initial point, found again by every later iteration.
    assert steps > 2 and info.factorizations == 1 and info.hits == steps - 1


def test_gradient_through_root_find_with_implicit_adjoint(pattern):
    sparse = lxs.Materialise(lxs.SuperLU(), pattern)

    def loss(scale, linear_solver):
        adjoint = optx.ImplicitAdjoint(linear_solver=linear_solver)
        sol = _root(linear_solver, forcing(scale), adjoint=adjoint)
        return jnp.sum(sol.value**2)

    gradient = jax.jit(jax.grad(lambda s: loss(s, sparse)))(10.0)
    dense = jax.grad(lambda s: loss(s, lx.AutoLinearSolver(well_posed=None)))(10.0)
    step = 1e-5
    central = (loss(10.0 + step, sparse) - loss(10.0 - step, sparse)) / (2 * step)
    np.testing.assert_allclose(gradient, dense, rtol=1e-8)
    np.testing.assert_allclose(gradient, central, rtol=1e-6)


def test_vmap_over_parameters(pattern):
    sparse = lxs.Materialise(lxs.SuperLU(), pattern)
    scales = jnp.asarray([5.0, 10.0, 20.0])
    batched = jax.jit(jax.vmap(lambda s: _root(sparse, forcing() * s / 10).value))(scales)
    for k, s in enumerate(scales):
        single = _root(lx.AutoLinearSolver(well_posed=None), forcing() * s / 10).value
        np.testing.assert_allclose(batched[k], single, rtol=1e-9, atol=1e-12)


def test_throw_false_reports_a_failed_linear_solve():
    """A Jacobian that is singular at the start (du/dx of x^3 at 0): reported, not NaN."""
    pattern = np.eye(4, dtype=bool)
    solver = optx.Newton(rtol=TOL, atol=TOL, linear_solver=lxs.Materialise(lxs.SuperLU(), pattern))
    sol = optx.root_find(
        lambda y, args: y**3 - args, solver, jnp.zeros(4), jnp.ones(4), throw=False
    )
    assert sol.result != optx.RESULTS.successful


# ------------------------------------------------------------------ least squares


def _fit_problem(n=40, seed=0):
    """Sparse nonlinear least squares: a smooth 1D curve fit with local basis functions."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 1, 3 * n))
    centres = np.linspace(0, 1, n)
    basis = np.maximum(0, 1 - np.abs(t[:, None] - centres[None, :]) * (n - 1) / 1.5)
    truth = np.sin(2 * np.pi * centres)
    data = np.tanh(basis @ truth) + 0.01 * rng.standard_normal(t.size)
    basis, data = jnp.asarray(basis), jnp.asarray(data)

    def residuals(c, args):
        return jnp.tanh(basis @ c) - data

    pattern = np.asarray(basis != 0)
    return residuals, pattern, jnp.zeros(n)


@pytest.mark.parametrize("solver_class", [optx.GaussNewton, optx.LevenbergMarquardt])
def test_sparse_nonlinear_least_squares_agree_with_the_dense_default(solver_class):
    residuals, pattern, c0 = _fit_problem()
    sparse = solver_class(
        rtol=1e-10, atol=1e-10, linear_solver=lxs.Materialise(lxs.Cholmod(), pattern)
    )
    dense = solver_class(rtol=1e-10, atol=1e-10)
    a = eqx.filter_jit(lambda: optx.least_squares(residuals, sparse, c0, max_steps=200))()
    b = eqx.filter_jit(lambda: optx.least_squares(residuals, dense, c0, max_steps=200))()
    assert a.result == optx.RESULTS.successful
    np.testing.assert_allclose(a.value, b.value, rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------ diffrax


def _brusselator_problem(m=6):
    x = np.linspace(0, 1, m, endpoint=False)
    X, Y = np.meshgrid(x, x, indexing="ij")
    y0 = (
        jnp.asarray(1 + 0.5 * np.sin(2 * np.pi * X)),
        jnp.asarray(3 + 0.5 * np.cos(2 * np.pi * Y)),
    )

    def vector_field(t, y, args):
        return brusselator(y, args)

    pattern = lxs.detect_sparsity(lambda y: vector_field(0.0, y, (1.0, 3.0)), y0)
    return vector_field, y0, pattern


def _integrate(vector_field, y0, args, linear_solver, solver_class=diffrax.Kvaerno5):
    if solver_class is diffrax.Kvaerno5:
        root = diffrax.VeryChord(rtol=1e-8, atol=1e-8, linear_solver=linear_solver)
    else:
        root = optx.Chord(rtol=1e-8, atol=1e-8, linear_solver=linear_solver)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver_class(root_finder=root),
        0.0,
        1.0,
        0.01,
        y0,
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
        max_steps=4096,
    )
    return sol


@pytest.mark.parametrize("solver_class", [diffrax.Kvaerno5, diffrax.ImplicitEuler])
def test_diffrax_implicit_solvers_agree_with_the_dense_default(solver_class):
    vector_field, y0, pattern = _brusselator_problem()
    sparse = jax.jit(
        lambda args: _integrate(
            vector_field, y0, args, lxs.Materialise(lxs.SuperLU(), pattern), solver_class
        )
    )((1.0, 3.0))
    dense = jax.jit(
        lambda args: _integrate(
            vector_field, y0, args, lx.AutoLinearSolver(well_posed=None), solver_class
        )
    )((1.0, 3.0))
    for a, b in zip(sparse.ys, dense.ys, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    assert int(sparse.stats["num_steps"]) == int(dense.stats["num_steps"])


def test_gradient_through_diffeqsolve():
    vector_field, y0, pattern = _brusselator_problem()

    def loss(args, linear_solver):
        ys = _integrate(vector_field, y0, args, linear_solver).ys
        return jnp.sum(ys[0] ** 2) + jnp.sum(ys[1])

    args = (1.0, 3.0)
    sparse = jax.jit(jax.grad(lambda a: loss(a, lxs.Materialise(lxs.SuperLU(), pattern))))(args)
    dense = jax.jit(jax.grad(lambda a: loss(a, lx.AutoLinearSolver(well_posed=None))))(args)
    np.testing.assert_allclose(sparse, dense, rtol=1e-6)


# 40 s on 2 cores; the implicit adjoint stays covered by test_gradient_through_diffeqsolve.
@pytest.mark.slow
def test_sparse_implicit_adjoint_makes_the_backward_pass_sparse():
    """diffrax's stage root finds differentiate with optimistix's dense default; inside
    `sparse_implicit_adjoint` the backward pass has no dense LU, and the same gradient."""
    vector_field, y0, pattern = _brusselator_problem()
    linear_solver = lxs.Materialise(lxs.SuperLU(), pattern)

    def loss(args):
        ys = _integrate(vector_field, y0, args, linear_solver).ys
        return jnp.sum(ys[0] ** 2)

    def primitives(jaxpr):
        names = set()
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                names |= primitives(sub)
        return names

    dense_jaxpr = jax.make_jaxpr(jax.grad(loss))((1.0, 3.0))
    assert "lu" in primitives(dense_jaxpr.jaxpr)
    dense = jax.jit(jax.grad(loss))((1.0, 3.0))  # traced and cached before the block
    original = optx.root_find
    with lxs.sparse_implicit_adjoint(linear_solver):
        sparse_jaxpr = jax.make_jaxpr(jax.grad(loss))((1.0, 3.0))
        sparse = jax.jit(jax.grad(loss))((1.0, 3.0))
    assert "lu" not in primitives(sparse_jaxpr.jaxpr)
    assert optx.root_find is original
    np.testing.assert_allclose(sparse, dense, rtol=1e-8)
    with pytest.raises(ValueError, match="lineax solver"):
        with lxs.sparse_implicit_adjoint("dense"):
            pass


# ------------------------------------------------------------------ patterns that miss entries


N_RING = 16


def ring_residual(u, f):
    """A periodic 1D reaction-diffusion residual: a tridiagonal pattern misses its corners."""
    return u**3 + u - 0.01 * N_RING**2 * (jnp.roll(u, 1) - 2 * u + jnp.roll(u, -1)) - f


def _ring_forcing(scale):
    return scale * (1 + jnp.sin(jnp.linspace(0, 2 * np.pi, N_RING, endpoint=False)))


def _ring_patterns():
    exact = lxs.detect_sparsity(lambda u: ring_residual(u, jnp.zeros(N_RING)), jnp.zeros(N_RING))
    near = np.abs(np.subtract.outer(np.arange(N_RING), np.arange(N_RING))) <= 1
    return exact, near  # `near`: the periodic stencil written without its wrap-around


def test_a_pattern_that_misses_entries_stops_newton_and_its_gradient_even_with_throw_false():
    """A missed entry is a bug in the program, not a failure of this iterate: no step
    control or damping can fix it, so it raises whatever `throw` says."""
    exact, near = _ring_patterns()
    checked = lxs.Materialise(lxs.SuperLU(), near)
    unchecked = lxs.Materialise(lxs.SuperLU(), near, verify=False)
    good = lxs.Materialise(lxs.SuperLU(), exact)

    def loss(scale, forward, backward):
        newton = optx.Newton(rtol=TOL, atol=TOL, linear_solver=forward)
        sol = optx.root_find(
            ring_residual,
            newton,
            jnp.zeros(N_RING),
            _ring_forcing(scale),
            adjoint=optx.ImplicitAdjoint(linear_solver=backward),
            throw=False,
        )
        return jnp.sum(sol.value**2)

    with pytest.raises(RuntimeError, match="misses nonzero entries"):
        jax.block_until_ready(eqx.filter_jit(loss)(2.0, checked, good))
    gradient = jax.jit(jax.grad(lambda s: loss(s, good, good)))(2.0)
    dense = jax.jit(jax.grad(lambda s: loss(s, good, lx.AutoLinearSolver(well_posed=None))))(2.0)
    np.testing.assert_allclose(gradient, dense, rtol=1e-10)
    # Unchecked, the backward pass's wrong matrix is a wrong gradient without a signal.
    wrong = jax.jit(jax.grad(lambda s: loss(s, good, unchecked)))(2.0)
    assert abs(wrong - dense) > 1e-4 * abs(dense)
    with pytest.raises(RuntimeError, match="misses nonzero entries"):
        jax.block_until_ready(jax.jit(jax.grad(lambda s: loss(s, good, checked)))(2.0))


def test_a_pattern_that_misses_entries_stops_diffrax_with_throw_false():
    """Unchecked, this integration happens to give the right answer in as many steps (the
    stage solve is a chord iteration anyway); the pattern is still wrong, and any solve
    with its matrix (a sparse backward pass) would be: raised, whatever `throw` says."""
    exact, near = _ring_patterns()
    y0 = 1 + 0.5 * jnp.sin(jnp.linspace(0, 2 * np.pi, N_RING, endpoint=False))

    def vector_field(t, y, args):
        return -ring_residual(y, args)

    def integrate(pattern):
        root = optx.Chord(
            rtol=1e-8, atol=1e-8, linear_solver=lxs.Materialise(lxs.SuperLU(), pattern)
        )
        return diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            diffrax.ImplicitEuler(root_finder=root),
            0.0,
            0.5,
            0.05,
            y0,
            args=_ring_forcing(1.0),
            stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-6),
            throw=False,
        )

    assert jax.jit(lambda: integrate(exact).result)() == diffrax.RESULTS.successful
    with pytest.raises(RuntimeError, match="misses nonzero entries"):
        jax.block_until_ready(jax.jit(lambda: integrate(near).ys)())


# ------------------------------------------------------------------ closures over tracers


@pytest.mark.slow  # 28 s on 2 cores
def test_patterns_detected_inside_the_differentiated_function():
    """The residual closes over the parameter being differentiated, and its pattern is
    detected inside the loss (under `jit` and `grad`), as diffrax's implicit-closure
    tests write it."""

    def loss(scale, sparse):
        f = _ring_forcing(scale)
        fn = lambda u: ring_residual(u, f)  # noqa: E731  (closes over a tracer)
        if sparse:
            linear_solver = lxs.Materialise(lxs.SuperLU(), lxs.detect_sparsity(fn, f))
        else:
            linear_solver = lx.AutoLinearSolver(well_posed=None)
        newton = optx.Newton(rtol=TOL, atol=TOL, linear_solver=linear_solver)
        sol = optx.root_find(
            lambda u, args: fn(u),
            newton,
            jnp.zeros(N_RING),
            adjoint=optx.ImplicitAdjoint(linear_solver=linear_solver),
        )
        return jnp.sum(sol.value**2)

    gradient = jax.jit(jax.grad(lambda s: loss(s, True)))(2.0)
    np.testing.assert_allclose(gradient, jax.grad(lambda s: loss(s, False))(2.0), rtol=1e-10)

    vector_field, y0, _ = _brusselator_problem()

    def diffrax_loss(args):
        pattern = lxs.detect_sparsity(lambda y: vector_field(0.0, y, args), y0)
        ys = _integrate(vector_field, y0, args, lxs.Materialise(lxs.SuperLU(), pattern)).ys
        return jnp.sum(ys[0] ** 2)

    def dense_loss(args):
        ys = _integrate(vector_field, y0, args, lx.AutoLinearSolver(well_posed=None)).ys
        return jnp.sum(ys[0] ** 2)

    np.testing.assert_allclose(
        jax.jit(jax.grad(diffrax_loss))((1.0, 3.0)),
        jax.jit(jax.grad(dense_loss))((1.0, 3.0)),
        rtol=1e-6,
    )
