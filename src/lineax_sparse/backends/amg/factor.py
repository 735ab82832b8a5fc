"""An AMG factor: the matrix of one factorization, the checks it passes first, and the
hierarchy set that preconditions it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..numerics import exactly_symmetric
from ..pattern import Pattern
from ..status import FactorError, Status
from .hierarchy import Hierarchies
from .reuse import PatternState


class Factor:
    """The matrix of one factorization and the hierarchy set that preconditions it.

    `matrix` is `S = 2^-exponent A` (values near the overflow or underflow threshold are
    scaled by a power of two, exactly). `reused_setup` is True when `factor` built no
    hierarchy (it took the one remembered for the pattern); `late_setups` counts the
    hierarchies `solve` built afterwards for this factor (the lazy `A^T` hierarchy; a
    rebuild after a reused hierarchy failed). A factor keeps its `Pattern` alive: the
    symmetry of a rebuilt hierarchy's matrix is read through it.
    """

    def __init__(
        self,
        pattern: Pattern,
        matrix: sp.csc_matrix,
        state: PatternState,
        candidates: np.ndarray | None,
        exponent: int,
    ):
        self.pattern = pattern
        self.matrix = matrix
        self.exponent = exponent
        self.candidates = candidates  # pyamg's B, or None for its default
        positions, indptr, indices = pattern.csr_structure()
        self.csr = sp.csr_matrix(
            (matrix.data[positions], indices, indptr), shape=matrix.shape, copy=False
        )
        self.hierarchies: Hierarchies | None = None
        self.reused_setup = False
        self.late_setups = 0
        self.state = state
        self.judged = False  # whether this factor's reuse was credited to the back-off
        self._symmetric: bool | None = None

    def exactly_symmetric(self) -> bool:
        """Whether the factor's real matrix equals its transpose exactly (computed once)."""
        if self._symmetric is None:
            self._symmetric = exactly_symmetric(self.pattern, self.matrix.data)
        return self._symmetric

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self.matrix.data))

    def operator(self, transpose: bool) -> sp.csr_matrix:
        """`S` or `S^T` as CSR (the transpose shares the CSC arrays)."""
        if not transpose:
            return self.csr
        m = self.matrix
        return sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape, copy=False)


def check_matrix(pattern: Pattern, matrix: sp.csc_matrix) -> None:
    """AMG smoothers divide by the diagonal: refuse a zero diagonal entry up front."""
    n = matrix.shape[0]
    if n == 0:
        return
    diagonal = pattern.diagonal(matrix.data)
    if np.all(diagonal != 0):
        return
    nonzero = matrix.data != 0
    rows = np.bincount(matrix.indices[nonzero], minlength=n)
    cols = np.bincount(np.repeat(np.arange(n), np.diff(matrix.indptr))[nonzero], minlength=n)
    if np.any(rows == 0) or np.any(cols == 0):
        raise FactorError(Status.SINGULAR, "the matrix has a zero row or column")
    raise FactorError(Status.BREAKDOWN, "AMG needs a nonzero diagonal (its smoothers divide by it)")
