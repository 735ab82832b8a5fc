"""UMFPACK (through cvxopt's bundled library): answers against dense solves and against
cvxopt's own `umfpack` module, transposes, singular and non-finite input, options, freed
factors and parallel batches. jit / grad / vmap are the shared grid's (tests/helpers.py)."""

import cvxopt  # noqa: I001  (first: it decides the BLAS of the SuiteSparse it loads)
import cvxopt.umfpack
import gc
import os

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp

import lineax_sparse as lxs
from lineax_sparse.backends.pattern import Pattern
from lineax_sparse.backends.status import FactorError, Status
from lineax_sparse.backends.umfpack import library
from lineax_sparse.backends.umfpack.backend import UMFPACKBackend

from .helpers import (
    assert_solves,
    convection_diffusion2d,
    elasticity2d,
    load,
    matrix,
    matrix_condition,
    matrix_operator,
    operator,
    random_sparse,
    random_vector,
    with_data,
)


PSD = (lx.symmetric_tag, lx.positive_semidefinite_tag)


def _spmatrix(matrix) -> cvxopt.spmatrix:
    coo = sp.coo_matrix(matrix)
    typecode = "z" if np.iscomplexobj(coo.data) else "d"
    return cvxopt.spmatrix(
        coo.data.tolist(), coo.row.tolist(), coo.col.tolist(), coo.shape, typecode
    )


def _cvxopt_solve(matrix, b: np.ndarray, trans: str) -> np.ndarray:
    """cvxopt's own UMFPACK solve of `op(A) x = b`, `trans` "N", "T" or "C"."""
    dtype = complex if np.iscomplexobj(matrix.data) or np.iscomplexobj(b) else float
    x = cvxopt.matrix(np.asarray(b, dtype=dtype))
    cvxopt.umfpack.linsolve(_spmatrix(sp.coo_matrix(matrix).astype(dtype)), x, trans=trans)
    return np.array(x).reshape(-1)


def _backend_and_factor(matrix, backend=None):
    csc = sp.csc_matrix(matrix)
    csc.sort_indices()
    coo = csc.tocoo()
    pattern = Pattern(csc.shape[0], np.stack([coo.row, coo.col], 1))
    backend = backend or UMFPACKBackend("auto", "amd", 0.1)
    analysis = backend.analyse(pattern)
    return backend, backend.factor(pattern, analysis, pattern.csc(csc.data), None)


def test_the_library_is_cvxopts_umfpack_with_the_documented_control_layout():
    lib = library.load()
    assert lib is not None
    control = library.defaults(lib)
    assert control[library.PIVOT_TOLERANCE] == 0.1 and control[library.IRSTEP] == 2
    assert control[library.SYM_PIVOT_TOLERANCE] == 0.001


@pytest.mark.parametrize("name", ["west0479", "rajat19", "young1c", "hangGlider_2"])
def test_agrees_with_cvxopt_umfpack_called_directly(name, getkey):
    dense = matrix(name)
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    x = lx.linear_solve(matrix_operator(name), b, solver=lxs.UMFPACK()).value
    native = _cvxopt_solve(dense, np.asarray(b), "N")
    assert_solves(dense, x, b, reference=native, condition=matrix_condition(name))


def test_the_comparison_with_cvxopt_rejects_a_wrong_answer(getkey):
    dense = matrix("west0479")
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    x = np.array(lx.linear_solve(matrix_operator("west0479"), b, solver=lxs.UMFPACK()).value)
    native = _cvxopt_solve(dense, np.asarray(b), "N")
    x[100] += 1e-6 * np.max(np.abs(x))
    with pytest.raises(AssertionError, match="backward error"):
        assert_solves(dense, x, b, reference=native, condition=matrix_condition("west0479"))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("system", ["A", "A^T", "A^H", "conj(A)"])
