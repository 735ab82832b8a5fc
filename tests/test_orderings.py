"""CHOLMOD's fill-reducing orderings: METIS nested dissection and the `"auto"` rule.

Real CHOLMOD throughout; only METIS's entry point is wrapped (to count its calls) and the
rule's thresholds lowered (to reach its nested-dissection branch on small matrices).
"""

import cvxopt
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pymetis
import pytest
import scipy.sparse as sp
from cvxopt import cholmod

import lineax_sparse as lxs
from lineax_sparse._host.cache import factor_cache
from lineax_sparse.backends.cholmod import ordering as backend_module
from lineax_sparse.backends.cholmod.capsule import column_counts as _column_counts
from lineax_sparse.backends.cholmod.ordering import nested_dissection
from lineax_sparse.backends.pattern import Pattern

from .helpers import (
    assert_close,
    assert_solves,
    dense_from_data,
    finite_difference,
    MATRICES,
    matrix,
    matrix_condition,
    operator,
    poisson2d,
    poisson3d,
    random_vector,
    symmetric_direction,
    with_data,
)


PSD = lx.positive_semidefinite_tag
ORDERINGS = ["nested_dissection", "auto"]


def solve(op, b, solver):
    return lx.linear_solve(op, b, solver=solver).value


def analyse(a, ordering: str):
    """`(backend, pattern, analysis)` of the pattern of `a` for `Cholmod(ordering=...)`."""
    coo = sp.coo_matrix(a)
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32)
    backend = factor_cache.backend(
        ("cholmod", (("mode", "auto"), ("factorization", "LL"), ("ordering", ordering)))
    )
    pattern = Pattern(a.shape[0], indices)
    return backend, pattern, backend.analyse(pattern)


def lower_indices(a):
    lower = sp.tril(sp.csc_matrix(a), format="csc")
    lower.sort_indices()
    coo = lower.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64)


def factor_entries(a, p) -> int:
    """nnz(L) (column counts summed) of CHOLMOD's symbolic analysis of `a` with order `p`."""
    backend, _, analysis = analyse(a, "natural")
    with backend._options():
        symbolic = cholmod.symbolic(analysis.templates["d"], p=p)
    return int(_column_counts(symbolic, a.shape[0]).sum())


