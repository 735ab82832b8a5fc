"""`solve_batch`: the host procedure behind the solve callback, for a whole vmapped batch.

Everything here is numpy. The bookkeeping runs on the owner thread (`owner.run`); the native
work of distinct matrices runs on the pool's threads when the backend allows it
(`pool.run_parallel`), each matrix's factorization and solves on one thread. Arguments arrive as the
`expand_dims` vmap method delivers them: each array may carry leading batch dimensions, of
size 1 where that argument is not batched, broadcastable against each other. One call
handles the whole batch, so a vmap over right-hand sides is one multi-RHS solve and a vmap
over same-pattern matrices analyses the pattern once (the factorizations are found or made
by `cache.FactorCache`).

No exception leaves this module for anything the data can do: every failure is a `Status`
per system. An unexpected exception (a bug) in the work for one matrix is reported as
`BREAKDOWN` for its systems, with a `HostFailureWarning` that carries the traceback.
"""

from __future__ import annotations

import functools
import math
import traceback
import warnings
from typing import Any, NamedTuple

import numpy as np

from ..backends.base import AbstractBackend, BackendSpec
from ..backends.numerics import operator_apply, relative_residual
from ..backends.pattern import Pattern
from ..backends.status import SolveResult, Status
from . import pool
from .cache import Build, factor_cache, host_dtype
from .entry import FactorEntry
from .registry import registry


class HostFailureWarning(RuntimeWarning):
    """An unexpected error on the host, reported as `RESULTS.breakdown` (please report it)."""


def handle_key(handle: np.ndarray) -> int:
    """The 64-bit registry key of a handle, which crosses as two int32 `(high, low)`."""
    high, low = (int(v) & 0xFFFFFFFF for v in handle)
    return (high << 32) | low


def _batch_map(shape: tuple[int, ...], batch: tuple[int, ...]) -> np.ndarray:
    """For each flat element of `batch`, the flat index of the argument it broadcasts from."""
    return np.broadcast_to(np.arange(math.prod(shape)).reshape(shape), batch).reshape(-1)


def _flat(array: np.ndarray, trailing: int) -> np.ndarray:
    """`array` with its batch dimensions (all but the last `trailing`) flattened into one."""
    batch = array.shape[: array.ndim - trailing]
    return array.reshape((math.prod(batch),) + array.shape[array.ndim - trailing :])


class _Batch(NamedTuple):
    """The arguments with their batch dimensions flattened, and for each system of the
    broadcast batch (`shape`) which matrix it solves; for each distinct matrix, which
    handle, values, indices and auxiliary arrays make it."""

    shape: tuple[int, ...]
    handles: np.ndarray
    values: np.ndarray
    indices: np.ndarray
    aux: np.ndarray | None
    rhs: np.ndarray
    guess: np.ndarray | None
    handle_of: np.ndarray
    value_of: np.ndarray
    index_of: np.ndarray
    aux_of: np.ndarray | None
    matrix_of: np.ndarray


def _broadcast(handles, values, indices, rhs, guess, aux) -> _Batch:
    matrix_shapes = [handles.shape[:-1], values.shape[:-1], indices.shape[:-2]]
    if aux is not None:
        matrix_shapes.append(aux.shape[:-2])
    vector_shapes = [rhs.shape[:-1]] + ([] if guess is None else [guess.shape[:-1]])
    if not any(matrix_shapes) and not any(vector_shapes):
        # No batch (the common case): one matrix, one right-hand side.
        first = np.zeros(1, dtype=np.int64)
        return _Batch(
            (),
            handles[None],
            values[None],
            indices[None],
            None if aux is None else aux[None],
            rhs[None],
            None if guess is None else guess[None],
            first,
            first,
            first,
            first,
            first,
        )
    matrix_batch = np.broadcast_shapes(*matrix_shapes)
    batch = np.broadcast_shapes(matrix_batch, *vector_shapes)
    maps = [_batch_map(shape, matrix_batch) for shape in matrix_shapes]
    return _Batch(
        batch,
        _flat(handles, 1),
        _flat(values, 1),
        _flat(indices, 2),
        None if aux is None else _flat(aux, 2),
        _systems(rhs, batch),
        None if guess is None else _systems(guess, batch),
        *maps[:3],
        maps[3] if aux is not None else None,
        _batch_map(matrix_batch, batch),
    )


