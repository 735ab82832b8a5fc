"""SuperLU-specific behaviour; the shared grid is in test_solvers.py."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse.linalg as spla

import lineax_sparse as lxs

from .helpers import (
    assert_close,
    matrix,
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
    np.testing.assert_allclose(x, native, rtol=1e-9, atol=1e-12 * np.max(np.abs(native)))


@pytest.mark.parametrize("ordering", ["COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"])
def test_orderings_and_symmetric_mode(ordering, getkey):
    dense = matrix("rajat19")
    b = random_vector(getkey(), dense.shape[0], jnp.float64)
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    for solver in (lxs.SuperLU(ordering=ordering), lxs.SuperLU(ordering, 0.1, True)):
        x = lx.linear_solve(matrix_operator("rajat19"), b, solver=solver).value
        assert np.max(np.abs(x - expected)) / np.max(np.abs(expected)) <= 1e-4


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
