"""CHOLMOD through ctypes: factorizations and solves of different matrices on several
threads at once, bit for bit the same as on one thread, and the same as cvxopt's calls."""

import ctypes
import threading
import time

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from cvxopt import cholmod

import lineax_sparse as lxs
from lineax_sparse.backends.cholmod import common, engines, native
from lineax_sparse.backends.cholmod.backend import CholmodBackend
from lineax_sparse.backends.cholmod.capsule import capsule_address
from lineax_sparse.backends.pattern import Pattern

from .helpers import elasticity2d, poisson2d


pytestmark = pytest.mark.skipif(
    not native.available(), reason=f"no ctypes CHOLMOD: {native.unavailable_reason()}"
)
#: (mode, factorization): supernodal L L', simplicial L D L', CHOLMOD's choice.
KINDS = [("supernodal", "LL"), ("simplicial", "LDL"), ("auto", "LL")]


def _pattern(matrix: sp.csc_matrix) -> Pattern:
    n = matrix.shape[0]
    columns = np.repeat(np.arange(n), np.diff(matrix.indptr))
    return Pattern(n, np.stack([matrix.indices, columns], axis=1).astype(np.int32))


def _family(count: int, complex_: bool = False) -> tuple[Pattern, list[sp.csc_matrix]]:
    """`count` SPD (HPD) matrices of one pattern: a 2D elasticity matrix with random
    element stiffnesses (a material sweep); made Hermitian with complex entries by a
    unitary diagonal similarity `U^H A U` when `complex_`."""
    rng = np.random.default_rng(7)
    matrices = []
    for _ in range(count):
        a = sp.csc_matrix(elasticity2d(40, 20, density=rng.uniform(0.1, 1.0, 800)))
        if complex_:
            u = sp.diags(np.exp(1j * np.linspace(0.0, 3.0, a.shape[0])))
            a = sp.csc_matrix(u.conj() @ a @ u)
        a.sort_indices()
        matrices.append(a)
    return _pattern(matrices[0]), matrices


def _work(backend, pattern, analysis, matrix, rhs):
    """What a worker does with one matrix: factorize, one-column and block solves."""
    factor = backend.factor(pattern, analysis, matrix, None)
    single = backend.solve(factor, rhs[:, :1].copy(), False, False, None)
    block = backend.solve(factor, rhs.copy(), False, False, None)
    pivots = backend._pivots(factor.native, factor.typecode, matrix.shape[0])
    return single, block, pivots


def _same(got, want):
    """Every array of two `_work` results equal bit for bit."""
    (single, block, pivots), (single_, block_, pivots_) = got, want
    for x, y in zip((*single, *block, pivots), (*single_, *block_, pivots_), strict=True):
        assert np.array_equal(x, y, equal_nan=True)


