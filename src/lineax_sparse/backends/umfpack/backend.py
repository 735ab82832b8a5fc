"""`UMFPACKBackend`: UMFPACK's multifrontal LU of square real or complex matrices, through
the UMFPACK 5.7 bundled with cvxopt (`library.py`), with the checks UMFPACK does not make
(pivots at rounding level, backward error, overflow, condition).

The symbolic analysis (ordering, frontal tree) is made once per pattern from the pattern
alone, so the answer for a matrix never depends on what was factorized before; each
matrix gets its own numeric factorization, whose `Numeric` object is freed when the factor
is dropped. The analysis is given values of one at every entry rather than none: without
values (`Ax = NULL`) UMFPACK 5.7 counts no diagonal entry and never takes its symmetric
strategy, which on a 256^2 convection-diffusion matrix left 1.5x the fill and 1.7x the
numeric time (6.0M entries of L + U and 338 ms, against 3.9M and 201 ms with ones, the
same as with the matrix's own values).

UMFPACK's own iterative refinement is kept, with one step (`IRSTEP = 1`; UMFPACK's default
is 2): its threshold pivoting (a pivot within 0.1 of its column's largest entry, 0.001 on
the diagonal under the symmetric strategy) leaves unrefined solutions with backward errors
up to 28 eps (a random complex matrix, n = 60) and 31 eps (a Stokes saddle point, n = 67k),
far below the 1e-8 at which the shared `checked_solve` refines but above the eps or so of
partial pivoting. One step brings them to at most 0.6 eps for about twice the cost of a
solve (34 -> 70 ms on that Stokes matrix, beside a 660 ms factorization); a second step
changed nothing. Condition estimates, which need no accuracy, solve unrefined. The
measurements: docs/backends/umfpack.md.
"""

from __future__ import annotations

import ctypes
import dataclasses
import threading
import weakref

import numpy as np
import scipy.sparse as sp

from ..direct import AbstractDirectBackend, Factored
from ..numerics import (
    column_maxima,
    Condition,
    equilibrate,
    is_extreme,
    matrix_norm,
    NormBound,
)
from ..pattern import Pattern
from ..status import FactorError, Status
from . import library as umf


#: UMFPACK's iterative refinement steps per solve (the module docstring says why).
IRSTEP = 1

_library: ctypes.CDLL | None = None
_library_lock = threading.Lock()


def _load() -> ctypes.CDLL:
    global _library
    with _library_lock:
        if _library is None:
            _library = umf.load()
            if _library is None:
                raise ImportError(
                    "`UMFPACK()` uses the UMFPACK 5.7 library bundled with cvxopt's Linux "
                    "x86_64 / aarch64 wheels, which this environment does not provide: "
                    "`pip install cvxopt` (a wheel, not a source build), or use `SuperLU()`."
                )
    return _library


