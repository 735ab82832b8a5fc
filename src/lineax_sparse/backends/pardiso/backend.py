"""`PardisoBackend`: MKL PARDISO's factorizations (Cholesky, `L D L^T` with Bunch-Kaufman
pivoting, LU) of real and complex matrices, one PARDISO handle per factor, with the checks
every direct backend makes (symmetry, backward error, refinement, condition) and PARDISO's
inertia and perturbed pivots as statistics. How it works and the measurements behind each
choice: docs/backends/pardiso.md.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..direct import AbstractDirectBackend, Factored
from ..numerics import (
    column_maxima,
    Condition,
    equilibrate,
    is_extreme,
    NormBound,
    scale,
    symmetric_equilibration,
)
from ..numerics.norms import matrix_norm
from ..pattern import Pattern
from ..statistics import DECLARED
from ..status import FactorError, SolveResult, Status
from . import library, structure, threads
from .structure import Structure
from .symmetry import is_symmetric


#: PARDISO's matrix types (`mtype`) by the solver's `matrix_type` and real / complex values.
MTYPES: dict[str, tuple[int, int]] = {
    "spd": (2, 4),  # real symmetric / complex Hermitian positive definite (Cholesky)
    "symmetric_indefinite": (-2, 6),  # real symmetric (L D L^T) / complex symmetric
    "hermitian_indefinite": (-2, -4),  # real symmetric / complex Hermitian (L D L^T)
    "general": (11, 13),  # real / complex unsymmetric (LU)
}
#: Types whose inertia PARDISO counts (`iparm[21]`, `iparm[22]`); positive definite ones
#: have `(n, 0, 0)` when factorized, the others report -1 (unknown).
_INERTIA_TYPES = (-2, -4)
_POSITIVE_TYPES = (2, 4)
_HERMITIAN_TYPES = (2, 4, -2, -4)

#: PARDISO's error codes (`error`), as its documentation names them.
_ERRORS = {
    -1: "input inconsistent",
    -2: "not enough memory",
    -3: "reordering problem",
    -4: "zero pivot, numerical factorization or iterative refinement problem",
    -5: "unclassified (internal) error",
    -6: "reordering failed",
    -7: "diagonal matrix is singular",
    -8: "32-bit integer overflow problem",
    -9: "not enough memory for out-of-core",
    -10: "error opening out-of-core files",
    -11: "read/write error with out-of-core files",
    -12: "pardiso_64 called from 32-bit library",
    -13: "interrupted by the mkl_progress function",
    -15: "internal error in the Intel TBB threading layer",
}


def _settings(mtype: int, wide: bool) -> np.ndarray:
    """`iparm` for `mtype`: PARDISO's defaults (`pardisoinit`) and the settings below."""
    iparm = library.defaults(mtype).astype(np.int64 if wide else np.int32)
    iparm[0] = 1  # these settings, not the defaults
    iparm[1] = 2  # METIS's nested dissection, sequential: the same ordering on any threads
    iparm[5] = 0  # the solution goes to `x`, `b` is kept
    # Iterative refinement: two steps when pivots were perturbed, none otherwise (MKL's
    # meaning of 0; `pardisoinit` sets 2, always refining). Perturbed pivots need it: a
    # saddle point's residual is 2e-2 without. The checks refine further if needed.
    iparm[7] = 0
    iparm[17] = -1  # report nnz(L + U) in iparm[17]
    iparm[26] = 0  # no matrix checker: the host has checked the structure
    iparm[27] = 0  # double precision
    # Conditional numerical reproducibility: the same bits on any number of threads
    # (measured on a 22,500-unknown saddle point: 1 and 2 threads identical with it,
    # 1.4e-13 apart without).
    iparm[33] = 1
    iparm[34] = 1  # 0-based indices
    if mtype in (-2, -4, 6):
        # Scaling and weighted matching, as MKL advises for symmetric indefinite matrices:
        # without them hangGlider_2's residual is 3e124, and a 22,500-unknown saddle point
        # has 98 perturbed pivots (none with them).
        iparm[10] = iparm[12] = 1
    return iparm


class _Factor:
    """One PARDISO factorization: its handle `pt` (released with phase -1 when the factor
    is collected), settings `iparm` (with the factorization's outputs), the arrays it
    was given, and the checks' data."""

    def __init__(self, mtype, pt, iparm, layout: Structure, values, matrix, norm):
        self.mtype, self.pt, self.iparm, self.layout = mtype, pt, iparm, layout
        self.values = values  # PARDISO reads them again in every solve
        self.matrix = matrix  # S, the matrix factorized (A or R A C), for the checks
        self.norm = norm
        self.condition = Condition()
        self.steps = 0  # PARDISO's refinement steps in the solve under way
        # S = R A C with R = diag(2^-row_exponents), C likewise, when equilibrated.
        self.row_exponents: np.ndarray | None = None
        self.column_exponents: np.ndarray | None = None
        if pt is not None:
            weakref.finalize(self, _release, mtype, pt, layout, iparm.dtype)


