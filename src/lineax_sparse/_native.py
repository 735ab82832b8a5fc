"""Host procedures behind the solve callback: find or make factorizations, solve batches.

Everything here is numpy and runs on the owner thread (`_host.run`). Arguments arrive as the
`expand_dims` vmap method delivers them: each array may carry leading batch dimensions, of
size 1 where that argument is not batched, broadcastable against each other. One call
handles the whole batch, so a vmap over right-hand sides is one multi-RHS solve and a vmap
over same-pattern matrices analyses the pattern once.

A handle is only a hint: a digest of the matrix made in the computation (`_bridge`). The
registry files factorizations under `(solver, n, handle, probe)`; a solve takes the entry
under its handle that was made from exactly the state's pattern and values, and otherwise
factorizes the state's arrays and files the result under the handle. So no handle can produce
a wrong answer, whether new, evicted, stale, forged or foreign, and matrices whose handles
collide (the digest samples the arrays) only cost a comparison.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any

import numpy as np

from ._registry import registry
from .backends import make_backend
from .backends.base import Backend, FactorError, fingerprint, is_hermitian, Pattern, Status


BackendSpec = tuple[str, tuple[tuple[str, Any], ...]]


@dataclasses.dataclass(frozen=True, eq=False)
class _FactorEntry:
    spec: BackendSpec
    pattern: Pattern
    values: np.ndarray  # the COO values it was made from, for verification
    factor: Any  # None when `status` is not OK
    status: Status

    def matches(self, spec: BackendSpec, n: int, indices: np.ndarray, values: np.ndarray):
        return (
            self.spec == spec
            and self.values.dtype == values.dtype
            and np.array_equal(self.values, values)
            and self.pattern.same_as(n, indices)
        )


@functools.cache
def _backend(spec: BackendSpec) -> Backend:
    name, options = spec
    return make_backend(name, options)


def _pattern(n: int, indices: np.ndarray, index_print: tuple) -> Pattern:
    key = ("pattern",) + index_print + (n,)
    pattern = registry.get(key)
    if pattern is None or not pattern.same_as(n, indices):
        pattern = Pattern(n, indices)
        registry.put(key, pattern, pattern.nbytes)
    return pattern


def _analysis(spec: BackendSpec, pattern: Pattern) -> Any:
    key = ("analysis", spec, pattern.key)
    found = registry.get(key)
    if found is not None and found[0] is pattern:
        return found[1]
    analysis = _backend(spec).analyse(pattern)
    registry.count("analyses")
    # Kept beside its pattern so that an evicted-and-rebuilt pattern never pairs with a
    # stale analysis. Analyses are small next to factors; count the pattern's size again.
    registry.put(key, (pattern, analysis), pattern.nbytes)
    return analysis


#: Factorizations of one pattern and solver kept alive when a new one is made: the new one
#: and the previous one. An optimization loop factorizes a new matrix of the same pattern
#: every step and never returns to the old ones; retiring them frees their native objects
#: for reuse (CHOLMOD refactorizes a freed factor object in place, skipping its symbolic
#: analysis and the page faults of fresh memory). Each factor kept beyond the steady state
#: cost a fresh-loop step 15-23 ms at n = 22k (MBB beam, CHOLMOD, steady step 38 ms), which
#: is why 2 and not more. Batches are never split. A backend may keep fewer
#: (`Backend.factors_per_pattern`): AMG keeps 1 (2 with `reuse`), so that an old hierarchy's
#: memory (hundreds of MB at n = 1M) is freed before the next setup allocates its own
#: (measured: 6-15% of a solve with new values at n = 1M).
FACTORS_PER_PATTERN = 2

#: Registry slots per handle: matrices whose handles collide take the next free one.
PROBES = 4

_recent: dict[tuple, collections.deque] = {}
_this_call: set[tuple] = set()
_RECENT_PATTERNS = 256  # bounds the bookkeeping: older patterns are simply forgotten

#: Keys under which a factorization was made since the last `clear_cache`, most recent
#: last: making one again under such a key is a miss (it had been made, and was evicted or
#: replaced). Like the counters, this starts afresh at `clear_cache`.
_made: collections.OrderedDict[tuple, None] = collections.OrderedDict()
_MADE_KEYS = 4096
registry.on_clear(_made.clear)


def _retire_old_factors(spec: BackendSpec, pattern: Pattern) -> None:
    recent = _recent.get((spec, pattern.key))
    limit = getattr(_backend(spec), "factors_per_pattern", FACTORS_PER_PATTERN)
    while recent and len(recent) >= limit and recent[0] not in _this_call:
        key = recent.popleft()
        entry = registry.get(key)
        if isinstance(entry, _FactorEntry) and entry.pattern is pattern:  # not re-filed since
            registry.evict(key)


def _remember(spec: BackendSpec, pattern: Pattern, key: tuple) -> None:
    recent = _recent.pop((spec, pattern.key), None) or collections.deque()
    recent.append(key)
    _recent[(spec, pattern.key)] = recent  # most recently used pattern last
    while len(_recent) > _RECENT_PATTERNS:
        del _recent[next(iter(_recent))]


def _build_entry(spec: BackendSpec, n: int, indices: np.ndarray, values: np.ndarray):
    pattern = _pattern(n, indices, fingerprint(indices))
    _retire_old_factors(spec, pattern)
    values = np.array(values, copy=True)  # the caller's buffer is not ours to keep
    if not pattern.valid:
        return _FactorEntry(spec, pattern, values, None, Status.INVALID_INDEX), 0
    if not np.all(np.isfinite(values)):
        return _FactorEntry(spec, pattern, values, None, Status.NONFINITE_INPUT), 0
    backend = _backend(spec)
    analysis = _analysis(spec, pattern)
    csc_values = pattern.assemble(values)
    if backend.requires_symmetric and not is_hermitian(pattern, csc_values):
        return _FactorEntry(spec, pattern, values, None, Status.NOT_SYMMETRIC), 0
    try:
        factor = backend.factor(pattern, analysis, pattern.csc(csc_values))
    except FactorError as error:
        registry.count("factorizations")
        return _FactorEntry(spec, pattern, values, None, error.status), 0
    # An AMG factor that reuses an earlier hierarchy as preconditioner did no setup.
    if not getattr(factor, "reused_setup", False):
        registry.count("factorizations")
    return _FactorEntry(spec, pattern, values, factor, Status.OK), backend.nbytes(factor)


def _factor_key(spec: BackendSpec, n: int, handle: int, probe: int) -> tuple:
    return ("factor", spec, n, handle, probe)


def _entry(
    spec: BackendSpec, n: int, handle: int, indices: np.ndarray, values: np.ndarray
) -> tuple[tuple, _FactorEntry]:
    """The registry key and entry of this matrix under `handle`, factorized if absent."""
    free = None
    for probe in range(PROBES):
        key = _factor_key(spec, n, handle, probe)
        entry = registry.get(key)
        if entry is None:
            free = key if free is None else free
        elif isinstance(entry, _FactorEntry) and entry.matches(spec, n, indices, values):
            registry.count("hits")
            _this_call.add(key)
            return key, entry
    if free is None:  # every slot holds another matrix: replace the last
        free = _factor_key(spec, n, handle, PROBES - 1)
        registry.evict(free)
    if free in _made:
        registry.count("misses")
        _made.move_to_end(free)
    else:
        _made[free] = None
        while len(_made) > _MADE_KEYS:
            _made.popitem(last=False)
    entry, nbytes = _build_entry(spec, n, indices, values)
    _this_call.add(free)
    if entry.status == Status.OK:
        _remember(spec, entry.pattern, free)
    # The newest entry is kept even when it alone exceeds the budget, so that the solves of
    # this call find it.
    registry.put(free, entry, nbytes + entry.values.nbytes)
    return free, entry


def _resize(key: tuple, entry: _FactorEntry, backend: Backend) -> None:
    """Re-file an entry whose factor grew, so that the byte budget sees its new size."""
    if registry.get(key) is entry:
        registry.put(key, entry, backend.nbytes(entry.factor) + entry.values.nbytes)


def _to_key(handle: np.ndarray) -> int:
    high, low = (int(v) & 0xFFFFFFFF for v in handle)
    return (high << 32) | low


def _batch_map(shape: tuple[int, ...], batch: tuple[int, ...]) -> np.ndarray:
    """For each flat element of `batch`, the flat index of the argument it broadcasts from."""
    return np.broadcast_to(np.arange(math.prod(shape)).reshape(shape), batch).reshape(-1)


def _host_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)


def solve_batch(
    spec: BackendSpec,
    n: int,
    transpose: bool,
    conjugate: bool,
    handles: np.ndarray,
    values: np.ndarray,
    indices: np.ndarray,
    rhs: np.ndarray,
    guess: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Solve every system of a batch; one backend solve per distinct matrix.

    `guess` (optional) is an initial guess broadcastable like `rhs`. Returns solutions of
    shape `batch + (n,)` in `rhs.dtype`, and per system a status (int32), a step count
    (int32) and a relative residual (float64), each of shape `batch`.
    """
    shapes = (handles.shape[:-1], values.shape[:-1], indices.shape[:-2])
    matrix_batch = np.broadcast_shapes(*shapes)
    vector_shapes = (rhs.shape[:-1],) if guess is None else (rhs.shape[:-1], guess.shape[:-1])
    batch = np.broadcast_shapes(matrix_batch, *vector_shapes)
    flat_handles = handles.reshape(-1, 2)
    flat_values = values.reshape(-1, values.shape[-1])
    flat_indices = indices.reshape(-1, *indices.shape[-2:])
    handle_of, value_of, index_of = (_batch_map(s, matrix_batch) for s in shapes)
    matrix_of = _batch_map(matrix_batch, batch)
    flat_rhs = rhs.reshape(-1, n)[_batch_map(rhs.shape[:-1], batch)]
    flat_guess = (
        None if guess is None else guess.reshape(-1, n)[_batch_map(guess.shape[:-1], batch)]
    )

    size = math.prod(batch)
    solution = np.full((size, n), np.nan, dtype=rhs.dtype)
    status = np.empty(size, dtype=np.int32)
    steps = np.zeros(size, dtype=np.int32)
    residual = np.full(size, np.nan, dtype=np.float64)
    backend = _backend(spec)
    host_dtype = _host_dtype(np.result_type(values.dtype, rhs.dtype))
    registry.count("host_calls")
    _this_call.clear()
    for m in np.unique(matrix_of):
        columns = np.flatnonzero(matrix_of == m)
        key, entry = _entry(
            spec,
            n,
            _to_key(flat_handles[handle_of[m]]),
            flat_indices[index_of[m]],
            flat_values[value_of[m]],
        )
        if entry.status != Status.OK:
            status[columns] = entry.status
            continue
        block = flat_rhs[columns].T.astype(host_dtype)
        finite = np.all(np.isfinite(block), axis=0)
        block[:, ~finite] = 0
        start = None
        if flat_guess is not None:
            start = flat_guess[columns].T.astype(host_dtype)
            start[:, ~np.all(np.isfinite(start), axis=0)] = 0
        setups = getattr(entry.factor, "late_setups", 0)
        result = backend.solve(entry.factor, block, transpose, conjugate, start)
        late = getattr(entry.factor, "late_setups", 0) - setups
        if late:  # an AMG hierarchy of A^T, or a rebuilt one, was set up during the solve
            registry.count("factorizations", late)
            _resize(key, entry, backend)
        column_status = np.where(finite, result.status, Status.NONFINITE_INPUT)
        x = result.solution
        x[:, column_status != Status.OK] = np.nan
        solution[columns] = x.T.astype(rhs.dtype, copy=False)
        status[columns] = column_status
        steps[columns] = result.num_steps
        residual[columns] = result.relative_residual
    return (
        solution.reshape(*batch, n),
        status.reshape(batch),
        steps.reshape(batch),
        residual.reshape(batch),
    )
