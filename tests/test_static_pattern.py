"""Static sparsity patterns: only values cross to the host, with the same answers.

Every solver is run on the same uncoalesced (FEM-style, with duplicates and padding) matrix
through both data paths: the static one (indices concrete when the operator is built) and
the general one (indices traced inside `jit`), and both against dense JAX.
"""

from __future__ import annotations

import gc
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs
from lineax_sparse._host import patterns as _pattern

from . import helpers


PSD = lx.positive_semidefinite_tag
#: The solvers of the grid (`Materialise` passes sparse operators through): every one takes
#: the symmetric positive definite matrix below, with the tags of `GridCase.spd_tags`.
SOLVERS = helpers.grid(materialise=False)
DIRECT = helpers.grid(materialise=False, direct_only=True)


def fem_coo(nelx: int = 12, nely: int = 5, padding: int = 3):
    """Uncoalesced SPD stiffness entries plus `padding` padding entries holding NaN."""
    coo = helpers.elasticity2d(nelx, nely)
    n = coo.shape[0]
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32)
    data = coo.data.copy()
    if padding:
        indices = np.concatenate([indices, np.full((padding, 2), n, np.int32)])
        data = np.concatenate([data, np.full(padding, np.nan)])
    return data, indices, n


def dense(data, indices, n):
    keep = (indices < n).all(axis=1)
    return jnp.zeros((n, n)).at[indices[keep, 0], indices[keep, 1]].add(data[keep])


@pytest.mark.parametrize("case", SOLVERS)
def test_static_and_traced_paths_agree_with_dense(case, getkey):
    solver, tags = case.solver, case.spd_tags
    data, indices, n = fem_coo()
    b = jax.random.normal(getkey(), (n,))
    expected = jnp.linalg.solve(dense(jnp.asarray(data), indices, n), b)

    @jax.jit
    def static(values, b):
        op = lxs.SparseOperator(jsparse.BCOO((values, indices), shape=(n, n)), tags)
        assert op.pattern is not None  # NumPy indices: concrete at trace time
        return lx.linear_solve(op, b, solver=solver).value

    @jax.jit
    def traced(values, index_array, b):
        op = lxs.SparseOperator(jsparse.BCOO((values, index_array), shape=(n, n)), tags)
        assert op.pattern is None
        return lx.linear_solve(op, b, solver=solver).value

    factor = 1e3 if case.row.iterative else 1.0
    helpers.assert_close(static(jnp.asarray(data), b), expected, jnp.float64, factor)
    helpers.assert_close(traced(jnp.asarray(data), indices, b), expected, jnp.float64, factor)


