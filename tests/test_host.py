"""Host-side units: pattern coalescing, the Hermitian check, handles and their keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from lineax_sparse._bridge import handle as _handle
from lineax_sparse._host import batch as _batch
from lineax_sparse.backends.numerics import is_hermitian
from lineax_sparse.backends.pattern import Pattern

from .helpers import poisson2d, random_sparse


def _coo_indices(matrix):
    coo = matrix.tocoo()
    return np.stack([coo.row, coo.col], axis=1).astype(np.int32), coo.data


@pytest.mark.parametrize("order", ["csc", "csr", "shuffled"])
def test_pattern_assembles_like_scipy(order):
    matrix = random_sparse(70, 0.1, np.float64, seed=60)
    converted = {"csc": matrix.tocsc(), "csr": matrix.tocsr(), "shuffled": matrix.tocoo()}[order]
    indices, data = _coo_indices(converted)
    if order == "shuffled":
        permutation = np.random.default_rng(0).permutation(len(data))
        indices, data = indices[permutation], data[permutation]
        # Duplicates split a value in two; padding (index n) carries garbage to be ignored.
        data[:10] /= 2
        indices = np.concatenate([indices, indices[:10], [[70, 3], [2, 70], [70, 70]]])
        data = np.concatenate([data, data[:10], [5.0, 6.0, 7.0]])
    pattern = Pattern(70, indices.astype(np.int32))
    assert pattern.valid
    assert pattern.in_order == (order == "csc")  # CSC input is copied, not summed
    given = data.copy()
    values = pattern.assemble(data)
    assert values.dtype == np.float64 and not np.shares_memory(values, data)
    assembled = pattern.csc(values)
    assert abs(assembled - matrix.tocsc()).max() == 0
    assert assembled.has_sorted_indices
    values[:] = -1  # the caller may modify the result; the input is untouched
    np.testing.assert_array_equal(data, given)
    np.testing.assert_array_equal(pattern.diagonal(pattern.assemble(data)), matrix.diagonal())
    # float32 input is assembled in float64 on both paths
    assert pattern.assemble(data.astype(np.float32)).dtype == np.float64


def test_pattern_diagonal_with_missing_entries():
    matrix = sp.csc_matrix(np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 5.0]]))
    indices, data = _coo_indices(matrix)
    pattern = Pattern(3, indices)
    np.testing.assert_array_equal(pattern.diagonal(pattern.assemble(data)), [1.0, 0.0, 5.0])


@pytest.mark.parametrize("bad", [-1, 71, 2**30])
def test_pattern_flags_invalid_indices(bad):
    indices, _ = _coo_indices(random_sparse(70, 0.1, np.float64, seed=61))
    indices[5, 0] = bad
    assert not Pattern(70, indices).valid


def test_hermitian_check():
    spd = random_sparse(40, 0.1, np.complex128, seed=62, spd=True)
    indices, data = _coo_indices(spd)
    pattern = Pattern(40, indices)
    assert is_hermitian(pattern, pattern.assemble(data))
    skewed = data.copy()
    skewed[np.flatnonzero(indices[:, 0] != indices[:, 1])[0]] *= 1.01
    assert not is_hermitian(pattern, pattern.assemble(skewed))
    laplacian = poisson2d(5)
    indices, data = _coo_indices(laplacian)
    pattern = Pattern(25, indices)
    assert is_hermitian(pattern, pattern.assemble(data))
    general = sp.random(25, 25, density=0.2, random_state=1) + sp.eye(25)
    indices, data = _coo_indices(general)
    pattern = Pattern(25, indices)
    assert not is_hermitian(pattern, pattern.assemble(data))


def test_handle_keys_round_trip_through_two_int32():
    for high, low in ((0, 0), (-1, -1), (2**31 - 1, -(2**31)), (-(2**31), 2**31 - 1)):
        key = _batch.handle_key(np.array([high, low], dtype=np.int32))
        assert 0 <= key < 2**64
        assert key == ((high & 0xFFFFFFFF) << 32) | (low & 0xFFFFFFFF)


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.complex64, np.complex128], ids=lambda d: d.__name__
)
@pytest.mark.parametrize("size", [5, 10_000])  # digested whole / sampled
def test_handles_are_deterministic_digests_of_values_and_indices(dtype, size):
    rng = np.random.default_rng(0)
    values = jnp.asarray(rng.standard_normal(size).astype(dtype))
    indices = jnp.asarray(rng.integers(0, 50, (size, 2)), dtype=jnp.int32)
    handle = jax.jit(_handle.make_handle)
    h = np.asarray(handle(values, indices))
    assert h.shape == (2,) and h.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(_handle.make_handle(values, indices)), h)
    # A change in a sampled value (the first and last always are), or in an index, or a
    # uniform rescaling (as an optimization loop makes), changes the handle.
    for other_values, other_indices in (
        (values.at[0].add(1), indices),
        (values.at[-1].add(1), indices),
        (values * (1 + 1e-6), indices),
        (values, indices.at[0, 0].add(1)),
        (values[:-1], indices[:-1]),
    ):
        assert not np.array_equal(np.asarray(handle(other_values, other_indices)), h)
    batched = jax.vmap(_handle.make_handle, in_axes=(0, None))(jnp.stack([values, values]), indices)
    np.testing.assert_array_equal(np.asarray(batched), np.stack([h, h]))
    # Differentiating through a solve differentiates through the handle: no tangent.
    grad = jax.grad(lambda v: jnp.sum(_handle.make_handle(v, indices)).astype(float))
    if not np.issubdtype(dtype, np.complexfloating):
        assert np.all(np.asarray(grad(values)) == 0)


@pytest.mark.parametrize("structure", ["symmetric", "general"])
def test_mirror_pairs_match_a_brute_force_search(structure):
    matrix = sp.random(60, 60, density=0.08, random_state=5, format="csc") + sp.eye(60)
    if structure == "symmetric":
        matrix = matrix + matrix.T
    indices, _ = _coo_indices(matrix)
    pattern = Pattern(60, indices)
    lower, upper, unpaired = pattern.symmetry_pairs()
    cols = np.repeat(np.arange(60), np.diff(pattern.indptr))
    rows = pattern.row_indices
    where = {(int(r), int(c)): p for p, (r, c) in enumerate(zip(rows, cols, strict=True))}
    expected_lower = [
        p for p, (r, c) in enumerate(zip(rows, cols, strict=True)) if r > c and (c, r) in where
    ]
    expected_unpaired = [
        p for p, (r, c) in enumerate(zip(rows, cols, strict=True)) if r != c and (c, r) not in where
    ]
    assert lower.tolist() == expected_lower
    assert upper.tolist() == [where[(int(cols[p]), int(rows[p]))] for p in expected_lower]
    assert unpaired.tolist() == expected_unpaired
    assert (unpaired.size == 0) == (structure == "symmetric")


def test_hermitian_check_tolerates_rounding_and_tiny_unpaired_entries():
    laplacian = poisson2d(6).tocoo()
    indices, data = _coo_indices(laplacian)
    pattern = Pattern(36, indices)
    rounded = data * (1 + 1e-13 * np.random.default_rng(0).standard_normal(data.size))
    assert is_hermitian(pattern, pattern.assemble(rounded))  # not exact: the tolerance path
    # One stored entry without a mirror: fine when it is rounding-sized, not otherwise.
    extra = np.concatenate([indices, [[0, 7]]]).astype(np.int32)
    pattern = Pattern(36, extra)
    assert is_hermitian(pattern, pattern.assemble(np.concatenate([data, [1e-20]])))
    assert not is_hermitian(pattern, pattern.assemble(np.concatenate([data, [1e-3]])))


@pytest.mark.parametrize(
    "environment, expected",
    [
        ({}, "True"),
        ({"LINEAX_SPARSE_MALLOC_TUNING": "0"}, "False"),
        ({"MALLOC_ARENA_MAX": "2"}, "False"),
    ],
)
def test_malloc_is_tuned_at_the_first_native_call_unless_told_not_to(environment, expected):
    import os
    import platform
    import subprocess
    import sys

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        expected = "False"
    code = (
        "import numpy as np, lineax_sparse as lxs, scipy.sparse as sp, lineax as lx\n"
        "from lineax_sparse._host import owner as _host\n"
        "before = _host.malloc_tuned\n"
        "op = lxs.SparseOperator.from_scipy(sp.eye(4, format='csc'))\n"
        "lx.linear_solve(op, np.ones(4, np.float32), solver=lxs.SuperLU())\n"
        "print(before, _host.malloc_tuned)\n"
        "limit = lxs.cache_info().limit\n"
        "assert _host.trim_threshold_bytes == min(1 << 30, max(128 << 20, limit // 4))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("GLIBC_TUNABLES", None)
    env.update(environment)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["None", expected], out.stderr[-2000:]
