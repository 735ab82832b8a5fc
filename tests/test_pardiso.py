"""MKL PARDISO-specific behaviour (`lxs.Pardiso`); the shared grid is in test_solvers.py.

References: dense numpy solves and eigenvalues, and PARDISO called directly through the raw
binding (phase 13, none of lineax-sparse's checks). Skipped, with the reason, without MKL.
"""

import ctypes

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp

import lineax_sparse as lxs
from lineax_sparse.backends.status import Status

from .helpers import (
    assert_solves,
    condition_number,
    load,
    matrix,
    operator,
    PARDISO_MARKS,
    random_sparse,
    random_symmetric_indefinite,
    random_vector,
    with_data,
)


pytestmark = PARDISO_MARKS


def helmholtz(m: int, k2: float = 30.0) -> sp.csr_matrix:
    """Complex symmetric (`A^T = A`, not Hermitian) Helmholtz operator with absorption:
    `-Laplace - k^2 (1 + 0.1 i)` on an m x m grid."""
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m)) * (m + 1) ** 2
    laplace = sp.kronsum(t, t)
    return (laplace - k2 * (1 + 0.1j) * sp.eye(m * m)).astype(np.complex128).tocsr()


def kkt(nk_side: int, m: int, seed: int) -> sp.csr_matrix:
    """A saddle point `[[K, B^T], [B, 0]]`, K positive definite (n_K = nk_side^2), B of
    full row rank m: inertia (n_K, m, 0)."""
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(nk_side, nk_side))
    k = sp.kronsum(t, t)
    rng = np.random.default_rng(seed)
    b = sp.random(m, k.shape[0], density=0.05, random_state=rng) + sp.eye(m, k.shape[0])
    return sp.bmat([[k, b.T], [b, None]]).tocsr()


