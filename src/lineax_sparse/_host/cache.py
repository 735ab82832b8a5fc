"""`FactorCache`: backends, patterns, analyses and factorizations, found or made.

A handle is only a hint: a digest of the matrix made in the computation (`_bridge`). The
registry files factorizations under `(solver, n, handle, probe)`; `FactorCache.entry` takes
the entry under its handle that was made from exactly the state's pattern, values and
auxiliary arrays (AMG's near-nullspace vectors), and otherwise factorizes the state's
arrays and files the result under the handle. So no handle can produce a wrong answer,
whether new, evicted, stale, forged or foreign, and matrices whose handles collide (the
digest samples the arrays) only cost a comparison.

The objects themselves live in the registry, under its byte budget. `FactorCache` owns the
bookkeeping beside it: the backend instances, which factors of each pattern are recent (to
retire old ones), and which matrices were factorized before (to count misses). `reset`
forgets that bookkeeping; the registry calls it at every `clear_cache` and in a forked
child. Everything here runs on the owner thread.
"""

from __future__ import annotations

import collections
import weakref
from typing import Any, NamedTuple

import numpy as np

from ..backends.base import AbstractBackend, BackendSpec
from ..backends.catalog import make_backend
from ..backends.numerics import is_hermitian
from ..backends.pattern import fingerprint, Pattern
from ..backends.status import FactorError, Status
from . import owner
from .digest import values_digest
from .entry import FactorEntry
from .registry import registry


#: Factorizations of one pattern and solver kept alive when a new one is made: the new one
#: and the previous one (`AbstractBackend.factors_per_pattern`, read per backend). An
#: optimization loop factorizes a new matrix of the same pattern every step and never
#: returns to the old ones; retiring them frees their native objects for reuse (CHOLMOD
#: refactorizes a freed factor object in place, skipping its symbolic analysis and the page
#: faults of fresh memory). Each factor kept beyond the steady state cost a fresh-loop step
#: 15-23 ms at n = 22k (MBB beam, CHOLMOD, steady step 38 ms), which is why 2 and not more.
#: Batches are never split. A backend may keep fewer: AMG keeps 1 (2 with `reuse`), so that
#: an old hierarchy's memory (hundreds of MB at n = 1M) is freed before the next setup
#: allocates its own (measured: 6-15% of a solve with new values at n = 1M).
FACTORS_PER_PATTERN = AbstractBackend.factors_per_pattern

#: Registry slots per handle: matrices whose handles collide take the next free one.
PROBES = 4

#: Backends are made once per solver configuration; at most this many are kept (a spec is a
#: few strings and numbers, so only a program sweeping solver options reaches the bound).
BACKENDS_KEPT = 64
#: Patterns whose recent factors are tracked: older patterns are simply forgotten.
RECENT_PATTERNS = 256
#: Matrices remembered as factorized (to count misses), most recent last.
MADE_TOKENS = 4096


def host_dtype(*dtypes: np.dtype) -> np.dtype:
    """Double precision, complex if any of `dtypes` is (float16 and bfloat16 included)."""
    complex_ = any(np.issubdtype(dtype, np.complexfloating) for dtype in dtypes)
    return np.dtype(np.complex128 if complex_ else np.float64)


def _factor_key(spec: BackendSpec, n: int, handle: int, probe: int) -> tuple:
    return ("factor", spec, n, handle, probe)


