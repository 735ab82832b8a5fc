"""The fill-reducing ordering of a pattern, computed once per pattern in `analyse`.

`"amd"` is `cvxopt.amd.order` (the AMD CHOLMOD itself runs), `"nested_dissection"` METIS's
`METIS_NodeND` through pymetis (the CHOLMOD in cvxopt's wheels has no METIS), `"natural"`
the identity, and `"auto"` CHOLMOD's own choice between AMD and nested dissection
(`choose_ordering`, `amd_is_good_enough`). Why, and the measurements behind the rule:
docs/backends/cholmod.md.
"""

from __future__ import annotations

from typing import Any

import cvxopt
import numpy as np
import scipy.sparse as sp
from cvxopt import amd, cholmod

from .capsule import column_counts
from .settings import AMD_OPTIONS, global_options


#: METIS's random seed: fixed, so that a pattern always gets the same ordering.
METIS_SEED = 0
#: `ordering="auto"` keeps AMD's ordering when its factor costs fewer flops per entry than
#: this, or fills less than `AMD_FILL_RATIO` times the lower triangle; else it also tries
#: nested dissection and keeps the sparser factor. CHOLMOD's defaults, tuned by its
#: authors on the SuiteSparse collection.
AMD_FLOPS_PER_ENTRY = 500
AMD_FILL_RATIO = 5


def choose_ordering(
    kind: str, template: Any, lower_rows: np.ndarray, lower_cols: np.ndarray, settings: dict
) -> tuple[Any, str, Any]:
    """`(p, kind, symbolic)`: the ordering `kind` of `template` (the lower triangle, n >= 1,
    its entries at `lower_rows`, `lower_cols`) as a cvxopt 'i' matrix, which one it is, and
    the symbolic factor made from it when `"auto"` needed one to choose (else None).
    `settings` are the `cholmod.options` of the symbolic analyses.

    `"auto"` follows CHOLMOD's default strategy, which cvxopt's METIS-less CHOLMOD
    cannot run: AMD first; if `amd_is_good_enough` says no, nested dissection too, and
    the ordering whose factor has fewer entries. The column counts come from CHOLMOD's
    symbolic analysis of each ordering, which the first factorization then reuses.
    """
    if kind != "auto":
        return fill_reducing_ordering(kind, template, lower_rows, lower_cols), kind, None
    n = template.size[0]
    amd_order = fill_reducing_ordering("amd", template, lower_rows, lower_cols)
    with global_options(cholmod.options, settings):
        amd_symbolic = cholmod.symbolic(template, p=amd_order)
    amd_counts = column_counts(amd_symbolic, n)
    strict = int(np.count_nonzero(lower_rows > lower_cols))
    if amd_counts is None or amd_is_good_enough(amd_counts, strict):
        return amd_order, "amd", amd_symbolic
    nd_order = fill_reducing_ordering("nested_dissection", template, lower_rows, lower_cols)
    with global_options(cholmod.options, settings):
        nd_symbolic = cholmod.symbolic(template, p=nd_order)
    nd_counts = column_counts(nd_symbolic, n)
    if nd_counts is not None and nd_counts.sum() < amd_counts.sum():
        return nd_order, "nested_dissection", nd_symbolic
    return amd_order, "amd", amd_symbolic


def fill_reducing_ordering(
    kind: str, template: Any, lower_rows: np.ndarray, lower_cols: np.ndarray
) -> Any:
    """CHOLMOD's `p` (`p[k]` = the original index of the k-th pivot) as a cvxopt 'i'
    matrix: `kind` is `"amd"`, `"nested_dissection"` or `"natural"`; `template` is the
    lower triangle (n >= 1), its entries at `lower_rows`, `lower_cols`."""
    n = template.size[0]
    if kind == "amd":
        with global_options(amd.options, AMD_OPTIONS):
            return amd.order(template)
    if kind == "nested_dissection":
        return cvxopt.matrix(nested_dissection(n, lower_rows, lower_cols), tc="i")
    return cvxopt.matrix(np.arange(n, dtype=np.int64), tc="i")


def nested_dissection(n: int, lower_rows: np.ndarray, lower_cols: np.ndarray) -> np.ndarray:
    """METIS's nested dissection ordering (int64, `p[k]` = the k-th pivot) of the graph of
    a symmetric pattern given by its lower triangle (the diagonal is ignored)."""
    strict = lower_rows > lower_cols
    if not strict.any():  # a diagonal matrix: every order is fill-free
        return np.arange(n, dtype=np.int64)
    try:
        import pymetis
    except ImportError as error:
        raise ImportError(
            "`Cholmod(ordering='nested_dissection')` needs METIS through pymetis: "
            "`pip install pymetis`."
        ) from error
    rows, cols = lower_rows[strict], lower_cols[strict]
    lower = sp.coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    graph = (lower + lower.T).tocsr()  # strict triangles: no entry is summed
    options = pymetis.Options()
    options.seed = METIS_SEED
    # METIS's `perm` is CHOLMOD's `p`: row k of the permuted matrix is row perm[k] of A
    # (`iperm`, its inverse, fills 5-12x more on 2D Laplacians; tests/test_orderings.py).
    perm, _ = pymetis.nested_dissection(
        pymetis.CSRAdjacency(graph.indptr, graph.indices), options=options
    )
    # A fresh int64 array: `np.asarray(perm)` would be a view exporting the buffer format
    # of pymetis's `array('q')`, which `cvxopt.matrix` refuses ("buffer format not
    # supported"); numpy's own int64 arrays export one it takes.
    permutation = np.empty(n, dtype=np.int64)
    permutation[:] = perm
    return permutation


def amd_is_good_enough(counts: np.ndarray, strict_lower: int) -> bool:
    """CHOLMOD's own test, after AMD, of whether METIS is worth trying (`cholmod_analyze`'s
    default strategy): AMD's ordering is kept if its factor costs fewer than
    `AMD_FLOPS_PER_ENTRY` flops per entry, or fills fewer than `AMD_FILL_RATIO` times the
    lower triangle. `counts` are the factor's column counts (diagonal included);
    `strict_lower` is the number of entries below the diagonal."""
    entries = float(counts.sum())
    flops = float(np.square(counts, dtype=np.float64).sum())
    lower = strict_lower + counts.size
    return flops < AMD_FLOPS_PER_ENTRY * entries or entries < AMD_FILL_RATIO * lower
