import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs

from .helpers import assert_close, random_sparse, random_vector


def _bcoo(data, indices, n):
    return jsparse.BCOO((jnp.asarray(data), jnp.asarray(indices, jnp.int32)), shape=(n, n))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128])
def test_mv_and_as_matrix_match_dense(dtype, getkey):
    matrix = random_sparse(40, 0.1, dtype, seed=0)
    op = lxs.SparseOperator.from_scipy(matrix)
    dense = matrix.toarray()
    x = random_vector(getkey(), 40, dtype)
    assert op.in_structure() == jax.ShapeDtypeStruct((40,), dtype)
    assert_close(op.mv(x), dense @ np.asarray(x), dtype)
    assert_close(op.as_matrix(), dense, dtype)
    assert_close(op.transpose().as_matrix(), dense.T, dtype)
    assert_close(lx.conj(op).as_matrix(), dense.conj(), dtype)
    assert_close(lx.diagonal(op), dense.diagonal(), dtype)
    assert_close(jax.jit(lambda o, v: o.mv(v))(op, x), dense @ np.asarray(x), dtype)


def test_duplicates_are_summed_and_padding_ignored():
    # Entry (0, 1) appears twice; the last two entries are BCOO padding (index == n).
    indices = [[0, 0], [0, 1], [1, 1], [0, 1], [2, 2], [3, 0], [3, 3]]
    data = [1.0, 2.0, 3.0, 4.0, 5.0, 0.0, 7.0]
    op = lxs.SparseOperator(_bcoo(data, indices, 3))
    expected = np.array([[1.0, 6.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 5.0]])
    np.testing.assert_allclose(op.as_matrix(), expected)
    np.testing.assert_allclose(op.mv(jnp.ones(3)), expected @ np.ones(3))
    np.testing.assert_allclose(lx.diagonal(op), [1.0, 3.0, 5.0])


def test_padding_from_sum_duplicates_under_jit():
    indices = jnp.array([[0, 0], [1, 1], [0, 0], [2, 2], [1, 0]])
    data = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])

    @jax.jit
    def build_and_apply(data, x):
        bcoo = jsparse.BCOO((data, indices), shape=(3, 3)).sum_duplicates(nse=6)
        return lxs.SparseOperator(bcoo).mv(x)

    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(build_and_apply(data, x), [4.0, 9.0, 12.0])


def test_from_scipy_accepts_every_format_and_does_not_mutate():
    matrix = random_sparse(20, 0.2, np.float64, seed=1)
    before = matrix.copy()
    for converted in (matrix.tocsr(), matrix.tocsc(), matrix.tocoo(), sp.csr_array(matrix)):
        op = lxs.SparseOperator.from_scipy(converted)
        np.testing.assert_allclose(op.as_matrix(), matrix.toarray())
    assert (matrix != before).nnz == 0


def test_tridiagonal():
    matrix = sp.diags_array([[1.0] * 4, [2.0] * 5, [3.0] * 4], offsets=[-1, 0, 1]).tocsr()
    op = lxs.SparseOperator.from_scipy(matrix, tags=lx.tridiagonal_tag)
    main, lower, upper = lx.tridiagonal(op)
    np.testing.assert_allclose(main, 2.0 * np.ones(5))
    np.testing.assert_allclose(lower, np.ones(4))
    np.testing.assert_allclose(upper, 3.0 * np.ones(4))
    assert lx.is_tridiagonal(op)


