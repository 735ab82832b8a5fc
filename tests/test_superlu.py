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
