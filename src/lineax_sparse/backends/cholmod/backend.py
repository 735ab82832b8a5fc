"""CHOLMOD through `cvxopt.cholmod`: sparse Cholesky of real symmetric and complex Hermitian
matrices (float64 / complex128).

Options (the `Cholmod` solver's static fields) and how they map onto cvxopt:

- `mode`: `"auto"` / `"supernodal"` / `"simplicial"` set `cholmod.options["supernodal"]` to
  1 / 2 / 0. CHOLMOD fixes the kind at the symbolic analysis: supernodal is always `L L'`;
  simplicial is always `L D L'` (cvxopt does not expose `Common->final_ll`).
- `factorization="LL"` asks for a positive definite matrix. With a supernodal factor this is
  CHOLMOD's own `L L'`. With a simplicial factor (`mode="simplicial"`, or `"auto"` choosing
  simplicial for a very sparse factor) CHOLMOD computes `L D L'` and this backend requires
  every `D_j > 0`: exactly the condition for `L L'` (`= L sqrt(D)`) to exist, with the same
  solves. Any failure is `NOT_POSITIVE_DEFINITE`.
- `factorization="LDL"` is CHOLMOD's simplicial `L D L'` (`supernodal=0`; with
  `mode="supernodal"` it is refused). `D` may be negative, so symmetric indefinite matrices
  that need no pivoting are accepted; zero or tiny pivots are `SINGULAR`.
- `ordering`: `"amd"` (`cvxopt.amd.order`, the same AMD with the same defaults CHOLMOD
  itself runs), `"nested_dissection"` (METIS's `METIS_NodeND` through pymetis, see
  below), `"auto"` (the default: CHOLMOD's own choice between the two, see below) or
  `"natural"` (the identity). CHOLMOD postorders the elimination tree in every case, which
  changes no fill. The ordering is computed once per pattern, in `analyse`.

Nested dissection. The CHOLMOD bundled with the cvxopt wheels has no METIS (no
`metis`/`nesdis` symbol in `libcholmod`), so the ordering is computed with METIS through
pymetis (a maintained binding that ships wheels) and passed to `cholmod.symbolic(A, p=p)`
as the AMD ordering is. The graph is the pattern of the lower triangle without the diagonal,
symmetrized; METIS's seed is fixed (`METIS_SEED`), so a pattern always gets the same
ordering. METIS's `perm` is CHOLMOD's `p` (`p[k]` = the original index of the k-th pivot);
its inverse `iperm` fills 5.4x more on a 40 x 40 Laplacian (tested) and 12x more on a
128 x 128 one. A pattern without off-diagonal entries gets the identity (no fill in any
order); disconnected graphs and isolated vertices are METIS's to handle (tested).

`"auto"` is `cholmod_analyze`'s default strategy, which the METIS-less cvxopt build cannot
run: order with AMD; keep it if its factor costs fewer than `AMD_FLOPS_PER_ENTRY` = 500
flops per entry (`fl / lnz`, with `fl = sum_j c_j^2` and `lnz = sum_j c_j` over the column
counts `c_j`) or fills fewer than `AMD_FILL_RATIO` = 5 times the lower triangle; otherwise
also order with nested dissection and keep the ordering whose factor has fewer entries
(CHOLMOD's test and thresholds, tuned by its authors on the SuiteSparse collection; CHOLMOD
takes `fl` and `lnz` from AMD's estimates, here they are exact). The column counts are read
from `cholmod.symbolic(A, p=...)` of each candidate (the `ColCount` array of the
`cholmod_factor` struct, validated as for `nbytes`; if it does not validate, AMD is kept).
The winner's symbolic factor goes into the factor pool, so the first factorization reuses
it: where AMD is kept, `"auto"` costs what `"amd"` costs.

Measured with `benchmarks/bench_orderings.py` (2 cores, one BLAS thread, nothing else
running: load average 0.9-1.0; the three small 3D rows are from an earlier `--quick` run at
load 1.9). Each cell is AMD / nested dissection: ordering ms, factor MB (`nbytes`), numeric
ms (refactorization in place, median; ND / AMD in parentheses), solve ms (one right-hand
side); `fl/lnz` is AMD's, the rule's statistic; the cantilevers are 3D elasticity on
trilinear hexahedra (examples/topology_optimization_3d):

| matrix | n | fl/lnz | auto | ordering | MB | numeric | solve |
|---|---|---|---|---|---|---|---|
| Poisson 2D 512^2 | 262k | 244 | AMD | 79 / 971 | 132 / 105 | 163 / 139 (0.85) | 35 / 29 |
| MBB beam 180x60 Q4 | 22k | 120 | AMD | 3.6 / 70 | 15 / 15 | 14.7 / 14.3 (0.97) | 3.4 / 3.3 |
| cantilever 12x6x6 | 1.8k | 217 | AMD | 0.7 / 7.8 | 3 / 3 | 3.1 / 2.6 (0.83) | 0.2 / 0.1 |
| Poisson 3D 24^3 | 14k | 517 | ND | 6.1 / 65 | 22 / 17 | 34 / 24 (0.71) | 3.0 / 2.6 |
| cantilever 20x10x10 | 7.3k | 662 | ND | 3.5 / 41 | 29 / 20 | 57 / 31 (0.54) | 3.3 / 2.8 |
| cantilever 30x15x15 | 23k | 1636 | ND | 12 / 163 | 177 / 100 | 696 / 241 (0.35) | 18 / 13 |
| cantilever 48x24x24 | 90k | 3991 | ND | 75 / 893 | 1281 / 686 | 11.6k / 3.2k (0.28) | 125 / 77 |
| Poisson 3D 64^3 | 262k | 4493 | ND | 294 / 1867 | 1893 / 1134 | 17.8k / 8.0k (0.45) | 182 / 124 |

Where the rule picks nested dissection (3D meshes), the factor is 0.53-0.78x as large, the
factorization 0.28-0.71x and a solve 0.61-0.87x as long, for an ordering 6-15x as slow as
AMD's, paid once per pattern: at the 90k-dof cantilever, 0.8 s once against 8.4 s saved
per factorization. Where it keeps AMD (2D meshes, small 3D ones), nested dissection would
save at most 15% of the factorization (Poisson 512^2) for 0.9 s more per pattern, and
nothing on the 2D beam. Average degree would not separate the two kinds (3D Poisson 5.9,
2D beam 16.7), nor would n (both Poissons have 262k unknowns). The smallest 3D case the rule
switches on (Poisson 24^3) pays 68 ms more in `analyse` to save 10 ms per factorization: a
loss for fewer than 7 factorizations of the pattern, the price of CHOLMOD's rule, which
does not weigh how often a pattern is refactorized; `ordering="amd"` avoids it.

`cholmod.options` and `amd.options` are global dicts read by every cvxopt call. Around each
call (on the owner thread) this backend replaces their contents with exactly its own settings
(`supernodal`, `nmethods=1` "use the given ordering only", `postorder=True`, `dbound=0.0`,
`print=0`; AMD's defaults), so that no user setting changes its factorizations, and puts the
previous contents back afterwards. Restoring is needed: with `nmethods=1` left behind, any
other `cholmod.symbolic(A)` without `p` fails ("symbolic factorization failed"), which breaks
e.g. `cvxopt.solvers`' sparse KKT solver. (`nmethods=1` itself is needed: with cvxopt's
default 0 a given ordering is compared against a fresh AMD run, so passing the cached
ordering would not save the AMD time.)

Matrices. Only the lower triangle is passed (`uplo='L'`). `analyse` builds, once per pattern,
the positions of the lower triangle in the pattern's CSC values and a template
`cvxopt.spmatrix` of that structure (per dtype, 'd' or 'z'); a factorization gathers the
values and writes them into the template with the `V` setter (one memcpy). Building a fresh
`spmatrix(V, I, J)` from triplets instead costs 47 ms on the 512^2 Poisson matrix (785k lower
entries) against about 2 ms for gather + `cvxopt.matrix(numpy)` (a copy: 0.7 ms per 1e6
float64) + setter. cvxopt packs the template into its own `cholmod_sparse` on every call, so
no live factor refers to it.

Symbolic reuse. `cholmod.numeric(A, F)` overwrites `F` in place, so every live factor owns its
own CHOLMOD factor object. `analyse` computes the ordering `p` once (with `"auto"`, it also
leaves the symbolic factor it chose by in the pool); a factorization either
(a) runs `cholmod.symbolic(A, p=p)` (etree, column counts and supernodes, no ordering) and
then `numeric`, or (b) refactors, with `numeric` alone, the factor object of a dead
factorization of the same pattern, options and dtype: `_Factor.__del__` returns its object to a
pool of at most `POOL_SIZE` per analysis and dtype, which the next factorization takes. In an
optimization loop the cache evicts an old factorization for each new one once it is full, so
(b) is the steady state. The pooled objects are the only memory held outside the cache's
byte budget: at most `POOL_SIZE` factors per live analysis and dtype.

Measured (2 cores, noisy: medians of 5-9 repetitions, ms; `mode="auto"` chose supernodal
for both matrices):

| step | Poisson 512^2, n=262,144 | MBB 180x60 Q4, n=22,020 |
|---|---|---|
| `cholmod.symbolic(A)` with CHOLMOD's AMD (no reuse) | 210 | 12.5 |
| `amd.order(A)` (done once, in `analyse`) | 107 | 6.1 |
| `cholmod.symbolic(A, p=p)`, `nmethods=1` | 66 | 5.9 |
| `numeric` on a fresh symbolic object | 328 | 27.4 |
| (a) `symbolic(A, p=p)` + `numeric` | 407 | 33.9 |
| (b) `numeric` into a pooled factor object | 256 | 27.1 |
| no reuse: `symbolic(A)` + `numeric` | 523 | 38.8 |
| `cholmod.solve`, 1 / 8 right-hand sides | 37 / 295 | 2.1 / 20.5 |
| nnz(L) as `getfactor` returns it (supernodal) | 13.4M | 1.52M |
| this backend: `analyse` (lower-triangle maps, template, AMD) | 177 | 12.4 |
| this backend: `factor`, pool empty (a), all checks included | 400 | 43.9 |
| this backend: `factor`, pool hit (b), all checks included | 261 | 29.4 |
| this backend: `solve`, 1 / 8 right-hand sides, backward error included | 41 / 363 | 2.6 / 20.1 |
| this backend: `nbytes` | 149 MB | 17.6 MB |

(b) is 37% / 20% cheaper than (a), hence the pool. `simplicial` on the same matrices:
numeric 1,490 / 96 ms, so `auto` matters. cvxopt's `solve` loops over the columns, so k
right-hand sides cost k solves (still one call).

Failures. cvxopt raises `ArithmeticError` when CHOLMOD meets a pivot `<= 0` (supernodal `L
L'`) or `== 0` (simplicial `L D L'`): `NOT_POSITIVE_DEFINITE` for "LL", `SINGULAR` for
"LDL". CHOLMOD does not flag a negative or tiny `D_j` in `L D L'`, and a singular positive
semidefinite matrix often factors with a rounding-sized pivot (a Neumann Laplacian: `D_j`
about -2e-13 .. +5e-13 times its column), after which solves have a tiny backward error and
a solution of size 1e14. So after every factorization the pivots `D_j` (`cholmod.diag` for a
supernodal factor, squared; `solve(sys=6)` on ones for a simplicial one) are compared to the
largest entry of their column of `A` (`solve(sys=7)` gives the permutation): a pivot within
`max(n, 100) * eps` of zero (Cholesky's backward error bound) is `SINGULAR`. For `L L'` a
bound decides first without reading `|A|`: a positive definite matrix has `|A_ij| <=
sqrt(A_ii A_jj)`, so when every pivot passes against `2 sqrt(A_jj max_i A_ii)` it passes
against its column's largest entry; only otherwise are the column maxima computed. Likewise
the backward-error check starts from `max_j A_jj` (a lower bound of the norm) and computes
the norm only if a column fails with it. Together: 1.4 ms less per factorization at n = 22k.
Observed: noise pivots of singular matrices at 0.06-0.1 n eps; the smallest ratio of a
legitimate matrix seen (a random 0/1 SIMP density with E_min = 1e-9, floating islands) at
6e-10. Every solve is then checked by its backward error, with iterative refinement as in
`superlu.py`; a non-finite solution fails it. hangGlider_2 (indefinite) and zenios
(singular) both raise in `numeric`, in every mode. CHOLMOD also refuses a complex diagonal
entry with a nonzero imaginary part, so the rounding-sized imaginary parts of the diagonal
of a Hermitian matrix (which the caller has checked to a tolerance) are dropped before the
factorization.

`nbytes`. cvxopt offers no size of a factor (`getfactor` converts the factor to a symbolic one:
it cannot be used on a live factor), so the size is read from the `cholmod_factor` struct
behind the capsule through ctypes: read-only scalar fields (`xsize`, `ssize`, `nsuper` for a
supernodal factor, `nzmax` for a simplicial one) after validating `n`, `minor`, `itype`,
`xtype`, `dtype` and the kind flags against what is known; if they do not validate (another
CHOLMOD layout), `FILL_GUESS` times the stored triangle is used instead. The assembled matrix
kept for the backward-error check is counted too.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
from typing import Any

import cvxopt
import numpy as np
import scipy.sparse as sp
from cvxopt import amd, cholmod

from ..numerics import (
    checked_solve,
    Condition,
    confirm,
    estimate_rcond,
    is_extreme,
    NormBound,
    one_norm,
    PIVOT_GATE,
    RCOND_LIMIT,
    scale,
    symmetric_equilibration,
)
from ..options import CHOLMOD_FACTORIZATIONS, CHOLMOD_ORDERINGS
from ..pattern import Pattern
from ..status import FactorError, SolveResult, Status


#: A pivot `D_j` with `|D_j| <= max(n, PIVOT_FLOOR) * eps * max_i |A_ij|` counts as zero.
PIVOT_FLOOR = 100
#: Dead factor objects kept per analysis and dtype for refactorization (see module docstring).
POOL_SIZE = 1
#: nnz(L) / nnz(tril(A)) assumed when the factor's size cannot be read.
FILL_GUESS = 20
#: METIS's random seed: fixed, so that a pattern always gets the same ordering.
METIS_SEED = 0
#: `ordering="auto"` keeps AMD's ordering when its factor costs fewer flops per entry than
#: this, or fills less than `AMD_FILL_RATIO` times the lower triangle; else it also tries
#: nested dissection and keeps the sparser factor. CHOLMOD's defaults (see the docstring).
AMD_FLOPS_PER_ENTRY = 500
AMD_FILL_RATIO = 5

SUPERNODAL = {"auto": 1, "supernodal": 2, "simplicial": 0}
FACTORIZATIONS, ORDERINGS = CHOLMOD_FACTORIZATIONS, CHOLMOD_ORDERINGS

# AMD's defaults, set around each call because `amd.options` is global.
_AMD_OPTIONS = {"AMD_DENSE": 10.0, "AMD_AGGRESSIVE": 1}


@contextlib.contextmanager
def _global_options(options: dict, values: dict):
    """Run a cvxopt call with `options` (a module's global dict) holding exactly `values`."""
    saved = dict(options)
    options.clear()
    options.update(values)
    try:
        yield
    finally:
        options.clear()
        options.update(saved)


_EPS = float(np.finfo(np.float64).eps)


class _Analysis:
    """Per-pattern data: lower-triangle gather, value templates, ordering, factor pools."""

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


class _Factor:
    """A numeric factorization; its CHOLMOD object goes back to the pool when it dies."""

    __slots__ = (
        "capsule",
        "pool",
        "typecode",
        "matrix",
        "matrix_norm",
        "exponents",
        "nbytes",
        "condition",
    )

    def __init__(self, capsule, pool, typecode, matrix, norm, exponents, nbytes):
        self.capsule = capsule
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
            self.pool.append(self.capsule)


def fill_reducing_ordering(
    kind: str, template: Any, lower_rows: np.ndarray, lower_cols: np.ndarray
) -> Any:
    """CHOLMOD's `p` (`p[k]` = the original index of the k-th pivot) as a cvxopt 'i'
    matrix: `kind` is `"amd"`, `"nested_dissection"` or `"natural"`; `template` is the
    lower triangle (n >= 1), its entries at `lower_rows`, `lower_cols`."""
    n = template.size[0]
    if kind == "amd":
        with _global_options(amd.options, _AMD_OPTIONS):
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


class CholmodBackend:
    requires_symmetric = True
    factors_per_pattern = 2

    def __init__(self, mode: str, factorization: str, ordering: str):
        if mode not in SUPERNODAL:
            raise ValueError(f"CHOLMOD mode must be one of {tuple(SUPERNODAL)}, got {mode!r}.")
        if factorization not in FACTORIZATIONS:
            raise ValueError(
                f"CHOLMOD factorization must be one of {FACTORIZATIONS}, got {factorization!r}."
            )
        if ordering not in ORDERINGS:
            raise ValueError(f"CHOLMOD ordering must be one of {ORDERINGS}, got {ordering!r}.")
        if factorization == "LDL" and mode == "supernodal":
            raise ValueError("CHOLMOD's L D L' factorization is simplicial only.")
        self.mode = mode
        self.factorization = factorization
        self.ordering = ordering
        supernodal = 0 if factorization == "LDL" else SUPERNODAL[mode]
        self._cholmod_options = {
            "supernodal": supernodal,
            "nmethods": 1,
            "postorder": True,
            "dbound": 0.0,
            "print": 0,
        }

    def _options(self):
        return _global_options(cholmod.options, self._cholmod_options)

    def analyse(self, pattern: Pattern) -> _Analysis:
        n = pattern.n
        if n == 0:  # nothing to factorize (cvxopt has no 0 x 0 matrices)
            empty = np.zeros(0, dtype=np.int64)
            return _Analysis(0, empty, empty, None, None, "natural")
        rows = pattern.row_indices.astype(np.int64)
        cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(pattern.indptr))
        lower = np.flatnonzero(rows >= cols)
        # The pattern's CSC is sorted by column then row, as cvxopt stores it, so the
        # template's values are the gathered values in order.
        template = cvxopt.spmatrix(
            cvxopt.matrix(np.ones(lower.size)),
            cvxopt.matrix(rows[lower], tc="i"),
            cvxopt.matrix(cols[lower], tc="i"),
            (n, n),
        )
        ordering, kind, symbolic = self.order(template, rows[lower], cols[lower])
        diagonal = np.flatnonzero(rows[lower] == cols[lower])
        analysis = _Analysis(n, lower, diagonal, template, ordering, kind)
        if symbolic is not None:  # the first real factorization refactorizes it
            analysis.pools["d"].append(symbolic)
        return analysis

    def order(self, template: Any, lower_rows: np.ndarray, lower_cols: np.ndarray):
        """`(p, kind, symbolic)`: the ordering of `template` (the lower triangle, n >= 1)
        as a cvxopt 'i' matrix, which one it is, and the symbolic factor made from it when
        `"auto"` needed one to choose (else None).

        `"auto"` follows CHOLMOD's default strategy, which cvxopt's METIS-less CHOLMOD
        cannot run: AMD first; if `amd_is_good_enough` says no, nested dissection too, and
        the ordering whose factor has fewer entries. The column counts come from CHOLMOD's
        symbolic analysis of each ordering, which the first factorization then reuses.
        """
        if self.ordering != "auto":
            order = fill_reducing_ordering(self.ordering, template, lower_rows, lower_cols)
            return order, self.ordering, None
        n = template.size[0]
        amd_order = fill_reducing_ordering("amd", template, lower_rows, lower_cols)
        with self._options():
            amd_symbolic = cholmod.symbolic(template, p=amd_order)
        amd_counts = _column_counts(amd_symbolic, n)
        strict = int(np.count_nonzero(lower_rows > lower_cols))
        if amd_counts is None or amd_is_good_enough(amd_counts, strict):
            return amd_order, "amd", amd_symbolic
        nd_order = fill_reducing_ordering("nested_dissection", template, lower_rows, lower_cols)
        with self._options():
            nd_symbolic = cholmod.symbolic(template, p=nd_order)
        nd_counts = _column_counts(nd_symbolic, n)
        if nd_counts is not None and nd_counts.sum() < amd_counts.sum():
            return nd_order, "nested_dissection", nd_symbolic
        return amd_order, "amd", amd_symbolic

    def setups(self, factor: _Factor) -> int:
        del factor
        return 1

    def factor(
        self, pattern: Pattern, analysis: _Analysis, matrix: sp.csc_matrix, aux: Any
    ) -> _Factor:
        del aux  # CHOLMOD depends on the matrix alone
        n = analysis.n
        typecode = "z" if np.iscomplexobj(matrix.data) else "d"
        if n == 0:
            return _Factor(None, None, typecode, matrix, 0.0, None, 0)
        matrix, exponents = self._equilibrate(pattern, matrix)
        values = matrix.data[analysis.lower]
        if typecode == "z":
            # CHOLMOD refuses a diagonal entry with any imaginary part ("not positive
            # definite"); the caller has checked that A is Hermitian to a tolerance, so
            # drop the rounding-sized imaginary parts a Hermitian product leaves there.
            values[analysis.diagonal] = values[analysis.diagonal].real
        template = analysis.template(typecode, values)
        pool = analysis.pools[typecode]
        if pool:
            capsule = pool.pop()
        else:
            with self._options():
                capsule = cholmod.symbolic(template, p=analysis.ordering)
        try:
            with self._options():
                cholmod.numeric(template, capsule)
        except ArithmeticError as error:
            pool.append(capsule)
            column = error.args[0] if error.args else "?"
            if self.factorization == "LL":
                status, what = Status.NOT_POSITIVE_DEFINITE, "not positive"
            else:
                status, what = Status.SINGULAR, "zero"
            raise FactorError(
                status, f"CHOLMOD: the pivot of column {column} of the permuted matrix is {what}"
            ) from None
        except ValueError as error:  # any other CHOLMOD failure ("factorization failed")
            raise FactorError(Status.SINGULAR, f"CHOLMOD: {error}") from None
        permutation = analysis.permutations.get(typecode)
        if permutation is None:
            permutation = analysis.permutations[typecode] = self._permutation(capsule, typecode, n)
        failure, norm, suspicious = self._pivot_failure(
            capsule, typecode, pattern, matrix, permutation
        )
        if failure is not None:
            pool.append(capsule)
            status, message = failure
            raise FactorError(status, message)
        itemsize = 16 if typecode == "z" else 8
        size = _factor_bytes(capsule, n, typecode)
        if size is None:
            size = FILL_GUESS * analysis.lower.size * (itemsize + 8)
        factor = _Factor(
            capsule, pool, typecode, matrix, norm, exponents, size + matrix.data.nbytes
        )
        if suspicious:  # a small pivot: is the matrix singular to working precision?
            rcond = self._rcond(factor)
            if rcond < RCOND_LIMIT:
                # (the factor's CHOLMOD object returns to the pool when `factor` dies)
                raise FactorError(
                    Status.SINGULAR,
                    f"CHOLMOD: the matrix is singular to working precision (estimated "
                    f"reciprocal condition number {rcond:.1e} < {RCOND_LIMIT:.0e})",
                )
        return factor

    def _rcond(self, factor: _Factor) -> float:
        """The estimated reciprocal 1-norm condition number of the symmetrically
        equilibrated matrix `D S D` (`S` the matrix factorized, `D` from its diagonal: a
        1e20 penalty on one diagonal entry does not make a matrix singular)."""
        if factor.condition.rcond is not None:
            return factor.condition.rcond
        matrix = factor.matrix
        n = matrix.shape[0]
        if factor.exponents is None:
            d = symmetric_equilibration(matrix.diagonal().real)
            rows, columns = matrix.indices, np.repeat(np.arange(n), np.diff(matrix.indptr))
            equilibrated = sp.csc_matrix(
                (scale(matrix.data, -(d[rows] + d[columns])), matrix.indices, matrix.indptr),
                shape=matrix.shape,
            )
        else:  # already equilibrated
            d = np.zeros(n, dtype=np.int64)
            equilibrated = matrix
        up = np.ldexp(1.0, d)[:, None]  # E^-1 = D^-1 S^-1 D^-1, and E^-H = E^-1

        def solve(block):
            return self._apply_inverse(factor, block * up, False) * up

        dtype = np.complex128 if factor.typecode == "z" else np.float64
        with np.errstate(all="ignore"):
            rcond = estimate_rcond(solve, solve, n, one_norm(equilibrated), dtype)
        factor.condition.rcond = rcond
        return rcond

    @staticmethod
    def _equilibrate(pattern: Pattern, matrix: sp.csc_matrix):
        """`(D A D, exponents)` for values near the overflow or underflow threshold, with
        `D = diag(2^-exponents)` giving a diagonal in [0.25, 1) (exact, symmetric, keeps
        definiteness); `(A, None)` otherwise. Pivots `L_jj^2`, their bounds and the norms
        of the checks then stay far from overflow."""
        diagonal = np.abs(pattern.diagonal(matrix.data).real)
        positive = diagonal[diagonal > 0]
        # A positive definite matrix has |a_ij| <= max_i a_ii: the diagonal bounds it all.
        if not (
            is_extreme(float(positive.max(initial=0.0)))
            or is_extreme(float(positive.min(initial=np.inf)))
        ):
            return matrix, None
        exponents = symmetric_equilibration(diagonal)
        shift = -(exponents[pattern.row_indices] + exponents[pattern.column_indices()])
        data = scale(matrix.data, shift)
        return sp.csc_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape), exponents

    def _permutation(self, capsule, typecode: str, n: int) -> np.ndarray:
        """The factor's row permutation `P` (CHOLMOD's ordering, postordered)."""
        order = cvxopt.matrix(np.arange(n, dtype=np.float64), tc=typecode)
        with self._options():
            cholmod.solve(capsule, order, sys=7)  # x = P b: the permutation itself
        return np.asarray(order).real.ravel().astype(np.int64)

    def _pivot_failure(self, capsule, typecode, pattern, matrix, permutation):
        """`((status, message) or None, norm, suspicious)` after checking the pivots.

        A pivot `D_j` fails if it is not positive ("LL") or within `max(n, PIVOT_FLOOR) eps`
        of zero relative to the largest entry of its column of `A`. For "LL" a cheap bound
        decides first: a positive definite `A` has `|A_ij| <= sqrt(A_ii A_jj)`, so column
        maxima are at most `sqrt(A_jj max_i A_ii)` (doubled here, for rounding); when every
        pivot passes against that, it passes against the exact maxima. Only otherwise is
        `|A|` read in full (measured at n = 22k: 1.4 ms of a 39 ms step saved). `norm` is
        the backward error's scale, a `NormBound` when the full pass was not needed.
        `suspicious`: some pivot is below `PIVOT_GATE` of its column's largest entry, and
        the condition number must be estimated.
        """
        n = permutation.size
        pivots = self._pivots(capsule, typecode, n) if n else np.zeros(0)
        tolerance = max(n, PIVOT_FLOOR) * _EPS
        # With every diagonal entry stored (else no quick bound), column j's is the j-th.
        positions = pattern.diagonal_positions()
        if self.factorization == "LL" and positions.size == n:
            diagonal = matrix.data[positions].real
            top = float(diagonal.max(initial=0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = pivots / (2.0 * np.sqrt(diagonal[permutation]) * np.sqrt(top))
            if top > 0 and np.all(ratio > PIVOT_GATE):  # NaN fails
                # |A|_1 >= max_j |A_jj|: a lower bound of the norm.
                return None, NormBound(top, lambda: _symmetric_norm(matrix)), False
        column_max, norm = _column_maxima(matrix)
        scale_ = column_max[permutation]
        failure = self._check_pivots(pivots, scale_, permutation, tolerance)
        with np.errstate(divide="ignore", invalid="ignore"):
            suspicious = bool(pivots.size) and not np.all(np.abs(pivots) / scale_ >= PIVOT_GATE)
        return failure, norm, suspicious

    def _check_pivots(self, pivots, scale, permutation, tolerance):
        """`(status, message)` if a pivot is negative ("LL") or zero to working precision."""
        if pivots.size == 0:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = pivots / scale
        finite = np.isfinite(ratio)
        if self.factorization == "LL":
            bad = ~finite | (ratio <= 0)
            if bad.any():
                return Status.NOT_POSITIVE_DEFINITE, (
                    f"pivot {pivots[bad][0]:.3g} of column {permutation[bad][0]} is not positive"
                )
        tiny = ~finite | (np.abs(ratio) <= tolerance)
        if tiny.any():
            j = int(np.argmin(np.where(finite, np.abs(ratio), -1.0)))
            return Status.SINGULAR, (
                f"pivot of column {permutation[j]} is {ratio[j]:.3g} times its column's "
                f"largest entry: the matrix is singular to working precision"
            )
        return None

    def _pivots(self, capsule, typecode: str, n: int) -> np.ndarray:
        """The pivots `D_j` (real) in the factor's order: `L_jj^2` for `L L'`."""
        try:
            with self._options():
                diagonal = cholmod.diag(capsule)  # supernodal L L' only
        except ValueError:
            pass
        else:
            return np.abs(np.asarray(diagonal).ravel()) ** 2
        ones = cvxopt.matrix(np.ones(n), tc=typecode)
        with self._options():
            cholmod.solve(capsule, ones, sys=6)  # D x = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / np.asarray(ones).real.ravel()

    def _cholmod_solve(self, factor: _Factor, rhs: np.ndarray) -> np.ndarray:
        work = cvxopt.matrix(rhs, tc=factor.typecode)  # a copy: `solve` overwrites it
        with self._options():
            cholmod.solve(factor.capsule, work)
        return np.asarray(work)  # a view of `work`'s buffer, column-major

    def _apply_inverse(self, factor: _Factor, rhs: np.ndarray, flip: bool) -> np.ndarray:
        k = rhs.shape[1]
        if factor.typecode == "d":
            # A real symmetric: op(A) = A for every flag.
            if np.iscomplexobj(rhs):
                both = self._cholmod_solve(factor, np.concatenate([rhs.real, rhs.imag], axis=1))
                return both[:, :k] + 1j * both[:, k:]
            return self._cholmod_solve(factor, rhs)
        # A Hermitian: A^T = conj(A), and conj(A) x = b  <=>  A conj(x) = conj(b).
        work = rhs.conj() if flip else rhs
        x = self._cholmod_solve(factor, work)
        return x.conj() if flip else x

    def solve(
        self,
        factor: _Factor,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        del guess  # a direct solve needs none
        if factor.capsule is None:  # n = 0
            k = rhs.shape[1]
            return SolveResult(
                rhs.copy(), np.zeros(k, np.int32), np.zeros(k, np.int32), np.zeros(k)
            )
        flip = transpose != conjugate  # op(A) = conj(A) for A Hermitian
        result = checked_solve(
            lambda b: self._apply_inverse(factor, b, flip),
            factor.matrix,
            factor.matrix_norm,
            rhs,
            transpose,
            conjugate,
            factor.exponents,
            factor.exponents,
        )
        return confirm(result, factor.condition, lambda: self._rcond(factor))

    def nbytes(self, factor: _Factor) -> int:
        return int(factor.nbytes)


def _nonempty(matrix: sp.csc_matrix) -> np.ndarray:
    """Which columns store at least one entry."""
    return matrix.indptr[1:] > matrix.indptr[:-1]


def _column_maxima(matrix: sp.csc_matrix) -> tuple[np.ndarray, float]:
    """`max_i |A_ij|` per column and, `A` being symmetric, `|A|_1 = |A|_inf`: one pass."""
    absolute, starts, nonempty = np.abs(matrix.data), matrix.indptr[:-1], _nonempty(matrix)
    column_max = np.zeros(matrix.shape[1])
    if not absolute.size:
        return column_max, 0.0
    column_max[nonempty] = np.maximum.reduceat(absolute, starts[nonempty])
    return column_max, float(np.add.reduceat(absolute, starts[nonempty]).max())


def _symmetric_norm(matrix: sp.csc_matrix) -> float:
    """`|A|_1 = |A|_inf` of a symmetric (Hermitian) matrix."""
    absolute, starts, nonempty = np.abs(matrix.data), matrix.indptr[:-1], _nonempty(matrix)
    return float(np.add.reduceat(absolute, starts[nonempty]).max()) if absolute.size else 0.0


class _FactorHead(ctypes.Structure):
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
_CHOLMOD_INT, _CHOLMOD_LONG = 0, 2
_CHOLMOD_PATTERN, _CHOLMOD_REAL, _CHOLMOD_COMPLEX = 0, 1, 2


def _factor_head(capsule: Any, n: int, typecode: str | None) -> _FactorHead | None:
    """The validated head of a CHOLMOD factor's struct, numeric of `typecode` or symbolic
    (`typecode=None`), or None if it does not validate (another CHOLMOD layout)."""
    try:
        name = _capsule_name(capsule)
        if name not in _CAPSULE_NAMES:
            return None
        address = _capsule_pointer(capsule, name)
    except Exception:  # noqa: BLE001 - any failure means "unknown"
        return None
    if not address:
        return None
    head = _FactorHead.from_address(address)
    xtype = {None: _CHOLMOD_PATTERN, "d": _CHOLMOD_REAL, "z": _CHOLMOD_COMPLEX}[typecode]
    if typecode is None:  # a symbolic factor: only its column counts are read
        if head.xtype != xtype or head.itype not in (_CHOLMOD_INT, _CHOLMOD_LONG):
            return None
        return head if head.n == n and head.dtype == 0 and head.ColCount else None
    if (
        head.n != n
        or head.minor != n
        or head.xtype != xtype
        or head.dtype != 0
        or head.itype not in (_CHOLMOD_INT, _CHOLMOD_LONG)
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


def _column_counts(capsule: Any, n: int) -> np.ndarray | None:
    """The column counts of L (diagonal included) of a symbolic CHOLMOD factor (a copy), or
    None if its struct or the counts do not validate."""
    head = _factor_head(capsule, n, None)
    if head is None:
        return None
    integer = ctypes.c_int64 if head.itype == _CHOLMOD_LONG else ctypes.c_int32
    counts = np.ctypeslib.as_array((integer * n).from_address(head.ColCount)).astype(np.int64)
    if counts.size and (counts.min() < 1 or counts.max() > n):
        return None
    return counts


def _factor_entries(capsule: Any, n: int, typecode: str) -> int | None:
    """Entries of L as CHOLMOD stores them (a supernodal factor's dense blocks in full), or
    None if the factor's struct does not validate."""
    head = _factor_head(capsule, n, typecode)
    if head is None:
        return None
    return int(head.xsize if head.is_super else head.nzmax)


def _factor_bytes(capsule: Any, n: int, typecode: str) -> int | None:
    """Bytes held by a numeric CHOLMOD factor, or None if its struct does not validate."""
    head = _factor_head(capsule, n, typecode)
    if head is None:
        return None
    index = 8 if head.itype == _CHOLMOD_LONG else 4
    item = 16 if typecode == "z" else 8
    if head.is_super:
        integers = head.ssize + 3 * (head.nsuper + 1) + 2 * n
        return head.xsize * item + integers * index
    # Perm, ColCount, p, nz, next, prev (about n each) and the row indices.
    return head.nzmax * (item + index) + 6 * (n + 2) * index