def test_tags_answer_lineax_predicates():
    real = lxs.SparseOperator.from_scipy(sp.eye(3).tocsr(), tags=lx.positive_semidefinite_tag)
    assert lx.is_positive_semidefinite(real) and lx.is_symmetric(real)
    assert not lx.is_negative_semidefinite(real) and not lx.is_diagonal(real)
    complex_psd = lxs.SparseOperator.from_scipy(
        sp.eye(3, dtype=complex).tocsr(), tags=lx.positive_semidefinite_tag
    )
    assert not lx.is_symmetric(complex_psd)  # Hermitian, not symmetric
    lower = lxs.SparseOperator.from_scipy(sp.eye(3).tocsr(), tags=[lx.lower_triangular_tag])
    assert lx.is_lower_triangular(lower) and not lx.is_upper_triangular(lower)
    assert lx.is_upper_triangular(lower.transpose())
    diag = lxs.SparseOperator.from_scipy(sp.eye(3).tocsr(), tags=lx.diagonal_tag)
    assert lx.is_diagonal(diag) and lx.is_tridiagonal(diag) and lx.is_symmetric(diag)
    unit = lxs.SparseOperator.from_scipy(sp.eye(3).tocsr(), tags=lx.unit_diagonal_tag)
    assert lx.has_unit_diagonal(unit)
    assert lx.linearise(real) is real and lx.materialise(real) is real


def test_works_with_lineax_dense_solvers(getkey):
    matrix = random_sparse(15, 0.3, np.float64, seed=2)
    op = lxs.SparseOperator.from_scipy(matrix)
    b = random_vector(getkey(), 15, jnp.float64)
    for solver in (lx.LU(), lx.GMRES(rtol=1e-10, atol=1e-10)):
        x = lx.linear_solve(op, b, solver=solver).value
        assert_close(x, np.linalg.solve(matrix.toarray(), b), jnp.float64, factor=1e3)


def test_mv_gradient_with_respect_to_data(getkey):
    matrix = random_sparse(25, 0.2, np.float64, seed=3)
    op = lxs.SparseOperator.from_scipy(matrix)
    x = random_vector(getkey(), 25, jnp.float64)
    w = random_vector(getkey(), 25, jnp.float64)

    def loss(data):
        return jnp.dot(
            w, lxs.SparseOperator(jsparse.BCOO((data, op.indices), shape=(25, 25))).mv(x)
        )

    grad = jax.grad(loss)(op.data)
    # d(w^T A x)/dA_ij = w_i x_j, gathered at each stored entry.
    expected = w[op.indices[:, 0]] * x[op.indices[:, 1]]
    np.testing.assert_allclose(grad, expected, rtol=1e-12)
    tangent = random_vector(getkey(), op.data.shape[0], jnp.float64)
    _, jvp = jax.jvp(loss, (op.data,), (tangent,))
    np.testing.assert_allclose(jvp, jnp.dot(grad, tangent), rtol=1e-10)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: jnp.eye(3), "must be a `jax.experimental.sparse.BCOO`"),
        (lambda: sp.eye(3).tocsr(), "from_scipy"),
        (lambda: jsparse.BCOO.fromdense(jnp.ones((2, 3))), "square"),
        (lambda: jsparse.BCOO.fromdense(jnp.ones((2, 3, 3)), n_batch=1), "unbatched"),
        (lambda: jsparse.BCOO.fromdense(jnp.ones((3, 3, 2)), n_dense=1), "unbatched"),
        (lambda: jsparse.BCOO.fromdense(jnp.eye(3, dtype=jnp.int32)), "floating or complex"),
        (lambda: _bcoo([1.0, 1.0], [[0, 0], [5, 1]], 3), r"outside \[0, 3\).*\(5, 1\)"),
        (lambda: _bcoo([1.0, 1.0], [[0, 0], [-1, 1]], 3), r"outside \[0, 3\).*\(-1, 1\)"),
    ],
)
def test_structural_mistakes_raise_value_error_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        lxs.SparseOperator(make())


def test_from_scipy_rejects_non_sparse():
    with pytest.raises(ValueError, match=r"from_scipy\(matrix=...\)"):
        lxs.SparseOperator.from_scipy(np.eye(3))


def test_symmetric_tag_requires_matching_structures():
    op = lxs.SparseOperator.from_scipy(sp.eye(3).tocsr(), tags=lx.symmetric_tag)
    assert lx.is_symmetric(op)
