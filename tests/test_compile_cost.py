"""A static pattern puts nothing of its size into the compiled program.

The host holds a static pattern's maps (CSC slots, mirror pairs); XLA gets the values and,
where it computes with them, the operator's indices as arguments. So the lowered program of
a jitted `value_and_grad` through a solve is the same size for 10^3 and 10^5 stored entries.
Lowering only (no compilation, no host call): fast.
"""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp

import lineax_sparse as lxs

from . import helpers


#: Bytes of the largest constant allowed in a lowered program: a few thousand entries
#: (the handle samples a fixed number of values), never a pattern's arrays.
LARGEST_CONSTANT = 4096


def _poisson_csr_order(grid: int) -> tuple[np.ndarray, np.ndarray, int]:
    """2D Poisson entries row by row (as a stencil code writes them): not in CSC order,
    so the host gathers them into place."""
    coo = sp.csr_matrix(helpers.poisson2d(grid)).tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32)
    return coo.data, indices, coo.shape[0]


def _fem(nelx: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Stiffness entries of FEM assembly, duplicates and all: the host sums them."""
    coo = helpers.elasticity2d(nelx, max(nelx // 3, 1))
    return coo.data, np.stack([coo.row, coo.col], axis=1).astype(np.int32), coo.shape[0]


def _largest_constant(text: str) -> int:
    """Bytes of the largest dense constant written out in a lowered StableHLO module."""
    return (
        max((len(m) - 2) // 2 for m in re.findall(r'dense<"0x[0-9A-Fa-f]*', text))
        if ('dense<"0x' in text)
        else 0
    )


def _lowered(build, kind: str) -> str:
    data, indices, n = build
    pattern = lxs.static_pattern(indices, n)
    b = jnp.linspace(1.0, 2.0, n)  # an argument too: an array closed over is a constant
    tags = lx.positive_semidefinite_tag

    def loss(op, b):
        x = lx.linear_solve(op, b, solver=lxs.Cholmod()).value
        return jnp.sum(x * x)

    if kind == "argument":  # the operator is an argument: its indices are too
        op = lxs.SparseOperator.from_pattern(pattern, jnp.asarray(data), tags)

        def step(op, b):
            with_data = lambda d: eqx.tree_at(lambda o: o.data, op, d)  # noqa: E731
            return jax.value_and_grad(lambda d: loss(with_data(d), b))(op.data)

        return jax.jit(step).lower(op, b).as_text()
    # The operator is built in the jitted function from the pattern it closes over.
    step = jax.value_and_grad(
        lambda d, b: loss(lxs.SparseOperator.from_pattern(pattern, d, tags), b)
    )
    return jax.jit(step).lower(jnp.asarray(data), b).as_text()


@pytest.mark.parametrize("kind", ["argument"])
@pytest.mark.parametrize("build", [_poisson_csr_order, _fem], ids=["stencil", "fem"])
def test_lowered_value_and_grad_does_not_grow_with_nnz(build, kind):
    small = build(32) if build is _poisson_csr_order else build(12)  # about 5e3 entries
    large = build(320) if build is _poisson_csr_order else build(120)  # about 5e5 entries
    assert large[1].shape[0] >= 90 * small[1].shape[0]
    texts = [_lowered(problem, kind) for problem in (small, large)]
    # Only the shapes differ (a few more digits each): nothing per entry.
    assert abs(len(texts[1]) - len(texts[0])) < 4096, [len(t) for t in texts]
    for text in texts:
        assert _largest_constant(text) <= LARGEST_CONSTANT


@pytest.mark.parametrize("build", [_poisson_csr_order, _fem], ids=["stencil", "fem"])
def test_an_operator_built_in_the_program_fetches_large_indices(build, monkeypatch):
    """Built by `from_pattern` inside the jitted function, an operator's indices are a
    constant up to `EMBEDDED_INDICES_MAX_BYTES` and fetched from the host beyond (here
    every pattern is beyond): the lowered program is flat again."""
    from lineax_sparse._operator import pattern as _pattern

    monkeypatch.setattr(_pattern, "EMBEDDED_INDICES_MAX_BYTES", 0)
    small = build(32) if build is _poisson_csr_order else build(12)
    large = build(320) if build is _poisson_csr_order else build(120)
    texts = [_lowered(problem, "closure") for problem in (small, large)]
    assert abs(len(texts[1]) - len(texts[0])) < 4096, [len(t) for t in texts]
    for text in texts:
        assert _largest_constant(text) <= LARGEST_CONSTANT


@pytest.mark.parametrize("fetched", [False, True])
def test_fetched_indices_give_the_same_values_and_gradients(fetched, monkeypatch):
    """A loss and its gradient through an operator built in the program, with its indices
    embedded or fetched, against a dense solve; replacing fetched indices is refused."""
    from lineax_sparse._operator import pattern as _pattern

    if fetched:
        monkeypatch.setattr(_pattern, "EMBEDDED_INDICES_MAX_BYTES", 0)
    data, indices, n = _fem(6)
    pattern = lxs.static_pattern(indices, n)
    b = jnp.linspace(1.0, 2.0, n)
    tags = lx.positive_semidefinite_tag

    def loss(d, solve):
        op = lxs.SparseOperator.from_pattern(pattern, d, tags)
        return jnp.sum(solve(op) ** 2)

    def ours(op):
        return lx.linear_solve(op, b, solver=lxs.Cholmod()).value

    def dense(op):
        return jnp.linalg.solve(op.as_matrix(), b)

    values = jnp.asarray(data)
    got = jax.jit(jax.value_and_grad(lambda d: loss(d, ours)))(values)
    expected = jax.value_and_grad(lambda d: loss(d, dense))(values)
    helpers.assert_close(got[0], expected[0], jnp.float64)
    helpers.assert_close(got[1], expected[1], jnp.float64)
    x = jax.jit(lambda d: ours(lxs.SparseOperator.from_pattern(pattern, d, tags)))(values)
    reference = dense(lxs.SparseOperator.from_pattern(pattern, values, tags))
    helpers.assert_close(x, reference, jnp.float64)

    @jax.jit
    def replaced(d):
        op = lxs.SparseOperator.from_pattern(pattern, d, tags)
        op = eqx.tree_at(lambda o: o.indices, op, op.indices[::-1])
        return ours(op)

    # Checked at trace time where JAX folds the new indices to a constant, else in XLA.
    with pytest.raises(Exception, match="not those of its static pattern"):
        jax.block_until_ready(replaced(values))


def test_a_gradient_does_not_build_the_transposes_pattern(getkey):
    """Every gradient transposes the operator; the transpose's pattern is built only when
    something solves with it, and then solves right."""
    from lineax_sparse._host import patterns

    matrix = helpers.random_sparse(40, 0.1, np.float64, seed=5)  # not symmetric
    op = helpers.operator(matrix)
    b = jax.random.normal(getkey(), (40,))
    solver = lxs.SuperLU()

    def loss(values):
        with_values = eqx.tree_at(lambda o: o.data, op, values)
        return jnp.sum(lx.linear_solve(with_values, b, solver=solver).value ** 2)

    lxs.clear_cache()  # no pattern held but the operator's own
    before = set(patterns._held)
    jax.block_until_ready(jax.jit(jax.value_and_grad(loss))(op.data))
    assert set(patterns._held) == before | {op.pattern_key.serial}
    transposed = op.T
    assert transposed.pattern_key is not None and transposed.T.pattern_key == op.pattern_key
    x = lx.linear_solve(transposed, b, solver=solver).value  # builds it now
    assert transposed.pattern is not None
    helpers.assert_close(x, np.linalg.solve(matrix.toarray().T, np.asarray(b)), jnp.float64)
    assert transposed.pattern.key.digest == transposed.pattern_key.digest
