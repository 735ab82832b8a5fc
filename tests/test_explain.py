"""Failures that explain themselves: `stats["reason"]`, `explain`, the messages of
`lineax_sparse.linear_solve(throw=True)`, and its sparse entry points."""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs
from lineax_sparse._bridge.status import STATUS_TO_RESULT
from lineax_sparse.backends.status import Status

from .helpers import load, operator, poisson2d, random_sparse, random_symmetric_indefinite


def _reason(solution) -> np.ndarray:
    return np.asarray(solution.stats["reason"])


def _nonsymmetric(n: int = 40) -> sp.csr_array:
    """Diagonally dominant (so nonsingular), with a non-symmetric off-diagonal part."""
    matrix = random_sparse(n, 0.1, np.float64, seed=60).tocsr()
    matrix = matrix + sp.diags(np.abs(matrix).sum(axis=1).A1 + 1.0)
    return sp.csr_array(matrix)


def test_not_symmetric_under_a_psd_tag():
    matrix = _nonsymmetric()
    dense = matrix.toarray()
    assert not np.allclose(dense, dense.T)  # the reference: really not symmetric
    op = operator(matrix, lx.positive_semidefinite_tag)
    b = jnp.ones(matrix.shape[0])
    sol = lxs.linear_solve(op, b, lxs.Cholmod(), throw=False)
    assert sol.result == lx.RESULTS.singular  # the lineax result is unchanged
    assert _reason(sol) == Status.NOT_SYMMETRIC
    text = lxs.explain(sol)
    assert "symmetric" in text and "SuperLU" in text and "fallback=True" in text
    # Eagerly, under jax.jit and under eqx.filter_jit: the reason, not lineax's generic text.
    solve = lambda o, v: lxs.linear_solve(o, v, lxs.Cholmod()).value
    for run in (solve, jax.jit(solve), eqx.filter_jit(solve)):
        with pytest.raises(Exception, match="not_symmetric") as info:
            jax.block_until_ready(run(op, b))
        assert "SuperLU" in str(info.value)
    # The remedy works, and agrees with a dense solve.
    fixed = lxs.linear_solve(op, b, lxs.AutoSparse(fallback=True))
    np.testing.assert_allclose(fixed.value, np.linalg.solve(dense, np.ones(40)), rtol=1e-10)


def test_not_positive_definite():
    matrix = random_symmetric_indefinite(60, 0.1, seed=61)
    dense = matrix.toarray()
    assert np.allclose(dense, dense.T) and np.linalg.eigvalsh(dense).min() < 0
    op = operator(matrix, lx.positive_semidefinite_tag)
    sol = lxs.linear_solve(op, jnp.ones(60), lxs.Cholmod(), throw=False)
    assert sol.result == lx.RESULTS.singular
    assert _reason(sol) == Status.NOT_POSITIVE_DEFINITE
    assert "positive" in lxs.explain(sol) and "SuperLU" in lxs.explain(sol)


def test_singular():
    matrix = load("zenios.mtx")
    n = matrix.shape[0]
    assert np.linalg.matrix_rank(matrix.toarray()) < n
    sol = lxs.linear_solve(operator(matrix), jnp.ones(n), lxs.SuperLU(), throw=False)
    assert sol.result == lx.RESULTS.singular and _reason(sol) == Status.SINGULAR
    assert "singular" in lxs.explain(sol) and "regularize" in lxs.explain(sol)
    with pytest.raises(Exception, match="singular to working precision"):
        jax.block_until_ready(lxs.linear_solve(operator(matrix), jnp.ones(n), lxs.SuperLU()).value)


@pytest.mark.parametrize("n", [20, 500])  # AutoSparse's dense path, then the host's
def test_nonfinite_input_in_a_batch(n):
    op = operator(poisson2d(int(np.sqrt(n)) + 1))
    bs = jnp.ones((3, op.size)).at[1, 3].set(jnp.nan)
    sol = jax.vmap(lambda v: lxs.linear_solve(op, v, throw=False))(bs)
    assert list(_reason(sol)) == [0, Status.NONFINITE_INPUT, 0]
    assert list(sol.result._value) == [0, lx.RESULTS.nonfinite_input._value, 0]
    text = lxs.explain(sol)
    assert text.startswith("system (1,): ") and "NaN" in text and len(text.splitlines()) == 1


def test_iteration_limit():
    op = operator(poisson2d(30), lx.positive_semidefinite_tag)
    sol = lxs.linear_solve(op, jnp.ones(op.size), lxs.AMG(rtol=1e-14, max_steps=1), throw=False)
    assert sol.result == lx.RESULTS.max_steps_reached
    assert _reason(sol) == Status.MAX_STEPS_REACHED
    assert "max_steps" in lxs.explain(sol)