class FactorCache:
    """The host's bookkeeping beside the registry (see the module docstring)."""

    def __init__(self):
        self._backends: collections.OrderedDict[BackendSpec, AbstractBackend] = (
            collections.OrderedDict()
        )
        #: Per `(spec, pattern key)`, the registry keys of its recent factors, oldest first;
        #: patterns most recently used last.
        self._recent: dict[tuple, collections.deque] = {}
        #: Registry keys used by the current host call: never retired during it.
        self._this_call: set[tuple] = set()
        #: Content tokens (spec, handle, path, pattern, digest of the values) of the
        #: matrices factorized since the last reset: factorizing such a matrix again is a
        #: miss (its factorization was made, then evicted or retired). A matrix never seen
        #: before is a factorization, not a miss, even when its handle collides.
        self._made: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        #: Patterns (spec, pattern key) whose previous factorization paid: a matrix of the
        #: pattern was factorized again after its factorization had been dropped.
        self._paying: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        #: The digest of each live pattern's indices, computed once per pattern.
        self._indices_digests: weakref.WeakKeyDictionary[Pattern, int] = weakref.WeakKeyDictionary()

    def reset(self) -> None:
        """Forget what was factorized and what is recent (at `clear_cache`, after a fork).

        Backend instances are kept: they hold a configuration, no matrix.
        """
        self._made.clear()
        self._recent.clear()
        self._paying.clear()
        self._this_call.clear()

    def begin_call(self) -> None:
        """Start a host call: entries it uses from now on are not retired during it."""
        self._this_call.clear()

    def backend(self, spec: BackendSpec) -> AbstractBackend:
        """The backend of `spec`, made on first use."""
        backend = self._backends.get(spec)
        if backend is None:
            backend = self._backends[spec] = make_backend(spec)
            while len(self._backends) > BACKENDS_KEPT:
                self._backends.popitem(last=False)
        else:
            self._backends.move_to_end(spec)
        return backend

    def find(
        self,
        spec: BackendSpec,
        n: int,
        handle: int,
        indices: np.ndarray | None,
        values: np.ndarray,
        aux: np.ndarray | None,
        static: Pattern | None = None,
        valid: bool = False,
    ) -> tuple[tuple, FactorEntry | Build]:
        """The registry key and entry of this matrix under `handle`, or the key to file it
        under and the `Build` that `make` factorizes it from (its pattern and analysis
        found or made, old factors of its pattern retired).

        With a static pattern (`static`), `values` are its COO values and `indices` is None;
        `valid` says that they are known finite and exactly symmetric.
        """
        free = None
        for probe in range(PROBES):
            key = _factor_key(spec, n, handle, probe)
            entry = registry.get(key)
            if entry is None:
                free = key if free is None else free
            elif isinstance(entry, FactorEntry) and entry.matches(
                spec, n, indices, values, aux, static
            ):
                registry.count("hits")
                self._this_call.add(key)
                return key, entry
        if free is None:  # every slot holds another matrix: replace the last
            free = _factor_key(spec, n, handle, PROBES - 1)
            registry.evict(free)
        self._this_call.add(free)
        pattern = static if static is not None else self._pattern(n, indices)
        self._count_made(spec, handle, values, pattern, static is not None)
        self._retire_old_factors(spec, pattern)
        # Made here, once per pattern, before any factorization of a batch runs.
        analysis = self._analysis(spec, pattern) if pattern.valid else None
        # The caller's buffers are not ours to keep.
        values = np.array(values, copy=True)
        aux = None if aux is None else np.array(aux, copy=True)
        backend = self.backend(spec)
        return free, Build(spec, backend, pattern, analysis, values, aux, static is not None, valid)

    def file(self, key: tuple, entry: FactorEntry, nbytes: int) -> None:
        """File a new entry `make` made under the key `find` gave."""
        registry.count("factorizations", entry.setups)
        if entry.status == Status.OK:
            self._remember(entry.spec, entry.pattern, key)
        # The newest entry is kept even when it alone exceeds the budget, so that the solves
        # of this call find it.
        registry.put(key, entry, nbytes + entry.nbytes)

    def resize(self, key: tuple, entry: FactorEntry, backend: AbstractBackend) -> None:
        """Re-file an entry whose factor grew, so that the byte budget sees its new size."""
        if registry.get(key) is entry:
            registry.put(key, entry, backend.nbytes(entry.factor) + entry.nbytes)

    def refile_analysis(self, backend: AbstractBackend, entry: FactorEntry) -> None:
        """Re-file the entry's analysis when what it holds beyond its pattern changed size
        (an AMG analysis keeps the last solutions for warm starts), so the byte budget
        sees it."""
        key = ("analysis", entry.spec, entry.pattern.key)
        found = registry.get(key)
        if found is None or found[0] is not entry.pattern:
            return
        nbytes = entry.pattern.nbytes + backend.analysis_nbytes(found[1])
        if registry.size_of(key) != nbytes:
            registry.put(key, found, nbytes)

    def _pattern(self, n: int, indices: np.ndarray) -> Pattern:
        key = ("pattern",) + fingerprint(indices) + (n,)
        pattern = registry.get(key)
        if pattern is None or not pattern.same_as(n, indices):
            pattern = Pattern(n, indices)
            registry.put(key, pattern, pattern.nbytes)
        return pattern

    def _analysis(self, spec: BackendSpec, pattern: Pattern) -> Any:
        key = ("analysis", spec, pattern.key)
        found = registry.get(key)
        if found is not None and found[0] is pattern:
            return found[1]
        analysis = self.backend(spec).analyse(pattern)
        registry.count("analyses")
        # Kept beside its pattern so that an evicted-and-rebuilt pattern never pairs with a
        # stale analysis. Analyses are small next to factors; count the pattern's size again.
        registry.put(key, (pattern, analysis), pattern.nbytes)
        return analysis

    def _count_made(
        self, spec: BackendSpec, handle: int, values: np.ndarray, pattern: Pattern, static: bool
    ) -> None:
        """Count a miss if this matrix was factorized before, else remember it was.

        The matrix is identified for statistics, never for correctness: by a digest of
        every value (0.14 ms for 400k doubles) and of its pattern's indices (computed once
        per pattern).
        """
        digest = self._indices_digests.get(pattern)
        if digest is None:
            digest = self._indices_digests[pattern] = values_digest(pattern.indices)
        token = (spec, handle, static, pattern.n, digest, values.dtype.str, values_digest(values))
        if token in self._made:
            registry.count("misses")
            self._made.move_to_end(token)
            # A matrix of this pattern comes back: from now on its previous factorization
            # is kept beside the newest (`_retire_old_factors`).
            self._paying[(spec, pattern.key)] = None
            while len(self._paying) > RECENT_PATTERNS:
                self._paying.popitem(last=False)
        else:
            self._made[token] = None
            while len(self._made) > MADE_TOKENS:
                self._made.popitem(last=False)

    def _retire_old_factors(self, spec: BackendSpec, pattern: Pattern) -> None:
        recent = self._recent.get((spec, pattern.key))
        backend = self.backend(spec)
        limit = backend.factors_per_pattern
        if not backend.builds_on_previous and (spec, pattern.key) not in self._paying:
            # One factorization per pattern until keeping the previous one would have paid:
            # a large factorization never holds twice its memory in a loop that never
            # returns to an old matrix (CHOLMOD at 5e5 dofs: 8 GB each).
            limit = 1
        while recent and len(recent) >= limit and recent[0] not in self._this_call:
            key = recent.popleft()
            entry = registry.get(key)
            if isinstance(entry, FactorEntry) and entry.pattern is pattern:  # not re-filed
                registry.evict(key, counter="retirements")

    def _remember(self, spec: BackendSpec, pattern: Pattern, key: tuple) -> None:
        recent = self._recent.pop((spec, pattern.key), None) or collections.deque()
        recent.append(key)
        self._recent[(spec, pattern.key)] = recent  # most recently used pattern last
        while len(self._recent) > RECENT_PATTERNS:
            del self._recent[next(iter(self._recent))]

    def make(self, build: Build) -> tuple[FactorEntry, int]:
        """Factorize (or fail to); returns the entry and the bytes of its factor.

        Native work only, on any worker (the factorizations of a batch run in parallel):
        no bookkeeping. `build.valid` says that the values were found finite and exactly
        symmetric already (the tests it skips).
        """
        spec, pattern, values, aux, valid = (
            build.spec,
            build.pattern,
            build.values,
            build.aux,
            build.valid,
        )
        home = owner.current_worker() or 0

        def failed(status: Status, setups: int = 0) -> tuple[FactorEntry, int]:
            entry = FactorEntry(
                spec, pattern, build.static, values, aux, None, status, setups=setups
            )
            return entry, 0

        if not pattern.valid:
            return failed(Status.INVALID_INDEX)
        # COO values on both paths (a static pattern's are summed here, not in XLA).
        # Summing first drops padding entries whatever they hold, and catches finite
        # duplicates whose sum overflows: both are then judged on the matrix they make.
        with np.errstate(over="ignore", invalid="ignore"):
            csc_values = pattern.assemble(values)
        if not valid and not np.all(np.isfinite(csc_values)):
            return failed(Status.NONFINITE_INPUT)
        backend = build.backend
        if backend.requires_symmetric and not valid and not is_hermitian(pattern, csc_values):
            return failed(Status.NOT_SYMMETRIC)
        try:
            factor = backend.factor(pattern, build.analysis, pattern.csc(csc_values), aux)
        except FactorError as error:
            return failed(error.status, 1)
        setups = backend.setups(factor)
        entry = FactorEntry(
            spec, pattern, build.static, values, aux, factor, Status.OK, home, setups
        )
        return entry, backend.nbytes(factor)


class Build(NamedTuple):
    """What `FactorCache.make` factorizes: a matrix, its pattern and the pattern's analysis
    (None for an invalid pattern), and the path it came by."""

    spec: BackendSpec
    backend: AbstractBackend
    pattern: Pattern
    analysis: Any
    values: np.ndarray
    aux: np.ndarray | None
    static: bool
    valid: bool


#: The process's one cache; its bookkeeping is forgotten with the registry's contents.
factor_cache = FactorCache()
registry.on_clear(factor_cache.reset)