def _stokes(cells: int) -> sp.csc_matrix:
    """The Taylor-Hood Stokes matrix of examples/stokes_flow.py (NumPy-assembled)."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "examples"))
    import stokes_flow

    return stokes_flow.stokes_system(cells)[0]


#: name -> (matrix, tags): one of each kind PARDISO has a type for.
SYSTEMS = {
    "real-general": (lambda: load("rajat19.mtx"), ()),
    "complex-general": (lambda: load("young1c.mtx"), ()),
    "spd": (lambda: load("494_bus.mtx"), lx.positive_semidefinite_tag),
    "hpd": (
        lambda: random_sparse(80, 0.05, np.complex128, seed=3, spd=True),
        lx.positive_semidefinite_tag,
    ),
    "symmetric-indefinite": (
        lambda: random_symmetric_indefinite(90, 0.06, seed=4),
        lx.symmetric_tag,
    ),
    "kkt": (lambda: kkt(10, 30, seed=5), lx.symmetric_tag),
    "complex-symmetric": (lambda: helmholtz(12), lx.symmetric_tag),
    # Large enough for PARDISO's threads to change the last bits without its reproducible
    # mode (4.9e-14 apart on 1 and 2 threads).
    "stokes": (lambda: _stokes(20), lx.symmetric_tag),
}
MTYPES = {
    "real-general": 11,
    "complex-general": 13,
    "spd": 2,
    "hpd": 4,
    "symmetric-indefinite": -2,
    "kkt": -2,
    "complex-symmetric": 6,
    "stokes": -2,
}


def raw_pardiso(a: sp.spmatrix, b: np.ndarray, mtype: int, threads: int = 1) -> np.ndarray:
    """PARDISO called directly: phase 13 on the CSR (upper triangle for symmetric types)."""
    from lineax_sparse.backends.pardiso import library

    n = a.shape[0]
    if mtype in (11, 13):
        stored = sp.csr_matrix(a)
    else:
        upper = sp.triu(a, format="coo")
        d = np.arange(n)
        stored = sp.csr_matrix(
            (
                np.concatenate([upper.data, np.zeros(n, a.dtype)]),
                (np.concatenate([upper.row, d]), np.concatenate([upper.col, d])),
            ),
            shape=a.shape,
        )
    stored.sort_indices()
    dtype = np.complex128 if np.iscomplexobj(stored.data) else np.float64
    pt, iparm = library.new_handle(), np.zeros(64, np.int32)
    library.LIBRARY.pardisoinit(
        pt.ctypes.data, ctypes.byref(ctypes.c_int32(mtype)), iparm.ctypes.data
    )
    iparm[34] = 1
    if mtype in (-2, 6):
        iparm[10] = iparm[12] = 1
    values = np.ascontiguousarray(stored.data, dtype=dtype)
    indptr, indices = stored.indptr.astype(np.int32), stored.indices.astype(np.int32)
    rhs = np.asfortranarray(b, dtype=dtype)
    x = np.zeros_like(rhs)
    with library.local_threads(threads):
        error = library.call(pt, mtype, 13, n, values, indptr, indices, iparm, rhs, x)
        library.call(pt, mtype, -1, n, None, indptr, indices, iparm)
    assert error == 0, error
    return x


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_agrees_with_numpy_and_with_pardiso_called_directly(name, getkey):
    a, tags = SYSTEMS[name][0](), SYSTEMS[name][1]
    b = random_vector(getkey(), a.shape[0], jnp.result_type(a.dtype))
    solution = lxs.linear_solve(operator(a, tags), b, lxs.Pardiso())
    assert solution.result == lx.RESULTS.successful
    kappa = condition_number(a)
    expected = np.linalg.solve(a.toarray(), np.asarray(b))
    assert_solves(a, solution.value, b, reference=expected, condition=kappa)
    native = raw_pardiso(a, np.asarray(b), MTYPES[name])
    assert_solves(a, solution.value, b, reference=native, condition=kappa)


@pytest.mark.parametrize("name", ["real-general", "complex-general", "hpd", "complex-symmetric"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("conjugate", [False, True])
def test_transposed_and_conjugated_solves(name, transpose, conjugate, getkey):
    from lineax_sparse.backends.pardiso import Backend

    a, tags = SYSTEMS[name][0](), SYSTEMS[name][1]
    op = operator(a, tags)
    matrix_type = lxs.Pardiso().backend_spec(op)[1][0][1]
    backend = Backend(matrix_type)
    csc = sp.csc_matrix(a)
    csc.sort_indices()
    from lineax_sparse.backends.pattern import Pattern

    coo = csc.tocoo()
    pattern = Pattern(a.shape[0], np.stack([coo.row, coo.col], axis=1).astype(np.int32))
    factor = backend.factor(
        pattern, backend.analyse(pattern), pattern.csc(pattern.assemble(coo.data)), None
    )
    b = np.asarray(random_vector(getkey(), a.shape[0], jnp.complex128))[:, None]
    result = backend.solve(factor, b, transpose, conjugate, None)
    dense = a.toarray()
    dense = dense.T if transpose else dense
    dense = dense.conj() if conjugate else dense
    assert result.status[0] == Status.OK
    assert_solves(dense, result.solution[:, 0], b[:, 0], reference=np.linalg.solve(dense, b[:, 0]))


def _inertia(a) -> tuple[int, int, int]:
    eigenvalues = np.linalg.eigvalsh(a.toarray())
    tolerance = 1e-10 * np.max(np.abs(eigenvalues))
    return (
        int(np.sum(eigenvalues > tolerance)),
        int(np.sum(eigenvalues < -tolerance)),
        int(np.sum(np.abs(eigenvalues) <= tolerance)),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inertia_of_symmetric_indefinite_matrices(seed, getkey):
    a = random_symmetric_indefinite(70 + 10 * seed, 0.08, seed=seed)
    # Shift the spectrum so that the counts are not those of the alternating diagonal.
    a = (a - (seed - 1) * 2.0 * sp.eye(a.shape[0])).tocsr()
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    solution = lxs.linear_solve(operator(a, lx.symmetric_tag), b, lxs.Pardiso())
    assert solution.result == lx.RESULTS.successful
    assert tuple(np.asarray(solution.stats["inertia"])) == _inertia(a)
    assert int(solution.stats["perturbed_pivots"]) == 0


def test_inertia_of_a_kkt_system_under_jit_and_vmap(getkey):
    a = kkt(12, 40, seed=7)
    op = operator(a, lx.symmetric_tag)
    assert _inertia(a) == (144, 40, 0)
    b = random_vector(getkey(), a.shape[0], jnp.float64)

    @jax.jit
    def solve(data, b):
        return lxs.linear_solve(with_data(op, data), b, lxs.Pardiso())

    solution = solve(op.data, b)
    assert tuple(np.asarray(solution.stats["inertia"])) == (144, 40, 0)
    # A batch: K shifted down by 0, 10 and 100 changes how many eigenvalues are positive.
    diagonal = np.asarray(op.indices[:, 0] == op.indices[:, 1]) & (
        np.asarray(op.indices[:, 0]) < 144
    )
    shifts = jnp.asarray([0.0, 10.0, 100.0])
    data = op.data[None, :] - shifts[:, None] * jnp.asarray(diagonal, jnp.float64)[None, :]
    batch = jax.vmap(solve, in_axes=(0, None))(data, b)
    for i, shift in enumerate(np.asarray(shifts)):
        shifted = (a - shift * sp.diags(np.r_[np.ones(144), np.zeros(40)])).tocsr()
        assert tuple(np.asarray(batch.stats["inertia"][i])) == _inertia(shifted)
        assert_solves(shifted, batch.value[i], b)


def test_statistics_of_the_other_types(getkey):
    for name, expected in (("spd", "n"), ("real-general", -1), ("complex-symmetric", -1)):
        a, tags = SYSTEMS[name][0](), SYSTEMS[name][1]
        b = random_vector(getkey(), a.shape[0], jnp.result_type(a.dtype))
        stats = lxs.linear_solve(operator(a, tags), b, lxs.Pardiso()).stats
        n = a.shape[0]
        want = (n, 0, 0) if expected == "n" else (-1, -1, -1)
        assert tuple(np.asarray(stats["inertia"])) == want
        assert stats["perturbed_pivots"].shape == ()


def test_values_that_are_not_symmetric_are_reported(getkey):
    a = random_symmetric_indefinite(40, 0.1, seed=9).tolil()
    a[3, 7] += 1.0
    b = random_vector(getkey(), 40, jnp.float64)
    solution = lxs.linear_solve(
        operator(a.tocsr(), lx.symmetric_tag), b, lxs.Pardiso(), throw=False
    )
    assert solution.result == lx.RESULTS.singular
    assert int(solution.stats["reason"]) == Status.NOT_SYMMETRIC
    # A Hermitian matrix is not complex symmetric: tagged symmetric, it is reported too.
    h = random_sparse(30, 0.1, np.complex128, seed=2, spd=True)
    b = random_vector(getkey(), 30, jnp.complex128)
    solution = lxs.linear_solve(operator(h, lx.symmetric_tag), b, lxs.Pardiso(), throw=False)
    assert int(solution.stats["reason"]) == Status.NOT_SYMMETRIC
    # ... and solved as Hermitian positive definite when tagged so.
    solution = lxs.linear_solve(operator(h, lx.positive_semidefinite_tag), b, lxs.Pardiso())
    assert_solves(h, solution.value, b)


def test_cholesky_of_an_indefinite_matrix_is_reported(getkey):
    a = random_symmetric_indefinite(40, 0.1, seed=10)
    b = random_vector(getkey(), 40, jnp.float64)
    tags = lx.positive_semidefinite_tag
    solution = lxs.linear_solve(operator(a, tags), b, lxs.Pardiso(), throw=False)
    assert solution.result == lx.RESULTS.singular
    assert int(solution.stats["reason"]) == Status.NOT_POSITIVE_DEFINITE


@pytest.mark.parametrize("tags", [(), lx.symmetric_tag])
def test_singular_zenios_is_reported_never_solved(tags, getkey):
    # PARDISO perturbs the zero pivots and returns NaN with error 0: the checks catch it.
    a = load("zenios.mtx")
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    solution = lxs.linear_solve(operator(a, tags), b, lxs.Pardiso(), throw=False)
    assert solution.result == lx.RESULTS.singular
    assert int(solution.stats["reason"]) == Status.SINGULAR


def test_nearly_singular_nnc1374_is_reported_never_solved(getkey):
    # Condition ~4e15: PARDISO returns error 0 with a backward error of 9e-4.
    a = load("nnc1374.mtx")
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    native = raw_pardiso(a, np.asarray(b), 11)
    assert np.linalg.norm(a @ native - b) / np.linalg.norm(b) > 1e-8  # what the checks catch
    solution = lxs.linear_solve(operator(a), b, lxs.Pardiso(), throw=False)
    if solution.result == lx.RESULTS.successful:  # then it must really solve it
        assert_solves(a, solution.value, b)
    else:
        assert solution.result == lx.RESULTS.singular


def test_empty_row_is_singular_not_a_crash(getkey):
    a = random_sparse(20, 0.2, np.float64, seed=1).tolil()
    a[5, :] = 0
    a = sp.csr_matrix(a)
    a.eliminate_zeros()
    b = random_vector(getkey(), 20, jnp.float64)
    solution = lxs.linear_solve(operator(a), b, lxs.Pardiso(), throw=False)
    assert solution.result == lx.RESULTS.singular


def test_nonfinite_values_are_reported(getkey):
    op = operator(random_symmetric_indefinite(30, 0.1, seed=3), lx.symmetric_tag)
    b = random_vector(getkey(), 30, jnp.float64)
    bad = with_data(op, op.data.at[0].set(jnp.nan))
    solution = lxs.linear_solve(bad, b, lxs.Pardiso(), throw=False)
    assert solution.result == lx.RESULTS.nonfinite_input


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_single_precision(dtype, getkey):
    a = random_sparse(50, 0.1, np.dtype(dtype), seed=6)
    b = random_vector(getkey(), 50, dtype)
    x = lxs.linear_solve(operator(a), b, lxs.Pardiso()).value
    assert x.dtype == dtype
    assert_solves(a, x, b)


def test_gradient_wrt_values_and_rhs_matches_dense(getkey):
    a = kkt(6, 10, seed=3)
    op = operator(a, lx.symmetric_tag)
    b = random_vector(getkey(), a.shape[0], jnp.float64)

    def loss(data, b):
        return jnp.sum(lxs.linear_solve(with_data(op, data), b, lxs.Pardiso()).value ** 3)

    def dense_loss(data, b):
        rows, cols = op.indices[:, 0], op.indices[:, 1]
        dense = jnp.zeros((op.size, op.size)).at[rows, cols].add(data)
        return jnp.sum(jnp.linalg.solve(dense, b) ** 3)

    got = jax.grad(loss, argnums=(0, 1))(op.data, b)
    want = jax.grad(dense_loss, argnums=(0, 1))(op.data, b)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-10 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize("name", ["kkt", "real-general", "complex-symmetric"])
def test_parallel_batches_are_bit_for_bit_those_of_one_thread(name, getkey):
    a, tags = SYSTEMS[name][0](), SYSTEMS[name][1]
    op = operator(a, tags)
    b = random_vector(getkey(), a.shape[0], jnp.result_type(a.dtype))
    scales = jnp.asarray([1.0, 1.5, 2.0, 3.0])

    def solve(scale):
        return lxs.linear_solve(
            with_data(op, op.data * scale.astype(op.data.dtype)), b, lxs.Pardiso()
        ).value

    results = []
    try:
        for threads in (1, 2):
            lxs.set_num_threads(threads)
            lxs.clear_cache()
            results.append(np.asarray(jax.vmap(solve)(scales)))
    finally:
        lxs.set_num_threads(None)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name", ["kkt", "real-general", "complex-symmetric", "hpd", "stokes"])
def test_pardiso_gives_the_same_bits_on_one_and_two_threads(name, getkey):
    from lineax_sparse.backends.pardiso import Backend, threads
    from lineax_sparse.backends.pattern import Pattern

    a, tags = SYSTEMS[name][0](), SYSTEMS[name][1]
    matrix_type = lxs.Pardiso().backend_spec(operator(a, tags))[1][0][1]
    coo = sp.csc_matrix(a).tocoo()
    pattern = Pattern(a.shape[0], np.stack([coo.row, coo.col], axis=1).astype(np.int32))
    b = np.asarray(random_vector(getkey(), a.shape[0], jnp.result_type(a.dtype)))[:, None]
    solutions = []
    try:
        for count in (1, 2):
            threads.follow(lambda count=count: count)
            backend = Backend(matrix_type)
            values = pattern.csc(pattern.assemble(coo.data))
            factor = backend.factor(pattern, backend.analyse(pattern), values, None)
            solutions.append(backend.apply_inverse(factor, b, False, False))
    finally:
        threads.follow(lxs.num_threads)
    np.testing.assert_array_equal(solutions[0], solutions[1])


def test_several_live_factors_of_one_pattern(getkey):
    op = operator(kkt(8, 20, seed=1), lx.symmetric_tag)
    b = random_vector(getkey(), op.size, jnp.float64)
    solver = lxs.Pardiso()
    ops = [with_data(op, op.data * s) for s in (1.0, 2.0, 4.0)]
    states = [solver.init(o, {}) for o in ops]
    for _ in range(2):  # interleaved: every factor stays alive and its own
        for o, state, s in zip(ops, states, (1.0, 2.0, 4.0), strict=True):
            x = lx.linear_solve(o, b, solver, state=state).value
            np.testing.assert_allclose(
                np.asarray(x) * s, np.linalg.solve(kkt(8, 20, 1).toarray(), b), rtol=1e-9
            )
    assert lxs.cache_info().factorizations >= 3


def test_factor_memory_counts_in_the_cache(getkey):
    a = kkt(20, 60, seed=2)
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    lxs.linear_solve(operator(a, lx.symmetric_tag), b, lxs.Pardiso())
    info = lxs.cache_info()
    # At least PARDISO's factor: its nonzeros (8 bytes each) are part of iparm[16].
    assert info.nbytes > 8 * a.nnz


def test_backend_statistics_directly(getkey):
    from lineax_sparse.backends.pardiso import Backend
    from lineax_sparse.backends.pattern import Pattern

    a = kkt(10, 30, seed=5)
    coo = sp.csc_matrix(a).tocoo()
    pattern = Pattern(a.shape[0], np.stack([coo.row, coo.col], axis=1).astype(np.int32))
    backend = Backend("symmetric_indefinite")
    factor = backend.factor(
        pattern, backend.analyse(pattern), pattern.csc(pattern.assemble(coo.data)), None
    )
    stats = backend.statistics(factor)
    assert set(stats) == set(Backend.factor_statistics)
    assert tuple(stats["inertia"]) == (100, 30, 0)
    assert stats["inertia"].dtype == np.int32


def test_options_are_checked():
    with pytest.raises(ValueError, match="matrix_type"):
        lxs.Pardiso(matrix_type="LDL")  # type: ignore[arg-type]


def test_missing_mkl_says_what_to_install(monkeypatch):
    import lineax_sparse._solver.pardiso as solver_module

    monkeypatch.setattr(solver_module, "candidates", lambda: [])
    with pytest.raises(ImportError, match=r"pip install .*lineax-sparse\[pardiso\]"):
        lxs.Pardiso()


def test_explicit_matrix_types(getkey):
    a = matrix("random-symmetric")
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    for matrix_type in ("symmetric_indefinite", "hermitian_indefinite", "general"):
        x = lxs.linear_solve(operator(a, lx.symmetric_tag), b, lxs.Pardiso(matrix_type)).value
        assert_solves(a, x, b)


def test_rounding_level_asymmetry_beside_a_zero_diagonal_is_accepted(getkey):
    # As a NumPy-assembled Stokes matrix: a coupling entry that cancels to -1.7e-18 whose
    # mirror is -3.5e-18, entries of order 1, zero pressure diagonal. A real asymmetry of
    # 1e-6 there is still reported.
    a = kkt(6, 10, seed=4).tolil()
    i, j = 36 + 2, 5  # a pressure row, a velocity column
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    for upper, lower, reason in (
        (-1.7e-18, -3.5e-18, Status.OK),
        (0.0, 1e-6, Status.NOT_SYMMETRIC),
    ):
        a[i, j], a[j, i] = lower, upper
        csr = a.tocsr()
        solution = lxs.linear_solve(operator(csr, lx.symmetric_tag), b, lxs.Pardiso(), throw=False)
        assert int(solution.stats["reason"]) == reason
        if reason == Status.OK:
            assert_solves(csr, solution.value, b)


@pytest.mark.parametrize("cells", [4, 10])
def test_stokes_inertia_and_solution(cells, getkey):
    # The Taylor-Hood Stokes system of examples/stokes_flow.py (assembled in NumPy, with
    # rounding-level asymmetries): inertia (velocities, pressures, 0), and the solve.
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "examples"))
    import stokes_flow

    a, rhs = stokes_flow.stokes_system(cells)
    velocities, pressures = 2 * (2 * cells - 1) ** 2, (cells + 1) ** 2 - 1
    eigenvalues = np.linalg.eigvalsh(0.5 * (a.toarray() + a.toarray().T))
    assert (np.sum(eigenvalues > 0), np.sum(eigenvalues < 0)) == (velocities, pressures)
    b = jnp.asarray(rhs)
    solution = jax.jit(lambda b: lxs.linear_solve(operator(a, lx.symmetric_tag), b, lxs.Pardiso()))(
        b
    )
    assert tuple(np.asarray(solution.stats["inertia"])) == (velocities, pressures, 0)
    assert_solves(a, solution.value, rhs, reference=np.linalg.solve(a.toarray(), rhs))


def test_each_call_of_a_parallel_batch_runs_on_one_thread(getkey, monkeypatch):
    """Inside a parallel batch the pool's threads already use the cores: every PARDISO call
    of the batch (the first one too) runs on one MKL thread; alone, on `num_threads()`."""
    from lineax_sparse.backends.pardiso import library

    asked = []
    real = library.local_threads

    def recording(count):
        asked.append(count)
        return real(count)

    monkeypatch.setattr(library, "local_threads", recording)
    a, tags = SYSTEMS["kkt"][0](), SYSTEMS["kkt"][1]
    op = operator(a, tags)
    b = random_vector(getkey(), a.shape[0], jnp.result_type(a.dtype))

    def solve(scale):
        return lxs.linear_solve(with_data(op, op.data * scale), b, lxs.Pardiso()).value

    try:
        lxs.set_num_threads(2)
        lxs.clear_cache()
        jax.vmap(solve)(jnp.asarray([1.0, 1.5, 2.0]))
        assert asked and set(asked) == {1}
        asked.clear()
        lxs.clear_cache()
        solve(jnp.asarray(1.25))
        assert asked and set(asked) == {2}
    finally:
        lxs.set_num_threads(None)