def test_wrong_pattern_traced_index():
    n = 6
    matrix = random_sparse(n, 0.5, np.float64, seed=43).tocoo()
    indices = np.stack([matrix.row, matrix.col], axis=1).astype(np.int32)

    @jax.jit
    def f(indices):
        op = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(matrix.data), indices), shape=(n, n)))
        return lxs.linear_solve(op, jnp.ones(n), lxs.SuperLU(), throw=False)

    sol = f(jnp.asarray(indices).at[2, 1].set(n + 3))
    assert sol.result == lx.RESULTS.nonfinite_input and _reason(sol) == Status.INVALID_INDEX
    assert "out of range" in lxs.explain(sol) or "outside" in lxs.explain(sol)


def test_reason_table_covers_every_status():
    assert set(lxs.REASONS) == set(Status)
    assert STATUS_TO_RESULT[Status.STAGNATED] == lx.RESULTS.breakdown
    for code, reason in lxs.REASONS.items():
        assert reason.happened and (reason.remedy or code == Status.OK)


def test_explain_success_and_foreign_solutions():
    op = operator(poisson2d(5), lx.positive_semidefinite_tag)
    assert lxs.explain(lxs.linear_solve(op, jnp.ones(op.size))) == "The system was solved."
    # lineax's own solver: no reason statistic, its result is explained.
    singular = lx.MatrixLinearOperator(jnp.ones((3, 3)))
    sol = lx.linear_solve(singular, jnp.ones(3), lx.LU(), throw=False)
    assert sol.result != lx.RESULTS.successful
    assert "singular" in lxs.explain(sol)
    with pytest.raises(TypeError, match="Solution"):
        lxs.explain(jnp.ones(3))
    with pytest.raises(TypeError, match="outside `jax.jit`"):
        jax.jit(lambda v: lxs.explain(lxs.linear_solve(op, v)))(jnp.ones(op.size))


@pytest.mark.parametrize("form", ["csr", "csc", "coo", "bsr", "lil", "csr_matrix", "bcoo"])
def test_linear_solve_takes_sparse_matrices(form):
    matrix = _nonsymmetric(30)
    if form == "bcoo":
        given = jsparse.BCOO.from_scipy_sparse(matrix)
    elif form == "csr_matrix":
        given = sp.csr_matrix(matrix)
    else:
        given = matrix.asformat(form)
    b = np.arange(30.0)
    sol = lxs.linear_solve(given, jnp.asarray(b))  # AutoSparse by default
    np.testing.assert_allclose(sol.value, np.linalg.solve(matrix.toarray(), b), rtol=1e-10)


def test_linear_solve_names_a_bad_argument():
    with pytest.raises(ValueError, match="`operator`.*dense ndarray.*MatrixLinearOperator"):
        lxs.linear_solve(np.eye(3), jnp.ones(3))
    with pytest.raises(ValueError, match="`operator`.*str"):
        lxs.linear_solve("A", jnp.ones(3))
    with pytest.raises(ValueError, match="`solver`.*Cholmod"):
        lxs.linear_solve(sp.eye(3, format="csr"), jnp.ones(3), lxs.Cholmod)
    # A dense lineax operator keeps lineax's default solver.
    dense = lx.MatrixLinearOperator(jnp.eye(3) * 2)
    np.testing.assert_allclose(lxs.linear_solve(dense, jnp.ones(3)).value, 0.5 * np.ones(3))


def test_densifying_a_large_operator_warns():
    n = 1200
    big = lxs.SparseOperator.from_scipy(sp.diags(np.arange(1.0, n + 1), format="csr"))
    b = jnp.ones(n)
    with pytest.warns(UserWarning, match="densifying a 1200 x 1200.*AutoSparse"):
        x = lx.linear_solve(big, b).value  # lineax's dense LU through as_matrix
    np.testing.assert_allclose(x, 1.0 / np.arange(1.0, n + 1), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = lxs.SparseOperator.from_scipy(sp.eye(1000, format="csr"))
        small.as_matrix()
        # The library's own dense path does not warn.
        y = lxs.linear_solve(big, b, lxs.AutoSparse(dense_below=2000)).value
    np.testing.assert_allclose(y, x, rtol=1e-12)


def test_error_index_without_a_reason():
    """lineax may fail a solve its solver called a success (a non-finite output): the
    message then reads the lineax result, never "solved"."""
    from lineax_sparse._bridge.reasons import error_index, error_messages

    messages = error_messages()
    ok = jnp.array(0, jnp.int32)
    assert int(error_index(ok, lx.RESULTS.singular)) == Status.SINGULAR
    assert int(error_index(ok, lx.RESULTS.breakdown)) == Status.BREAKDOWN
    assert int(error_index(jnp.array(7, jnp.int32), lx.RESULTS.singular)) == 7
    assert "not symmetric" in messages[7] or "not_symmetric" in messages[7]
    assert messages[0] == "lineax-sparse: the linear solve failed."
