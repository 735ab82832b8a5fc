"""`AbstractBackend`: what a native library implements to plug into lineax-sparse.

This module never imports jax. A backend package (`cholmod/`, `superlu/`, `amg/`,
`petsc/`) subclasses `AbstractBackend` and exports the subclass as `Backend`; the host
runtime (`lineax_sparse._host`) calls nothing else. The outcome vocabulary (`Status`,
`SolveResult`, `FactorError`) lives in `status.py`, the host `Pattern` in `pattern.py`,
the numerical checks the backends share in `numerics/`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .numerics import solve_split
from .pattern import Pattern
from .status import SolveResult


#: A backend and its static options: `(package name, ((option, value), ...))`, hashable.
BackendSpec = tuple[str, tuple[tuple[str, Any], ...]]


class AbstractBackend(abc.ABC):
    """What a native library implements to be used by a lineax-sparse solver.

    One instance is made per solver configuration (`options` are the solver's static
    fields, already checked by the solver class). All methods run on the owner thread;
    none may call jax. Every attribute and method the host runtime uses is declared here,
    with a default where one makes sense; concrete backends are final.
    """

    #: Whether `factor` needs a matrix whose values are symmetric (Hermitian). Read by the
    #: solver classes at trace time too (as the class variable of the same name), so it must
    #: not depend on the instance.
    requires_symmetric: ClassVar[bool] = False
    #: How many factors of one pattern made by earlier host calls stay cached when a new
    #: one is made (2 for the direct solvers). A backend with large factors keeps fewer, so
    #: that their memory is reused.
    factors_per_pattern: int = 2
    #: Whether `factor` builds on the pattern's previous factor (AMG's hierarchy reuse), so
    #: that the previous one is kept; otherwise the host keeps it only once it paid (a
    #: matrix of the pattern came back after its factorization was dropped).
    builds_on_previous: bool = False
    #: Whether factorizations and solves of different matrices may run at the same time on
    #: different threads: the native calls release Python's GIL (else nothing is gained)
    #: and share no mutable state, and `analyse` leaves nothing for a first factorization
    #: to complete that the others would race for (see `completes_analysis`).
    parallel: bool = False
    #: Statistics of a factorization the backend reports in `Solution.stats` beside the
    #: solve's own: name -> shape of an int32 array (PARDISO's `{"inertia": (3,), ...}`).
    #: Its entry of `statistics.DECLARED`, which the JAX side reads at trace time without
    #: importing the backend.
    factor_statistics: ClassVar[dict[str, tuple[int, ...]]] = {}

    def statistics(self, factor: Any) -> dict[str, np.ndarray]:
        """The values of `factor_statistics` for `factor` (int32 arrays of those shapes); a
        missing name is reported as -1 (unknown)."""
        del factor
        return {}

    @abc.abstractmethod
    def analyse(self, pattern: Pattern) -> Any:
        """Symbolic work that depends on the sparsity pattern only. Cached by pattern."""

    @abc.abstractmethod
    def factor(
        self, pattern: Pattern, analysis: Any, matrix: sp.csc_matrix, aux: np.ndarray | None
    ) -> Any:
        """Numeric work on assembled (float64 / complex128) values; raises `FactorError`.

        `aux` holds the arrays of the solver the factorization also depends on (AMG's
        near-nullspace vectors, shape `(n, k)`), or None.
        """

    def solve(
        self,
        factor: Any,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        """Solve `op(A) X = rhs` for `rhs` of shape `(n, k)`.

        `op(A)` is `A`, `A^T`, `conj(A)` or `A^H` depending on the flags; `guess` is an
        initial guess of the shape of `rhs` for iterative backends (None: none given).
        The same for every backend (do not override): an empty matrix needs no work, and a
        complex right-hand side of a real matrix, which is real-linear, is solved as one
        real block of its real and imaginary parts (`numerics.solve_split`); the rest is
        `_solve`'s, under `np.errstate(all="ignore")` (overflow and NaN are detected by
        the checks, never warned).
        """
        n, k = rhs.shape
        if n == 0:
            empty = np.zeros(k, np.int32)
            return SolveResult(rhs.copy(), empty, empty.copy(), np.zeros(k))
        with np.errstate(all="ignore"):
            if np.iscomplexobj(rhs) and not self.is_complex(factor):
                return solve_split(
                    lambda block, start: self._solve(factor, block, transpose, conjugate, start),
                    rhs,
                    guess,
                )
            return self._solve(factor, rhs, transpose, conjugate, guess)

    @abc.abstractmethod
    def _solve(
        self,
        factor: Any,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        """`solve` for `n > 0`, and a complex `rhs` only when the factor is complex."""

    @abc.abstractmethod
    def is_complex(self, factor: Any) -> bool:
        """Whether the factor's matrix has complex values."""

    @abc.abstractmethod
    def nbytes(self, factor: Any) -> int:
        """Memory held by `factor`, for the cache's byte budget."""

    def setups(self, factor: Any) -> int:
        """Numeric factorizations (or multigrid setups) made for `factor` so far.

        1 for a direct factorization; an AMG factor that reuses an earlier hierarchy made
        none at first, and solves may set up more (the lazy hierarchy of `A^T`).
        """
        del factor
        return 1

    def analysis_nbytes(self, analysis: Any) -> int:
        """Bytes `analysis` holds beyond its pattern (AMG keeps warm-start solutions)."""
        del analysis
        return 0

    def completes_analysis(self, analysis: Any) -> bool:
        """Whether the next factorization of the pattern completes its `analysis` (SuperLU
        computes its column ordering in the first factorization): a parallel batch then
        makes that one first, so that every factorization of the batch shares it."""
        del analysis
        return False

    def answers_for(self, factor: Any, asked: tuple, known: tuple) -> bool:
        """Whether a solve with the (transpose, conjugate) flags `known` also answers one
        with the flags `asked` (same right-hand side, compared by the caller), beyond what
        `requires_symmetric` already implies. None by default."""
        del factor, asked, known
        return False