@pytest.mark.parametrize("case", DIRECT)
def test_static_gradients_match_dense(case, getkey):
    solver, tags = case.solver, case.spd_tags
    data, indices, n = fem_coo(8, 4, padding=2)
    values = jnp.asarray(np.nan_to_num(data))  # a NaN's gradient would be NaN in the reference
    b = jax.random.normal(getkey(), (n,))
    w = jax.random.normal(getkey(), (n,))
    pattern = lxs.static_pattern(indices, n)

    def loss(values, b):
        op = lxs.SparseOperator.from_pattern(pattern, values, tags)
        x = lx.linear_solve(op, b, solver=solver).value
        return w @ x + 0.5 * x @ x

    def reference(values, b):
        x = jnp.linalg.solve(dense(values, indices, n), b)
        return w @ x + 0.5 * x @ x

    got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(values, b)
    want = jax.value_and_grad(reference, argnums=(0, 1))(values, b)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
    real = (indices < n).all(axis=1)
    np.testing.assert_allclose(
        np.asarray(got[1][0])[real], np.asarray(want[1][0])[real], rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose(got[1][1], want[1][1], rtol=1e-8)
    # jvp with respect to the values, against dense
    tangent = jax.random.normal(getkey(), values.shape)
    _, jvp = jax.jvp(lambda v: loss(v, b), (values,), (tangent,))
    _, jvp_ref = jax.jvp(lambda v: reference(v, b), (values,), (tangent,))
    np.testing.assert_allclose(jvp, jvp_ref, rtol=1e-8)


def test_vmap_over_values_with_a_static_pattern(getkey):
    data, indices, n = fem_coo(8, 4, padding=0)
    pattern = lxs.static_pattern(indices, n)
    scales = jnp.array([1.0, 2.0, 0.5])
    b = jax.random.normal(getkey(), (n,))

    def solve(scale):
        op = lxs.SparseOperator.from_pattern(pattern, scale * jnp.asarray(data), PSD)
        return lx.linear_solve(op, b, solver=lxs.Cholmod()).value

    lxs.clear_cache()
    got = jax.jit(jax.vmap(solve))(scales).block_until_ready()
    assert lxs.cache_info().host_calls == 1
    for k, scale in enumerate(scales):
        expected = jnp.linalg.solve(scale * dense(jnp.asarray(data), indices, n), b)
        helpers.assert_close(got[k], expected, jnp.float64)


def test_pattern_survives_jit_boundaries_and_is_interned():
    data, indices, n = fem_coo(6, 3, padding=0)
    first = lxs.static_pattern(indices, n)
    assert lxs.static_pattern(indices.copy(), n) is first
    assert lxs.static_pattern(indices.astype(np.int64), n) is not first  # another dtype
    op = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(data), jnp.asarray(indices)), shape=(n, n)))
    assert op.pattern is first
    traces = []

    @jax.jit
    def inside(op, b):
        traces.append(None)
        assert op.pattern is first  # a static field: still there, though `indices` is traced
        return lx.linear_solve(op, b, solver=lxs.SuperLU()).value

    b = jnp.ones(n)
    inside(op, b)
    other = lxs.SparseOperator.from_pattern(first, 2 * jnp.asarray(data))
    inside(other, b)
    assert len(traces) == 1  # same pattern object, same compiled function
    assert hash(first) == hash(lxs.static_pattern(indices, n))


def test_only_values_cross_and_verification_uses_values():
    """A second matrix of the same pattern factorizes; the same values hit."""
    data, indices, n = fem_coo(6, 3, padding=0)
    pattern = lxs.static_pattern(indices, n)
    solve = jax.jit(
        lambda v, b: (
            lx.linear_solve(
                lxs.SparseOperator.from_pattern(pattern, v, PSD), b, solver=lxs.Cholmod()
            ).value
        )
    )
    b = jnp.ones(n)
    values = jnp.asarray(data)
    solve(values, b).block_until_ready()  # dispatch is asynchronous: count after each
    solve(values, 2 * b).block_until_ready()
    solve(1.5 * values, b).block_until_ready()
    info = lxs.cache_info()
    assert (info.factorizations, info.hits, info.analyses) == (2, 1, 1)


def test_self_adjoint_backward_solve_reuses_the_forward_solution():
    """Compliance f^T u: the adjoint right-hand side is f again, so the backward solve is
    answered from the forward one; a general loss is not."""
    data, indices, n = fem_coo(10, 4, padding=0)
    pattern = lxs.static_pattern(indices, n)
    f = jnp.zeros(n).at[1].set(-1.0)

    def compliance(values):
        op = lxs.SparseOperator.from_pattern(pattern, values, PSD)
        return f @ lx.linear_solve(op, f, solver=lxs.Cholmod()).value

    values = jnp.asarray(data)
    c, g = jax.block_until_ready(jax.jit(jax.value_and_grad(compliance))(values))
    info = lxs.cache_info()
    assert info.reused_solutions == 1 and info.host_calls == 2
    u = jnp.linalg.solve(dense(values, indices, n), f)
    np.testing.assert_allclose(c, f @ u, rtol=1e-10)
    np.testing.assert_allclose(g, -u[indices[:, 0]] * u[indices[:, 1]], rtol=1e-8, atol=1e-14)

    lxs.clear_cache()
    w = jnp.arange(n, dtype=jnp.float64)
    jax.jit(
        jax.grad(
            lambda v: (
                w
                @ lx.linear_solve(
                    lxs.SparseOperator.from_pattern(pattern, v, PSD), f, solver=lxs.Cholmod()
                ).value
            )
        )
    )(values).block_until_ready()
    assert lxs.cache_info().reused_solutions == 0


