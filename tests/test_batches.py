"""Batches on the pool's threads: a vmapped batch of distinct matrices gives the sequential
batch's answers and statuses bit for bit (singular and NaN members included), under any
number of threads; native objects are released on the thread that made them."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs
from lineax_sparse._host import owner, pool

from .helpers import elasticity2d, operator, poisson2d, random_vector, with_data


PSD = (lx.symmetric_tag, lx.positive_semidefinite_tag)


@pytest.fixture(autouse=True)
def default_threads():
    yield
    lxs.set_num_threads(None)


def _batch(op: lxs.SparseOperator, count: int) -> jnp.ndarray:
    """`count` value arrays of `op`'s pattern: scaled copies, one singular (a zero row and
    column: its diagonal entry and every entry of row/column 0 zeroed), one with a NaN."""
    rows, cols = np.asarray(op.indices).T
    datas = np.stack([np.asarray(op.data) * (1.0 + 0.25 * i) for i in range(count)])
    datas[1, (rows == 0) | (cols == 0)] = 0.0  # singular
    datas[2, 5] = np.nan  # non-finite input
    return jnp.asarray(datas)


def _run(solver, op, datas, b, threads):
    lxs.clear_cache()
    lxs.set_num_threads(threads)

    def one(data):
        sol = lx.linear_solve(with_data(op, data), b, solver=solver, throw=False)
        return sol.value, sol.result._value, sol.stats["relative_residual"]

    return [np.asarray(a) for a in jax.jit(jax.vmap(one))(datas)]


@pytest.mark.parametrize(
    "solver",
    # `dense_below=0`: the host path (this system is small enough for the dense one).
    [lxs.SuperLU(), lxs.Cholmod(), lxs.AutoSparse(dense_below=0)],
    ids=["superlu", "cholmod", "auto"],
)
def test_a_parallel_batch_gives_the_sequential_answers_bit_for_bit(solver, getkey):
    op = operator(elasticity2d(16, 8), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    datas = _batch(op, 8)
    sequential = _run(solver, op, datas, b, 1)
    parallel = _run(solver, op, datas, b, 2)
    for got, expected in zip(parallel, sequential, strict=True):
        assert np.array_equal(got, expected, equal_nan=True)
    x, result, _ = parallel
    singular = lx.RESULTS.singular._value
    nonfinite = lx.RESULTS.nonfinite_input._value
    assert result[1] == singular
    assert result[2] == nonfinite and np.all(np.isnan(x[1])) and np.all(np.isnan(x[2]))
    dense = np.asarray(op.as_matrix())
    for i in (0, 3, 4, 5, 6, 7):
        assert result[i] == 0
        expected = np.linalg.solve(dense * (1.0 + 0.25 * i), np.asarray(b))
        assert np.max(np.abs(x[i] - expected)) <= 1e-9 * np.max(np.abs(expected))
    info = lxs.cache_info()
    assert info.analyses == 1  # one symbolic analysis for the whole batch


def test_independent_matrices_of_different_patterns_in_one_vmap(getkey):
    """A vmap over whole operators (indices batched too): each matrix its own pattern."""
    ops = [operator(poisson2d(m)) for m in (6, 6)]
    first = ops[0]
    shifted = np.asarray(first.indices).copy()
    # The second pattern: same size and count, one off-diagonal entry moved to the diagonal
    # of another row (still a valid, nonsingular matrix after the diagonal shift).
    shifted[1] = [3, 3]
    data = np.stack([np.asarray(first.data), np.asarray(first.data) * 2.0])
    indices = np.stack([np.asarray(first.indices), shifted])
    b = random_vector(getkey(), first.size, jnp.float64)

    def one(d, i):
        op = lxs.SparseOperator(jsparse.BCOO((d, i), shape=(first.size,) * 2))
        return lx.linear_solve(op, b, solver=lxs.SuperLU()).value

    results = {}
    handed = []  # how many tasks each parallel run was given
    original = pool.run_parallel

    def spy(tasks, threads=None):
        handed.append(len(tasks))
        return original(tasks, threads)

    for threads in (1, 2):
        lxs.clear_cache()
        lxs.set_num_threads(threads)
        pool.run_parallel = spy
        try:
            results[threads] = np.asarray(jax.jit(jax.vmap(one))(data, indices))
        finally:
            pool.run_parallel = original
    assert np.array_equal(results[1], results[2])
    # Each pattern's first factorization computes its ordering; those of different
    # patterns are handed to the pool together (one after another on one thread).
    assert handed == [2]
    for k in range(2):
        dense = np.zeros((first.size, first.size))
        np.add.at(dense, tuple(indices[k].T), data[k])
        expected = np.linalg.solve(dense, np.asarray(b))
        assert np.max(np.abs(results[2][k] - expected)) <= 1e-10 * np.max(np.abs(expected))
    assert lxs.cache_info().analyses == 2


def test_the_pool_runs_on_more_than_one_thread(getkey):
    lxs.set_num_threads(2)
    op = operator(poisson2d(30))
    datas = jnp.stack([op.data * (1.0 + 0.1 * i) for i in range(6)])
    b = random_vector(getkey(), op.size, jnp.float64)
    seen = set()
    original = pool.run_parallel

    def spy(tasks, threads=None):
        outcomes = original(tasks, threads)
        seen.update(worker for _, _, worker in outcomes)
        return outcomes

    pool.run_parallel = spy
    try:
        jax.block_until_ready(
            jax.vmap(lambda d: lx.linear_solve(with_data(op, d), b, lxs.SuperLU()).value)(datas)
        )
    finally:
        pool.run_parallel = original
    assert seen == {0, 1}  # both threads took some of the factorizations


def test_native_objects_are_released_on_the_thread_that_made_them():
    from lineax_sparse._host.entry import FactorEntry

    released = []

    class Native:
        def __del__(self):
            released.append(threading.current_thread().name)

    def make():
        return FactorEntry(("superlu", ()), None, False, np.zeros(1), None, Native(), 0, 1)

    entry = owner.wait(owner.submit(1, make), 1)
    owner.run(lambda e: None, entry)  # the owner thread sees it too
    del entry  # dropped here (the main thread): handed over to worker 1
    owner.wait(owner.submit(1, lambda: None), 1)  # worker 1 has run what it was handed
    assert released == ["lineax-sparse-host-1"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_names_its_argument(bad):
    with pytest.raises(ValueError, match=r"set_num_threads\(threads=...\)"):
        lxs.set_num_threads(bad)


def test_the_number_of_threads_follows_the_cores_and_the_environment():
    import os
    import subprocess
    import sys

    assert lxs.num_threads() == len(os.sched_getaffinity(0))
    lxs.set_num_threads(3)
    assert lxs.num_threads() == 3
    code = "import lineax_sparse as lxs; print(lxs.num_threads())"
    env = dict(os.environ, LINEAX_SPARSE_NUM_THREADS="5")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "5", out.stderr
    env["LINEAX_SPARSE_NUM_THREADS"] = "zero"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "LINEAX_SPARSE_NUM_THREADS" in out.stderr