def _release(mtype: int, pt: np.ndarray, layout: Structure, dtype) -> None:
    iparm = np.zeros(64, dtype=dtype)
    library.call(pt, mtype, -1, layout.n, None, layout.indptr, layout.indices, iparm)


def _equilibrated(matrix: sp.csc_matrix, mtype: int):
    """`(S, row_exponents, column_exponents, max |s_ij|)`: `S = R A C` scaled by powers of
    two when `A`'s values are near the overflow or underflow threshold (PARDISO fails on a
    Poisson matrix times 1e-310), `(A, None, None, max |a_ij|)` otherwise. A symmetric type
    is scaled symmetrically (`R = C`, from the columns' largest entries, since a saddle
    point's diagonal may be zero), which keeps symmetry and definiteness; exact either way."""
    column_max = column_maxima(matrix)
    nonzero = column_max[column_max > 0]
    if not (
        is_extreme(float(nonzero.max(initial=0.0)))
        or is_extreme(float(nonzero.min(initial=np.inf)))
    ):
        return matrix, None, None, float(column_max.max(initial=0.0))
    if mtype in (11, 13):
        scaled, rows, columns = equilibrate(matrix)
        return scaled, rows, columns, float(column_maxima(scaled).max(initial=0.0))
    # d_j^2 max_k |a_kj| in [0.25, 1): every |d_i a_ij d_j| <= 1 (a_ij = a_ji in size).
    e = symmetric_equilibration(column_max)
    rows = matrix.indices
    columns = np.repeat(np.arange(matrix.shape[1]), np.diff(matrix.indptr))
    data = scale(matrix.data, -(e[rows] + e[columns]))
    scaled = sp.csc_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)
    return scaled, e, e, float(column_maxima(scaled).max(initial=0.0))