def test_nonsymmetric_values_on_a_static_pattern_are_reported():
    data, indices, n = fem_coo(6, 3, padding=0)
    values = jnp.asarray(data).at[5].add(1e-3)  # breaks the symmetry of one pair
    op = lxs.SparseOperator(jsparse.BCOO((values, indices), shape=(n, n)), PSD)
    assert op.pattern is not None
    solution = lx.linear_solve(op, jnp.ones(n), solver=lxs.Cholmod(), throw=False)
    assert solution.result == lx.RESULTS.singular
    assert not np.any(np.isfinite(np.asarray(solution.value)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex128, jnp.float16])
def test_static_pattern_dtypes(dtype, getkey):
    matrix = helpers.random_sparse(
        30, 0.1, np.complex128 if dtype == jnp.complex128 else np.float64, seed=3
    )
    coo = sp.coo_matrix(matrix)
    # duplicate every entry: half the value each
    indices = np.concatenate([np.stack([coo.row, coo.col], 1)] * 2).astype(np.int32)
    data = jnp.asarray(np.concatenate([coo.data / 2, coo.data / 2])).astype(dtype)
    op = lxs.SparseOperator(jsparse.BCOO((data, indices), shape=(30, 30)))
    assert op.pattern is not None
    b = jnp.ones(30, dtype)
    x = lx.linear_solve(op, b, solver=lxs.SuperLU()).value
    assert x.dtype == dtype
    expected = np.linalg.solve(matrix.toarray(), np.ones(30))
    tolerance = {jnp.float16: 2e-2, jnp.float32: 1e-4, jnp.complex128: 1e-10}[dtype]
    np.testing.assert_allclose(
        np.asarray(x, np.complex128), expected, rtol=0, atol=tolerance * np.abs(expected).max()
    )


def test_state_with_a_static_pattern_is_reused_and_checked():
    data, indices, n = fem_coo(6, 3, padding=0)
    op = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(data), indices), shape=(n, n)), PSD)
    solver = lxs.Cholmod()
    state = solver.init(op, {})
    # The operator's COO values (the host sums them), beside its indices (which cross only
    # if the pattern is released before the solve).
    assert op.pattern.nse > op.pattern.nnz  # duplicates: the state holds them unsummed
    assert state.data.shape == (op.pattern.nse,) and state.pattern == op.pattern.key
    assert state.indices is op.indices
    x = lx.linear_solve(op, jnp.ones(n), solver=solver, state=state).value
    np.testing.assert_allclose(op.mv(x), jnp.ones(n), rtol=1e-9, atol=1e-9)
    bad = lxs.HostSolverState(
        state.handle,
        state.data[:-1],
        state.indices,
        None,
        n,
        state.spec,
        False,
        False,
        state.pattern,
    )
    with pytest.raises(ValueError, match="as many entries"):
        lx.linear_solve(op, jnp.ones(n), solver=solver, state=bad)


def test_static_pattern_errors():
    with pytest.raises(ValueError, match="outside"):
        lxs.static_pattern(np.array([[0, 5]]), 3)
    with pytest.raises(ValueError, match="size"):
        lxs.static_pattern(np.array([[0, 1]]), -1)
    with pytest.raises(ValueError, match="shape"):
        lxs.static_pattern(np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="tracer"):
        jax.jit(lambda i: lxs.static_pattern(i, 3))(jnp.zeros((2, 2), jnp.int32))
    pattern = lxs.static_pattern(np.array([[0, 0], [1, 1]]), 2)
    with pytest.raises(ValueError, match="one value per index pair"):
        lxs.SparseOperator.from_pattern(pattern, jnp.ones(3))
    with pytest.raises(ValueError, match="floating or complex"):
        lxs.SparseOperator.from_pattern(pattern, jnp.ones(2, jnp.int32))
    with pytest.raises(ValueError, match="static_pattern"):
        lxs.SparseOperator.from_pattern(np.array([[0, 0]]), jnp.ones(1))


def test_amg_nonsymmetric_static_pattern(getkey):
    matrix = helpers.convection_diffusion2d(12)
    op = helpers.operator(matrix)
    assert op.pattern is not None
    b = jax.random.normal(getkey(), (matrix.shape[0],))
    x = lx.linear_solve(op, b, solver=lxs.AMG(krylov="gmres", rtol=1e-10, atol=0.0)).value
    np.testing.assert_allclose(
        np.asarray(matrix @ np.asarray(x)),
        np.asarray(b),
        rtol=0,
        atol=1e-8 * float(jnp.linalg.norm(b)),
    )


