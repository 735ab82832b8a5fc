"""Data-dependent failures become lineax RESULTS, never exceptions in callbacks or crashes."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs
from lineax_sparse.backends.numerics import BACKWARD_ERROR_LIMIT

from .helpers import backward_error, load, operator, random_sparse, random_vector, with_data


SOLVER = lxs.SuperLU()


def solve_unchecked(op, b):
    return lx.linear_solve(op, b, solver=SOLVER, throw=False)


def _expect(solution, result):
    assert solution.result == result, lx.RESULTS[solution.result]
    assert np.all(np.isnan(solution.value))


def test_singular_matrix_reported_not_solved(getkey):
    op = operator(load("zenios.mtx"))
    b = random_vector(getkey(), op.size, jnp.float64)
    _expect(jax.jit(solve_unchecked)(op, b), lx.RESULTS.singular)
    with pytest.raises(Exception, match="non-finite"):
        lx.linear_solve(op, b, solver=SOLVER).value.block_until_ready()


def test_structurally_and_numerically_singular(getkey):
    matrix = random_sparse(20, 0.2, np.float64, seed=40).tolil()
    matrix[3, :] = 0  # an empty row
    _expect(solve_unchecked(operator(matrix.tocsr()), jnp.ones(20)), lx.RESULTS.singular)
    dense = np.ones((4, 4)) + np.diag([0.0, 0.0, 0.0, 1e-300])  # rank 2 plus a denormal
    import scipy.sparse as sp

    op = operator(sp.csr_matrix(dense))
    _expect(solve_unchecked(op, jnp.arange(4.0)), lx.RESULTS.singular)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_matrix_entries(bad, getkey):
    op = operator(random_sparse(30, 0.1, np.float64, seed=41))
    data = op.data.at[3].set(bad)
    b = random_vector(getkey(), op.size, jnp.float64)
    f = jax.jit(lambda d, v: solve_unchecked(with_data(op, d), v))
    _expect(f(data, b), lx.RESULTS.nonfinite_input)
    # lineax runs backward solves with throw=True: the gradient of a failed solve raises the
    # readable error instead of returning silently finite numbers.
    with pytest.raises(Exception, match="non-finite"):
        jax.grad(lambda d: jnp.sum(solve_unchecked(with_data(op, d), b).value))(data)


def test_nonfinite_right_hand_side_in_a_batch(getkey):
    op = operator(random_sparse(30, 0.1, np.float64, seed=42))
    bs = jnp.stack([random_vector(getkey(), 30, jnp.float64) for _ in range(3)])
    bs = bs.at[1, 5].set(jnp.nan)
    sol = jax.vmap(lambda v: solve_unchecked(op, v))(bs)
    assert list(sol.result._value) == [0, lx.RESULTS.nonfinite_input._value, 0]
    assert np.all(np.isfinite(sol.value[0])) and np.all(np.isnan(sol.value[1]))
    x0 = np.linalg.solve(np.asarray(op.as_matrix()), bs[0])
    np.testing.assert_allclose(sol.value[0], x0, rtol=1e-10)


@pytest.mark.parametrize("bad_index", [-1, 7, 1000, -(2**31)])
def test_invalid_traced_indices_never_crash(bad_index):
    """Indices known only at run time: reported, never passed to the native library."""
    n = 6
    matrix = random_sparse(n, 0.5, np.float64, seed=43).tocoo()
    indices = np.stack([matrix.row, matrix.col], axis=1).astype(np.int32)
    data = jnp.asarray(matrix.data)

    @jax.jit
    def f(indices):
        op = lxs.SparseOperator(jsparse.BCOO((data, indices), shape=(n, n)))
        return lx.linear_solve(op, jnp.ones(n), solver=lxs.SuperLU("NATURAL"), throw=False)

    sol = f(jnp.asarray(indices).at[2, 1].set(bad_index))
    _expect(sol, lx.RESULTS.nonfinite_input)
    # The valid pattern through the same compiled function still works.
    good = f(jnp.asarray(indices))
    assert good.result == lx.RESULTS.successful
    np.testing.assert_allclose(good.value, np.linalg.solve(matrix.toarray(), np.ones(n)))


def test_padding_at_index_n_is_dropped_under_jit(getkey):
    matrix = random_sparse(25, 0.1, np.float64, seed=44).tocoo()
    n = 25
    indices = np.stack([matrix.row, matrix.col], axis=1).astype(np.int32)
    # Duplicate every entry: values split in halves, plus explicit padding.
    doubled = np.concatenate([indices, indices])
    data = jnp.asarray(np.concatenate([matrix.data / 2, matrix.data / 2]))
    b = random_vector(getkey(), n, jnp.float64)

    @jax.jit
    def f(data):
        bcoo = jsparse.BCOO((data, jnp.asarray(doubled)), shape=(n, n))
        bcoo = bcoo.sum_duplicates(nse=doubled.shape[0])  # pads with index n
        return lx.linear_solve(lxs.SparseOperator(bcoo), b, solver=SOLVER).value

    np.testing.assert_allclose(f(data), np.linalg.solve(matrix.toarray(), b), rtol=1e-10)


def test_throw_true_gives_lineax_readable_error(getkey):
    op = operator(random_sparse(10, 0.3, np.float64, seed=45))
    data = op.data.at[0].set(jnp.inf)
    with pytest.raises(Exception, match="non-finite"):
        jax.jit(lambda d: lx.linear_solve(with_data(op, d), jnp.ones(10), solver=SOLVER).value)(
            data
        ).block_until_ready()


def test_wrong_vector_shape_is_a_trace_time_error():
    op = operator(random_sparse(10, 0.3, np.float64, seed=46))
    with pytest.raises(ValueError):
        lx.linear_solve(op, jnp.ones(11), solver=SOLVER)


def test_tiny_pivot_garbage_is_caught():
    """Without pivoting, a 1e-300 pivot gives x ~ 1e284 where x = [1, 1]: never a success."""
    import scipy.sparse as sp

    op = operator(sp.csr_matrix(np.array([[1e-300, 1.0], [1.0, 1.0]])))
    no_pivoting = lxs.SuperLU(ordering="NATURAL", pivot_threshold=0.0, symmetric_mode=True)
    sol = lx.linear_solve(op, jnp.array([1.0, 2.0]), solver=no_pivoting, throw=False)
    _expect(sol, lx.RESULTS.singular)
    # Partial pivoting solves it.
    x = lx.linear_solve(op, jnp.array([1.0, 2.0]), solver=SOLVER).value
    np.testing.assert_allclose(x, [1.0, 1.0], rtol=1e-14)


def test_weak_pivoting_is_repaired_by_refinement(getkey):
    """hangGlider_2 without pivoting has backward error ~1e-10..1e-5; refinement repairs it
    up to what a success promises: a backward error within `BACKWARD_ERROR_LIMIT`, measured
    here independently. (At condition 1e11 that bounds no forward error: a comparison with
    a dense solve, which passed, asked for more than the solver promises.)"""
    matrix = load("hangGlider_2.mtx")
    b = random_vector(getkey(), matrix.shape[0], jnp.float64)
    for ordering in ("COLAMD", "MMD_AT_PLUS_A"):
        solver = lxs.SuperLU(ordering=ordering, pivot_threshold=0.0, symmetric_mode=True)
        sol = lx.linear_solve(operator(matrix), b, solver=solver, throw=False)
        if sol.result == lx.RESULTS.successful:
            assert backward_error(matrix, sol.value, b) <= BACKWARD_ERROR_LIMIT
        else:
            _expect(sol, lx.RESULTS.singular)
