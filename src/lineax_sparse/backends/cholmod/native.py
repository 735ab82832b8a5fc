"""CHOLMOD's numeric factorization and solves through ctypes (`NativeFactor`, `copy`,
`factorize`, `solve`), so that the factors and solves of different matrices run side by side
on different threads: ctypes releases the GIL during each foreign call, and each thread has
its own `cholmod_common` (`common.py`).

A factor is a copy (`cholmod_l_copy_factor`) of the pattern's one symbolic factor, made by
cvxopt's `symbolic`, then factorized in place (`cholmod_l_factorize`, which is what
cvxopt's `numeric` calls, on the same lower triangle: the factors are identical bit for
bit). `solve` hands blocks of right-hand sides to `cholmod_l_solve2` (`GROUP` columns at a
time), where cvxopt's `solve` calls CHOLMOD once per column: a supernodal solve of a block
runs in BLAS 3. The matrix and the blocks cross as `cholmod_sparse` / `cholmod_dense`
headers over numpy's buffers: only a block that is not column-major, or is padded, is
copied.

`available()` says whether this path can be used: cvxopt's CHOLMOD found (`library.py`),
the layout of `cholmod_common` checked (`common.py`), and a small factorization and solve
made through it that agree with numpy. Otherwise the backend keeps cvxopt's calls.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from . import library as _library
from .capsule import CHOLMOD_COMPLEX, CHOLMOD_LONG, CHOLMOD_REAL, FactorHead, head_at
from .common import check_layout, thread_common


_P, _S, _I = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
#: CHOLMOD's status codes, and the `sys` codes of `cholmod_solve` (the same numbers as
#: cvxopt's `sys` argument): A x = b, D x = b, x = P b.
OK, OUT_OF_MEMORY, NOT_POSDEF = 0, -2, 1
SOLVE_A, SOLVE_D, SOLVE_P = 0, 6, 7
_XTYPE = {"d": CHOLMOD_REAL, "z": CHOLMOD_COMPLEX}
DTYPES = {"d": np.float64, "z": np.complex128}
#: At most this many threads inside CHOLMOD at once. cvxopt's OpenBLAS (0.3.15, a
#: single-threaded build with locking) hands each BLAS call one buffer from a fixed table of
#: `NUM_BUFFERS` (at least 50, OpenBLAS's common.h), and a call that finds none left fails
#: ("Program is Terminated. Because you tried to allocate too many memory regions").
MAX_CONCURRENT = 32
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


class _Sparse(ctypes.Structure):
    """`cholmod_sparse`."""

    _fields_ = [("nrow", _S), ("ncol", _S), ("nzmax", _S)]
    _fields_ += [(name, _P) for name in ("p", "i", "nz", "x", "z")]
    _fields_ += [(name, _I) for name in ("stype", "itype", "xtype", "dtype", "sorted", "packed")]


class _Dense(ctypes.Structure):
    """`cholmod_dense`."""

    _fields_ = [("nrow", _S), ("ncol", _S), ("nzmax", _S), ("d", _S), ("x", _P), ("z", _P)]
    _fields_ += [("xtype", _I), ("dtype", _I)]


def _dense(array: np.ndarray, typecode: str) -> _Dense:
    """A header over a Fortran-ordered (n, k) array."""
    n, k = array.shape
    return _Dense(n, k, n * k, max(n, 1), array.ctypes.data, None, _XTYPE[typecode], 0)


class NativeFactor:
    """A `cholmod_factor` made through ctypes, freed through ctypes exactly once: by
    `release` or when this object dies, with the `cholmod_common` of the thread doing it."""

    __slots__ = ("address", "n", "_library", "__weakref__")

    def __init__(self, address: int, n: int, library: Any):
        self.address, self.n, self._library = address, n, library

    @property
    def head(self) -> FactorHead:
        return FactorHead.from_address(self.address)

    def release(self) -> None:
        address, self.address = self.address, None
        if address:
            pointer = _P(address)
            self._library.cholmod_l_free_factor(
                ctypes.byref(pointer), thread_common(self._library).address
            )

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001, S110 - at interpreter exit: the process frees it
            pass


def copy(address: int, n: int) -> NativeFactor:
    """A copy of the factor at `address` (a symbolic one: the integer arrays only)."""
    library = _LIBRARY
    common = thread_common(library)
    made = library.cholmod_l_copy_factor(address, common.address)
    if not made:
        raise MemoryError("CHOLMOD could not copy a symbolic factor (out of memory)")
    return NativeFactor(made, n, library)


def factorize(
    factor: NativeFactor,
    indptr: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    typecode: str,
    options: dict,
) -> None:
    """`cholmod_l_factorize` of the lower triangle (int64 CSC `indptr`, `indices`, contiguous
    `values`) into `factor`, raising as cvxopt's `numeric` does: `ArithmeticError(column)`
    for a matrix not positive definite, `MemoryError`, `ValueError` for any other failure."""
    library = _LIBRARY
    common = thread_common(library)
    common.configure(options)
    n = indptr.size - 1
    matrix = _Sparse(n, n, values.size, indptr.ctypes.data, indices.ctypes.data, None)
    matrix.x, matrix.z = values.ctypes.data, None
    matrix.stype, matrix.itype, matrix.xtype, matrix.dtype = -1, CHOLMOD_LONG, _XTYPE[typecode], 0
    matrix.sorted = matrix.packed = 1
    with _slots:
        library.cholmod_l_factorize(ctypes.byref(matrix), factor.address, common.address)
    status = common.head.status
    if status == OUT_OF_MEMORY:
        raise MemoryError("CHOLMOD ran out of memory in its numeric factorization")
    if status < OK:
        raise ValueError("factorization failed")
    if status == NOT_POSDEF:
        raise ArithmeticError(int(factor.head.minor))


#: Columns handed to one `cholmod_l_solve2` call. A block solve streams the whole factor
#: twice whatever its width, and the width's rows of a supernode are gathered from all over
#: memory: 64 columns of a 2D Poisson 512^2 (a 120 MB factor) took 1.29 s in groups of 8,
#: 0.88 s in groups of 16, 0.96 s of 32 and 1.07 s at once (cvxopt, one column at a time:
#: 2.88 s; medians of 5 in turns, load 8-10 on 2 cores).
GROUP = 16


def solve(factor: NativeFactor, block: np.ndarray, typecode: str, options: dict, system=SOLVE_A):
    """`cholmod_l_solve2(system, L, B)` for an (n, k) block: a new Fortran-ordered array.

    One column is one call (the same BLAS 2 path as cvxopt's `solve`, bit for bit). Wider
    blocks go in groups of `GROUP` columns through CHOLMOD's multi-column path, padded with
    zero columns to a width that makes each column's solution the same bit for bit whichever
    block it comes in: a multiple of 4 for a simplicial factor (CHOLMOD's simplicial solve
    takes 4 columns at a time, with another loop for 1, 2 or 3), of 2 for a supernodal one
    (OpenBLAS computes a lone trailing column with another kernel; measured: blocks of 2,
    6, 8 and 64 columns agree on every column, 3 and 5 do not).
    """
    dtype = DTYPES[typecode]
    n, k = block.shape
    unit = 2 if factor.head.is_super else 4
    width = -(-k // unit) * unit if k > 1 else k
    if width == k and block.dtype == dtype and block.flags.f_contiguous:
        rhs = block  # CHOLMOD only reads it
    else:
        rhs = np.empty((n, width), dtype=dtype, order="F")
        rhs[:, :k] = block
        rhs[:, k:] = 0
    out = np.empty((n, width), dtype=dtype, order="F")
    for start in range(0, width, GROUP):
        _solve(
            factor,
            rhs[:, start : start + GROUP],
            out[:, start : start + GROUP],
            options,
            typecode,
            system,
        )
    return out[:, :k]


def _solve(factor, rhs, out, options, typecode, system) -> None:
    """One `cholmod_l_solve2` call: `out = op^-1 rhs`, both Fortran-ordered (n, k)."""
    library = _LIBRARY
    if out.size == 0:
        return
    common = thread_common(library)
    common.configure(options)
    b, x = _dense(rhs, typecode), _dense(out, typecode)
    x_handle, y_handle, e_handle = _P(ctypes.addressof(x)), _P(), _P()
    try:
        with _slots:
            done = library.cholmod_l_solve2(
                system,
                factor.address,
                ctypes.byref(b),
                None,
                ctypes.byref(x_handle),
                None,
                ctypes.byref(y_handle),
                ctypes.byref(e_handle),
                common.address,
            )
    finally:  # CHOLMOD's workspaces: its own allocations, freed here
        library.cholmod_l_free_dense(ctypes.byref(y_handle), common.address)
        library.cholmod_l_free_dense(ctypes.byref(e_handle), common.address)
    # X's size, leading dimension and type are the ones CHOLMOD asks for, so it writes
    # into `out`; it would only ever replace a header that did not fit.
    if x_handle.value != ctypes.addressof(x):
        library.cholmod_l_free_dense(ctypes.byref(x_handle), common.address)
        raise RuntimeError("CHOLMOD did not solve into the block given to it")
    if common.head.status == OUT_OF_MEMORY:
        raise MemoryError("CHOLMOD ran out of memory in a solve")
    if not done or common.head.status != OK:
        raise ValueError("solve step failed")


def _view(address: int, length: int, dtype) -> np.ndarray:
    """`length` items of `dtype` at `address`, not copied: index it at once."""
    if length == 0:
        return np.zeros(0, dtype=dtype)
    buffer = (ctypes.c_char * (length * np.dtype(dtype).itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=dtype)


def _array(address: int, length: int, dtype) -> np.ndarray:
    """A copy of `length` items of `dtype` at `address`."""
    return _view(address, length, dtype).copy()


def pivots(factor: NativeFactor, typecode: str) -> np.ndarray:
    """The pivots `D_j` in the factor's order, read from the factor: `|L_jj|^2` of an
    `L L'` factor, `D_jj` of an `L D L'` one (real)."""
    head, n = factor.head, factor.n
    if head.is_super:
        s = head.nsuper
        first, rows, start = (_array(a, s + 1, np.int64) for a in (head.super, head.pi, head.px))
        supernode = np.repeat(np.arange(s), np.diff(first))
        column = np.arange(n) - first[supernode]
        positions = start[supernode] + column * (np.diff(rows)[supernode] + 1)
    else:  # simplicial: the diagonal entry comes first in each column
        positions = _array(head.p, n, np.int64)
    last = int(positions.max(initial=-1)) + 1
    diagonal = _view(head.x, last, DTYPES[typecode])[positions]  # a copy
    return np.abs(diagonal) ** 2 if head.is_ll else diagonal.real


def permutation(factor: NativeFactor) -> np.ndarray:
    """The factor's row permutation `P` (`x = P b` is `b[P]`)."""
    head, n = factor.head, factor.n
    if head.ordering == 0 or not head.Perm:  # CHOLMOD_NATURAL: the identity
        return np.arange(n, dtype=np.int64)
    return _array(head.Perm, n, np.int64)


def validated_head(factor: NativeFactor, typecode: str) -> FactorHead | None:
    return head_at(factor.address, factor.n, typecode)


_LIBRARY: Any = None
_checked: str | None = None  # None: not yet; "": available; else why not
_check_lock = threading.Lock()


def available() -> bool:
    """Whether the ctypes path works in this process (checked once)."""
    global _checked
    if _checked is None:
        with _check_lock:
            if _checked is None:
                _checked = _check()
    return _checked == ""


def unavailable_reason() -> str:
    """Why `available()` is False ("" when it is True)."""
    available()
    return _checked or ""


def _check() -> str:
    global _LIBRARY
    library = _library.load()
    if library is None:
        return "cvxopt's CHOLMOD 3 library was not found"
    problem = check_layout(library)
    if problem is not None:
        return problem
    _LIBRARY = library
    try:
        problem = _self_test()
    except Exception as error:  # noqa: BLE001 - any failure means "not usable"
        problem = f"the self-test failed: {error!r}"
    if problem:
        _LIBRARY = None
    return problem


def _self_test() -> str:
    """A 3 x 3 factorization and solve through every call used, checked against numpy."""
    import cvxopt
    from cvxopt import cholmod

    from .capsule import capsule_address
    from .settings import cholmod_options, global_options

    dense = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.0], [0.5, 0.0, 2.0]])
    rows, cols = np.tril_indices(3)
    order = np.lexsort((rows, cols))
    rows, cols = rows[order], cols[order]
    values = dense[rows, cols].copy()
    indptr = np.searchsorted(cols, np.arange(4)).astype(np.int64)
    template = cvxopt.spmatrix(values, rows.tolist(), cols.tolist(), (3, 3))
    for supernodal in (2, 0):
        options = cholmod_options(supernodal)
        with global_options(cholmod.options, options):
            symbolic = cholmod.symbolic(template, p=cvxopt.matrix([2, 0, 1]))
        factor = copy(capsule_address(symbolic), 3)
        factorize(factor, indptr, rows.astype(np.int64), values, "d", options)
        rhs = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0]])
        x = solve(factor, rhs, "d", options)
        p = permutation(factor)
        d = pivots(factor, "d")
        if not np.allclose(x, np.linalg.solve(dense, rhs), rtol=1e-13, atol=0):
            return f"a test solve (supernodal={supernodal}) disagrees with numpy"
        if sorted(p) != [0, 1, 2] or not np.allclose(np.prod(d), np.linalg.det(dense)):
            return f"a test factor's permutation or pivots (supernodal={supernodal}) are wrong"
        factor.release()
    return ""
