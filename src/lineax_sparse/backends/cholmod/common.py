"""One `cholmod_common` per thread (`thread_common`), set up as cvxopt sets up its own.

CHOLMOD keeps its options, status and workspace in a `cholmod_common`, which two threads
must never use at once; cvxopt has one for the whole process. Each thread that calls
CHOLMOD through ctypes gets its own: a zeroed 64 KiB buffer (`sizeof(cholmod_common)` is
about 3 KiB in CHOLMOD 3) passed to `cholmod_l_start`, freed by `cholmod_l_finish` when
the thread's storage goes.

`CommonHead` transcribes the fields of CHOLMOD 3.0's `cholmod_common` (cholmod_core.h of
SuiteSparse 4.3 to 5.4; the fields up to `useGPU` are unchanged over 3.0.0-3.0.14) up to
`useGPU`. The layout is checked once (`check_layout`): after `cholmod_l_start`, every field
the backend writes or reads, and fields before, between and after them, must hold the
defaults `cholmod_l_defaults` documents; one that does not means another layout, and the
backend keeps cvxopt's calls.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any


_D, _I, _S, _L, _P = ctypes.c_double, ctypes.c_int, ctypes.c_size_t, ctypes.c_int64, ctypes.c_void_p
#: Bytes given to each `cholmod_common` (the struct needs about 3 KiB).
COMMON_BYTES = 64 << 10
#: CHOLMOD's `EMPTY` and its `CHOLMOD_LONG` index type.
_EMPTY, _LONG = -1, 2


class _Method(ctypes.Structure):
    """`cholmod_common.method[k]`: the parameters of one ordering method."""

    _fields_ = [
        ("lnz", _D),
        ("fl", _D),
        ("prune_dense", _D),
        ("prune_dense2", _D),
        ("nd_oksep", _D),
        ("other_1", _D * 4),
        ("nd_small", _S),
        ("other_2", _S * 4),
        ("aggressive", _I),
        ("order_for_lu", _I),
        ("nd_compress", _I),
        ("nd_camd", _I),
        ("nd_components", _I),
        ("ordering", _I),
        ("other_3", _S * 4),
    ]


class CommonHead(ctypes.Structure):
    """The fields of CHOLMOD 3's `cholmod_common` up to `useGPU`."""

    _fields_ = [
        ("dbound", _D),
        ("grow0", _D),
        ("grow1", _D),
        ("grow2", _S),
        ("maxrank", _S),
        ("supernodal_switch", _D),
        ("supernodal", _I),
        ("final_asis", _I),
        ("final_super", _I),
        ("final_ll", _I),
        ("final_pack", _I),
        ("final_monotonic", _I),
        ("final_resymbol", _I),
        ("zrelax", _D * 3),
        ("nrelax", _S * 3),
        ("prefer_zomplex", _I),
        ("prefer_upper", _I),
        ("quick_return_if_not_posdef", _I),
        ("prefer_binary", _I),
        ("print", _I),
        ("precise", _I),
        ("try_catch", _I),
        ("error_handler", _P),
        ("nmethods", _I),
        ("current", _I),
        ("selected", _I),
        ("method", _Method * 10),  # CHOLMOD_MAXMETHODS + 1
        ("postorder", _I),
        ("default_nesdis", _I),
        ("metis_memory", _D),
        ("metis_dswitch", _D),
        ("metis_nswitch", _S),
        ("nrow", _S),
        ("mark", _L),
        ("iworksize", _S),
        ("xworksize", _S),
        ("Flag", _P),
        ("Head", _P),
        ("Xwork", _P),
        ("Iwork", _P),
        ("itype", _I),
        ("dtype", _I),
        ("no_workspace_reallocate", _I),
        ("status", _I),
        ("fl", _D),
        ("lnz", _D),
        ("anz", _D),
        ("modfl", _D),
        ("malloc_count", _S),
        ("memory_usage", _S),
        ("memory_inuse", _S),
        ("nrealloc_col", _D),
        ("nrealloc_factor", _D),
        ("ndbounds_hit", _D),
        ("rowfacfl", _D),
        ("aatfl", _D),
        ("called_nd", _I),
        ("blas_ok", _I),
        ("SPQR_grain", _D),
        ("SPQR_small", _D),
        ("SPQR_shrink", _I),
        ("SPQR_nthreads", _I),
        ("SPQR_flopcount", _D),
        ("SPQR_analyze_time", _D),
        ("SPQR_factorize_time", _D),
        ("SPQR_solve_time", _D),
        ("SPQR_flopcount_bound", _D),
        ("SPQR_tol_used", _D),
        ("SPQR_norm_E_fro", _D),
        ("SPQR_istat", _L * 10),
        ("useGPU", _I),
    ]