@pytest.mark.parametrize("case", DIRECT)
def test_subnormal_duplicates_are_never_a_wrong_success(case):
    """XLA flushes subnormal sums to zero: a matrix at the 1e-310 scale assembled from
    duplicates is reported, never solved wrongly; without duplicates it solves (gathered)."""
    solver, tags = case.solver, case.spd_tags
    data, indices, n = fem_coo(6, 3, padding=0)
    tiny = jnp.asarray(data * 1e-310)
    b = jnp.asarray(np.linspace(1.0, 2.0, n) * 1e-310)
    op = lxs.SparseOperator(jsparse.BCOO((tiny, indices), shape=(n, n)), tags)
    solution = lx.linear_solve(op, b, solver=solver, throw=False)
    if solution.result == lx.RESULTS.successful:  # only if nothing was flushed
        expected = np.linalg.solve(
            np.asarray(dense(jnp.asarray(data), indices, n)), np.linspace(1.0, 2.0, n)
        )
        np.testing.assert_allclose(solution.value, expected, rtol=1e-6)
    else:
        assert solution.result == lx.RESULTS.singular
    coalesced = sp.coo_matrix((data * 1e-310, (indices[:, 0], indices[:, 1])), shape=(n, n)).tocsr()
    op = lxs.SparseOperator.from_scipy(coalesced, tags)
    assert op.pattern.source is not None  # no duplicates: gathered
    x = lx.linear_solve(op, b, solver=solver).value
    unscaled = sp.coo_matrix((data, (indices[:, 0], indices[:, 1])), shape=(n, n)).toarray()
    expected = np.linalg.solve(unscaled, np.linspace(1.0, 2.0, n))
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_xla_validity_flag_is_per_matrix_under_vmap(getkey):
    """XLA's finite-and-exactly-symmetric flag only lets the host skip its tests: in one
    vmapped batch, a symmetric, a non-symmetric and a NaN matrix get their own results."""
    data, indices, n = fem_coo(6, 3, padding=0)
    pattern = lxs.static_pattern(indices, n)
    values = jnp.asarray(data)
    pair = int(np.flatnonzero(indices[:, 0] != indices[:, 1])[0])
    batch = jnp.stack([values, values.at[pair].add(1e-3), values.at[0].set(jnp.nan)])
    b = jax.random.normal(getkey(), (n,))

    def solve(v):
        op = lxs.SparseOperator.from_pattern(pattern, v, PSD)
        sol = lx.linear_solve(op, b, solver=lxs.Cholmod(), throw=False)
        return sol.value, sol.result._value

    x, results = jax.jit(jax.vmap(solve))(batch)
    expected = jnp.linalg.solve(dense(values, indices, n), b)
    helpers.assert_close(x[0], expected, jnp.float64)
    assert int(results[0]) == int(lx.RESULTS.successful._value)
    assert int(results[1]) == int(lx.RESULTS.singular._value)
    assert int(results[2]) == int(lx.RESULTS.nonfinite_input._value)


def test_transposed_solve_of_a_nonsymmetric_matrix_is_never_answered_from_memory(getkey):
    """`f @ x` with `A x = f`: the adjoint right-hand side is `f` again, but for a
    non-symmetric A the transposed solve is another question; its gradient must match."""
    matrix = helpers.convection_diffusion2d(8)
    n = matrix.shape[0]
    coo = sp.coo_matrix(matrix)
    indices = np.stack([coo.row, coo.col], 1).astype(np.int32)
    values = jnp.asarray(coo.data)
    f = jax.random.normal(getkey(), (n,))

    def loss(v):
        op = lxs.SparseOperator(jsparse.BCOO((v, indices), shape=(n, n)))
        return f @ lx.linear_solve(op, f, solver=lxs.SuperLU()).value

    def reference(v):
        return f @ jnp.linalg.solve(dense(v, indices, n), f)

    got = jax.block_until_ready(jax.jit(jax.grad(loss))(values))
    assert lxs.cache_info().reused_solutions == 0
    np.testing.assert_allclose(got, jax.grad(reference)(values), rtol=1e-8, atol=1e-12)


# ------------------------------------------- identity of a pattern, and who holds it