def _ptr(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


def _check(status: int, call: str) -> None:
    if status == -1:
        raise MemoryError(f"UMFPACK: out of memory in {call}")
    if status < 0:
        raise RuntimeError(f"UMFPACK: {call} failed ({umf.error_text(status)})")


class _Handle:
    """A `Symbolic` or `Numeric` object of UMFPACK, freed when this handle is collected."""

    __slots__ = ("__weakref__", "pointer")

    def __init__(self, library: ctypes.CDLL, free: str, pointer: ctypes.c_void_p):
        self.pointer = pointer
        # Not at exit: the process is leaving and the library may be unloaded first.
        weakref.finalize(self, getattr(library, free), ctypes.byref(pointer)).atexit = False


@dataclasses.dataclass
class _Analysis:
    """Per pattern: its CSC structure in `SuiteSparse_long` and the `Symbolic` object of
    each scalar kind (real first; complex made by the first complex factorization)."""

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    symbolic: dict[bool, tuple[_Handle, int]]  # is complex -> (Symbolic, bytes)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


@dataclasses.dataclass
class _Factor:
    numeric: _Handle | None
    complex: bool
    analysis: _Analysis
    values: np.ndarray  # the values factorized (kept for UMFPACK's refinement, if on)
    matrix: sp.csc_matrix  # the matrix factorized: A, or R A C when equilibrated
    norm: float | NormBound
    row_exponents: np.ndarray | None
    column_exponents: np.ndarray | None
    nbytes: int
    condition: Condition = dataclasses.field(default_factory=Condition)


class UMFPACKBackend(AbstractDirectBackend):
    """UMFPACK's LU; `strategy`, `ordering` and `pivot_tolerance` as the `UMFPACK`
    solver's fields."""

    #: The ctypes calls release the GIL (a Python loop beside back-to-back factorizations
    #: on another thread kept half its pace on a loaded machine, none if the GIL were
    #: held), and UMFPACK's numeric factorization and solves only read the `Symbolic` /
    #: `Numeric` objects they are given ("Input argument, not modified", umfpack.h), each
    #: call with its own workspace and `Info` (docs/backends/umfpack.md).
    parallel = True

    def __init__(self, strategy: str, ordering: str, pivot_tolerance: float):
        self.library = _load()
        control = umf.defaults(self.library)
        control[umf.PRL] = 0.0
        control[umf.STRATEGY] = umf.STRATEGIES[strategy]
        control[umf.ORDERING] = umf.ORDERINGS[ordering]
        control[umf.PIVOT_TOLERANCE] = pivot_tolerance
        control[umf.IRSTEP] = IRSTEP
        control.flags.writeable = False  # read by every call, on any thread
        self.control = control
        unrefined = control.copy()
        unrefined[umf.IRSTEP] = 0
        unrefined.flags.writeable = False
        self.unrefined = unrefined

    # ------------------------------------------------------------------------ analysis

    def analyse(self, pattern: Pattern) -> _Analysis:
        analysis = _Analysis(
            pattern.n,
            pattern.indptr.astype(np.int64),
            pattern.row_indices.astype(np.int64),
            {},
        )
        if pattern.n:
            self._symbolic(analysis, False)
        return analysis

    def _symbolic(self, analysis: _Analysis, is_complex: bool) -> _Handle:
        with analysis.lock:
            if is_complex not in analysis.symbolic:
                kind = "z" if is_complex else "d"
                pointer, info = ctypes.c_void_p(), np.zeros(umf.INFO)
                # Ones at every entry (packed complex: Az = NULL): the pattern alone.
                ones = np.ones(analysis.indices.size, np.complex128 if is_complex else float)
                values = (_ptr(ones), None) if is_complex else (_ptr(ones),)
                status = getattr(self.library, f"umfpack_{kind}l_symbolic")(
                    analysis.n,
                    analysis.n,
                    _ptr(analysis.indptr),
                    _ptr(analysis.indices),
                    *values,
                    ctypes.byref(pointer),
                    _ptr(self.control),
                    _ptr(info),
                )
                _check(int(status), "symbolic analysis")
                handle = _Handle(self.library, f"umfpack_{kind}l_free_symbolic", pointer)
                size = int(info[umf.SYMBOLIC_SIZE] * info[umf.SIZE_OF_UNIT])
                analysis.symbolic[is_complex] = (handle, size)
            return analysis.symbolic[is_complex][0]

    def analysis_nbytes(self, analysis: _Analysis) -> int:
        indices = analysis.indptr.nbytes + analysis.indices.nbytes
        return int(indices + sum(size for _, size in analysis.symbolic.values()))

    # --------------------------------------------------------------------- factorization

    def factor(self, pattern: Pattern, analysis: _Analysis, matrix: sp.csc_matrix, aux) -> _Factor:
        del aux  # UMFPACK depends on the matrix alone
        is_complex = np.iscomplexobj(matrix.data)
        if pattern.n == 0:
            return _Factor(
                None, is_complex, analysis, matrix.data, matrix, 0.0, None, None, 0,
                Condition(rcond=np.inf),
            )  # fmt: skip
        column_max = column_maxima(matrix)
        rows = columns = None
        if is_extreme(float(column_max.max(initial=0.0))) or is_extreme(
            float(np.min(column_max, where=column_max > 0, initial=np.inf))
        ):
            matrix, rows, columns = equilibrate(matrix)
            column_max = column_maxima(matrix)
        dtype = np.complex128 if is_complex else np.float64
        values = np.ascontiguousarray(matrix.data, dtype=dtype)
        symbolic = self._symbolic(analysis, is_complex)
        kind = "z" if is_complex else "d"
        pointer, info = ctypes.c_void_p(), np.zeros(umf.INFO)
        nulls = (None,) if is_complex else ()  # Az = NULL: packed complex
        status = int(
            getattr(self.library, f"umfpack_{kind}l_numeric")(
                _ptr(analysis.indptr),
                _ptr(analysis.indices),
                _ptr(values),
                *nulls,
                symbolic.pointer,
                ctypes.byref(pointer),
                _ptr(self.control),
                _ptr(info),
            )
        )
        numeric = None
        if pointer.value:  # made, also with the singular warning: freed with the handle
            numeric = _Handle(self.library, f"umfpack_{kind}l_free_numeric", pointer)
        _check(status, "numeric factorization")
        if status == umf.WARNING_SINGULAR:
            raise FactorError(Status.SINGULAR, "UMFPACK: the matrix is singular (a zero pivot)")
        stored = values.nbytes + analysis.indices.nbytes // 2 + analysis.indptr.nbytes // 2
        factor = _Factor(
            numeric,
            is_complex,
            analysis,
            values,
            matrix,
            NormBound(float(column_max.max(initial=0.0)), lambda: matrix_norm(matrix)),
            rows,
            columns,
            int(info[umf.NUMERIC_SIZE] * info[umf.SIZE_OF_UNIT]) + stored,
        )
        self._check_pivots(factor)
        return factor

    def _pivot_ratios(self, factor: _Factor) -> tuple[np.ndarray, np.ndarray]:
        """`|U_kk|` over the largest magnitude of its column in UMFPACK's row-scaled
        matrix `P R S Q = L U` (read with `get_numeric`, O(n) plus O(nnz) here)."""
        n, is_complex = factor.analysis.n, factor.complex
        diagonal = np.zeros(n, np.complex128 if is_complex else np.float64)
        scale, reciprocal = np.zeros(n), ctypes.c_int64()
        order = np.zeros(n, np.int64)
        kind = "z" if is_complex else "d"
        values = (None, None) if is_complex else (None,)
        status = getattr(self.library, f"umfpack_{kind}l_get_numeric")(
            None, None, *values,  # L
            None, None, *values,  # U
            None, _ptr(order),  # P, Q
            _ptr(diagonal), *values[1:],  # Dx (packed complex)
            ctypes.byref(reciprocal),
            _ptr(scale),
            factor.numeric.pointer,
        )  # fmt: skip
        _check(int(status), "get_numeric")
        matrix = factor.matrix
        row_scale = scale if reciprocal.value else 1.0 / scale
        scaled = np.abs(matrix.data) * row_scale[matrix.indices]
        column_max = column_maxima(sp.csc_matrix((scaled, matrix.indices, matrix.indptr)))
        with np.errstate(all="ignore"):
            return diagonal, np.abs(diagonal) / column_max[order]

    def _check_pivots(self, factor: _Factor) -> None:
        pivots, ratios = self._pivot_ratios(factor)
        self.gate_pivots(factor, pivots, ratios, "UMFPACK")

    def estimate_inverse(
        self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> np.ndarray:
        return self._apply(factor, rhs, transpose, conjugate, refine=False)

    # ---------------------------------------------------------------------------- solves

    def apply_inverse(
        self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> np.ndarray:
        return self._apply(factor, rhs, transpose, conjugate, refine=True)

    def _apply(
        self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool, refine: bool
    ) -> np.ndarray:
        """`op(S)^-1 rhs`, with UMFPACK's refinement (`IRSTEP`) if `refine`."""
        n, k = rhs.shape
        is_complex = factor.complex
        dtype = np.complex128 if is_complex else np.float64
        # conj(S) x = b  <=>  S conj(x) = conj(b); S^H is UMFPACK's "At", S^T its "Aat".
        flip = is_complex and conjugate and not transpose
        system = umf.SYS_AH if (transpose and conjugate and is_complex) else umf.SYS_A
        if transpose and system == umf.SYS_A:
            system = umf.SYS_AT
        block = np.asfortranarray(rhs.conj() if flip else rhs, dtype=dtype)
        x = np.empty((n, k), dtype=dtype, order="F")
        refine = refine and IRSTEP > 0
        words = (10 if refine else 4) if is_complex else (5 if refine else 1)
        wi, w = np.empty(n, np.int64), np.empty(words * n)
        analysis = factor.analysis
        solve = getattr(self.library, f"umfpack_{'z' if is_complex else 'd'}l_wsolve")
        zero = (None,) if is_complex else ()  # the z arrays: packed complex
        info = np.zeros(umf.INFO)
        ap, ai, ax = _ptr(analysis.indptr), _ptr(analysis.indices), _ptr(factor.values)
        stride = n * x.itemsize
        base_x, base_b = x.ctypes.data, block.ctypes.data
        numeric, wi_p, w_p = factor.numeric.pointer, _ptr(wi), _ptr(w)
        control = _ptr(self.control if refine else self.unrefined)
        info_p = _ptr(info)
        # One call per column: UMFPACK solves one right-hand side at a time.
        for j in range(k):
            status = solve(
                system, ap, ai, ax, *zero, base_x + j * stride, *zero,
                base_b + j * stride, *zero, numeric, control, info_p, wi_p, w_p,
            )  # fmt: skip
            if status < 0:
                _check(int(status), "solve")
        return x.conj() if flip else x

    def factored(self, factor: _Factor) -> Factored:
        return Factored(
            factor.matrix,
            factor.norm,
            factor.row_exponents,
            factor.column_exponents,
            factor.condition,
        )

    def is_complex(self, factor: _Factor) -> bool:
        return factor.complex

    def nbytes(self, factor: _Factor) -> int:
        return factor.nbytes
