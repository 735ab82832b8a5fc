"""AMG with many right-hand sides: a vmapped batch is solved in lockstep over the block
(`backends/amg/blocks.py`), with the cycle's sweeps over the whole block
(`backends/amg/kernels.py`). Every column is checked against a dense solve and against its
own one-column solve: the same tolerance met, the same steps, the same status."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from pyamg import amg_core

import lineax_sparse as lxs
from lineax_sparse.backends.amg import blocks, kernels

from .helpers import (
    anisotropic2d,
    condition_number,
    convection_diffusion2d,
    dense_from_data,
    elasticity2d,
    eps,
    operator,
    poisson2d,
    random_sparse,
    rigid_body_modes2d,
    with_data,
)


PSD = lx.positive_semidefinite_tag


def delaunay_poisson(points: int, seed: int = 0) -> sp.csr_matrix:
    """The P1 Laplacian on a Delaunay mesh of random points in the unit square, its
    boundary points eliminated: an unstructured SPD matrix."""
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    side = int(np.sqrt(points))
    t = np.linspace(0.0, 1.0, side, endpoint=False)
    zero, one = np.zeros_like(t), np.ones_like(t)
    boundary = np.concatenate(
        [np.stack(pair, axis=1) for pair in ((t, zero), (one, t), (1 - t, one), (zero, 1 - t))]
    )
    xy = np.concatenate([boundary, rng.uniform(0.001, 0.999, (points - len(boundary), 2))])
    triangles = Delaunay(xy).simplices
    corners = xy[triangles]
    edges = np.stack([corners[:, (i + 2) % 3] - corners[:, (i + 1) % 3] for i in range(3)], axis=1)
    area = 0.5 * np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0])
    local = np.einsum("eik,ejk->eij", edges, edges) / (4 * area[:, None, None])
    rows = np.repeat(triangles, 3, axis=1).ravel()
    cols = np.tile(triangles, (1, 3)).ravel()
    n = len(xy)
    matrix = sp.coo_matrix((local.ravel(), (rows, cols)), shape=(n, n)).tocsr()
    keep = np.arange(len(boundary), n)
    return sp.csr_matrix(matrix[keep][:, keep])


def _columns(n: int, k: int, dtype=np.float64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bs = rng.standard_normal((k, n))
    if np.issubdtype(dtype, np.complexfloating):
        bs = bs + 1j * rng.standard_normal((k, n))
    return bs.astype(dtype)


def _solve_both(op, bs, solver, guesses=None):
    """Every column solved in one vmapped call and in separate calls (from its guess, if
    given), without raising: (x, steps, results) for each."""

    def solve(b, guess):
        options = {} if guess is None else {"y0": guess}
        return lx.linear_solve(op, b, solver=solver, options=options, throw=False)

    guesses = None if guesses is None else jnp.asarray(guesses)
    one, batched = jax.jit(solve), jax.jit(jax.vmap(solve))
    block = batched(jnp.asarray(bs), guesses)
    starts = [None] * len(bs) if guesses is None else list(guesses)
    singles = [one(jnp.asarray(b), start) for b, start in zip(bs, starts, strict=True)]
    block_out = (
        np.asarray(block.value),
        np.asarray(block.stats["num_steps"]),
        np.asarray(block.result._value),
    )
    single_out = (
        np.stack([np.asarray(s.value) for s in singles]),
        np.array([int(s.stats["num_steps"]) for s in singles]),
        np.array([int(s.result._value) for s in singles]),
    )
    return block_out, single_out


def _check_converged(matrix, xs, bs, rtol):
    """Each column: its true residual within rtol (up to the rounding of evaluating it),
    and its error within what that residual and the condition number allow."""
    dense = matrix.toarray()
    kappa = condition_number(matrix)
    for x, b in zip(xs, bs, strict=True):
        scale = np.linalg.norm(abs(matrix) @ np.abs(x) + np.abs(b))
        rounding = 2 * (int(np.max(np.diff(matrix.indptr))) + 1) * eps(np.float64)
        assert np.linalg.norm(b - matrix @ x) <= rtol * np.linalg.norm(b) + rounding * scale
        exact = np.linalg.solve(dense, b)
        error = np.linalg.norm(x - exact) / np.linalg.norm(exact)
        assert error <= kappa * (rtol + rounding) + 1e-12


@pytest.fixture
def block_solves(monkeypatch):
    """Counts the lockstep block solves (the backend calls `blocks.solve`)."""
    calls = []
    solve = blocks.solve

    def counted(krylov, block):
        calls.append((krylov, block.b.shape[1]))
        return solve(krylov, block)

    monkeypatch.setattr(blocks, "solve", counted)
    return calls


PROBLEMS = {
    "unstructured": lambda: delaunay_poisson(1_200),
    "anisotropic": lambda: anisotropic2d(24).tocsr(),
    "elasticity": lambda: elasticity2d(24, 8).tocsr(),
}


@pytest.mark.parametrize("krylov", ["cg", "bicgstab", "none"])
@pytest.mark.parametrize("name", PROBLEMS)
def test_block_matches_dense_and_single_column_solves(name, krylov, block_solves):
    matrix = PROBLEMS[name]()
    n = matrix.shape[0]
    bs = _columns(n, 6)
    rtol = 1e-10
    solver = lxs.AMG(rtol=rtol, krylov=krylov, max_steps=400)
    (x, steps, results), (x1, steps1, results1) = _solve_both(operator(matrix, PSD), bs, solver)
    assert block_solves == [(krylov, 6)]  # the batch went through the block path, once
    np.testing.assert_array_equal(results, results1)
    if name == "elasticity" and krylov == "none":
        # Stand-alone cycles with the constant vector do not reach 1e-10 on elasticity.
        assert np.all(results == lx.RESULTS.max_steps_reached._value)
        return
    assert np.all(results == lx.RESULTS.successful._value)
    _check_converged(matrix, x, bs, rtol)
    # The same iteration column by column, up to the order of the sums of dot products.
    assert np.all(np.abs(steps - steps1) <= 1), (steps, steps1)
    assert np.abs(x - x1).max() <= 1e-6 * np.abs(x1).max()


def test_block_steps_equal_single_steps_on_the_unstructured_mesh():
    """On the target problem the block's columns take exactly their own solve's steps."""
    matrix = delaunay_poisson(3_000)
    bs = _columns(matrix.shape[0], 8, seed=1)
    solver = lxs.AMG(rtol=1e-8)
    (x, steps, _), (x1, steps1, _) = _solve_both(operator(matrix, PSD), bs, solver)
    np.testing.assert_array_equal(steps, steps1)
    np.testing.assert_allclose(x, x1, rtol=0, atol=1e-10 * np.abs(x1).max())


@pytest.mark.parametrize("krylov", ["cg", "bicgstab", "none"])
def test_a_column_out_of_steps_reports_it_and_the_others_succeed(krylov, block_solves):
    matrix = delaunay_poisson(1_200)
    n = matrix.shape[0]
    bs = _columns(n, 4, seed=3)
    # Columns 0 and 2 start next to their solution and need few steps; 1 and 3 from zero.
    exact = np.linalg.solve(matrix.toarray(), bs.T).T
    near = exact * (1 + 1e-7 * np.random.default_rng(4).standard_normal(exact.shape))
    guesses = np.stack([near[0], np.zeros(n), near[2], np.zeros(n)])
    op = operator(matrix, PSD)
    free = lxs.AMG(rtol=1e-12, krylov=krylov, max_steps=500)
    _, (_, needed, _) = _solve_both(op, bs, free, guesses)
    limit = int(max(needed[0], needed[2]))
    assert 0 < limit < min(needed[1], needed[3]), needed
    solver = lxs.AMG(rtol=1e-12, krylov=krylov, max_steps=limit)
    (x, steps, results), (_, steps1, results1) = _solve_both(op, bs, solver, guesses)
    ok, out = lx.RESULTS.successful._value, lx.RESULTS.max_steps_reached._value
    np.testing.assert_array_equal(results, [ok, out, ok, out])
    np.testing.assert_array_equal(results, results1)
    np.testing.assert_array_equal(steps[[1, 3]], [limit, limit])
    np.testing.assert_array_equal(steps, steps1)
    _check_converged(matrix, x[[0, 2]], bs[[0, 2]], 1e-12)
    with pytest.raises(Exception, match="maximum number of solver steps"):
        jax.vmap(lambda b: lx.linear_solve(op, b, solver=solver).value)(jnp.asarray(bs))


def test_zero_and_repeated_columns():
    matrix = delaunay_poisson(800)
    n = matrix.shape[0]
    b = _columns(n, 1)[0]
    bs = np.stack([b, np.zeros(n), b, 1e-200 * b, 1e200 * b])
    solver = lxs.AMG(rtol=1e-10)
    (x, steps, results), (x1, steps1, _) = _solve_both(operator(matrix, PSD), bs, solver)
    assert np.all(results == lx.RESULTS.successful._value)
    assert steps[1] == 0 and np.all(x[1] == 0)
    # Each column is scaled on its own (to |b|_inf in [0.5, 1)): a tiny or huge column
    # iterates as the others do, and a repeated column gives the same answer.
    np.testing.assert_array_equal(steps[[0, 2, 3, 4]], steps1[[0, 2, 3, 4]])
    np.testing.assert_array_equal(x[0], x[2])
    _check_converged(matrix, x[[0, 2]], bs[[0, 2]], 1e-10)
    for column, factor in ((3, 1e200), (4, 1e-200)):
        np.testing.assert_allclose(x[column] * factor, x[0], atol=1e-12 * np.abs(x[0]).max())


def test_complex_hermitian_block():
    real = poisson2d(20)
    upper = sp.triu(real, 1)
    # Hermitian, and positive definite: the shift outweighs the imaginary part.
    matrix = sp.csr_matrix(real + 2 * sp.eye(real.shape[0]) + 0.3j * (upper - upper.T))
    assert abs(matrix - matrix.conj().T).max() == 0
    bs = _columns(matrix.shape[0], 4, np.complex128)
    solver = lxs.AMG(rtol=1e-10)
    (x, steps, results), (x1, steps1, _) = _solve_both(operator(matrix, PSD), bs, solver)
    assert np.all(results == lx.RESULTS.successful._value)
    assert np.all(np.abs(steps - steps1) <= 1)
    _check_converged(matrix, x, bs, 1e-10)


def test_gradients_of_a_vmapped_block_match_dense():
    matrix = delaunay_poisson(600)
    op = operator(matrix, PSD)
    bs = jnp.asarray(_columns(matrix.shape[0], 5))
    solver = lxs.AMG(rtol=1e-12)

    def loss(data, bs):
        solve = lambda b: lx.linear_solve(with_data(op, data), b, solver=solver).value  # noqa: E731
        return jnp.sum(jax.vmap(solve)(bs) ** 2)

    def reference(data, bs):
        return jnp.sum(jnp.linalg.solve(dense_from_data(op, data), bs.T) ** 2)

    ours = jax.jit(jax.grad(loss, argnums=(0, 1)))(op.data, bs)
    expected = jax.grad(reference, argnums=(0, 1))(op.data, bs)
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("peclet", [0.8, 8.0])
def test_nonsymmetric_block_and_its_gradient(peclet, block_solves):
    """Non-symmetric SA with BiCGStab (the default for an untagged operator): the forward
    block, and the backward pass's block of transposed solves (a hierarchy of A^T)."""
    matrix = convection_diffusion2d(24, peclet).tocsr()
    op = operator(matrix)
    bs = _columns(matrix.shape[0], 5)
    solver = lxs.AMG(rtol=1e-11)
    (x, steps, results), (_, steps1, results1) = _solve_both(op, bs, solver)
    assert block_solves == [("bicgstab", 5)]
    assert np.all(results == lx.RESULTS.successful._value)
    np.testing.assert_array_equal(results, results1)
    assert np.all(np.abs(steps - steps1) <= 1), (steps, steps1)
    _check_converged(matrix, x, bs, 1e-11)

    def loss(data, bs):
        solve = lambda b: lx.linear_solve(with_data(op, data), b, solver=solver).value  # noqa: E731
        return jnp.sum(jax.vmap(solve)(bs) ** 2)

    def reference(data, bs):
        return jnp.sum(jnp.linalg.solve(dense_from_data(op, data), bs.T) ** 2)

    block_solves.clear()
    bs = jnp.asarray(bs)
    ours = jax.jit(jax.grad(loss, argnums=(0, 1)))(op.data, bs)
    expected = jax.grad(reference, argnums=(0, 1))(op.data, bs)
    assert block_solves == [("bicgstab", 5), ("bicgstab", 5)]  # forward, then transposed
    for got, want in zip(ours, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * float(jnp.abs(want).max()))