def test_a_general_path_state_never_takes_a_static_entry(getkey):
    """A traced-index state of matrix B with the handle of a static entry of matrix A, and
    B's COO values equal to A's CSC-ordered values at A's index array: still B's answer."""
    matrix = helpers.random_sparse(30, 0.1, np.float64, seed=31)  # CSR: COO in row order
    op_a = helpers.operator(matrix)
    assert op_a.pattern is not None and op_a.pattern.source is not None  # a permutation
    solver = lxs.SuperLU()
    b = jax.random.normal(getkey(), (30,))
    state_a = solver.init(op_a, {})
    lx.linear_solve(op_a, b, solver=solver, state=state_a).value.block_until_ready()
    # A's values in CSC order: B puts them at A's COO positions.
    csc_values = state_a.data[jnp.asarray(op_a.pattern.source)]

    @jax.jit
    def solve_b(values, indices, handle):
        op_b = lxs.SparseOperator(jsparse.BCOO((values, indices), shape=(30, 30)))
        state = solver.init(op_b, {})
        assert state.pattern is None  # traced indices: the general path
        state = eqx.tree_at(lambda s: s.handle, state, handle)  # A's handle
        return lx.linear_solve(op_b, b, solver=solver, state=state).value

    x = solve_b(csc_values, op_a.indices, state_a.handle)
    expected = jnp.linalg.solve(dense(csc_values, np.asarray(op_a.indices), 30), b)
    assert not np.allclose(expected, jnp.linalg.solve(op_a.as_matrix(), b))  # B is not A
    helpers.assert_close(x, expected, jnp.float64)


def _renumbered(op, seed=0):
    permutation = np.random.default_rng(seed).permutation(op.size)
    indices = jnp.asarray(permutation[np.asarray(op.indices)], op.indices.dtype)
    return eqx.tree_at(lambda o: o.indices, op, indices), indices


@pytest.mark.parametrize("case", SOLVERS)
def test_replaced_indices_of_a_static_operator_are_an_error(case, getkey):
    """`eqx.tree_at` on `indices` changes `mv`; the solvers must not solve the old pattern."""
    solver, tags = case.solver, case.spd_tags
    data, indices, n = fem_coo(padding=0)
    op = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(data), indices), shape=(n, n)), tags)
    renumbered, new_indices = _renumbered(op)
    b = jax.random.normal(getkey(), (n,))
    # Concrete indices: at trace time, for the solvers and for the transpose.
    with pytest.raises(ValueError, match="replaced"):
        solver.init(renumbered, {})
    with pytest.raises(ValueError, match="replaced"):
        renumbered.transpose()
    # Traced indices (the operator is an argument of `linear_solve`'s jit): at run time.
    with pytest.raises(Exception, match="replaced"):
        lx.linear_solve(renumbered, b, solver=solver).value.block_until_ready()
    with pytest.raises(Exception, match="replaced"):
        jax.jit(lambda o: o.transpose().data)(renumbered).block_until_ready()
    # What the error says to do works, and the unchanged operator is not refused.
    fresh = lxs.SparseOperator(jsparse.BCOO((op.data, new_indices), shape=(n, n)), tags)
    expected = jnp.linalg.solve(fresh.as_matrix(), b)
    x = lx.linear_solve(fresh, b, solver=solver).value
    np.testing.assert_allclose(x, expected, rtol=1e-8, atol=1e-10 * float(jnp.abs(expected).max()))
    same = eqx.tree_at(lambda o: o.indices, op, jnp.array(op.indices))  # equal, new array
    np.testing.assert_allclose(
        lx.linear_solve(same, b, solver=solver).value,
        jnp.linalg.solve(op.as_matrix(), b),
        rtol=1e-8,
        atol=1e-10,
    )


def _live_patterns(refs):
    gc.collect()
    return [ref() for ref in refs if ref() is not None]


