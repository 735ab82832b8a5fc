"""What the backend keeps per pattern (`Analysis`: the lower triangle's gather, the ordering,
the symbolic factor and the pools of factor objects) and per matrix (`Factor`)."""

from __future__ import annotations

import collections
from typing import Any

import cvxopt
import numpy as np

from ..numerics import Condition


#: Dead factor objects kept per analysis and dtype for refactorization
#: (docs/backends/cholmod.md, "Symbolic reuse"); a factor made through ctypes is otherwise
#: a copy of the analysis' symbolic factor.
POOL_SIZE = 1


class Analysis:
    """Per-pattern data: lower-triangle gather, value templates, ordering, factor pools;
    for the ctypes path also the symbolic factor, the lower triangle's CSC indices and the
    factors' permutation, so that factorizations of the pattern share nothing mutable."""

    def __init__(
        self,
        n: int,
        lower: np.ndarray,
        diagonal: np.ndarray,
        template: Any,
        ordering: Any,
        ordering_kind: str,
    ):
        self.n = n
        self.lower = lower  # positions of the lower triangle in the pattern's CSC values
        self.diagonal = diagonal  # positions of the diagonal within the lower triangle
        self.templates = {"d": template}  # typecode -> spmatrix with the lower structure
        self.ordering = ordering  # 'i' permutation passed to every `cholmod.symbolic`
        self.ordering_kind = ordering_kind  # "amd", "nested_dissection" or "natural"
        self.pools = {tc: collections.deque(maxlen=POOL_SIZE) for tc in ("d", "z")}
        # typecode -> the factor's fill-reducing permutation (`P b`), the same for every
        # factor made from `ordering` with the same options; read once from the first.
        self.permutations: dict[str, np.ndarray] = {}
        self.symbolic: Any = None  # the ctypes path's symbolic factor (a cvxopt capsule)
        self.indptr: np.ndarray | None = None  # the lower triangle's CSC, int64
        self.rows: np.ndarray | None = None

    def template(self, typecode: str, values: np.ndarray) -> Any:
        """The template of `typecode` holding `values` (the lower triangle, CSC order)."""
        template = self.templates.get(typecode)
        if template is None:
            real = self.templates["d"]
            template = cvxopt.spmatrix(
                cvxopt.matrix(values, tc=typecode), real.I, real.J, real.size
            )
            self.templates[typecode] = template
        else:
            template.V = cvxopt.matrix(values, tc=typecode)
        return template


class Factor:
    """A numeric factorization; its CHOLMOD object (a cvxopt capsule or a `NativeFactor`)
    goes back to the pool when it dies."""

    __slots__ = (
        "native",
        "pool",
        "typecode",
        "matrix",
        "matrix_norm",
        "exponents",
        "nbytes",
        "condition",
    )

    def __init__(self, native, pool, typecode, matrix, norm, exponents, nbytes):
        self.native = native
        self.pool = pool
        self.typecode = typecode
        self.matrix = matrix  # the matrix factorized: A, or D A D when equilibrated
        self.matrix_norm = norm
        self.exponents = exponents  # D = diag(2^-exponents), or None
        self.nbytes = nbytes
        self.condition = Condition()

    def __del__(self):
        # A bounded deque: appending to a full pool frees its oldest object. No globals are
        # used here, so this also works during interpreter shutdown.
        if self.pool is not None:
            self.pool.append(self.native)
