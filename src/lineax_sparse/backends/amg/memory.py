"""The memory an AMG factor holds: its matrices and every array of its hierarchies.

`nbytes` counts the factor's own matrix (CSC values and a CSR copy), its near-nullspace
vectors and every array reachable from its hierarchies (per level `A`, `P`, `R`,
near-nullspace `B`, smoother data), shared buffers once. It grows when a solve builds the
lazy `A^T` hierarchy or rebuilds a failed reused one: the host re-reads it then.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from .factor import Factor


def nbytes(factor: Factor) -> int:
    arrays = [factor.matrix.data, factor.csr.data, factor.csr.indices, factor.csr.indptr]
    if factor.candidates is not None:
        arrays.append(factor.candidates)
    hierarchies = factor.hierarchies
    if hierarchies is not None:
        for ml in (hierarchies.forward, hierarchies.transposed):
            if ml is not None:
                arrays.extend(_hierarchy_arrays(ml))
    seen: dict[tuple[int, int], int] = {}
    for array in arrays:
        if array.size:
            seen[(array.__array_interface__["data"][0], array.nbytes)] = array.nbytes
    return int(sum(seen.values()))


def _arrays_of(value: Any) -> Iterator[np.ndarray]:
    if sp.issparse(value):
        for name in ("data", "indices", "indptr"):
            array = getattr(value, name, None)
            if isinstance(array, np.ndarray):
                yield array
    elif isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, functools.partial):  # smoothers keep e.g. inverted diagonals
        for item in value.keywords.values():
            yield from _arrays_of(item)


def _hierarchy_arrays(ml: Any) -> Iterator[np.ndarray]:
    for level in ml.levels:
        for value in vars(level).values():
            yield from _arrays_of(value)
    for value in vars(ml.coarse_solver).values() if hasattr(ml, "coarse_solver") else ():
        yield from _arrays_of(value)
