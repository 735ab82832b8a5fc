"""Cholmod and AutoSparse specifics; the shared grid is in test_solvers.py."""

import cvxopt
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
from cvxopt import cholmod

import lineax_sparse as lxs
from lineax_sparse.backends.numerics import NormBound
from lineax_sparse.backends.status import Status

from .helpers import (
    assert_close,
    assert_solves,
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


PSD = lx.positive_semidefinite_tag
CHOLMOD = lxs.Cholmod()


def unchecked(op, b, solver=CHOLMOD):
    return lx.linear_solve(op, b, solver=solver, throw=False)


def _failed(solution, result=lx.RESULTS.singular):
    assert solution.result == result, lx.RESULTS[solution.result]
    assert np.all(np.isnan(solution.value))


@pytest.mark.parametrize("name", ["494_bus", "poisson", "elasticity"])
def test_agrees_with_cvxopt_called_directly(name, getkey):
    dense = matrix(name).tocoo()
    b = random_vector(getkey(), dense.shape[0], jnp.float64)
    x = lx.linear_solve(matrix_operator(name), b, solver=lxs.Cholmod()).value
    native = cvxopt.matrix(np.asarray(b))
    cholmod.linsolve(
        cvxopt.spmatrix(dense.data, dense.row.tolist(), dense.col.tolist(), dense.shape), native
    )
    # 494_bus's condition number is 4e6: an elementwise 1e-9 asked more than it allows.
    native = np.asarray(native).ravel()
    assert_solves(dense, x, b, reference=native, condition=matrix_condition(name))


@pytest.mark.parametrize(
    "options",
    [
        dict(mode="supernodal"),
        dict(mode="simplicial"),
        dict(mode="simplicial", factorization="LDL"),
        dict(mode="auto", factorization="LDL"),
        dict(ordering="natural"),
    ],
)
@pytest.mark.parametrize("name", ["elasticity", "random-hpd", "494_bus"])
def test_modes_and_orderings(options, name, getkey):
    dense = matrix(name)
    b = random_vector(getkey(), dense.shape[0], dense.dtype)
    x = lx.linear_solve(matrix_operator(name), b, solver=lxs.Cholmod(**options)).value
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    assert_solves(dense, x, b, reference=expected, condition=matrix_condition(name))


def test_indefinite_matrix_is_reported_not_solved(getkey):
    op = operator(load("hangGlider_2.mtx"), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    _failed(jax.jit(unchecked)(op, b))
    _failed(unchecked(op, b, lxs.Cholmod(mode="simplicial", factorization="LDL")))
    with pytest.raises(Exception, match="non-finite"):
        lx.linear_solve(op, b, solver=lxs.Cholmod()).value.block_until_ready()


def test_singular_matrix_is_reported(getkey):
    op = operator(load("zenios.mtx"), PSD)
    _failed(unchecked(op, random_vector(getkey(), op.size, jnp.float64)))
    # A pure-Neumann Laplacian: singular, positive semidefinite, factors with noise pivots.
    path = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(50, 50)).tolil()
    path[0, 0] = path[49, 49] = 1.0
    laplacian = sp.kron(sp.eye_array(50), path) + sp.kron(path, sp.eye_array(50))
    for solver in (lxs.Cholmod(), lxs.Cholmod(mode="simplicial", factorization="LDL")):
        _failed(unchecked(operator(laplacian.tocsr(), PSD), jnp.ones(2500), solver))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_values_are_reported(bad, getkey):
    op = matrix_operator("random-spd")
    # Keep the values symmetric so that only finiteness is at fault.
    diagonal = int(jnp.flatnonzero(op.indices[:, 0] == op.indices[:, 1])[0])
    data = op.data.at[diagonal].set(bad)
    b = random_vector(getkey(), op.size, jnp.float64)
    _failed(jax.jit(lambda d: unchecked(with_data(op, d), b))(data), lx.RESULTS.nonfinite_input)


def test_values_that_are_not_symmetric_are_reported(getkey):
    """CHOLMOD alone would silently use the lower triangle and return a wrong answer."""
    dense = random_sparse(40, 0.1, np.float64, seed=50)  # not symmetric
    op = operator(dense, PSD)
    _failed(unchecked(op, random_vector(getkey(), 40, jnp.float64)))
    # Rounding-level asymmetry from assembly is accepted.
    spd = matrix("random-spd").tocoo()
    noisy = spd.data * (1 + 1e-15 * np.cos(np.arange(spd.nnz)))
    op = operator(sp.coo_matrix((noisy, (spd.row, spd.col)), shape=spd.shape), PSD)
    assert unchecked(op, jnp.ones(op.size)).result == lx.RESULTS.successful


def test_requires_the_positive_semidefinite_tag():
    op = operator(matrix("random-spd"))
    with pytest.raises(ValueError, match="positive_semidefinite_tag.*SuperLU"):
        lx.linear_solve(op, jnp.ones(op.size), solver=lxs.Cholmod())
    negative = operator(-matrix("random-spd"), lx.negative_semidefinite_tag)
    with pytest.raises(ValueError, match="negated"):
        lx.linear_solve(negative, jnp.ones(op.size), solver=lxs.Cholmod())


def test_options_are_checked():
    with pytest.raises(ValueError, match="mode"):
        lxs.Cholmod(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factorization"):
        lxs.Cholmod(factorization="LU")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ordering"):
        lxs.Cholmod(ordering="metis")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="simplicial"):
        lxs.Cholmod(mode="supernodal", factorization="LDL")


def test_several_live_factors_of_one_pattern(getkey):
    """`numeric` overwrites its factor in place: live factors must never share one."""
    op = operator(elasticity2d(30, 10), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    solver = lxs.Cholmod()
    reference = np.linalg.solve(np.asarray(op.as_matrix()), np.asarray(b))

    def solve_all(scales):
        states = [solver.init(with_data(op, op.data * s), {}) for s in scales]
        for _ in range(2):
            for s, state in zip(scales, states, strict=True):
                x = lx.linear_solve(op, b, solver=solver, state=state).value
                assert_close(x * s, reference, jnp.float64, factor=100)

    # One factorization per pattern is kept until a matrix comes back: the second round's
    # first matrix is a miss, and from then on two matrices of the pattern stay alive
    # (`FACTORS_PER_PATTERN`) and are used in turns.
    solve_all([1.0, 2.0])
    info = lxs.cache_info()
    assert info.factorizations == 3 and info.analyses == 1 and info.misses == 1
    solve_all([1.0, 2.0])
    info = lxs.cache_info()
    assert info.factorizations == 3 and info.misses == 1
    # Three in turns: each new one retires the oldest, whose CHOLMOD object is refactorized
    # for the newcomer; the retired matrix comes back as a miss, never as a wrong answer.
    lxs.clear_cache()
    solve_all([1.0, 2.0, 5.0])
    info = lxs.cache_info()
    assert info.factorizations == 6 and info.misses == 3 and info.analyses == 1


def test_optimization_loop_analyses_the_pattern_once(getkey):
    op = operator(elasticity2d(30, 10), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    loss = jax.jit(
        jax.value_and_grad(
            lambda d: jnp.sum(lx.linear_solve(with_data(op, d), b, solver=lxs.Cholmod()).value ** 2)
        )
    )
    for i in range(6):
        jax.block_until_ready(loss(op.data * (1.0 + 0.1 * i)))
    info = lxs.cache_info()
    assert (info.analyses, info.factorizations, info.misses) == (1, 6, 0)


def test_cvxopt_global_options_are_left_as_the_user_set_them(getkey):
    before = dict(cholmod.options)
    cholmod.options["supernodal"] = 0
    try:
        snapshot = dict(cholmod.options)
        lx.linear_solve(matrix_operator("poisson"), jnp.ones(144), solver=lxs.Cholmod())
        assert dict(cholmod.options) == snapshot
    finally:
        cholmod.options.clear()
        cholmod.options.update(before)


def test_auto_sparse_chooses_by_tags(getkey):
    spd, general = matrix_operator("random-spd"), matrix_operator("random-real")
    auto = lxs.AutoSparse(dense_below=0)  # the host path (these matrices are small)
    assert auto.init(spd, {}).spec[0] == "cholmod"
    assert auto.init(general, {}).spec[0] == "superlu"
    for op, name in ((spd, "random-spd"), (general, "random-real")):
        b = random_vector(getkey(), op.size, jnp.float64)
        g = jax.grad(
            lambda d, v, op=op: jnp.sum(
                lx.linear_solve(with_data(op, d), v, solver=auto).value ** 2
            ),
            argnums=1,
        )(op.data, b)
        dense = matrix(name).toarray()
        x = np.linalg.solve(dense, np.asarray(b))
        assert_close(g, np.linalg.solve(dense.T, 2 * x), jnp.float64)


def test_auto_sparse_fallback(getkey):
    op = operator(load("hangGlider_2.mtx"), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    _failed(unchecked(op, b, lxs.AutoSparse()))
    x = lx.linear_solve(op, b, solver=lxs.AutoSparse(fallback=True)).value
    dense = matrix("hangGlider_2")
    expected = np.linalg.solve(dense.toarray(), np.asarray(b))
    assert_solves(dense, x, b, reference=expected, condition=matrix_condition("hangGlider_2"))
    # A tagged matrix whose values are not symmetric also falls back.
    dense = random_sparse(30, 0.1, np.float64, seed=51)
    x = lx.linear_solve(operator(dense, PSD), jnp.ones(30), solver=lxs.AutoSparse(True)).value
    assert_close(x, np.linalg.solve(dense.toarray(), np.ones(30)), jnp.float64)
    with pytest.raises(ValueError, match="fallback"):
        lxs.AutoSparse(fallback="yes")  # type: ignore[arg-type]


def _neumann_laplacian(m: int) -> sp.csc_matrix:
    path = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m)).tolil()
    path[0, 0] = path[m - 1, m - 1] = 1.0
    return sp.csc_matrix(sp.kron(sp.eye_array(m), path) + sp.kron(path, sp.eye_array(m)))


def _pivot_checks(a: sp.csc_matrix):
    """`(quick, exact, quick norm, exact norm)` of the pivot check, or None if CHOLMOD's
    own factorization fails."""
    from lineax_sparse._host.cache import factor_cache
    from lineax_sparse.backends.cholmod.backend import _column_maxima
    from lineax_sparse.backends.pattern import Pattern

    a = sp.csc_matrix(a)
    a.sum_duplicates()
    a.sort_indices()
    coo = a.tocoo()
    order = np.lexsort((coo.row, coo.col))
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32)[order]
    options = (("factorization", "LL"), ("mode", "auto"), ("ordering", "amd"))
    backend = factor_cache.backend(("cholmod", options))
    pattern = Pattern(a.shape[0], indices)
    analysis = backend.analyse(pattern)
    csc = pattern.csc(pattern.assemble(coo.data[order]))
    typecode = "z" if np.iscomplexobj(csc.data) else "d"
    values = csc.data[analysis.lower]
    if typecode == "z":
        values[analysis.diagonal] = values[analysis.diagonal].real
    template = analysis.template(typecode, values)
    capsule = cholmod.symbolic(template, p=analysis.ordering)
    try:
        cholmod.numeric(template, capsule)
    except ArithmeticError:
        return None
    n = a.shape[0]
    permutation = backend._permutation(capsule, typecode, n)
    pivots = backend._pivots(capsule, typecode, n)
    tolerance = max(n, 100) * np.finfo(np.float64).eps
    column_max, norm = _column_maxima(csc)
    exact = backend._check_pivots(pivots, column_max[permutation], permutation, tolerance)
    quick, quick_norm, _ = backend._pivot_failure(capsule, typecode, pattern, csc, permutation)
    return quick, exact, quick_norm, norm


@pytest.mark.parametrize("name", ["poisson", "elasticity", "random-spd", "494_bus", "hpd"])
def test_quick_pivot_bound_never_accepts_what_the_exact_check_rejects(name):
    """The pivot check's cheap bound (diagonal-based) against the full column maxima."""
    a = matrix("random-hpd" if name == "hpd" else name)
    quick, exact, quick_norm, norm = _pivot_checks(a)
    assert quick is None and exact is None
    assert isinstance(quick_norm, NormBound)  # decided by the bound: no pass over |A|
    assert quick_norm.lower <= norm and quick_norm.exact() == pytest.approx(norm, rel=1e-12)


def test_floating_islands_are_estimated_and_cleared():
    """A random 0/1 SIMP design: floating islands held by E_min = 1e-9 leave pivots of
    6e-10 of their column. They ask for a condition estimate, which clears the matrix."""
    from lineax_sparse._host.cache import factor_cache
    from lineax_sparse.backends.numerics import RCOND_LIMIT
    from lineax_sparse.backends.pattern import Pattern

    rng = np.random.default_rng(3)
    a = elasticity2d(30, 10, density=rng.integers(0, 2, 300) + 1e-9)
    quick, exact, quick_norm, norm = _pivot_checks(a)
    assert quick is None and exact is None and not isinstance(quick_norm, NormBound)
    coo = a.tocoo()
    pattern = Pattern(a.shape[0], np.stack([coo.row, coo.col], 1).astype(np.int32))
    backend = factor_cache.backend(
        ("cholmod", (("mode", "auto"), ("factorization", "LL"), ("ordering", "amd")))
    )
    csc = pattern.csc(pattern.assemble(coo.data))
    factor = backend.factor(pattern, backend.analyse(pattern), csc, None)
    assert factor.condition.rcond is not None and factor.condition.rcond > 100 * RCOND_LIMIT
    x = lx.linear_solve(operator(a, PSD), jnp.ones(a.shape[0]), solver=lxs.Cholmod()).value
    # Condition number 1e13: 1e-4 relative to a dense solve asked more than it allows.
    b = np.ones(a.shape[0])
    assert_solves(a, x, b, reference=np.linalg.solve(a.toarray(), b))


def test_quick_pivot_bound_defers_to_the_exact_check_near_singularity():
    """Neumann Laplacians shifted by rounding-sized multiples of I: positive definite on
    paper, singular to working precision. Where CHOLMOD's L L' succeeds, both checks must
    reject them, the quick one by falling back to the exact one."""
    checked = 0
    for shift in (3e-16, 5e-16, 7e-16, 1e-15):
        outcome = _pivot_checks(_neumann_laplacian(30) + shift * sp.eye_array(900))
        if outcome is None:
            continue
        quick, exact, quick_norm, norm = outcome
        assert exact is not None and exact[0] == Status.SINGULAR
        assert quick == exact and quick_norm == norm
        checked += 1
    assert checked >= 1


def test_backward_error_needs_the_exact_norm_only_when_the_bound_fails():
    from lineax_sparse.backends.numerics import checked_solve

    a = sp.csc_matrix(matrix("poisson"))
    dense = a.toarray()
    rhs = np.random.default_rng(0).standard_normal((a.shape[0], 2))
    exact_calls = []

    def exact():
        exact_calls.append(1)
        return float(np.abs(dense).sum(axis=0).max())

    good = lambda b: np.linalg.solve(dense, b)  # noqa: E731
    bound = NormBound(float(np.abs(a.diagonal()).max()), exact)
    result = checked_solve(good, a, bound, rhs, False, False)
    assert np.all(result.status == 0) and not exact_calls
    # A solution off by 1e-7 relative: its backward error is above the limit when measured
    # with a (much too) small bound, and below it with the exact norm, which must decide.
    noisy = lambda b: np.linalg.solve(dense, b) * (1 + 1e-7)  # noqa: E731
    tiny = NormBound(1e-30, exact)
    result = checked_solve(noisy, a, tiny, rhs, False, False)
    assert exact_calls == [1]
    assert np.all(result.status == 0)
    assert tiny.exact() == exact() and exact_calls == [1, 1]  # cached: one more for `==`