def test_gmres_solves_a_block_column_by_column(block_solves):
    matrix = convection_diffusion2d(16).tocsr()
    bs = _columns(matrix.shape[0], 3)
    solver = lxs.AMG(rtol=1e-10, krylov="gmres")
    (x, steps, results), (_, steps1, _) = _solve_both(operator(matrix), bs, solver)
    assert block_solves == []
    assert np.all(results == lx.RESULTS.successful._value)
    np.testing.assert_array_equal(steps, steps1)
    _check_converged(matrix, x, bs, 1e-10)


def test_a_degraded_reused_hierarchy_is_replaced_for_a_block():
    """A reused hierarchy that preconditions a block poorly: every column stops at `reuse`
    times the baseline, the hierarchy is rebuilt once, and the columns continue from where
    they stopped, still in a block, to the tolerance."""
    op = operator(poisson2d(48), PSD)
    rows, cols = np.asarray(op.indices).T
    anisotropic_matrix = anisotropic2d(48, 1e-4).tocsr()
    anisotropic = jnp.asarray(np.asarray(anisotropic_matrix[rows, cols]).ravel())
    bs = _columns(op.size, 4)

    def solve(data, solver):
        one = lambda b: lx.linear_solve(with_data(op, data), b, solver=solver)  # noqa: E731
        return jax.jit(jax.vmap(one))(jnp.asarray(bs))

    fresh = solve(anisotropic, lxs.AMG(rtol=1e-10))
    lxs.clear_cache()
    solver = lxs.AMG(rtol=1e-10, reuse=2)
    baseline = int(np.max(solve(op.data, solver).stats["num_steps"]))
    reused = solve(anisotropic, solver)
    assert lxs.cache_info().factorizations == 2  # the first hierarchy, then the rebuilt one
    _check_converged(anisotropic_matrix, np.asarray(reused.value), bs, 1e-10)
    steps = np.asarray(reused.stats["num_steps"])
    assert np.all(steps > 2 * baseline)  # each used the old hierarchy first
    assert np.all(steps <= 2 * baseline + np.asarray(fresh.stats["num_steps"]))


