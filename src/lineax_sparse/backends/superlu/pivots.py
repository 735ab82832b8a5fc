"""The pivots of a scipy `SuperLU` factorization, read in O(n) from the factor itself.

scipy exposes the factors only as `lu.L` / `lu.U`, which copy all of L and U into new CSC
matrices: 25% of the factorization's time at n = 22k (MBB beam, 5M entries of L + U). The
pivots `U_jj` are all the singularity check needs, and SuperLU keeps them in the diagonal
blocks of L's supernodes (the supernodal `L` stores the diagonal block of `U` with it): for
column `j` of supernode `s` starting at column `f`, `U_jj = nzval[nzval_colptr[j] + j - f]`.

They are read through ctypes from scipy's `SuperLUObject` (PyObject header, `m`, `n`, then
the `SuperMatrix` structs `L` and `U`) and L's `SCformat` store. Every read is guarded: the
struct must describe this factor (`m`, `n`, storage, data and matrix types), and once per
process a self-test compares the pivots read this way with `lu.U.diagonal()` on a small
fixed matrix. If anything does not match (another scipy layout), `pivots` returns None and
the caller falls back to estimating the condition number of every factorization.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


class _SuperMatrix(ctypes.Structure):
    _fields_ = [
        ("Stype", ctypes.c_int),
        ("Dtype", ctypes.c_int),
        ("Mtype", ctypes.c_int),
        ("nrow", ctypes.c_int),
        ("ncol", ctypes.c_int),
        ("Store", ctypes.c_void_p),
    ]


class _Head(ctypes.Structure):
    """scipy's `SuperLUObject` up to its factors."""

    _fields_ = [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", ctypes.c_void_p),
        ("m", ctypes.c_ssize_t),
        ("n", ctypes.c_ssize_t),
        ("L", _SuperMatrix),
        ("U", _SuperMatrix),
    ]


class _SCformat(ctypes.Structure):
    """SuperLU's supernodal column storage of L."""

    _fields_ = [
        ("nnz", ctypes.c_int),
        ("nsuper", ctypes.c_int),
        ("nzval", ctypes.c_void_p),
        ("nzval_colptr", ctypes.POINTER(ctypes.c_int)),
        ("rowind", ctypes.POINTER(ctypes.c_int)),
        ("rowind_colptr", ctypes.POINTER(ctypes.c_int)),
        ("col_to_sup", ctypes.POINTER(ctypes.c_int)),
        ("sup_to_col", ctypes.POINTER(ctypes.c_int)),
    ]


# SuperLU's enums: Stype_t SLU_NC = 0, SLU_SC = 3; Dtype_t SLU_D = 1, SLU_Z = 3;
# Mtype_t SLU_TRLU = 1, SLU_TRU = 4.
_SLU_NC, _SLU_SC, _SLU_TRLU, _SLU_TRU = 0, 3, 1, 4
_DTYPES = {1: np.dtype(np.float64), 3: np.dtype(np.complex128)}
_HEADER_BYTES = object.__basicsize__  # 16 on CPython's default build

_layout_ok: bool | None = None  # None until the self-test has run


def _read(lu: Any, dtype: np.dtype) -> np.ndarray | None:
    n = int(lu.shape[0])
    if _HEADER_BYTES != 2 * ctypes.sizeof(ctypes.c_void_p):
        return None  # a build whose object header we do not know (e.g. free-threaded)
    head = _Head.from_address(id(lu))
    L, U = head.L, head.U
    if (
        head.m != n
        or head.n != n
        or (L.Stype, L.Mtype, U.Stype, U.Mtype) != (_SLU_SC, _SLU_TRLU, _SLU_NC, _SLU_TRU)
        or (L.nrow, L.ncol, U.nrow, U.ncol) != (n, n, n, n)
        or _DTYPES.get(L.Dtype) != dtype
        or not L.Store
    ):
        return None
    store = _SCformat.from_address(L.Store)
    if not (0 <= store.nsuper < n and store.nzval and store.nzval_colptr):
        return None
    if not (store.col_to_sup and store.sup_to_col):
        return None
    colptr = np.ctypeslib.as_array(store.nzval_colptr, shape=(n + 1,))
    supernode = np.ctypeslib.as_array(store.col_to_sup, shape=(n,))
    first = np.ctypeslib.as_array(store.sup_to_col, shape=(store.nsuper + 2,))
    if supernode.min() < 0 or supernode.max() > store.nsuper:
        return None
    offset = np.arange(n) - first[supernode]
    positions = colptr[:-1] + offset
    size = int(colptr[n])
    if offset.min() < 0 or positions.max() >= size:
        return None
    words = 2 if dtype == np.complex128 else 1
    buffer = ctypes.cast(store.nzval, ctypes.POINTER(ctypes.c_double))
    values = np.ctypeslib.as_array(buffer, shape=(size * words,)).view(dtype)
    return values[positions].copy()


def _self_test() -> bool:
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    rng = np.random.default_rng(7)
    matrix = sp.random(40, 40, density=0.15, random_state=rng, format="csc") + 3 * sp.eye(40)
    matrix = sp.csc_matrix(matrix)
    for values in (matrix, matrix + 1j * sp.csc_matrix(matrix.multiply(matrix))):
        lu = spla.splu(sp.csc_matrix(values))
        read = _read(lu, np.dtype(values.dtype))
        if read is None or not np.array_equal(read, lu.U.diagonal()):
            return False
    return True


def pivots(lu: Any, dtype: np.dtype) -> np.ndarray | None:
    """`U_jj` in U's column order, or None if they cannot be read safely.

    `dtype` is the factor's (float64 or complex128, that of the matrix passed to `splu`).
    """
    global _layout_ok
    if _layout_ok is None:
        try:
            _layout_ok = _self_test()
        except Exception:  # noqa: BLE001 - any failure means "unknown layout"
            _layout_ok = False
    if not _layout_ok:
        return None
    return _read(lu, np.dtype(dtype))