def _solve_distinct_patterns(count: int) -> list[weakref.ref]:
    """Solve `count` matrices of distinct patterns through `lx.linear_solve`, each with an
    operator dropped afterwards (in a frame of its own: `eqx.error_if` reads its caller's
    `f_locals`, whose snapshot would otherwise keep the last operator alive)."""
    n = 40
    b = jnp.ones(n)
    refs = []
    for k in range(count):
        offset = 1 + k % (n - 1)
        extra = 1 + (k // (n - 1))
        matrix = sp.diags(
            [np.full(n, 8.0), np.ones(n - offset), np.ones(n - offset), np.ones(n - extra)],
            [0, offset, -offset, -extra] if extra != offset else [0, offset, -offset, -n + 1],
        )
        op = helpers.operator(matrix.tocsr())
        refs.append(weakref.ref(op.pattern))
        lx.linear_solve(op, b, solver=lxs.SuperLU()).value.block_until_ready()
    return refs


@pytest.mark.parametrize(
    "count",
    [40, pytest.param(200, marks=pytest.mark.slow)],  # 200: 50-120 s of compiling
)
def test_patterns_are_released_by_the_caches_that_hold_them(count):
    """Operators passed through `lx.linear_solve` (a jit whose treedefs JAX keeps in caches
    that `jax.clear_caches` does not empty) hold only a key: after the operators are
    dropped, `lxs.clear_cache()` and `jax.clear_caches()` release every pattern."""
    refs = _solve_distinct_patterns(count)
    live = _live_patterns(refs)  # held by the compiled programs that solve with them
    assert len({pattern.key for pattern in live}) > count // 2  # distinct patterns
    del live
    lxs.clear_cache()
    jax.clear_caches()
    assert _live_patterns(refs) == []
    assert _pattern.held_nbytes() == 0


def test_an_operator_keeps_its_pattern_and_its_copies_find_it(getkey):
    """The operator built from the indices holds its pattern across `clear_cache` and
    `jax.clear_caches`; copies made by transformations refer to it by key."""
    data, indices, n = fem_coo(padding=0)
    op = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(data), indices), shape=(n, n)), PSD)
    copy = jax.tree.map(lambda leaf: leaf, op)
    pattern = op.pattern
    lxs.clear_cache()
    jax.clear_caches()
    gc.collect()
    assert copy.pattern is pattern and op.pattern_key.resolve() is pattern
    b = jax.random.normal(getkey(), (n,))
    x = lx.linear_solve(copy, b, solver=lxs.Cholmod()).value
    helpers.assert_close(x, jnp.linalg.solve(dense(jnp.asarray(data), indices, n), b), jnp.float64)


def test_patterns_held_by_nothing_else_are_released_by_clear_cache():
    """Operators built and dropped without a solve: at most `PATTERNS_HELD` recent patterns
    are kept (within the budget), and `lxs.clear_cache()` releases them."""
    refs = []
    for k in range(40):
        op = helpers.operator(helpers.random_sparse(30, 0.1, np.float64, seed=100 + k))
        refs.append(weakref.ref(op.pattern))
        refs.append(weakref.ref(op.transpose().pattern))
    del op
    assert len(_live_patterns(refs)) <= _pattern.PATTERNS_HELD
    lxs.clear_cache()
    assert _live_patterns(refs) == []


def test_a_released_pattern_is_interned_again_and_solves(getkey):
    """A state kept across `clear_cache` and `jax.clear_caches` (its pattern held nowhere)
    still solves: its indices cross to the host once, which interns the pattern again."""
    data, indices, n = fem_coo(padding=2)
    built = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(data), indices), shape=(n, n)), PSD)
    solver = lxs.Cholmod()
    state = solver.init(built, {})
    key = state.pattern
    ref = weakref.ref(built.pattern)
    # A copy (as transformations make) holds the key only; the operator it was built as
    # holds the pattern itself, and is dropped here.
    op = jax.tree.map(lambda leaf: leaf, built)
    del built
    b = jax.random.normal(getkey(), (n,))
    expected = jnp.linalg.solve(dense(jnp.asarray(data), indices, n), b)
    lxs.clear_cache()
    jax.clear_caches()
    assert _live_patterns([ref]) == [] and key.resolve() is None
    x = lx.linear_solve(op, b, solver=solver, state=state).value
    helpers.assert_close(x, expected, jnp.float64)
    # Through `jax.grad` too (the backward pass traced after the release).
    lxs.clear_cache()
    jax.clear_caches()
    grad = jax.grad(lambda v: jnp.sum(lx.linear_solve(op, v, solver=solver, state=state).value))(b)
    helpers.assert_close(
        grad, jnp.linalg.solve(dense(jnp.asarray(data), indices, n).T, jnp.ones(n)), jnp.float64
    )
