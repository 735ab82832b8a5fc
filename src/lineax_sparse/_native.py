"""Host procedures behind the callbacks: batched factorization and batched solves.

Everything here is numpy and runs on the owner thread (`_host.run`). Arguments arrive as the
`expand_dims` vmap method delivers them: each array may carry leading batch dimensions, of
size 1 where that argument is not batched, broadcastable against each other. One call
handles the whole batch, so a vmap over right-hand sides is one multi-RHS solve and a vmap
over same-pattern matrices analyses the pattern once.

A handle is only a hint. A solve verifies that the entry under its key was made from exactly
the state's pattern and values; otherwise it refactorizes from the state's arrays (a miss),
so no handle can produce a wrong answer, whether evicted, stale, forged or foreign.
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


#: Factorizations of one pattern and solver kept from earlier host calls. An optimization
#: loop factorizes a new matrix of the same pattern every step and never returns to the old
#: ones; retiring them frees their native objects for reuse (CHOLMOD refactorizes a freed
#: factor object in place, skipping its symbolic analysis). Batches are never split. A
#: backend may keep fewer (`Backend.factors_per_pattern`): AMG keeps 1 (2 with `reuse`),
#: so that an old hierarchy's memory (hundreds of MB at n = 1M) is freed before the next
#: setup allocates its own, instead of that setup paying page faults for fresh memory
#: (measured: 6-15% of a solve with new values at n = 1M).
FACTORS_PER_PATTERN = 4

_recent: dict[tuple, collections.deque] = {}
_this_call: set[int] = set()


_RECENT_PATTERNS = 256  # bounds the bookkeeping: older patterns are simply forgotten
_CONTENT_KEY_BYTES = 512  # a content key's tuple, fingerprints and int, roughly


def _retire_old_factors(spec: BackendSpec, pattern: Pattern) -> None:
    recent = _recent.get((spec, pattern.key))
    limit = getattr(_backend(spec), "factors_per_pattern", FACTORS_PER_PATTERN)
    while recent and len(recent) >= limit and recent[0][0] not in _this_call:
        key, content_key = recent.popleft()
        registry.evict(key)
        if registry.get(content_key) == key:  # not since re-filed for another entry
            registry.evict(content_key)


def _remember(spec: BackendSpec, pattern: Pattern, key: int, content_key: tuple) -> None:
    recent = _recent.pop((spec, pattern.key), None) or collections.deque()
    recent.append((key, content_key))
    _recent[(spec, pattern.key)] = recent  # most recently used pattern last
    while len(_recent) > _RECENT_PATTERNS:
        del _recent[next(iter(_recent))]
    _this_call.add(key)


def _build_entry(
    spec: BackendSpec,
    n: int,
    indices: np.ndarray,
    values: np.ndarray,
    index_print: tuple,
    retire: bool = False,
):
    pattern = _pattern(n, indices, index_print)
    if retire:  # only when a new matrix is factorized, never while a batch is being solved
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


def _content_key(spec: BackendSpec, n: int, index_print: tuple, values: np.ndarray):
    return ("content", spec) + index_print + fingerprint(values) + (n,)


def _factor_one(spec: BackendSpec, n: int, indices: np.ndarray, values: np.ndarray) -> int:
    index_print = fingerprint(indices)
    content_key = _content_key(spec, n, index_print, values)
    key = registry.get(content_key)
    if key is not None:
        entry = registry.get(key)
        if entry is not None and entry.matches(spec, n, indices, values):
            registry.count("hits")
            return key
    key = registry.new_key()
    _store(key, content_key, *_build_entry(spec, n, indices, values, index_print, retire=True))
    return key


def _resize(key: int, entry: _FactorEntry, backend: Backend) -> None:
    """Re-file an entry whose factor grew, so that the byte budget sees its new size."""
    if registry.get(key) is entry:
        registry.put(key, entry, backend.nbytes(entry.factor) + entry.values.nbytes)


def _store(key: int, content_key: tuple, entry: _FactorEntry, nbytes: int) -> None:
    if entry.status == Status.OK:
        _remember(entry.spec, entry.pattern, key, content_key)
    # The factor goes in last: the newest entry is kept even when it alone exceeds the
    # budget, so that the solves of this call find it.
    registry.put(content_key, key, _CONTENT_KEY_BYTES)
    registry.put(key, entry, nbytes + entry.values.nbytes)


def _lookup(
    spec: BackendSpec, n: int, key: int, indices: np.ndarray, values: np.ndarray
) -> _FactorEntry:
    entry = registry.get(key)
    if isinstance(entry, _FactorEntry) and entry.matches(spec, n, indices, values):
        registry.count("hits")
        return entry
    registry.count("misses")
    index_print = fingerprint(indices)
    content_key = _content_key(spec, n, index_print, values)
    found = registry.get(content_key)
    if found is not None:
        other = registry.get(found)
        if isinstance(other, _FactorEntry) and other.matches(spec, n, indices, values):
            return other
    new_entry, nbytes = _build_entry(spec, n, indices, values, index_print)
    # Re-file under the same key when it is free, so later solves with this handle hit.
    if entry is not None:
        key = registry.new_key()
    _store(key, content_key, new_entry, nbytes)
    return new_entry


def _to_key(handle: np.ndarray) -> int:
    high, low = (int(v) & 0xFFFFFFFF for v in handle)
    return (high << 32) | low


def _from_key(key: int) -> tuple[int, int]:
    high, low = key >> 32, key & 0xFFFFFFFF
    return tuple(int(np.array(v, dtype=np.uint32).view(np.int32)) for v in (high, low))


def _batch_map(shape: tuple[int, ...], batch: tuple[int, ...]) -> np.ndarray:
    """For each flat element of `batch`, the flat index of the argument it broadcasts from."""
    return np.broadcast_to(np.arange(math.prod(shape)).reshape(shape), batch).reshape(-1)


def _host_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)


def factor_batch(spec: BackendSpec, n: int, values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Factorize every matrix of a batch; returns handles of shape `batch + (2,)`."""
    values_batch = values.shape[:-1]
    indices_batch = indices.shape[:-2]
    batch = np.broadcast_shapes(values_batch, indices_batch)
    flat_values = values.reshape(-1, values.shape[-1])
    flat_indices = indices.reshape(-1, *indices.shape[-2:])
    value_of = _batch_map(values_batch, batch)
    index_of = _batch_map(indices_batch, batch)
    handles = np.empty((math.prod(batch), 2), dtype=np.int32)
    registry.count("host_calls")
    _this_call.clear()
    for i in range(handles.shape[0]):
        key = _factor_one(spec, n, flat_indices[index_of[i]], flat_values[value_of[i]])
        handles[i] = _from_key(key)
    return handles.reshape(*batch, 2)


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
        entry = _lookup(
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
            _resize(_to_key(flat_handles[handle_of[m]]), entry, backend)
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
