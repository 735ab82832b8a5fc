"""Host procedures behind the solve callback: find or make factorizations, solve batches.

Everything here is numpy and runs on the owner thread (`_host.run`). Arguments arrive as the
`expand_dims` vmap method delivers them: each array may carry leading batch dimensions, of
size 1 where that argument is not batched, broadcastable against each other. One call
handles the whole batch, so a vmap over right-hand sides is one multi-RHS solve and a vmap
over same-pattern matrices analyses the pattern once.

A handle is only a hint: a digest of the matrix made in the computation (`_bridge`). The
registry files factorizations under `(solver, n, handle, probe)`; a solve takes the entry
under its handle that was made from exactly the state's pattern, values and auxiliary arrays
(AMG's near-nullspace vectors), and otherwise factorizes the state's arrays and files the
result under the handle. So no handle can produce a wrong answer, whether new, evicted,
stale, forged or foreign, and matrices whose handles collide (the digest samples the arrays)
only cost a comparison.

No exception leaves this module for anything the data can do: every failure is a `Status`
per system. An unexpected exception (a bug) in the work for one matrix is reported as
`BREAKDOWN` for its systems, with a `HostFailureWarning` that carries the traceback.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import traceback
import warnings
from typing import Any

import numpy as np

from ..backends.base import AbstractBackend, BackendSpec
from ..backends.catalog import make_backend
from ..backends.numerics import is_hermitian
from ..backends.pattern import fingerprint, Pattern
from ..backends.status import FactorError, Status
from .registry import registry


class HostFailureWarning(RuntimeWarning):
    """An unexpected error on the host, reported as `RESULTS.breakdown` (please report it)."""


@dataclasses.dataclass(frozen=True, eq=False)
class _FactorEntry:
    spec: BackendSpec
    pattern: Pattern
    #: Whether it was made on the static-pattern path (then `values` are CSC values) or
    #: the general one (COO values): part of its identity, so that a state of one path
    #: never matches an entry of the other whose values happen to be equal.
    static: bool
    values: np.ndarray  # the values it was made from (COO, or CSC for a static pattern)
    aux: np.ndarray | None  # the solver's auxiliary arrays it was made from, or None
    factor: Any  # None when `status` is not OK
    status: Status
    #: The last solve: `(transpose, conjugate, rhs block, SolveResult)`, so that the same
    #: question asked again (the adjoint solve of a self-adjoint loss) is not recomputed.
    memo: list = dataclasses.field(default_factory=list)

    def matches(
        self, spec, n: int, indices: np.ndarray | None, values: np.ndarray, aux, static
    ) -> bool:
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

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + (0 if self.aux is None else self.aux.nbytes)


#: Backends are made once per solver configuration; at most this many are kept (a spec is a
#: few strings and numbers, so only a program sweeping solver options reaches the bound).
_BACKENDS_KEPT = 64
_backends: collections.OrderedDict[BackendSpec, AbstractBackend] = collections.OrderedDict()


def _backend(spec: BackendSpec) -> AbstractBackend:
    backend = _backends.get(spec)
    if backend is None:
        backend = _backends[spec] = make_backend(spec)
        while len(_backends) > _BACKENDS_KEPT:
            _backends.popitem(last=False)
    else:
        _backends.move_to_end(spec)
    return backend


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
#: (`AbstractBackend.factors_per_pattern`): AMG keeps 1 (2 with `reuse`), so that an old hierarchy's
#: memory (hundreds of MB at n = 1M) is freed before the next setup allocates its own
#: (measured: 6-15% of a solve with new values at n = 1M).
FACTORS_PER_PATTERN = 2

#: Registry slots per handle: matrices whose handles collide take the next free one.
PROBES = 4

_recent: dict[tuple, collections.deque] = {}
_this_call: set[tuple] = set()
_RECENT_PATTERNS = 256  # bounds the bookkeeping: older patterns are simply forgotten

#: Content tokens (spec, handle, path, pattern, digest of the values) of the matrices
#: factorized since the last `clear_cache`, most recent last: factorizing such a matrix again
#: is a miss (its factorization was made, then evicted or retired). A matrix never seen
#: before is a factorization, not a miss, even when its handle collides with another's.
_made: collections.OrderedDict[tuple, None] = collections.OrderedDict()
_MADE_TOKENS = 4096

#: Per-position words of `_content_token`'s digest, for one block of this many 64-bit words;
#: longer arrays weight each block's sum by a multiplier of its own.
_DIGEST_BLOCK = 1 << 16


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


_DIGEST_XOR = _splitmix64(np.arange(_DIGEST_BLOCK, dtype=np.uint64))
_DIGEST_WEIGHT = _splitmix64(_DIGEST_XOR) | np.uint64(1)


def _reset_bookkeeping() -> None:
    _made.clear()
    _recent.clear()
    _this_call.clear()


registry.on_clear(_reset_bookkeeping)


def _values_digest(values: np.ndarray) -> int:
    """A 64-bit digest of every bit of `values` and its position (for statistics only).

    Each word is scrambled by a position's random word, then weighted by another (odd)
    one, and summed: a permutation, a swap or a sign flip changes it, where a plain sum of
    the bits did not. 0.14 ms for 400k doubles (a bit sum: 0.05 ms; SHA-256: 1.7 ms).
    """
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    head = raw.size - raw.size % 8
    words = raw[:head].view(np.uint64)
    tail = int.from_bytes(raw[head:].tobytes(), "little")
    total = np.uint64((tail * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    full = words.size - words.size % _DIGEST_BLOCK
    with np.errstate(over="ignore"):
        if full:
            blocks = words[:full].reshape(-1, _DIGEST_BLOCK)
            sums = np.add.reduce((blocks ^ _DIGEST_XOR) * _DIGEST_WEIGHT, axis=1, dtype=np.uint64)
            multipliers = _splitmix64(np.arange(sums.size, dtype=np.uint64) + np.uint64(7))
            total += np.add.reduce(sums * (multipliers | np.uint64(1)), dtype=np.uint64)
        rest = words[full:]
        count = rest.size
        total += np.add.reduce(
            (rest ^ _DIGEST_XOR[:count]) * _DIGEST_WEIGHT[:count], dtype=np.uint64
        )
    return int(total)


def _content_token(
    spec: BackendSpec, handle: int, values: np.ndarray, pattern: Pattern, static: bool
) -> tuple:
    """Identifies a matrix (its path, pattern and values) for statistics, never for
    correctness: a digest of every value (0.14 ms for 400k doubles) and of its pattern's
    indices (computed once per pattern)."""
    digest = getattr(pattern, "indices_digest", None)
    if digest is None:
        digest = pattern.indices_digest = _values_digest(pattern.indices)
    return (spec, handle, static, pattern.n, digest, values.dtype.str, _values_digest(values))


def _retire_old_factors(spec: BackendSpec, pattern: Pattern) -> None:
    recent = _recent.get((spec, pattern.key))
    limit = _backend(spec).factors_per_pattern
    while recent and len(recent) >= limit and recent[0] not in _this_call:
        key = recent.popleft()
        entry = registry.get(key)
        if isinstance(entry, _FactorEntry) and entry.pattern is pattern:  # not re-filed since
            registry.evict(key, counter="retirements")


def _remember(spec: BackendSpec, pattern: Pattern, key: tuple) -> None:
    recent = _recent.pop((spec, pattern.key), None) or collections.deque()
    recent.append(key)
    _recent[(spec, pattern.key)] = recent  # most recently used pattern last
    while len(_recent) > _RECENT_PATTERNS:
        del _recent[next(iter(_recent))]


def _build_entry(
    spec: BackendSpec, pattern: Pattern, values: np.ndarray, aux, static: bool, valid: bool
):
    """Factorize (or fail to); returns the entry and the bytes of its factor.

    On the static-pattern path (`static`), `values` are already the CSC values, summed in
    XLA; `valid` says that XLA found them finite and exactly symmetric (the tests it skips).
    """
    _retire_old_factors(spec, pattern)
    values = np.array(values, copy=True)  # the caller's buffer is not ours to keep
    aux = None if aux is None else np.array(aux, copy=True)
    if not pattern.valid:
        return _FactorEntry(spec, pattern, static, values, aux, None, Status.INVALID_INDEX), 0
    if static:
        # Backends never write into the matrix they are given, so double-precision values
        # serve both the factorization and the entry's verification copy.
        csc_values = values.astype(_host_dtype(values.dtype), copy=False)
    else:
        # Summing first drops padding entries whatever they hold, and catches finite
        # duplicates whose sum overflows: both are then judged on the matrix they make.
        with np.errstate(over="ignore", invalid="ignore"):
            csc_values = pattern.assemble(values)
    if not valid and not np.all(np.isfinite(csc_values)):
        return _FactorEntry(spec, pattern, static, values, aux, None, Status.NONFINITE_INPUT), 0
    backend = _backend(spec)
    analysis = _analysis(spec, pattern)
    if backend.requires_symmetric and not valid and not is_hermitian(pattern, csc_values):
        return _FactorEntry(spec, pattern, static, values, aux, None, Status.NOT_SYMMETRIC), 0
    try:
        factor = backend.factor(pattern, analysis, pattern.csc(csc_values), aux)
    except FactorError as error:
        registry.count("factorizations")
        return _FactorEntry(spec, pattern, static, values, aux, None, error.status), 0
    registry.count("factorizations", backend.setups(factor))
    return _FactorEntry(spec, pattern, static, values, aux, factor, Status.OK), backend.nbytes(
        factor
    )


def _refile_analysis(backend: AbstractBackend, entry: _FactorEntry) -> None:
    """Re-file the entry's analysis when what it holds beyond its pattern changed size (an
    AMG analysis keeps the last solutions for warm starts), so the byte budget sees it."""
    measure = getattr(backend, "analysis_nbytes", None)
    if measure is None:
        return
    key = ("analysis", entry.spec, entry.pattern.key)
    found = registry.get(key)
    if found is None or found[0] is not entry.pattern:
        return
    nbytes = entry.pattern.nbytes + measure(found[1])
    if registry.size_of(key) != nbytes:
        registry.put(key, found, nbytes)


def _factor_key(spec: BackendSpec, n: int, handle: int, probe: int) -> tuple:
    return ("factor", spec, n, handle, probe)


def _entry(
    spec: BackendSpec,
    n: int,
    handle: int,
    indices: np.ndarray | None,
    values: np.ndarray,
    aux,
    static: Pattern | None = None,
    valid: bool = False,
) -> tuple[tuple, _FactorEntry]:
    """The registry key and entry of this matrix under `handle`, factorized if absent."""
    free = None
    for probe in range(PROBES):
        key = _factor_key(spec, n, handle, probe)
        entry = registry.get(key)
        if entry is None:
            free = key if free is None else free
        elif isinstance(entry, _FactorEntry) and entry.matches(
            spec, n, indices, values, aux, static
        ):
            registry.count("hits")
            _this_call.add(key)
            return key, entry
    if free is None:  # every slot holds another matrix: replace the last
        free = _factor_key(spec, n, handle, PROBES - 1)
        registry.evict(free)
    pattern = static if static is not None else _pattern(n, indices, fingerprint(indices))
    token = _content_token(spec, handle, values, pattern, static is not None)
    if token in _made:
        registry.count("misses")
        _made.move_to_end(token)
    else:
        _made[token] = None
        while len(_made) > _MADE_TOKENS:
            _made.popitem(last=False)
    entry, nbytes = _build_entry(spec, pattern, values, aux, static is not None, valid)
    _this_call.add(free)
    if entry.status == Status.OK:
        _remember(spec, entry.pattern, free)
    # The newest entry is kept even when it alone exceeds the budget, so that the solves of
    # this call find it.
    registry.put(free, entry, nbytes + entry.nbytes)
    return free, entry


def _resize(key: tuple, entry: _FactorEntry, backend: AbstractBackend) -> None:
    """Re-file an entry whose factor grew, so that the byte budget sees its new size."""
    if registry.get(key) is entry:
        registry.put(key, entry, backend.nbytes(entry.factor) + entry.nbytes)


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
        answers_for = getattr(backend, "answers_for", None)
        return bool(answers_for is not None and answers_for(factor, asked, known))
    if not complex_:
        return True
    return (asked[0] != asked[1]) == (known[0] != known[1])


def _recall(entry, backend, block, transpose, conjugate, start):
    """The result of the entry's last solve if it answered exactly this question, else
    None. An iterative solve with an initial guess is never answered from memory."""
    if start is not None or not entry.memo:
        return None
    flags, known_block, result = entry.memo
    if known_block.shape != block.shape or not _same_operator(
        backend, entry.factor, np.iscomplexobj(known_block), (transpose, conjugate), flags
    ):
        return None
    if not np.array_equal(known_block, block):
        return None
    registry.count("reused_solutions", block.shape[1])
    return result._replace(solution=result.solution.copy(), status=result.status.copy())


def _memorize(entry, block, transpose, conjugate, result) -> None:
    """Keep this solve (one, the latest) on its entry; `block` is ours (a converted copy)."""
    entry.memo[:] = [
        (transpose, conjugate),
        block,
        result._replace(solution=result.solution.copy(), status=result.status.copy()),
    ]


def _to_key(handle: np.ndarray) -> int:
    high, low = (int(v) & 0xFFFFFFFF for v in handle)
    return (high << 32) | low


def _batch_map(shape: tuple[int, ...], batch: tuple[int, ...]) -> np.ndarray:
    """For each flat element of `batch`, the flat index of the argument it broadcasts from."""
    return np.broadcast_to(np.arange(math.prod(shape)).reshape(shape), batch).reshape(-1)


def _flat(array: np.ndarray, trailing: int) -> np.ndarray:
    """`array` with its batch dimensions (all but the last `trailing`) flattened into one."""
    batch = array.shape[: array.ndim - trailing]
    return array.reshape((math.prod(batch),) + array.shape[array.ndim - trailing :])


def _host_dtype(*dtypes: np.dtype) -> np.dtype:
    """Double precision, complex if any of `dtypes` is (float16 and bfloat16 included)."""
    complex_ = any(np.issubdtype(dtype, np.complexfloating) for dtype in dtypes)
    return np.dtype(np.complex128 if complex_ else np.float64)


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
    aux: np.ndarray | None = None,
    static: Pattern | None = None,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Solve every system of a batch; one backend solve per distinct matrix.

    `guess` (optional) is an initial guess broadcastable like `rhs`; `aux` (optional) the
    solver's auxiliary arrays, `(..., n, k)`, batched like the matrix. With a static
    pattern (`static`, the host `Pattern` of a `StaticPattern`), `values` are the CSC
    values summed in XLA and `indices` is None. Returns solutions of shape `batch + (n,)`
    in `rhs.dtype`, and per system a status (int32), a step count (int32) and a relative
    residual (float64), each of shape `batch`. `valid` (optional, batched like `values`)
    says which matrices XLA found finite and exactly symmetric.
    """
    if indices is None:  # one pattern for the whole batch: an unbatched stand-in
        indices = np.zeros((0, 2), dtype=np.int32)
    matrix_shapes = [handles.shape[:-1], values.shape[:-1], indices.shape[:-2]]
    if aux is not None:
        matrix_shapes.append(aux.shape[:-2])
    vector_shapes = [rhs.shape[:-1]] + ([] if guess is None else [guess.shape[:-1]])
    if not any(matrix_shapes) and not any(vector_shapes):
        # No batch (the common case): one matrix, one right-hand side.
        matrix_batch = batch = ()
        flat_handles, flat_values, flat_indices = handles[None], values[None], indices[None]
        flat_aux = None if aux is None else aux[None]
        handle_of = value_of = index_of = aux_of = matrix_of = np.zeros(1, dtype=np.int64)
        flat_rhs = rhs[None]
        flat_guess = None if guess is None else guess[None]
    else:
        matrix_batch = np.broadcast_shapes(*matrix_shapes)
        batch = np.broadcast_shapes(matrix_batch, *vector_shapes)
        flat_handles = _flat(handles, 1)
        flat_values, flat_indices = _flat(values, 1), _flat(indices, 2)
        flat_aux = None if aux is None else _flat(aux, 2)
        maps = [_batch_map(shape, matrix_batch) for shape in matrix_shapes]
        handle_of, value_of, index_of = maps[:3]
        aux_of = maps[3] if aux is not None else None
        matrix_of = _batch_map(matrix_batch, batch)
        flat_rhs = _flat(rhs, 1)[_batch_map(rhs.shape[:-1], batch)]
        flat_guess = None if guess is None else _flat(guess, 1)[_batch_map(guess.shape[:-1], batch)]

    if valid is not None:  # unbatched (a constant under vmap) or batched like `values`
        valid_of_values = np.broadcast_to(valid, values.shape[:-1]).reshape(-1)
    size = math.prod(batch)
    solution = np.full((size, n), np.nan, dtype=rhs.dtype)
    status = np.empty(size, dtype=np.int32)
    steps = np.zeros(size, dtype=np.int32)
    residual = np.full(size, np.nan, dtype=np.float64)
    backend = _backend(spec)
    host_dtype = _host_dtype(values.dtype, rhs.dtype)
    registry.count("host_calls")
    _this_call.clear()
    for m in np.unique(matrix_of) if size > 1 else (0,):
        columns = np.flatnonzero(matrix_of == m) if size > 1 else np.zeros(1, dtype=np.int64)
        try:
            key, entry = _entry(
                spec,
                n,
                _to_key(flat_handles[handle_of[m]]),
                None if static is not None else flat_indices[index_of[m]],
                flat_values[value_of[m]],
                None if flat_aux is None else flat_aux[aux_of[m]],
                static,
                valid is not None and bool(valid_of_values[value_of[m]]),
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
            result = _recall(entry, backend, block, transpose, conjugate, start)
            if result is None:
                # One column (a vmapped batch is not kept: its copy could be large). A copy:
                # a backend may write into the block.
                asked = block.copy() if start is None and block.shape[1] == 1 else None
                setups = backend.setups(entry.factor)
                result = backend.solve(entry.factor, block, transpose, conjugate, start)
                late = backend.setups(entry.factor) - setups
                if late:  # an AMG hierarchy of A^T, or a rebuilt one, was set up meanwhile
                    registry.count("factorizations", late)
                    _resize(key, entry, backend)
                # Only a success may answer a later question: a failed forward solve must
                # not answer a transposed one that alone would succeed (AMG's looser
                # adjoint tolerance), nor a retry.
                if asked is not None and np.all(result.status == Status.OK):
                    _memorize(entry, asked, transpose, conjugate, result)
                _refile_analysis(backend, entry)
        except Exception as error:  # noqa: BLE001 - a bug must not crash the user's program
            warnings.warn(
                "lineax-sparse: unexpected error on the host, reported as a breakdown "
                f"(please report it):\n{''.join(traceback.format_exception(error))}",
                HostFailureWarning,
                stacklevel=1,
            )
            status[columns] = Status.BREAKDOWN
            continue
        column_status = np.where(finite, result.status, Status.NONFINITE_INPUT)
        x = result.solution
        x[:, column_status != Status.OK] = np.nan
        with np.errstate(over="ignore", invalid="ignore"):
            solution[columns] = x.T.astype(rhs.dtype, copy=False)
        # A solution that overflows the caller's precision (float32) is no success.
        overflow = ~np.all(np.isfinite(solution[columns]), axis=1) & (column_status == Status.OK)
        column_status = np.where(overflow, Status.BREAKDOWN, column_status)
        solution[columns[overflow]] = np.nan
        status[columns] = column_status
        steps[columns] = result.num_steps
        residual[columns] = result.relative_residual
    return (
        solution.reshape(*batch, n),
        status.reshape(batch),
        steps.reshape(batch),
        residual.reshape(batch),
    )