class PardisoBackend(AbstractDirectBackend):
    """MKL PARDISO; `matrix_type` as the `Pardiso` solver's field, resolved from the
    operator's tags (one of `MTYPES`)."""

    #: ctypes releases the GIL in every PARDISO call, and each factor has its own handle.
    parallel = True
    factor_statistics: ClassVar[dict[str, tuple[int, ...]]] = DECLARED["pardiso"]

    def __init__(self, matrix_type: str):
        if matrix_type not in MTYPES:
            raise ValueError(
                f"PARDISO matrix_type must be one of {tuple(MTYPES)}, got {matrix_type!r}."
            )
        self.matrix_type = matrix_type
        self._settings: dict[tuple[int, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    def _iparm(self, mtype: int, wide: bool) -> np.ndarray:
        key = (mtype, wide)
        if key not in self._settings:
            with self._lock:
                self._settings.setdefault(key, _settings(mtype, wide))
        return self._settings[key].copy()

    def analyse(self, pattern: Pattern) -> Structure:
        if self.matrix_type == "general":
            return structure.general(pattern)
        return structure.upper(pattern)

    def factor(
        self, pattern: Pattern, analysis: Structure, matrix: sp.csc_matrix, aux: Any
    ) -> _Factor:
        del aux  # PARDISO depends on the matrix alone
        complex_ = np.iscomplexobj(matrix.data)
        mtype = MTYPES[self.matrix_type][int(complex_)]
        self._check_symmetry(pattern, matrix.data, mtype)
        if analysis.n == 0:
            empty = np.zeros(0, dtype=np.int32)
            return _Factor(mtype, None, np.zeros(64, np.int32), analysis, empty, matrix, 0.0)
        if analysis.empty:
            raise FactorError(
                Status.SINGULAR, "PARDISO: the matrix has a row or column without entries"
            )
        matrix, rows, columns, top = _equilibrated(matrix, mtype)
        # max |s_ij| <= max(|S|_1, |S|_inf): the exact norm only if a check needs it.
        norm = NormBound(top, functools.partial(matrix_norm, matrix))
        values = analysis.values(matrix.data, conjugate=complex_ and mtype in _HERMITIAN_TYPES)
        layout = analysis
        error, pt, iparm = self._factorize(mtype, layout, values)
        if error == -8 and not layout.wide:  # the factor's indices need 64 bits
            layout = analysis.widened()
            error, pt, iparm = self._factorize(mtype, layout, values)
        if error:
            raise self._failure(mtype, error)
        factor = _Factor(mtype, pt, iparm, layout, values, matrix, norm)
        factor.row_exponents, factor.column_exponents = rows, columns
        return factor

    def _factorize(self, mtype: int, layout: Structure, values: np.ndarray):
        pt = library.new_handle()
        iparm = self._iparm(mtype, layout.wide)
        with threads.for_call():
            error = library.call(
                pt, mtype, 12, layout.n, values, layout.indptr, layout.indices, iparm
            )
        if error:
            _release(mtype, pt, layout, iparm.dtype)
        return error, pt, iparm

    @staticmethod
    def _check_symmetry(pattern: Pattern, values: np.ndarray, mtype: int) -> None:
        """The types that read one triangle need values that are symmetric (Hermitian for
        the Hermitian ones; complex symmetric: real and imaginary parts symmetric)."""
        if mtype in (11, 13):
            return
        if not is_symmetric(pattern, values, hermitian=mtype != 6):
            kind = "symmetric" if mtype == 6 or not np.iscomplexobj(values) else "Hermitian"
            raise FactorError(Status.NOT_SYMMETRIC, f"PARDISO: the matrix's values are not {kind}")

    @staticmethod
    def _failure(mtype: int, error: int) -> Exception:
        text = f"PARDISO error {error} ({_ERRORS.get(error, 'unknown')})"
        if error in (-4, -7):
            if mtype in _POSITIVE_TYPES:
                return FactorError(
                    Status.NOT_POSITIVE_DEFINITE, f"{text}: the matrix is not positive definite"
                )
            return FactorError(Status.SINGULAR, f"{text}: the matrix is singular")
        if error in (-2, -9):
            return MemoryError(text)
        return RuntimeError(text)

    def statistics(self, factor: _Factor) -> dict[str, np.ndarray]:
        n = factor.layout.n
        iparm = factor.iparm
        if factor.mtype in _INERTIA_TYPES:
            positive, negative = int(iparm[21]), int(iparm[22])
            inertia = (positive, negative, n - positive - negative)
        elif factor.mtype in _POSITIVE_TYPES:
            inertia = (n, 0, 0)
        else:
            inertia = (-1, -1, -1)
        return {
            "inertia": np.asarray(inertia, dtype=np.int32),
            "perturbed_pivots": np.asarray(int(iparm[13]) if n else 0, dtype=np.int32),
        }

    def _solve(
        self,
        factor: _Factor,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        factor.steps = 0
        result = super()._solve(factor, rhs, transpose, conjugate, guess)
        # PARDISO's own refinement steps count with the checks' (`iparm[6]`).
        return result._replace(num_steps=result.num_steps + np.int32(factor.steps))

    def apply_inverse(
        self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> np.ndarray:
        mtype = factor.mtype
        flip = False  # solve with conjugated data: conj(M) x = b <=> M conj(x) = conj(b)
        if mtype in (11, 13):
            # PARDISO holds M = A^T (`structure.py`): A = M^T, A^T = M, conj(A) = M^H.
            mode = {(False, False): 2, (True, False): 0, (False, True): 1, (True, True): 0}
            iparm_12 = mode[(transpose, conjugate)]
            flip = transpose and conjugate  # A^H = conj(M)
        else:
            iparm_12 = 0
            if mtype in (4, -4):  # Hermitian: A^T = conj(A), A^H = A
                flip = transpose != conjugate
            elif mtype == 6:  # complex symmetric: A^T = A, A^H = conj(A)
                flip = conjugate
        dtype = factor.values.dtype
        work = np.asfortranarray(rhs.conj() if flip else rhs, dtype=dtype)
        out = np.empty_like(work, order="F")
        iparm = factor.iparm.copy()
        iparm[11] = iparm_12
        layout = factor.layout
        with threads.for_call():
            error = library.call(
                factor.pt,
                mtype,
                33,
                layout.n,
                factor.values,
                layout.indptr,
                layout.indices,
                iparm,
                work,
                out,
                nrhs=work.shape[1],
            )
        factor.steps += int(iparm[6])
        if error:
            out.fill(np.nan)  # the checks report the solve as failed
        return out.conj() if flip else out

    def factored(self, factor: _Factor) -> Factored:
        return Factored(
            factor.matrix,
            factor.norm,
            factor.row_exponents,
            factor.column_exponents,
            factor.condition,
        )

    def is_complex(self, factor: _Factor) -> bool:
        return np.iscomplexobj(factor.values)

    def nbytes(self, factor: _Factor) -> int:
        """PARDISO's permanent memory (`iparm[15]`, kB) and factors' (`iparm[16]`, kB), and
        the arrays kept for its solves and the checks."""
        matrix = factor.matrix
        held = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
        held += factor.values.nbytes + factor.layout.nbytes
        if factor.layout.n:
            held += 1024 * (int(factor.iparm[15]) + int(factor.iparm[16]))
        return int(held)

    def answers_for(self, factor: _Factor, asked: tuple, known: tuple) -> bool:
        """A real symmetric matrix is its transpose; a Hermitian one its adjoint; a
        complex symmetric one its transpose."""
        mtype = factor.mtype
        if mtype in (11, 13):
            return False
        if mtype in (2, -2):
            return True
        if mtype in (4, -4):
            return (asked[0] != asked[1]) == (known[0] != known[1])
        return asked[1] == known[1]