def _systems(vectors: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """`vectors` (batch dimensions, then n) as one row per system of `batch`: a view when
    they are batched like it (a block of right-hand sides: no copy of a large block)."""
    if vectors.shape[:-1] == batch:
        return _flat(vectors, 1)
    return _flat(vectors, 1)[_batch_map(vectors.shape[:-1], batch)]


def solve_batch(
    spec: BackendSpec,
    n: int,
    transpose: bool,
    conjugate: bool,
    handles: np.ndarray,
    values: np.ndarray,
    indices: np.ndarray | None,
    rhs: np.ndarray,
    guess: np.ndarray | None = None,
    aux: np.ndarray | None = None,
    static: Pattern | None = None,
    valid: np.ndarray | None = None,
    statistics: dict[str, tuple[int, ...]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Solve every system of a batch; one backend solve per distinct matrix.

    `guess` (optional) is an initial guess broadcastable like `rhs`; `aux` (optional) the
    solver's auxiliary arrays, `(..., n, k)`, batched like the matrix. With a static
    pattern (`static`, the host `Pattern` of a `StaticPattern`), `values` are its COO
    values (summed into its CSC slots when factorized) and `indices` is None. Returns
    solutions of shape `batch + (n,)` in `rhs.dtype`, and per system a status (int32), a
    step count (int32) and the relative residual `|b - op(A) x|_2 / |b|_2` of the solution
    returned (float64; for a float32 caller, of the float32 solution), each of shape
    `batch`. `valid`
    (optional, batched like `values`) says which matrices are known to be finite and
    exactly symmetric already (the solve callback passes none: the host tests them).
    `statistics` names the backend's factorization statistics (`backends.statistics`) to
    return, each of shape `batch + its shape` (int32; -1 where unknown: a failed
    factorization, a name its factor does not report).
    """
    if indices is None:  # one pattern for the whole batch: an unbatched stand-in
        indices = np.zeros((0, 2), dtype=np.int32)
    flat = _broadcast(handles, values, indices, rhs, guess, aux)
    if valid is not None:  # unbatched (a constant under vmap) or batched like `values`
        valid_of_values = np.broadcast_to(valid, values.shape[:-1]).reshape(-1)
    size = math.prod(flat.shape)
    solution = np.empty((size, n), dtype=rhs.dtype)  # failed systems get NaN at the end
    status = np.full(size, Status.BREAKDOWN, dtype=np.int32)
    steps = np.zeros(size, dtype=np.int32)
    residual = np.full(size, np.nan, dtype=np.float64)
    extra = {
        name: np.full((size, *shape), -1, dtype=np.int32)
        for name, shape in (statistics or {}).items()
    }
    backend = factor_cache.backend(spec)
    dtype = host_dtype(values.dtype, rhs.dtype)
    # A solution that overflows the caller's narrower precision (float32) is no success.
    narrower = np.dtype(rhs.dtype).itemsize < np.dtype(dtype).itemsize
    registry.count("host_calls")
    factor_cache.begin_call()
    work: list[_Work] = []
    matrices = np.unique(flat.matrix_of) if size > 1 else np.zeros(1, np.int64)
    for m in matrices:
        # Every system when there is one matrix (a block of right-hand sides): a slice, so
        # that the block is read in place.
        columns = slice(None) if matrices.size == 1 else np.flatnonzero(flat.matrix_of == m)
        try:
            key, found = factor_cache.find(
                spec,
                n,
                handle_key(flat.handles[flat.handle_of[m]]),
                None if static is not None else flat.indices[flat.index_of[m]],
                flat.values[flat.value_of[m]],
                None if flat.aux is None else flat.aux[flat.aux_of[m]],
                static,
                valid is not None and bool(valid_of_values[flat.value_of[m]]),
            )
        except Exception as error:  # noqa: BLE001 - a bug must not crash the user's program
            _report(error)
            continue
        block = flat.rhs[columns].T.astype(dtype)  # ours: a backend may write into it
        finite = np.isfinite(block).all(axis=0)
        start = None
        if flat.guess is not None:
            start = flat.guess[columns].T.astype(dtype)
            start[:, ~np.all(np.isfinite(start), axis=0)] = 0
        work.append(_Work(columns, key, found, block, finite, start))
    for item, (ok, outcome, _) in zip(work, _run(backend, work, transpose, conjugate), strict=True):
        columns = item.columns
        try:
            if not ok:
                raise outcome
            entry, result = _finish(backend, item, outcome, transpose, conjugate)
        except Exception as error:  # noqa: BLE001 - a bug must not crash the user's program
            _report(error)
            continue
        if result is None:  # the factorization failed
            status[columns] = entry.status
            continue
        if extra:
            _fill_statistics(extra, columns, backend, entry)
        column_status = np.where(item.finite, result.status, Status.NONFINITE_INPUT)
        with np.errstate(over="ignore", invalid="ignore"):
            solution[columns] = result.solution.T
        if narrower:
            overflow = ~np.isfinite(solution[columns]).all(axis=1) & (column_status == Status.OK)
            column_status = np.where(overflow, Status.BREAKDOWN, column_status)
        status[columns] = column_status
        steps[columns] = result.num_steps
        residual[columns] = result.relative_residual
        if narrower and np.any(column_status == Status.OK):
            # The statistic describes the solution returned: rounded to the caller's dtype,
            # its residual is that rounding's (5e-6 in float32 where the host's was 3e-14).
            returned = _returned_residual(
                entry, flat.rhs[columns], solution[columns], dtype, transpose, conjugate
            )
            residual[columns] = np.where(
                column_status == Status.OK, returned, result.relative_residual
            )
    solution[status != Status.OK] = np.nan
    return (
        solution.reshape(*flat.shape, n),
        status.reshape(flat.shape),
        steps.reshape(flat.shape),
        residual.reshape(flat.shape),
        {name: value.reshape(flat.shape + value.shape[1:]) for name, value in extra.items()},
    )


def _fill_statistics(
    extra: dict[str, np.ndarray], columns, backend: AbstractBackend, entry: FactorEntry
) -> None:
    """The factorization statistics of `entry` into the rows `columns` of `extra`; a value
    of the wrong shape (a backend bug) is reported and left unknown."""
    for name, value in backend.statistics(entry.factor).items():
        if name in extra:
            try:
                extra[name][columns] = np.broadcast_to(value, extra[name].shape[1:])
            except ValueError as error:
                _report(error)


def _returned_residual(
    entry: FactorEntry,
    rhs: np.ndarray,
    solution: np.ndarray,
    dtype: np.dtype,
    transpose: bool,
    conjugate: bool,
) -> np.ndarray:
    """`|b - op(A) x|_2 / |b|_2` per system (rows of `rhs` and `solution`) for the solution
    as returned, computed in `dtype` (the host's): one more product, paid only when the
    solution is rounded to a narrower dtype than the host solved in."""
    pattern = entry.pattern
    matrix = pattern.csc(pattern.assemble(entry.values))
    b = rhs.T.astype(dtype)
    with np.errstate(all="ignore"):
        r = b - operator_apply(matrix, solution.T.astype(dtype), transpose, conjugate)
    return relative_residual(r, b)


def _report(error: Exception) -> None:
    warnings.warn(
        "lineax-sparse: unexpected error on the host, reported as a breakdown "
        f"(please report it):\n{''.join(traceback.format_exception(error))}",
        HostFailureWarning,
        stacklevel=2,
    )


class _Work(NamedTuple):
    """One distinct matrix of a batch: its systems (`columns`), its registry key, its entry
    or the `Build` that makes it, and its right-hand sides (with which are finite) and
    guesses as columns."""

    columns: np.ndarray | slice
    key: tuple
    found: FactorEntry | Build
    block: np.ndarray
    finite: np.ndarray  # per column of `block`: whether it is finite
    start: np.ndarray | None


class _Done(NamedTuple):
    """What a worker made of a `_Work`: the entry (new or found), the bytes of a new
    factor, the solve's result (None when the factorization failed), the setups counted
    during the solve, and the question asked (kept for `memorize`)."""

    entry: FactorEntry
    nbytes: int
    result: SolveResult | None
    late: int
    asked: np.ndarray | None


def _run(
    backend: AbstractBackend, work: list[_Work], transpose: bool, conjugate: bool
) -> list[tuple[bool, _Done | Exception, int]]:
    """The native work of a batch: factorizations of the matrices not found, and the
    solves. On the pool's threads when the backend allows it and there are several
    matrices; else one after another here (the owner thread)."""
    tasks = [functools.partial(_native, backend, item, transpose, conjugate) for item in work]
    if not backend.parallel or len(work) < 2 or pool.num_threads() < 2:
        return [_attempt(task) for task in tasks]
    # A factorization that completes its pattern's analysis (SuperLU's first ordering)
    # runs before the others of its pattern, so that they share what it computed: first
    # one of each such pattern (side by side: the patterns are independent), then the rest.
    first: dict[int, int] = {}
    for i, item in enumerate(work):
        if isinstance(item.found, Build) and backend.completes_analysis(item.found.analysis):
            first.setdefault(id(item.found.analysis), i)
    outcomes: dict[int, tuple[bool, Any, int]] = {}
    for wave in (list(first.values()), [i for i in range(len(tasks)) if i not in first.values()]):
        if len(wave) == 1:
            outcomes[wave[0]] = _attempt(tasks[wave[0]])
        elif wave:
            runs = pool.run_parallel([tasks[i] for i in wave])
            outcomes.update(zip(wave, runs, strict=True))
    return [outcomes[i] for i in range(len(tasks))]


def _attempt(task) -> tuple[bool, Any, int]:
    try:
        return True, task(), 0
    except Exception as error:  # noqa: BLE001 - returned to the caller, who reports it
        return False, error, 0


def _native(backend: AbstractBackend, item: _Work, transpose: bool, conjugate: bool) -> _Done:
    """Factorize (when not found) and solve one matrix's systems: native work only, on any
    worker, no bookkeeping."""
    entry, nbytes = (
        (item.found, 0) if isinstance(item.found, FactorEntry) else factor_cache.make(item.found)
    )
    if entry.status != Status.OK:
        return _Done(entry, nbytes, None, 0, None)
    block = item.block
    if not item.finite.all():
        block[:, ~item.finite] = 0
    result = entry.recall(backend, block, transpose, conjugate, item.start)
    if result is not None:
        return _Done(entry, nbytes, result, 0, None)
    # One column (a vmapped batch is not kept: its copy could be large). A copy: a backend
    # may write into the block.
    asked = block.copy() if item.start is None and block.shape[1] == 1 else None
    setups = backend.setups(entry.factor)
    result = backend.solve(entry.factor, block, transpose, conjugate, item.start)
    return _Done(entry, nbytes, result, backend.setups(entry.factor) - setups, asked)


def _finish(
    backend: AbstractBackend, item: _Work, done: _Done, transpose: bool, conjugate: bool
) -> tuple[FactorEntry, SolveResult | None]:
    """The bookkeeping of one matrix's native work, on the owner thread: file a new entry,
    count late setups, remember the solve."""
    entry, result = done.entry, done.result
    if isinstance(item.found, Build):
        factor_cache.file(item.key, entry, done.nbytes)
    if result is None or done.asked is None and done.late == 0:
        if result is not None:
            factor_cache.refile_analysis(backend, entry)
        return entry, result
    if done.late:  # an AMG hierarchy of A^T, or a rebuilt one, was set up meanwhile
        registry.count("factorizations", done.late)
        factor_cache.resize(item.key, entry, backend)
    # Only a success may answer a later question: a failed forward solve must not answer a
    # transposed one that alone would succeed (AMG's looser adjoint tolerance), nor a retry.
    if done.asked is not None and np.all(result.status == Status.OK):
        entry.memorize(done.asked, transpose, conjugate, result)
    factor_cache.refile_analysis(backend, entry)
    return entry, result