def test_every_system_from_one_factor_against_dense_and_cvxopt(dtype, system):
    a = random_sparse(80, 0.06, dtype, seed=3)
    rng = np.random.default_rng(4)
    b = rng.standard_normal((80, 3)).astype(dtype)
    if dtype == np.complex128:
        b = b + 1j * rng.standard_normal((80, 3))
    backend, factor = _backend_and_factor(a)
    transpose, conjugate = {
        "A": (False, False),
        "A^T": (True, False),
        "A^H": (True, True),
        "conj(A)": (False, True),
    }[system]
    result = backend.solve(factor, b, transpose, conjugate, None)
    dense = a.toarray()
    op = dense.T if transpose else dense
    op = op.conj() if conjugate else op
    expected = np.linalg.solve(op, b)
    assert np.all(result.status == 0)
    for j in range(3):
        assert_solves(op, result.solution[:, j], b[:, j], reference=expected[:, j])
    trans = {"A": "N", "A^T": "T", "A^H": "C"}.get(system)
    if trans is not None:  # cvxopt has no conj(A) solve
        native = _cvxopt_solve(a, b[:, 0], trans)
        assert_solves(op, result.solution[:, 0], b[:, 0], reference=native)


@pytest.mark.parametrize("transpose", [False, True], ids=["forward", "transposed"])
def test_complex_right_hand_side_of_a_real_matrix(transpose, getkey):
    # Solved as one real block of its real and imaginary parts; the transposed solve is
    # the one a gradient makes.
    real = convection_diffusion2d(12)
    b = random_vector(getkey(), real.shape[0], jnp.complex128)
    solver = lxs.UMFPACK()
    state = solver.init(operator(real), {})
    if transpose:
        state, _ = solver.transpose(state, {})
    x, result, _ = jax.jit(lambda s, v: solver.compute(s, v, {}))(state, b)
    dense = real.toarray().T if transpose else real.toarray()
    assert result == lx.RESULTS.successful and x.dtype == jnp.complex128
    assert_solves(dense, x, b, reference=np.linalg.solve(dense, np.asarray(b)))


def _reason(solution) -> int:
    return int(solution.stats["reason"])


def test_singular_and_nonfinite_input_are_reported(getkey):
    op = operator(load("zenios.mtx"))
    b = random_vector(getkey(), op.size, jnp.float64)
    solution = lx.linear_solve(op, b, solver=lxs.UMFPACK(), throw=False)
    assert solution.result == lx.RESULTS.singular and _reason(solution) == Status.SINGULAR
    assert np.all(np.isnan(np.asarray(solution.value)))
    good = operator(random_sparse(30, 0.1, np.float64, seed=41))
    bad = with_data(good, good.data.at[3].set(np.nan))
    solution = lx.linear_solve(bad, jnp.ones(30), solver=lxs.UMFPACK(), throw=False)
    assert solution.result == lx.RESULTS.nonfinite_input
    assert _reason(solution) == Status.NONFINITE_INPUT


def test_an_exact_zero_pivot_and_a_rounding_level_one_are_singular():
    exact = sp.csr_matrix(np.ones((3, 3)) + np.diag([1.0, 0.0, 0.0]) * 0)  # rank 1
    with pytest.raises(FactorError) as error:
        _backend_and_factor(exact)
    assert error.value.status == Status.SINGULAR
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal((40, 39)), rng.standard_normal((39, 40))
    rounding = sp.csr_matrix(u @ v)  # rank 39: a pivot at rounding level, not zero
    with pytest.raises(FactorError, match="singular to working precision"):
        _backend_and_factor(rounding)


def test_ill_conditioned_but_regular_matrices_solve(getkey):
    # The pivot gate asks for a condition estimate on hangGlider_2 (condition 1e11), which
    # clears it.
    dense = matrix("hangGlider_2")
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    solution = lx.linear_solve(matrix_operator("hangGlider_2"), b, lxs.UMFPACK(), throw=False)
    assert solution.result == lx.RESULTS.successful


@pytest.mark.parametrize("strategy", ["auto", "unsymmetric", "symmetric"])
@pytest.mark.parametrize("ordering", ["amd", "cholmod", "best", "natural"])
def test_strategies_and_orderings(strategy, ordering, getkey):
    dense = matrix("rajat19")
    b = random_vector(getkey(), dense.shape[0], jnp.float64)
    solver = lxs.UMFPACK(strategy=strategy, ordering=ordering, pivot_tolerance=1.0)
    x = lx.linear_solve(matrix_operator("rajat19"), b, solver=solver).value
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    assert_solves(dense, x, b, reference=expected, condition=matrix_condition("rajat19"))


