"""The CHOLMOD shared library cvxopt loaded, opened again through ctypes (`load`).

cvxopt's `cholmod` extension holds the GIL through every call and keeps one global
`cholmod_common`, so its factorizations and solves cannot run side by side on several
threads. The same library called through ctypes releases the GIL for the length of each
foreign call, with one `cholmod_common` per thread (`common.py`). Only the library cvxopt
itself uses is opened (through the handle of cvxopt's extension module), so that a factor
made by cvxopt's `symbolic` can be copied and factorized by the same code; only CHOLMOD 3,
whose `cholmod_common` layout `common.py` transcribes, is accepted. Anything else gives
None, and the backend keeps cvxopt's calls.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any


#: The CHOLMOD major version whose structs `common.py` and `capsule.py` transcribe.
MAJOR_VERSION = 3

_P = ctypes.c_void_p
#: name -> (restype, argtypes) of the functions used, all of the `SuiteSparse_long`
#: ("_l_") interface cvxopt uses on 64-bit platforms.
_PROTOTYPES: dict[str, tuple[Any, list]] = {
    "cholmod_l_version": (ctypes.c_int, [ctypes.POINTER(ctypes.c_int)]),
    "cholmod_l_start": (ctypes.c_int, [_P]),
    "cholmod_l_finish": (ctypes.c_int, [_P]),
    "cholmod_l_copy_factor": (_P, [_P, _P]),
    "cholmod_l_free_factor": (ctypes.c_int, [ctypes.POINTER(_P), _P]),
    "cholmod_l_factorize": (ctypes.c_int, [_P, _P, _P]),
    # sys, L, B, Bset, &X, &Xset, &Y, &E, Common
    "cholmod_l_solve2": (
        ctypes.c_int,
        [ctypes.c_int, _P, _P, _P, ctypes.POINTER(_P), _P, ctypes.POINTER(_P)]
        + [ctypes.POINTER(_P), _P],
    ),
    "cholmod_l_free_dense": (ctypes.c_int, [ctypes.POINTER(_P), _P]),
}


def load() -> ctypes.CDLL | None:
    """cvxopt's CHOLMOD 3 library with the prototypes set, or None when it cannot be
    found, is not loaded in this process, or is another version."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        from cvxopt import cholmod
    except ImportError:
        return None
    try:
        # cvxopt's extension module itself, already loaded (RTLD_NOLOAD): a symbol looked
        # up through its handle is found in it or in the libraries it links to, in the
        # order the dynamic linker resolved its own references, so these are the very
        # functions cvxopt calls, never those of another CHOLMOD in the process.
        library = ctypes.CDLL(cholmod.__file__, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        for function, (restype, argtypes) in _PROTOTYPES.items():
            entry = getattr(library, function)
            entry.restype, entry.argtypes = restype, argtypes
    except (OSError, AttributeError):
        return None
    version = (ctypes.c_int * 3)()
    library.cholmod_l_version(version)
    if version[0] != MAJOR_VERSION:
        return None
    return library