def test_the_ctypes_path_is_used_and_declared_parallel():
    backend = CholmodBackend("auto", "LL", "amd")
    assert backend._engine is engines.NATIVE and backend.parallel
    assert common.check_layout(native._LIBRARY) is None


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_two_threads_give_the_results_of_one_bit_for_bit(kind, complex_):
    pattern, matrices = _family(8, complex_)
    n = pattern.n
    dtype = np.complex128 if complex_ else np.float64
    rhs = np.random.default_rng(1).standard_normal((n, 7)).astype(dtype)
    backend = CholmodBackend(*kind, "amd")
    analysis = backend.analyse(pattern)
    sequential = [_work(backend, pattern, analysis, a, rhs) for a in matrices]
    for _ in range(3):
        parallel: list = [None] * len(matrices)
        start = threading.Barrier(2)

        def run(first, parallel=parallel, start=start):
            start.wait()
            for i in range(first, len(matrices), 2):
                parallel[i] = _work(backend, pattern, analysis, matrices[i], rhs)

        threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for got, want in zip(parallel, sequential, strict=True):
            _same(got, want)
    for (single, block, _), a in zip(sequential, matrices, strict=True):
        assert np.all(single.status == 0) and np.all(block.status == 0)
        np.testing.assert_allclose(a @ block.solution, rhs, atol=1e-10 * abs(rhs).max())


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_ctypes_and_cvxopt_calls_agree(kind, complex_, monkeypatch):
    """Same CHOLMOD, same lower triangle, same options: the same factor. A one-column solve
    takes the same path as cvxopt's (bit for bit); a block takes BLAS 3 (round-off)."""
    pattern, matrices = _family(3, complex_)
    n = pattern.n
    dtype = np.complex128 if complex_ else np.float64
    rhs = np.random.default_rng(2).standard_normal((n, 6)).astype(dtype)
    ours = CholmodBackend(*kind, "amd")
    reference = CholmodBackend(*kind, "amd")
    reference._engine = engines.CVXOPT
    reference.parallel = False
    ours_analysis, reference_analysis = ours.analyse(pattern), reference.analyse(pattern)
    for a in matrices:
        native_factor = ours.factor(pattern, ours_analysis, a, None)
        cvxopt_factor = reference.factor(pattern, reference_analysis, a, None)
        assert isinstance(native_factor.native, native.NativeFactor)
        assert not isinstance(cvxopt_factor.native, native.NativeFactor)
        p = ours._permutation(native_factor.native, native_factor.typecode, n)
        q = reference._permutation(cvxopt_factor.native, cvxopt_factor.typecode, n)
        assert np.array_equal(p, q)
        d = ours._pivots(native_factor.native, native_factor.typecode, n)
        e = reference._pivots(cvxopt_factor.native, cvxopt_factor.typecode, n)
        np.testing.assert_allclose(d, e, rtol=4 * np.finfo(float).eps)
        x = ours._cholmod_solve(native_factor, rhs[:, :1])
        y = reference._cholmod_solve(cvxopt_factor, rhs[:, :1])
        assert np.array_equal(x, y)
        x = ours.solve(native_factor, rhs, False, False, None)
        y = reference.solve(cvxopt_factor, rhs, False, False, None)
        scale = np.abs(y.solution).max()
        np.testing.assert_allclose(x.solution, y.solution, rtol=0, atol=1e-12 * scale)
        assert np.array_equal(x.status, y.status)
        assert ours.nbytes(native_factor) == reference.nbytes(cvxopt_factor)


def test_one_symbolic_analysis_serves_every_factor(monkeypatch):
    pattern, matrices = _family(6)
    backend = CholmodBackend("supernodal", "LL", "amd")
    calls = []
    symbolic = cholmod.symbolic
    monkeypatch.setattr(cholmod, "symbolic", lambda *a, **k: calls.append(1) or symbolic(*a, **k))
    analysis = backend.analyse(pattern)
    assert len(calls) == 1
    factors = [backend.factor(pattern, analysis, a, None) for a in matrices]
    assert len(calls) == 1  # the others are copies of it
    addresses = {f.native.address for f in factors}
    assert len(addresses) == len(factors)


def test_native_factors_are_freed_once_and_nothing_leaks():
    """CHOLMOD counts, per `cholmod_common`, the blocks it allocated and has not freed."""
    pattern, matrices = _family(3)
    backend = CholmodBackend("supernodal", "LL", "amd")
    analysis = backend.analyse(pattern)
    counter = common.thread_common(native._LIBRARY).head
    factor = backend.factor(pattern, analysis, matrices[0], None)  # (workspace allocated)
    backend.solve(factor, np.ones((pattern.n, 3)), False, False, None)
    del factor  # its factor object goes back to the pool of one
    before = counter.malloc_count
    made = native.copy(capsule_address(analysis.symbolic), pattern.n)
    assert counter.malloc_count > before
    made.release()
    made.release()  # a second release does nothing
    del made
    assert counter.malloc_count == before
    first = backend.factor(pattern, analysis, matrices[1], None)  # from the pool
    second = backend.factor(pattern, analysis, matrices[2], None)  # a new copy
    assert counter.malloc_count > before
    del first, second  # one goes back to the pool, the other is freed
    assert counter.malloc_count == before