def test_elasticity_with_near_nullspace_blocks():
    """Block-sized levels (BSR with 3 x 3 blocks) smooth column by column through pyamg."""
    matrix = elasticity2d(24, 8).tocsr()
    bs = _columns(matrix.shape[0], 3)
    solver = lxs.AMG(rtol=1e-10, near_nullspace=rigid_body_modes2d(24, 8))
    (x, steps, results), (_, steps1, _) = _solve_both(operator(matrix, PSD), bs, solver)
    assert np.all(results == lx.RESULTS.successful._value)
    assert np.all(np.abs(steps - steps1) <= 1)
    _check_converged(matrix, x, bs, 1e-10)


# ------------------------------------------------------------------ the block sweep


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("compiled", [True, False])
def test_block_sweep_is_pyamgs_sweep_on_every_column(dtype, symmetric, compiled, k, monkeypatch):
    if not compiled:
        monkeypatch.setattr(kernels, "_compiled", lambda: None)
    assert (k >= kernels.MIN_COLUMNS) == (k == 5)  # both paths of the sweep
    matrix = random_sparse(300, 0.02, dtype, seed=4, spd=True).tocsr()
    matrix.sort_indices()
    # An empty row and a row without its diagonal entry: both left alone, as by pyamg.
    matrix = matrix.tolil()
    matrix[7, :] = 0
    matrix[11, 11] = 0
    matrix = sp.csr_matrix(matrix)
    matrix.eliminate_zeros()
    n = matrix.shape[0]
    b = _columns(n, k, dtype, seed=5).T.copy()
    x0 = _columns(n, k, dtype, seed=6).T.copy()
    block = x0.copy()
    kernels.gauss_seidel_block(matrix, block, b, symmetric)
    sweeps = [(0, n, 1), (n - 1, -1, -1)] if symmetric else [(0, n, 1)]
    for j in range(k):
        column = x0[:, j].copy()
        for start, stop, step in sweeps:
            arrays = (matrix.indptr, matrix.indices, matrix.data)
            amg_core.gauss_seidel(*arrays, column, b[:, j].copy(), start, stop, step)
        if dtype == np.float64:
            np.testing.assert_array_equal(block[:, j], column)  # bit for bit
        else:
            np.testing.assert_allclose(block[:, j], column, rtol=1e-14, atol=1e-14)
    assert np.all(block[7] == x0[7]) and np.all(block[11] == x0[11])
