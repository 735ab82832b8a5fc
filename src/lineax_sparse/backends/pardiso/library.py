"""MKL's runtime library (`libmkl_rt`) opened through ctypes, and PARDISO called through it.

The binding is MKL's documented C interface, called directly:
`pardiso(pt, maxfct, mnum, mtype, phase, n, a, ia, ja, perm, nrhs, iparm, msglvl, b, x,
error)`, `pardiso_64` (the same with 64-bit integers, for matrices whose indices need them),
`pardisoinit`, and `mkl_set_num_threads_local` for the threads of each call. ctypes releases
Python's GIL for the length of every foreign call, so factorizations of different matrices
run side by side on the host's threads.

Why not a Python package: `pypardiso` (pure Python, itself a ctypes wrapper) is tested by its
authors on real unsymmetric matrices (`mtype=11`) only, refuses anything but float64, keeps one
factorization per solver object behind a hash of the matrix, and converts every right-hand
side; `pydiso` (Cython) has no wheel for this Python and its source build needs MKL's
development files found by pkg-config. Neither gives more than the ~100 lines here: every
`iparm` output (inertia, perturbed pivots, refinement steps, memory), complex types,
transposed solves and one handle per factorization.

The library is looked for where `locate.candidates` says. Not found: `ImportError` naming
`mkl`, with the install hint.
"""

from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

import numpy as np

from .locate import candidates, INSTALL_HINT


_P = ctypes.c_void_p


class Library(NamedTuple):
    """The opened library: PARDISO's entry points for 32- and 64-bit indices, and threads."""

    path: str
    pardiso: ctypes._CFuncPtr
    pardiso_64: ctypes._CFuncPtr
    pardisoinit: ctypes._CFuncPtr
    set_num_threads_local: ctypes._CFuncPtr
    get_max_threads: ctypes._CFuncPtr


def _prototype(function, int_type) -> None:
    pointer = ctypes.POINTER(int_type)
    # pt, maxfct, mnum, mtype, phase, n, a, ia, ja, perm, nrhs, iparm, msglvl, b, x, error
    function.argtypes = [_P, pointer, pointer, pointer, pointer, pointer, _P, _P, _P, _P]
    function.argtypes += [pointer, _P, pointer, _P, _P, pointer]
    function.restype = None


def _open(path: str) -> Library:
    library = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
    _prototype(library.pardiso, ctypes.c_int32)
    _prototype(library.pardiso_64, ctypes.c_int64)
    library.pardisoinit.argtypes = [_P, ctypes.POINTER(ctypes.c_int32), _P]
    library.pardisoinit.restype = None
    library.MKL_Set_Num_Threads_Local.argtypes = [ctypes.c_int]
    library.MKL_Set_Num_Threads_Local.restype = ctypes.c_int
    library.MKL_Get_Max_Threads.argtypes = []
    library.MKL_Get_Max_Threads.restype = ctypes.c_int
    return Library(
        path,
        library.pardiso,
        library.pardiso_64,
        library.pardisoinit,
        library.MKL_Set_Num_Threads_Local,
        library.MKL_Get_Max_Threads,
    )


def load() -> Library:
    """The first `libmkl_rt` of `candidates` that opens and has PARDISO; `ImportError`
    (name `mkl`) when none does."""
    errors = []
    for path in candidates():
        try:
            return _open(path)
        except (OSError, AttributeError) as error:
            errors.append(f"{path}: {error}")
    detail = f" (tried {'; '.join(errors)})" if errors else ""
    raise ImportError(INSTALL_HINT + detail, name="mkl")


LIBRARY = load()


def new_handle() -> np.ndarray:
    """PARDISO's internal data pointer `pt` (64 machine words, zero before phase 1)."""
    return np.zeros(64, dtype=np.int64)


def defaults(mtype: int) -> np.ndarray:
    """PARDISO's default `iparm` for matrix type `mtype` (`pardisoinit`), int32."""
    iparm = np.zeros(64, dtype=np.int32)
    pt, kind = new_handle(), ctypes.c_int32(mtype)
    LIBRARY.pardisoinit(pt.ctypes.data, ctypes.byref(kind), iparm.ctypes.data)
    return iparm


def call(
    pt: np.ndarray,
    mtype: int,
    phase: int,
    n: int,
    values: np.ndarray | None,
    indptr: np.ndarray | None,
    indices: np.ndarray | None,
    iparm: np.ndarray,
    rhs: np.ndarray | None = None,
    out: np.ndarray | None = None,
    nrhs: int = 1,
) -> int:
    """One PARDISO call (`maxfct = mnum = 1`, no messages); returns its `error` code.

    The integer arrays (`indptr`, `indices`, `iparm`) must all be int32 (`pardiso`) or all
    int64 (`pardiso_64`); `rhs` and `out` are Fortran-ordered (n, nrhs) blocks of `values`'
    dtype. Arrays are passed by address: the caller keeps them alive across the call.
    """
    wide = iparm.dtype == np.int64
    int_type = ctypes.c_int64 if wide else ctypes.c_int32
    function = LIBRARY.pardiso_64 if wide else LIBRARY.pardiso
    error = int_type(0)

    def address(array):
        return None if array is None else array.ctypes.data

    function(
        pt.ctypes.data,
        ctypes.byref(int_type(1)),
        ctypes.byref(int_type(1)),
        ctypes.byref(int_type(mtype)),
        ctypes.byref(int_type(phase)),
        ctypes.byref(int_type(n)),
        address(values),
        address(indptr),
        address(indices),
        None,
        ctypes.byref(int_type(nrhs)),
        iparm.ctypes.data,
        ctypes.byref(int_type(0)),
        address(rhs),
        address(out),
        ctypes.byref(error),
    )
    return int(error.value)


class local_threads:
    """MKL held to `threads` threads on the calling thread inside the context (MKL's
    thread-local setting, so other threads are unaffected); restored after."""

    __slots__ = ("threads", "_saved")

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        self._saved = LIBRARY.set_num_threads_local(self.threads)
        return self

    def __exit__(self, *exc_info):
        LIBRARY.set_num_threads_local(self._saved)
        return False