@pytest.mark.parametrize(
    "arguments, name",
    [
        (dict(strategy="colamd"), "strategy"),
        (dict(ordering="metis"), "ordering"),
        (dict(pivot_tolerance=0.0), "pivot_tolerance"),
        (dict(pivot_tolerance=1.5), "pivot_tolerance"),
        (dict(pivot_tolerance=True), "pivot_tolerance"),
    ],
)
def test_options_are_checked(arguments, name):
    with pytest.raises(ValueError, match=rf"UMFPACK\({name}=\.\.\.\)"):
        lxs.UMFPACK(**arguments)


def test_float32_is_factorized_in_double_and_returned_in_single(getkey):
    a = random_sparse(50, 0.1, np.float32, seed=6)
    b = random_vector(getkey(), 50, jnp.float32)
    x = lx.linear_solve(operator(a), b, solver=lxs.UMFPACK()).value
    assert x.dtype == jnp.float32
    assert_solves(a, x, b, reference=np.linalg.solve(a.toarray().astype(np.float64), b))


def test_nbytes_counts_the_numeric_object():
    backend, factor = _backend_and_factor(convection_diffusion2d(40))
    lnz_unz = 2 * 1600 * 8  # at least L's and U's diagonals
    assert backend.nbytes(factor) > lnz_unz + factor.values.nbytes


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_dropped_factors_free_their_numeric_objects():
    a = convection_diffusion2d(48)  # n = 2,304: each Numeric object holds about 1 MB
    backend, factor = _backend_and_factor(a)
    size = backend.nbytes(factor)
    del factor
    for _ in range(20):  # warm the allocator
        _backend_and_factor(a, backend)
    gc.collect()
    before = _resident_bytes()
    for _ in range(300):
        _backend_and_factor(a, backend)
    gc.collect()
    grown = _resident_bytes() - before
    assert grown < 30 * size, f"{grown / 2**20:.1f} MB kept after 300 factors of {size} bytes"


def test_a_parallel_batch_gives_the_sequential_answers_bit_for_bit(getkey):
    op = operator(elasticity2d(16, 8), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    rows, cols = np.asarray(op.indices).T
    datas = np.stack([np.asarray(op.data) * (1.0 + 0.25 * i) for i in range(8)])
    datas[1, (rows == 0) | (cols == 0)] = 0.0  # singular
    datas[2, 5] = np.nan  # non-finite input
    datas = jnp.asarray(datas)

    def run(threads):
        lxs.clear_cache()
        lxs.set_num_threads(threads)
        try:

            def one(data):
                solution = lx.linear_solve(with_data(op, data), b, lxs.UMFPACK(), throw=False)
                return solution.value, solution.result._value

            return [np.asarray(a) for a in jax.jit(jax.vmap(one))(datas)]
        finally:
            lxs.set_num_threads(None)

    sequential, parallel = run(1), run(2)
    for got, expected in zip(parallel, sequential, strict=True):
        assert np.array_equal(got, expected, equal_nan=True)
    x, result = parallel
    assert result[1] == lx.RESULTS.singular._value
    assert result[2] == lx.RESULTS.nonfinite_input._value
    dense = np.asarray(op.as_matrix())
    for i in (0, 3, 7):
        expected = np.linalg.solve(dense * (1.0 + 0.25 * i), np.asarray(b))
        assert np.max(np.abs(x[i] - expected)) <= 1e-9 * np.max(np.abs(expected))
    assert lxs.cache_info().analyses == 1


def test_a_factorization_does_not_depend_on_what_was_factorized_before():
    # One symbolic analysis per pattern, made from the pattern alone: a matrix gets the same
    # bits whether or not another matrix of its pattern (with other zeros on its diagonal,
    # which decide UMFPACK's strategy when it reads values) was factorized first.
    base = convection_diffusion2d(10).tocoo()
    op = operator(base)
    first = np.asarray(op.data).copy()
    rows, cols = np.asarray(op.indices).T
    first[rows == cols] = 0.0  # a zero diagonal: UMFPACK reading it would go unsymmetric
    b = jnp.ones(op.size)

    @jax.jit
    def solve(data):
        return lx.linear_solve(with_data(op, data), b, lxs.UMFPACK(), throw=False).value

    lxs.clear_cache()
    fresh = np.asarray(solve(op.data))
    lxs.clear_cache()
    solve(jnp.asarray(first))
    after = np.asarray(solve(op.data))
    assert lxs.cache_info().analyses == 1
    assert np.array_equal(after, fresh)
