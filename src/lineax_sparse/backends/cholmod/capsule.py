"""What a CHOLMOD factor holds, read through ctypes from the `cholmod_factor` struct behind a
cvxopt capsule: its size in bytes (`factor_bytes`, for the cache's budget), its entries
(`factor_entries`) and a symbolic factor's column counts (`column_counts`, for the
`"auto"` ordering rule).

cvxopt offers no size of a factor (`getfactor` converts the factor to a symbolic one: it
cannot be used on a live factor), so read-only scalar fields are read after validating the
struct against what is known of the factor; a struct that does not validate (another
CHOLMOD layout) gives None, and the caller uses an estimate instead.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


class FactorHead(ctypes.Structure):
    """The leading fields of CHOLMOD's `cholmod_factor` (unchanged from CHOLMOD 1 to 4)."""

    _fields_ = [
        ("n", ctypes.c_size_t),
        ("minor", ctypes.c_size_t),
        ("Perm", ctypes.c_void_p),
        ("ColCount", ctypes.c_void_p),
        ("IPerm", ctypes.c_void_p),
        ("nzmax", ctypes.c_size_t),
        ("p", ctypes.c_void_p),
        ("i", ctypes.c_void_p),
        ("x", ctypes.c_void_p),
        ("z", ctypes.c_void_p),
        ("nz", ctypes.c_void_p),
        ("next", ctypes.c_void_p),
        ("prev", ctypes.c_void_p),
        ("nsuper", ctypes.c_size_t),
        ("ssize", ctypes.c_size_t),
        ("xsize", ctypes.c_size_t),
        ("maxcsize", ctypes.c_size_t),
        ("maxesize", ctypes.c_size_t),
        ("super", ctypes.c_void_p),
        ("pi", ctypes.c_void_p),
        ("px", ctypes.c_void_p),
        ("s", ctypes.c_void_p),
        ("ordering", ctypes.c_int),
        ("is_ll", ctypes.c_int),
        ("is_super", ctypes.c_int),
        ("is_monotonic", ctypes.c_int),
        ("itype", ctypes.c_int),
        ("xtype", ctypes.c_int),
        ("dtype", ctypes.c_int),
    ]


# Private prototypes, so that no other user of `ctypes.pythonapi` is affected.
_capsule_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
    ("PyCapsule_GetName", ctypes.pythonapi)
)
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)
_CAPSULE_NAMES = (b"CHOLMOD FACTOR D L", b"CHOLMOD FACTOR Z L")
#: CHOLMOD's `itype` (index width) and `xtype` (kind of values) codes.
CHOLMOD_INT, CHOLMOD_LONG = 0, 2
CHOLMOD_PATTERN, CHOLMOD_REAL, CHOLMOD_COMPLEX = 0, 1, 2


def capsule_address(capsule: Any) -> int | None:
    """The address of the `cholmod_factor` behind a cvxopt capsule, or None."""
    try:
        name = _capsule_name(capsule)
        if name not in _CAPSULE_NAMES:
            return None
        return _capsule_pointer(capsule, name) or None
    except Exception:  # noqa: BLE001 - any failure means "unknown"
        return None


def factor_head(capsule: Any, n: int, typecode: str | None) -> FactorHead | None:
    """The validated head of a CHOLMOD factor's struct, numeric of `typecode` or symbolic
    (`typecode=None`), or None if it does not validate (another CHOLMOD layout)."""
    address = capsule_address(capsule)
    return None if address is None else head_at(address, n, typecode)


def head_at(address: int, n: int, typecode: str | None) -> FactorHead | None:
    """`factor_head` of the `cholmod_factor` at `address`."""
    head = FactorHead.from_address(address)
    xtype = {None: CHOLMOD_PATTERN, "d": CHOLMOD_REAL, "z": CHOLMOD_COMPLEX}[typecode]
    if typecode is None:  # a symbolic factor: only its column counts are read
        if head.xtype != xtype or head.itype not in (CHOLMOD_INT, CHOLMOD_LONG):
            return None
        return head if head.n == n and head.dtype == 0 and head.ColCount else None
    if (
        head.n != n
        or head.minor != n
        or head.xtype != xtype
        or head.dtype != 0
        or head.itype not in (CHOLMOD_INT, CHOLMOD_LONG)
        or head.is_ll not in (0, 1)
        or head.is_super not in (0, 1)
    ):
        return None
    limit = 1 << 48
    if head.is_super:
        if not (head.is_ll and 0 < head.xsize < limit and head.ssize < limit):
            return None
    elif not (n <= head.nzmax < limit):
        return None
    return head


def column_counts(capsule: Any, n: int) -> np.ndarray | None:
    """The column counts of L (diagonal included) of a symbolic CHOLMOD factor (a copy), or
    None if its struct or the counts do not validate."""
    head = factor_head(capsule, n, None)
    if head is None:
        return None
    integer = ctypes.c_int64 if head.itype == CHOLMOD_LONG else ctypes.c_int32
    counts = np.ctypeslib.as_array((integer * n).from_address(head.ColCount)).astype(np.int64)
    if counts.size and (counts.min() < 1 or counts.max() > n):
        return None
    return counts


def factor_entries(capsule: Any, n: int, typecode: str) -> int | None:
    """Entries of L as CHOLMOD stores them (a supernodal factor's dense blocks in full), or
    None if the factor's struct does not validate."""
    head = factor_head(capsule, n, typecode)
    if head is None:
        return None
    return int(head.xsize if head.is_super else head.nzmax)


def factor_bytes(capsule: Any, n: int, typecode: str) -> int | None:
    """Bytes held by a numeric CHOLMOD factor, or None if its struct does not validate."""
    head = factor_head(capsule, n, typecode)
    return None if head is None else head_bytes(head, typecode)


def head_bytes(head: FactorHead, typecode: str) -> int:
    """Bytes held by the validated numeric factor whose head is `head`."""
    n = head.n
    index = 8 if head.itype == CHOLMOD_LONG else 4
    item = 16 if typecode == "z" else 8
    if head.is_super:
        integers = head.ssize + 3 * (head.nsuper + 1) + 2 * n
        return head.xsize * item + integers * index
    # Perm, ColCount, p, nz, next, prev (about n each) and the row indices.
    return head.nzmax * (item + index) + 6 * (n + 2) * index
