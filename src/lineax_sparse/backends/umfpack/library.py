"""The UMFPACK shared library cvxopt loaded, opened again through ctypes (`load`).

cvxopt's wheel bundles UMFPACK 5.7 and its `umfpack` extension links to it. The library is
opened through the handle of that extension module (already loaded: RTLD_NOLOAD), so the
functions called are the very ones cvxopt calls, never those of another UMFPACK in the
process. ctypes releases the GIL for the length of each foreign call, which cvxopt's
extension does not.

Only the `SuiteSparse_long` ("_l_") interface is used, as cvxopt does on 64-bit platforms:
`umfpack_dl_*` for real and `umfpack_zl_*` for complex matrices (packed complex: every `z`
array argument is NULL and the `x` arrays hold interleaved real and imaginary parts).
The prototypes and the `Control` / `Info` indices below are those of UMFPACK 5.7's
`umfpack.h`. UMFPACK 5.7 has no version function, so `load` checks instead that
`umfpack_dl_defaults` writes the documented defaults at the documented indices of
`Control` (and nothing past its 20 entries): another layout gives None.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import numpy as np


#: Sizes of the `Control` and `Info` arrays.
CONTROL, INFO = 20, 90

# Control indices.
PRL, PIVOT_TOLERANCE, BLOCK_SIZE, STRATEGY, ALLOC_INIT, IRSTEP = 0, 3, 4, 5, 6, 7
ORDERING, SYM_PIVOT_TOLERANCE, SCALE = 10, 15, 16
# Control[STRATEGY] values.
STRATEGIES = {"auto": 0, "unsymmetric": 1, "symmetric": 3}
# Control[ORDERING] values (METIS, 3, is not compiled into cvxopt's build: it gives AMD).
ORDERINGS = {"cholmod": 0, "amd": 1, "best": 4, "natural": 5}

# Info indices.
STATUS, SIZE_OF_UNIT, SYMBOLIC_SIZE = 0, 3, 14
NUMERIC_SIZE, LNZ, UNZ, RCOND, UMIN, UMAX = 40, 43, 44, 67, 71, 72
STRATEGY_USED, ORDERING_USED = 18, 19

# Status codes (>= 0: success; 1: a Numeric object was made, with a zero pivot).
OK, WARNING_SINGULAR = 0, 1
ERRORS = {
    -1: "out of memory",
    -3: "invalid Numeric object",
    -4: "invalid Symbolic object",
    -5: "argument missing",
    -6: "n nonpositive",
    -8: "invalid matrix",
    -11: "different pattern",
    -13: "invalid system",
    -15: "invalid permutation",
    -17: "file I/O error",
    -18: "ordering failed",
    -911: "internal error",
}

# Solve systems: A x = b, A^H x = b ("At": the conjugate transpose), A^T x = b ("Aat").
SYS_A, SYS_AH, SYS_AT = 0, 1, 2

#: The defaults `umfpack_dl_defaults` writes (umfpack.h, UMFPACK 5.7): index -> value.
_DOCUMENTED_DEFAULTS = {
    PRL: 1.0,
    1: 0.2,  # DENSE_ROW
    2: 0.2,  # DENSE_COL
    PIVOT_TOLERANCE: 0.1,
    BLOCK_SIZE: 32.0,
    STRATEGY: 0.0,
    ALLOC_INIT: 0.7,
    IRSTEP: 2.0,
    ORDERING: 1.0,
    SYM_PIVOT_TOLERANCE: 0.001,
    SCALE: 1.0,
    17: 0.5,  # FRONT_ALLOC_INIT
    18: 0.0,  # DROPTOL
    19: 1.0,  # AGGRESSIVE
}

_P = ctypes.c_void_p
_L = ctypes.c_int64  # SuiteSparse_long on 64-bit Linux
_PP = ctypes.POINTER(_P)


def _prototypes(kind: str) -> dict[str, tuple[Any, list]]:
    """name -> (restype, argtypes) for `kind` "d" (real) or "z" (complex); every array
    argument is a `c_void_p` (numpy's `ctypes.data`, or None for NULL)."""
    values = [_P] if kind == "d" else [_P, _P]  # Ax, or Ax and Az
    return {
        f"umfpack_{kind}l_defaults": (None, [_P]),
        # n_row, n_col, Ap, Ai, Ax(, Az), &Symbolic, Control, Info
        f"umfpack_{kind}l_symbolic": (_L, [_L, _L, _P, _P, *values, _PP, _P, _P]),
        # Ap, Ai, Ax(, Az), Symbolic, &Numeric, Control, Info
        f"umfpack_{kind}l_numeric": (_L, [_P, _P, *values, _P, _PP, _P, _P]),
        # sys, Ap, Ai, Ax(, Az), X(, Xz), B(, Bz), Numeric, Control, Info, Wi, W
        f"umfpack_{kind}l_wsolve": (
            _L,
            [_L, _P, _P, *values, *values, *values, _P, _P, _P, _P, _P],
        ),
        f"umfpack_{kind}l_free_symbolic": (None, [_PP]),
        f"umfpack_{kind}l_free_numeric": (None, [_PP]),
        # Lp, Lj, Lx(, Lz), Up, Ui, Ux(, Uz), P, Q, Dx(, Dz), &do_recip, Rs, Numeric
        f"umfpack_{kind}l_get_numeric": (
            _L,
            [_P, _P, *values, _P, _P, *values, _P, _P, *values, _P, _P, _P],
        ),
    }


def _defaults_match(library: ctypes.CDLL) -> bool:
    """Whether `umfpack_dl_defaults` fills `Control` as UMFPACK 5.7 documents."""
    sentinel = -12345.0
    control = np.full(CONTROL + 8, sentinel)
    library.umfpack_dl_defaults(control.ctypes.data)
    if np.any(control[CONTROL:] != sentinel):
        return False  # a longer Control: another version
    return all(control[index] == value for index, value in _DOCUMENTED_DEFAULTS.items())


def load() -> ctypes.CDLL | None:
    """cvxopt's UMFPACK 5.7 with the prototypes set, or None when it cannot be found, is
    not loaded in this process, or does not fill `Control` as UMFPACK 5.7 does."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        from cvxopt import umfpack
    except ImportError:
        return None
    try:
        library = ctypes.CDLL(umfpack.__file__, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        for kind in ("d", "z"):
            for function, (restype, argtypes) in _prototypes(kind).items():
                entry = getattr(library, function)
                entry.restype, entry.argtypes = restype, argtypes
    except (OSError, AttributeError):
        return None
    return library if _defaults_match(library) else None


def defaults(library: ctypes.CDLL) -> np.ndarray:
    """A fresh `Control` array of UMFPACK's defaults."""
    control = np.zeros(CONTROL)
    library.umfpack_dl_defaults(control.ctypes.data)
    return control


def error_text(status: int) -> str:
    return ERRORS.get(status, f"status {status}")
