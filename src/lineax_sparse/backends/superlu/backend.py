"""`SuperLUBackend`: LU with partial pivoting of square real or complex matrices through
`scipy.sparse.linalg.splu`, with a column ordering reused per pattern and the checks
SuperLU does not make (pivots at rounding level, backward error, overflow, condition). How
it works and the measurements behind each choice: docs/backends/superlu.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..blas import single_threaded_blas
from ..direct import AbstractDirectBackend, Factored
from ..numerics import (
    column_maxima,
    Condition,
    equilibrate,
    is_extreme,
    is_hermitian,
    matrix_norm,
    NormBound,
)
from ..options import SUPERLU_ORDERINGS
from ..pattern import Pattern
from ..status import FactorError, Status
from . import pivots as superlu_pivots
from .ordering import auto_ordering, Ordering, reuse_is_exact


ORDERINGS = SUPERLU_ORDERINGS


@dataclasses.dataclass
class _Analysis:
    """Per pattern: whether it is structurally symmetric (what `"auto"` needs of it), and
    the symbolic data of each ordering its matrices were factorized with."""

    symmetric: bool
    orderings: dict[str, Ordering] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Factor:
    lu: Any
    column_order: np.ndarray | None  # None: `lu` factors the matrix itself, own ordering
    matrix: sp.csc_matrix  # the matrix factorized: A, or R A C when equilibrated
    norm: float | NormBound  # max(|S|_1, |S|_inf), or a lower bound of it
    row_exponents: np.ndarray | None  # R = diag(2^-r) when equilibrated
    column_exponents: np.ndarray | None
    condition: Condition = dataclasses.field(default_factory=Condition)


class SuperLUBackend(AbstractDirectBackend):
    """SuperLU's LU with partial pivoting; `ordering`, `pivot_threshold` and
    `symmetric_mode` as the `SuperLU` solver's fields."""

    #: scipy's `splu` and `SuperLU.solve` release the GIL (two threads: 0.63x / 0.68x of
    #: one for the same work, `benchmarks/bench_gil.py`), and each factor is its own.
    parallel = True

    def __init__(self, ordering: str, pivot_threshold: float, symmetric_mode: bool):
        self.ordering = ordering
        self.pivot_threshold = pivot_threshold
        self.symmetric_mode = symmetric_mode

    def analyse(self, pattern: Pattern) -> _Analysis:
        # The orderings themselves are computed by the first factorizations
        # (docs/backends/superlu.md, "Symbolic reuse").
        symmetric = False
        if self.ordering == "auto":
            _, _, unpaired = pattern.symmetry_pairs()
            symmetric = unpaired.size == 0
        return _Analysis(symmetric)

    def completes_analysis(self, analysis: _Analysis) -> bool:
        return not analysis.orderings  # the first factorization computes the ordering

    def _ordering(
        self, pattern: Pattern, analysis: _Analysis, matrix: sp.csc_matrix, column_max
    ) -> str:
        """SuperLU's `permc_spec` for `matrix` (the one factorized, maybe equilibrated)."""
        if self.ordering != "auto":
            return self.ordering
        return auto_ordering(
            analysis.symmetric,
            matrix,
            column_max,
            self.pivot_threshold,
            lambda: is_hermitian(pattern, matrix.data),
        )

    def _splu(self, matrix: sp.csc_matrix, permc_spec: str):
        try:
            with np.errstate(all="ignore"):
                return spla.splu(
                    matrix,
                    permc_spec=permc_spec,
                    diag_pivot_thresh=self.pivot_threshold,
                    options=dict(SymmetricMode=self.symmetric_mode),
                )
        except RuntimeError as error:  # "Factor is exactly singular"
            raise FactorError(Status.SINGULAR, str(error)) from error

    def factor(
        self, pattern: Pattern, analysis: _Analysis, matrix: sp.csc_matrix, aux: Any
    ) -> _Factor:
        del aux  # SuperLU depends on the matrix alone
        if pattern.n == 0:
            return _Factor(None, None, matrix, 0.0, None, None, Condition(rcond=np.inf))
        column_max = column_maxima(matrix)
        rows = columns = None
        if is_extreme(float(column_max.max(initial=0.0))) or is_extreme(
            float(np.min(column_max, where=column_max > 0, initial=np.inf))
        ):
            matrix, rows, columns = equilibrate(matrix)
            column_max = column_maxima(matrix)
        permc_spec = self._ordering(pattern, analysis, matrix, column_max)
        ordering = analysis.orderings.setdefault(permc_spec, Ordering())
        if ordering.column_order is not None and reuse_is_exact():
            lu = self._splu(ordering.reordered(matrix), "NATURAL")
            order = ordering.column_order
        else:
            lu = self._splu(matrix, permc_spec)
            order = None
            if ordering.column_order is None:
                ordering.column_order = np.argsort(lu.perm_c).astype(np.int32)
        # U's column j is A's column `factored_columns[j]`.
        factored_columns = np.argsort(lu.perm_c)
        if order is not None:
            factored_columns = order[factored_columns]
        top = float(column_max.max(initial=0.0))
        factor = _Factor(
            lu, order, matrix, NormBound(top, lambda: matrix_norm(matrix)), rows, columns
        )
        self._check_pivots(factor, column_max[factored_columns])
        return factor

    def _check_pivots(self, factor: _Factor, column_max: np.ndarray) -> None:
        dtype = np.result_type(factor.matrix.dtype, np.float64)
        pivots = superlu_pivots.pivots(factor.lu, dtype)
        ratios = None
        if pivots is not None:
            with np.errstate(all="ignore"):
                ratios = np.abs(pivots) / column_max
        self.gate_pivots(factor, pivots, ratios, "SuperLU")

    def apply_inverse(
        self, factor: _Factor, rhs: np.ndarray, transpose: bool, conjugate: bool
    ) -> np.ndarray:
        # `rhs` is real for a real factor, which SuperLU requires (it refuses to cast a
        # complex block): `solve` splits a complex right-hand side of a real matrix.
        order = factor.column_order
        # With B = S[q, q] = LU (q = `order`): S x = b  <=>  B x[q] = b[q], and
        # S^T x = c  <=>  B^T x[q] = c[q]. conj(S) x = b  <=>  S conj(x) = conj(b).
        work = rhs.conj() if conjugate else rhs
        if order is not None:
            work = work[order]
        trans = "T" if transpose else "N"
        # One block solve with BLAS held to one thread: threaded BLAS gains nothing in
        # triangular solves and is up to 10x slower on a busy machine, and a column loop
        # is 2x slower than the block (64 columns on a 128^2 Poisson: 74 / 171 ms).
        with single_threaded_blas():
            x = factor.lu.solve(np.asfortranarray(work), trans=trans)
        if order is not None:
            unpermuted = np.empty_like(x)
            unpermuted[order] = x
            x = unpermuted
        return x.conj() if conjugate else x

    def factored(self, factor: _Factor) -> Factored:
        return Factored(
            factor.matrix,
            factor.norm,
            factor.row_exponents,
            factor.column_exponents,
            factor.condition,
        )

    def nbytes(self, factor: _Factor) -> int:
        matrix = factor.matrix
        stored = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
        lu = factor.lu
        if lu is None:
            return int(stored)
        stored += lu.nnz * (16 if np.iscomplexobj(matrix.data) else 8)
        # Row indices of L and U plus the permutations, roughly.
        stored += lu.nnz * 4 + 4 * lu.shape[0] * 4
        return int(stored)
