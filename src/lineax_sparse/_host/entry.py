"""`FactorEntry`: one cached factorization, what it was made from, and its last solve.

An entry is filed in the registry under a handle (see `cache.py`) and is only used for a
matrix it `matches` exactly: same solver, path, pattern, values and auxiliary arrays. It
remembers its last successful one-column solve (`recall`, `memorize`), so that the same
question asked again (the adjoint solve of a self-adjoint loss) is not recomputed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..backends.base import AbstractBackend, BackendSpec
from ..backends.pattern import Pattern
from ..backends.status import SolveResult, Status
from . import owner
from .registry import registry


@dataclasses.dataclass(frozen=True, eq=False)
class FactorEntry:
    spec: BackendSpec
    pattern: Pattern
    #: Whether it was made on the static-pattern path (its pattern is then compared by
    #: identity) or the general one (by indices): part of its identity, so that a state
    #: of one path never matches an entry of the other whose values happen to be equal.
    static: bool
    values: np.ndarray  # the COO values it was made from
    aux: np.ndarray | None  # the solver's auxiliary arrays it was made from, or None
    factor: Any  # None when `status` is not OK
    status: Status
    #: The worker thread that made `factor`, on which it is released (`__del__`).
    home: int = 0
    #: Setups its factorization counted (`AbstractBackend.setups`: 1 for a direct factor).
    setups: int = 0
    #: The last solve: `(transpose, conjugate, rhs block, SolveResult)`, or empty.
    memo: list = dataclasses.field(default_factory=list)

    def matches(
        self,
        spec: BackendSpec,
        n: int,
        indices: np.ndarray | None,
        values: np.ndarray,
        aux: np.ndarray | None,
        static: Pattern | None,
    ) -> bool:
        """Whether this entry was made from exactly this matrix (compared in full)."""
        if self.static != (static is not None):
            return False
        if aux is None or self.aux is None:
            same_aux = aux is None and self.aux is None
        else:
            same_aux = self.aux.dtype == aux.dtype and np.array_equal(self.aux, aux)
        if static is not None:  # the pattern is the object itself: compare values only
            same_pattern = self.pattern is static
        else:
            same_pattern = indices is not None and self.pattern.same_as(n, indices)
        return (
            self.spec == spec
            and self.values.dtype == values.dtype
            and same_pattern
            and np.array_equal(self.values, values)
            and same_aux
        )

    def __del__(self):
        # A native object is released on the thread that made it: hand the factor over
        # when the entry dies elsewhere (evicted or retired by the owner thread).
        if self.home and self.factor is not None:
            owner.release_on(self.home, self.factor)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays it keeps to be verified (its factor is counted apart)."""
        return self.values.nbytes + (0 if self.aux is None else self.aux.nbytes)

    def recall(
        self,
        backend: AbstractBackend,
        block: np.ndarray,
        transpose: bool,
        conjugate: bool,
        start: np.ndarray | None,
    ) -> SolveResult | None:
        """The result of the last solve if it answered exactly this question, else None.
        An iterative solve with an initial guess is never answered from memory."""
        if start is not None or not self.memo:
            return None
        flags, known_block, result = self.memo
        if known_block.shape != block.shape or not _same_operator(
            backend, self.factor, np.iscomplexobj(known_block), (transpose, conjugate), flags
        ):
            return None
        if not np.array_equal(known_block, block):
            return None
        registry.count("reused_solutions", block.shape[1])
        return result._replace(solution=result.solution.copy(), status=result.status.copy())

    def memorize(
        self, block: np.ndarray, transpose: bool, conjugate: bool, result: SolveResult
    ) -> None:
        """Keep this solve (one, the latest); `block` is ours (a converted copy)."""
        self.memo[:] = [
            (transpose, conjugate),
            block,
            result._replace(solution=result.solution.copy(), status=result.status.copy()),
        ]


def _same_operator(
    backend: AbstractBackend, factor: Any, complex_: bool, asked: tuple, known: tuple
) -> bool:
    """Whether `op(A)` is the same matrix under the (transpose, conjugate) flags `asked`
    and `known`: always for equal flags, and for a symmetric backend's matrix (verified
    symmetric, or Hermitian when complex) also `A^T = A`, or `A^H = A`. A backend that
    takes any matrix may say so for one factor (`answers_for`: AMG, for exactly symmetric
    real values, when the asked solve's tolerance is no tighter than the known one's)."""
    if asked == known:
        return True
    if not backend.requires_symmetric:
        return backend.answers_for(factor, asked, known)
    if not complex_:
        return True
    return (asked[0] != asked[1]) == (known[0] != known[1])