class CountingMetis:
    """Wraps `pymetis.nested_dissection`, counting calls (METIS still runs)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = pymetis.nested_dissection

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(pymetis, "nested_dissection", counted)


@pytest.fixture
def metis_calls(monkeypatch):
    return CountingMetis(monkeypatch)


@pytest.fixture
def rule_always_tries_metis(monkeypatch):
    """`"auto"` tries nested dissection on every matrix (and keeps the sparser factor)."""
    monkeypatch.setattr(backend_module, "AMD_FLOPS_PER_ENTRY", 0)
    monkeypatch.setattr(backend_module, "AMD_FILL_RATIO", 0)


def test_metis_perm_is_cholmods_p():
    """METIS returns (perm, iperm); CHOLMOD's `p[k]` is the k-th pivot: that is `perm`.
    Passing the inverse instead leaves a valid ordering with far more fill."""
    a = poisson2d(40)
    rows, cols = lower_indices(a)
    p = nested_dissection(a.shape[0], rows, cols)
    assert np.array_equal(np.sort(p), np.arange(a.shape[0]))
    inverse = np.empty_like(p)
    inverse[p] = np.arange(p.size)
    ours = factor_entries(a, cvxopt.matrix(p, tc="i"))
    inverted = factor_entries(a, cvxopt.matrix(inverse, tc="i"))
    assert ours < 0.5 * inverted


def test_ordering_is_deterministic():
    rows, cols = lower_indices(poisson2d(30))
    first = nested_dissection(900, rows, cols)
    assert np.array_equal(first, nested_dissection(900, rows, cols))


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize("name", ["elasticity", "494_bus", "bcsstk13", "random-hpd"])
def test_solutions_match_dense(name, ordering, getkey, rule_always_tries_metis):
    a = matrix(name)
    b = random_vector(getkey(), a.shape[0], a.dtype)
    x = jax.jit(solve, static_argnums=2)(operator(a, PSD), b, lxs.Cholmod(ordering=ordering))
    expected = jnp.linalg.solve(jnp.asarray(a.toarray()), b)
    assert_solves(a, x, b, reference=expected, condition=matrix_condition(name))


def test_auto_keeps_amd_on_2d_and_picks_nested_dissection_on_3d():
    # 2D: AMD's factor costs 77 flops per entry (the rule's bound is 500).
    *_, analysis = analyse(poisson2d(64), "auto")
    assert analysis.ordering_kind == "amd"
    # 3D Poisson 24^3: 517 flops per entry, 35x fill; nested dissection fills 0.79x.
    a = poisson3d(24)
    *_, analysis = analyse(a, "auto")
    assert analysis.ordering_kind == "nested_dissection"
    assert len(analysis.pools["d"]) == 1  # the symbolic analysis it decided by, kept
    b = np.cos(np.arange(a.shape[0]))
    x = np.asarray(solve(operator(a, PSD), jnp.asarray(b), lxs.Cholmod()))
    assert np.linalg.norm(a @ x - b) <= 1e-12 * np.linalg.norm(b) * 100


def test_auto_keeps_the_sparser_factor(rule_always_tries_metis):
    """With METIS always tried, `"auto"` keeps whichever ordering fills less."""
    for a in (poisson2d(40), matrix("elasticity")):
        _, _, analysis = analyse(a, "auto")
        entries = {
            kind: factor_entries(a, analyse(a, kind)[2].ordering)
            for kind in ("amd", "nested_dissection")
        }
        best = min(entries, key=entries.__getitem__)
        assert analysis.ordering_kind == best, entries


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_gradients_match_dense_and_finite_differences(ordering, getkey, rule_always_tries_metis):
    op = operator(matrix("elasticity"), PSD)
    solver = lxs.Cholmod(ordering=ordering)
    b = random_vector(getkey(), op.size, jnp.float64)
    weights = random_vector(getkey(), op.size, jnp.float64)

    def ours(data, v):
        return jnp.dot(weights, solve(with_data(op, data), v, solver) ** 2)

    def dense(data, v):
        return jnp.dot(weights, jnp.linalg.solve(dense_from_data(op, data), v) ** 2)

    value, grads = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(op.data, b)
    value_d, grads_d = jax.value_and_grad(dense, argnums=(0, 1))(op.data, b)
    factor = MATRICES["elasticity"][1] / 1e-11
    assert_close(value, value_d, jnp.float64, factor)
    for g, g_d in zip(grads, grads_d, strict=True):
        assert_close(g, g_d, jnp.float64, factor)
    loss = jax.jit(ours)
    direction = symmetric_direction(op)
    fd = finite_difference(lambda d: loss(d, b), op.data, direction)
    np.testing.assert_allclose(jnp.dot(grads[0], direction), fd, rtol=1e-6)
    direction = random_vector(getkey(), op.size, jnp.float64)
    fd = finite_difference(lambda v: loss(op.data, v), b, direction)
    np.testing.assert_allclose(jnp.dot(grads[1], direction), fd, rtol=1e-6)


def test_vmap_over_values_and_right_hand_sides(getkey):
    op = operator(matrix("random-hpd"), PSD)  # complex Hermitian
    solver = lxs.Cholmod(ordering="nested_dissection")
    datas = jnp.stack([op.data * (1.0 + 0.25 * i) for i in range(3)])
    bs = jnp.stack([random_vector(getkey(), op.size, jnp.complex128) for _ in range(3)])
    xs = jax.jit(jax.vmap(lambda d, v: solve(with_data(op, d), v, solver)))(datas, bs)
    for i in range(3):
        expected = jnp.linalg.solve(dense_from_data(op, datas[i]), bs[i])
        assert_close(xs[i], expected, jnp.complex128)
    info = lxs.cache_info()
    assert info.analyses == 1 and info.factorizations == 3


def block_diagonal_with_isolated_vertices():
    """Two Laplacians, no edge between them, and three vertices with only a diagonal."""
    return sp.block_diag([poisson2d(6), sp.eye_array(3) * 2.0, poisson2d(5)]).tocsr()


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize(
    "a",
    [
        block_diagonal_with_isolated_vertices(),
        sp.csr_matrix(np.array([[4.0]])),
        sp.diags_array(np.linspace(1.0, 3.0, 7)).tocsr(),
    ],
    ids=["disconnected", "n=1", "diagonal"],
)
def test_degenerate_graphs(a, ordering, getkey, rule_always_tries_metis):
    b = random_vector(getkey(), a.shape[0], jnp.float64)
    x = solve(operator(a, PSD), b, lxs.Cholmod(ordering=ordering))
    assert_close(x, jnp.linalg.solve(jnp.asarray(a.toarray()), b), jnp.float64)
    rows, cols = lower_indices(a)
    p = nested_dissection(a.shape[0], rows, cols)
    assert np.array_equal(np.sort(p), np.arange(a.shape[0]))


def test_invalid_ordering_names_the_argument():
    with pytest.raises(ValueError, match="ordering"):
        lxs.Cholmod(ordering="metis")  # type: ignore[arg-type]


def test_ordering_is_computed_once_per_pattern(metis_calls, getkey):
    op = operator(matrix("elasticity"), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    solver = lxs.Cholmod(ordering="nested_dissection")
    loss = jax.jit(jax.grad(lambda d: jnp.sum(solve(with_data(op, d), b, solver) ** 2)))
    for i in range(4):
        jax.block_until_ready(loss(op.data * (1.0 + 0.1 * i)))
    info = lxs.cache_info()
    assert metis_calls.calls == 1
    assert (info.analyses, info.factorizations, info.misses) == (1, 4, 0)
    # Another ordering of the same pattern is another analysis, never a mix of the two.
    x = solve(op, b, lxs.Cholmod(ordering="amd"))
    assert lxs.cache_info().analyses == 2 and metis_calls.calls == 1
    assert_close(x, solve(op, b, solver), jnp.float64, factor=1e3)


def test_auto_sparse_uses_cholmods_default_ordering(getkey):
    op = operator(matrix("poisson"), PSD)
    auto = lxs.AutoSparse(dense_below=0)  # the host path (this matrix is small)
    assert auto.init(op, {}).spec == lxs.Cholmod().init(op, {}).spec
    assert dict(lxs.Cholmod().init(op, {}).spec[1])["ordering"] == "auto"
