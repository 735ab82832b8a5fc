"""Host-side units: pattern coalescing, the Hermitian check, handle keys (no JAX)."""

import numpy as np
import pytest
import scipy.sparse as sp

from lineax_sparse import _native
from lineax_sparse.backends.base import is_hermitian, Pattern

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
    assembled = pattern.csc(pattern.assemble(data))
    assert abs(assembled - matrix.tocsc()).max() == 0
    assert assembled.has_sorted_indices


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
    for key in (0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15):
        high, low = _native._from_key(key)
        assert -(2**31) <= high < 2**31 and -(2**31) <= low < 2**31
        assert _native._to_key(np.array([high, low], dtype=np.int32)) == key