def test_the_gil_is_released_during_a_factorization():
    """A Python thread keeps running while another thread is inside CHOLMOD: the longest
    pause of its ticks is a small part of each call (cvxopt's `numeric`, which holds the
    GIL, leaves a pause of about 0.8 of the call)."""
    assert isinstance(native._LIBRARY, ctypes.CDLL)
    assert not isinstance(native._LIBRARY, ctypes.PyDLL)  # PyDLL would hold the GIL
    matrix = sp.csc_matrix(poisson2d(300))
    matrix.sort_indices()
    pattern = _pattern(matrix)
    backend = CholmodBackend("supernodal", "LL", "amd")
    analysis = backend.analyse(pattern)
    obj = engines.NATIVE.fresh(analysis, "d", None, backend._cholmod_options)
    values = np.ascontiguousarray(matrix.data[analysis.lower])
    ticks, stop = [], threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    calls = []
    for _ in range(5):
        time.sleep(0.01)
        begin = time.perf_counter()
        engines.NATIVE.numeric(obj, analysis, "d", values, backend._cholmod_options)
        calls.append((begin, time.perf_counter()))
    stop.set()
    counter.join()
    pauses = [
        np.diff([begin, *(t for t in ticks if begin < t < end), end]).max() / (end - begin)
        for begin, end in calls
    ]
    assert np.median(pauses) < 0.5, pauses


def test_a_layout_that_does_not_validate_keeps_cvxopts_calls(monkeypatch):
    monkeypatch.setitem(common._DEFAULTS, "metis_nswitch", 3001)
    assert "metis_nswitch" in common.check_layout(native._LIBRARY)
    monkeypatch.setattr(native, "_checked", None)
    monkeypatch.setattr(native, "_LIBRARY", None)
    assert not native.available() and "metis_nswitch" in native.unavailable_reason()
    backend = CholmodBackend("auto", "LL", "amd")
    assert backend._engine is engines.CVXOPT and not backend.parallel
    pattern, matrices = _family(1)
    analysis = backend.analyse(pattern)
    factor = backend.factor(pattern, analysis, matrices[0], None)
    assert not isinstance(factor.native, native.NativeFactor)
    b = np.ones((pattern.n, 2))
    x = backend.solve(factor, b, False, False, None).solution
    np.testing.assert_allclose(matrices[0] @ x, b, atol=1e-9)


def test_a_vmapped_material_sweep_is_the_same_on_one_and_two_threads(monkeypatch):
    workers = set()
    factorize = native.factorize

    def recorded(*args):
        workers.add(threading.get_ident())
        return factorize(*args)

    monkeypatch.setattr(native, "factorize", recorded)
    pattern, matrices = _family(6)
    n = pattern.n
    coo = [a.tocoo() for a in matrices]
    indices = jnp.asarray(np.stack([coo[0].row, coo[0].col], axis=1))
    values = jnp.asarray(np.stack([c.data for c in coo]))
    b = jnp.asarray(np.random.default_rng(3).standard_normal(n))

    @jax.jit
    def sweep(values):
        def one(v):
            op = lxs.SparseOperator(
                jax.experimental.sparse.BCOO((v, indices), shape=(n, n)),
                tags=lx.positive_semidefinite_tag,
            )
            return lx.linear_solve(op, b, solver=lxs.Cholmod()).value

        return jax.vmap(one)(values)

    threads = lxs.num_threads()
    try:
        lxs.set_num_threads(1)
        lxs.clear_cache()
        one = np.asarray(sweep(values))
        alone, workers = workers, set()
        lxs.set_num_threads(2)
        lxs.clear_cache()
        two = np.asarray(sweep(values))
    finally:
        lxs.set_num_threads(threads)
    assert len(alone) == 1 and len(workers) == 2  # the batch ran on the pool's two threads
    assert np.array_equal(one, two)
    for x, a in zip(one, matrices, strict=True):
        np.testing.assert_allclose(a @ x, np.asarray(b), atol=1e-9)


def test_many_threads_at_once_give_the_results_of_one():
    """More threads than `MAX_CONCURRENT` (which bounds the calls inside CHOLMOD at once,
    for cvxopt's OpenBLAS's fixed table of buffers) all finish, with one thread's answers."""
    pattern, matrices = _family(4)
    rhs = np.random.default_rng(4).standard_normal((pattern.n, 3))
    backend = CholmodBackend("supernodal", "LL", "amd")
    analysis = backend.analyse(pattern)
    expected = [_work(backend, pattern, analysis, a, rhs) for a in matrices]
    count = native.MAX_CONCURRENT + 8
    results: list = [None] * count
    start = threading.Barrier(count)

    def run(i):
        start.wait()
        results[i] = _work(backend, pattern, analysis, matrices[i % len(matrices)], rhs)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, got in enumerate(results):
        _same(got, expected[i % len(matrices)])