#: What `cholmod_l_start` leaves in the fields (`cholmod_l_defaults`, CHOLMOD 3.0).
_DEFAULTS = {
    "dbound": 0.0,
    "grow0": 1.2,
    "grow1": 1.2,
    "grow2": 5,
    "maxrank": 8,
    "supernodal_switch": 40.0,
    "supernodal": 1,
    "final_asis": 1,
    "final_super": 1,
    "final_ll": 0,
    "final_pack": 1,
    "final_monotonic": 1,
    "final_resymbol": 0,
    "zrelax": [0.8, 0.1, 0.05],
    "nrelax": [4, 16, 48],
    "prefer_zomplex": 0,
    "prefer_upper": 1,
    "quick_return_if_not_posdef": 0,
    "print": 3,
    "try_catch": 0,
    "error_handler": None,
    "nmethods": 0,
    "postorder": 1,
    "default_nesdis": 0,
    "metis_memory": 0.0,
    "metis_dswitch": 0.66,
    "metis_nswitch": 3000,
    "mark": _EMPTY,
    "Flag": None,
    "itype": _LONG,
    "dtype": 0,
    "status": 0,
    "fl": float(_EMPTY),
    "lnz": float(_EMPTY),
    "modfl": float(_EMPTY),
    "malloc_count": 0,
    "aatfl": float(_EMPTY),
    "blas_ok": 1,
    "SPQR_grain": 1.0,
    "SPQR_small": 1e6,
    "SPQR_shrink": 1,
    "useGPU": _EMPTY,
}
#: `method[k].ordering` and `.nd_small` after `cholmod_l_defaults`.
_ORDERINGS = [1, 2, 3, 4, 0, 4, 4, 4, 5, 2]
_ND_SMALL = [200, 200, 200, 200, 200, 20000, 4, 200, 200, 200]


class ThreadCommon:
    """A `cholmod_common` of one thread, started by `cholmod_l_start`."""

    def __init__(self, library: Any):
        self._library = library
        self._buffer = (ctypes.c_char * COMMON_BYTES)()  # zeroed
        self.address = ctypes.addressof(self._buffer)
        self.head = CommonHead.from_address(self.address)
        self._started = bool(library.cholmod_l_start(self.address))

    def configure(self, options: dict) -> None:
        """Hold exactly `options` (cvxopt's `cholmod.options` keys, which are the fields'
        names) over `cholmod_l_defaults`' values, as cvxopt's `set_options` does."""
        for name, value in options.items():
            setattr(self.head, name, value)

    def __del__(self):
        if getattr(self, "_started", False):
            self._started = False
            self._library.cholmod_l_finish(self.address)  # frees the workspace


def check_layout(library: Any) -> str | None:
    """None if a started `cholmod_common` holds CHOLMOD 3.0's defaults where `CommonHead`
    says, else which field does not."""
    if ctypes.sizeof(CommonHead) > COMMON_BYTES:
        return "CommonHead is larger than the buffer"
    common = ThreadCommon(library)
    if not common._started:
        return "cholmod_l_start failed"
    head = common.head
    for name, expected in _DEFAULTS.items():
        value = getattr(head, name)
        if isinstance(value, ctypes.Array):
            value = list(value)
        if value != expected:
            return f"cholmod_common.{name} is {value!r} after cholmod_l_start, not {expected!r}"
    for k, method in enumerate(head.method):
        if (method.ordering, method.nd_small) != (_ORDERINGS[k], _ND_SMALL[k]):
            return f"cholmod_common.method[{k}] does not hold CHOLMOD's defaults"
    return None


_local = threading.local()


def thread_common(library: Any) -> ThreadCommon:
    """This thread's `cholmod_common`, started on first use."""
    common = getattr(_local, "common", None)
    if common is None:
        common = _local.common = ThreadCommon(library)
    return common
