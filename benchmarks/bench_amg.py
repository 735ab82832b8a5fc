"""Benchmark `lineax_sparse.AMG` against pyamg itself, and against `lineax_sparse.Cholmod`.

Measured on a 2D Poisson matrix (1024 x 1024 grid, n = 1,048,576) and a 3D Poisson matrix
(64 x 64 x 64 grid, n = 262,144), 5- and 7-point stencils with Dirichlet boundaries:

1. forward: native `ml = pyamg.smoothed_aggregation_solver(A)` then
   `ml.solve(b, tol=1e-8, accel="cg")` (setup and solve timed separately), once with the
   BLAS threads the environment gives and once under `threadpoolctl.threadpool_limits(1)`,
   against ours, `lx.linear_solve(op, b, solver=lxs.AMG(rtol=1e-8))` under `jax.jit` on an
   operator tagged `lx.positive_semidefinite_tag`, each call with new values (so each call
   builds a hierarchy) or after `lxs.clear_cache()`;
2. ours `jax.value_and_grad` of `sum(x**2)` with respect to the matrix values and `b`
   (one hierarchy, a forward and a transposed Krylov solve) against ours forward;
3. a loop of 10 variable-coefficient diffusion matrices on the same grid (log-normal face
   coefficients, each changed by a random factor in [0.95, 1.05] per step: SPD throughout):
   ours with hierarchy reuse (`AMG(rtol=1e-8, reuse=2)`), ours rebuilding every step
   (`AMG(rtol=1e-8)`), and native pyamg rebuilding every step;
4. for comparison, ours `lxs.Cholmod()` forward on the Poisson matrices, in a child process
   abandoned after `--limit` seconds per call (the 3D fill is large);
5. (`warm`) warm starts: 10 steps of `value_and_grad` of `|x|^2 / 2` (the backward pass
   runs its own transposed solve) with `AMG(warm_start=True)` against cold starts, for the
   random drift of 3., a smooth drift (5% per step along one direction) and a slow one
   (1%); Krylov steps forward / backward counted by wrapping the backend's `solve`;
6. (`rhs`) many right-hand sides on unstructured 2D Poisson (P1 elements on a Delaunay mesh
   of random points): one vmapped call over k columns against k separate calls (the
   hierarchy built before timing in both) and native pyamg column by column; 16 columns
   at n = 32k and 64 at n = 260k (`--quick`: 16 at 8k and 32k). A table of its own.

The two sides do not iterate alike: our backend holds BLAS to one thread, preconditions
scipy's CG with one V-cycle called directly and stops on the true residual
`|b - A x| <= 1e-8 |b|`; `ml.solve(accel="cg")` runs `pyamg.krylov.cg`, which stops on its
recursively updated residual (recomputed every 8 iterations) and wraps every cycle in
`ml.solve(r, maxiter=1)`. Iteration counts and true relative residuals of both are reported.

Times are medians over the repetitions after one warm-up call (which includes compilation);
the rows compared are timed in turns within each repetition. The Markdown table goes to stdout
and to benchmarks/results/amg.md.

    python benchmarks/bench_amg.py            # full run: about 45 minutes (rhs: 20)
    python benchmarks/bench_amg.py --parts warm --grid2 512 --problems 2d   # 4 minutes
    python benchmarks/bench_amg.py --quick    # smoke test: Poisson 256², 32³, under 2 minutes
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pyamg
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs
from common import (
    block,
    choose,
    command_line,
    format_seconds,
    isolated_result,
    markdown_table,
    one_blas_thread,
    Phases,
    record_amg_solves,
    Report,
    results_table,
    Step,
    time_interleaved,
    time_isolated,
    Timing,
)


jax.config.update("jax_enable_x64", True)

PSD = lx.positive_semidefinite_tag
RTOL = 1e-8
STEPS = 10  # matrices per changing-values loop
DRIFT = 0.05  # each face coefficient changes by a factor in [1 - DRIFT, 1 + DRIFT] per step
SIGMA = 1.0  # log-normal spread of the initial face coefficients
SLOW_DRIFT = 0.01  # the warm-start loop's slowly changing variant
# The measurements `--parts` chooses from ("rhs" and "orderings" are problems of their own).
PARTS = ("forward", "grad", "loop", "warm", "cholmod", "rhs")
FORWARD = lxs.AMG(rtol=RTOL)
REUSE = lxs.AMG(rtol=RTOL, reuse=2)


# --- Problems: diffusion on a d-dimensional grid, as `assembly @ coefficients`.


@dataclasses.dataclass(frozen=True)
class Grid:
    """`-div(c grad u)` on the interior of a `side`^dim grid of the unit cube (Dirichlet).

    One coefficient per face of the grid, boundary faces included; `values(c)` gives the CSR
    values of the matrix (sorted indices, a pattern independent of `c`), scaled by 1/h^2.
    With every coefficient 1 it is the 5-point (2D) or 7-point (3D) Laplacian.
    """

    side: int
    dim: int
    indptr: np.ndarray
    indices: np.ndarray
    assembly: sp.csr_matrix  # (nnz, faces): CSR values = assembly @ coefficients

    @classmethod
    def make(cls, side: int, dim: int) -> Grid:
        difference = sp.diags([1.0, -1.0], [0, -1], shape=(side + 1, side), format="csr")
        identity = sp.identity(side, format="csr")
        blocks = []
        for axis in range(dim):
            factors = [identity] * dim
            factors[axis] = difference
            blocks.append(functools.reduce(lambda a, b: sp.kron(a, b, format="csr"), factors))
        incidence = sp.vstack(blocks, format="csr")  # (faces, n), one or two entries per row
        incidence.sort_indices()
        faces, n = incidence.shape
        ends = np.diff(incidence.indptr)
        first = incidence.indptr[:-1]
        # Face f with ends i (sign s) and j (sign t) adds c_f [s t] outer [s t] at (i, j).
        rows, cols, face, weight = [], [], [], []
        for a in (0, 1):
            for b in (0, 1):
                which = np.flatnonzero(ends > max(a, b))
                rows.append(incidence.indices[first[which] + a])
                cols.append(incidence.indices[first[which] + b])
                face.append(which)
                weight.append(incidence.data[first[which] + a] * incidence.data[first[which] + b])
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        face, weight = np.concatenate(face), np.concatenate(weight)
        pattern = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        pattern.sum_duplicates()
        keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(pattern.indptr)) * n
        keys += pattern.indices
        slot = np.searchsorted(keys, rows.astype(np.int64) * n + cols)
        scale = float(side + 1) ** 2
        assembly = sp.csr_matrix((weight * scale, (slot, face)), shape=(keys.size, faces))
        return cls(side, dim, pattern.indptr, pattern.indices, assembly)

    @property
    def n(self) -> int:
        return self.side**self.dim

    @property
    def faces(self) -> int:
        return self.assembly.shape[1]

    def values(self, coefficients: np.ndarray) -> np.ndarray:
        return self.assembly @ coefficients

    def matrix(self, values: np.ndarray) -> sp.csr_matrix:
        """A CSR matrix of its own (pyamg may sort or convert its input in place)."""
        return sp.csr_matrix(
            (values.copy(), self.indices.copy(), self.indptr.copy()), shape=(self.n, self.n)
        )

    def coo_indices(self) -> jax.Array:
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        return jnp.asarray(np.stack([rows, self.indices], axis=1).astype(np.int32))


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    grid: Grid
    repeats: int
    loop_repeats: int
    cholmod_repeats: int

    @property
    def nnz(self) -> int:
        return int(self.grid.indptr[-1])


def loop_coefficients(grid: Grid) -> list[np.ndarray]:
    """`STEPS` coefficient fields: log-normal, then each face scaled by 1 ± DRIFT per step."""
    rng = np.random.default_rng(1)
    coefficients = np.exp(SIGMA * rng.standard_normal(grid.faces))
    fields = []
    for _ in range(STEPS):
        fields.append(coefficients)
        coefficients = coefficients * rng.uniform(1 - DRIFT, 1 + DRIFT, grid.faces)
    return fields


# --- Ours.


def operator_from(data, indices, size: int) -> lxs.SparseOperator:
    return lxs.SparseOperator(jsparse.BCOO((data, indices), shape=(size, size)), tags=PSD)


def solve(data, b, indices, size, solver):
    solution = lx.linear_solve(operator_from(data, indices, size), b, solver=solver)
    return solution.value, solution.stats


def loss(data, b, indices, size):
    x = lx.linear_solve(operator_from(data, indices, size), b, solver=FORWARD).value
    return jnp.sum(x**2)


ours_forward = jax.jit(functools.partial(solve, solver=FORWARD), static_argnums=3)
ours_reuse = jax.jit(functools.partial(solve, solver=REUSE), static_argnums=3)
ours_cholmod = jax.jit(functools.partial(solve, solver=lxs.Cholmod()), static_argnums=3)
ours_value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=3)


class Counted:
    """Wraps our jitted calls: keeps the last output and the setups each call made.

    `cache_info()` is read around the call (microseconds, against calls of 0.1 s and more);
    "setups" is the growth of its `factorizations` counter: hierarchies built (a factor that
    reuses an earlier hierarchy does not count).
    """

    def __init__(self) -> None:
        self.output: dict[str, Any] = {}
        self.setups: dict[str, list[int]] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def step():
            before = lxs.cache_info().factorizations
            output = block(fn())
            self.setups.setdefault(name, []).append(lxs.cache_info().factorizations - before)
            self.output[name] = output
            return output

        return step


# --- Native pyamg.


class Native:
    """`smoothed_aggregation_solver` + `solve(accel="cg")`, with or without one BLAS thread.

    The previous hierarchy is freed when `ml` is rebound, inside the timed setup, as in a
    user's loop (ours frees old factors inside its calls too, when the cache evicts them).
    """

    def __init__(self, phases: Phases, prefix: str, one: bool):
        self.phases, self.prefix, self.one = phases, prefix, one
        self.ml: Any = None
        self.x: np.ndarray | None = None
        self.iterations: list[int] = []

    def __call__(self, matrix: sp.csr_matrix, b: np.ndarray) -> np.ndarray:
        limit = one_blas_thread() if self.one else None
        start = time.perf_counter()
        try:
            self.ml = pyamg.smoothed_aggregation_solver(matrix)
            built = time.perf_counter()
            residuals: list[float] = []
            self.x = self.ml.solve(b, tol=RTOL, accel="cg", residuals=residuals)
            end = time.perf_counter()
        finally:
            if limit is not None:
                limit.restore_original_limits()
        self.iterations.append(len(residuals) - 1)
        self.phases.record(f"{self.prefix} setup", built - start)
        self.phases.record(f"{self.prefix} solve", end - built)
        self.phases.record(f"{self.prefix} total", end - start)
        return self.x


def relative_residual(matrix: sp.csr_matrix, x, b: np.ndarray) -> float:
    x = np.asarray(x)
    return float(np.linalg.norm(b - matrix @ x) / np.linalg.norm(b))


# --- The measurements.


def forward_steps(problem: Problem, grad: bool) -> dict[str, Any]:
    """Steps 1 and 2: native, ours forward (new values, cold) and `value_and_grad`."""
    grid, repeats = problem.grid, problem.repeats
    values = grid.values(np.ones(grid.faces))
    matrix = grid.matrix(values)
    b_host = np.random.default_rng(0).standard_normal(grid.n)
    b = jnp.asarray(b_host)
    indices, size = grid.coo_indices(), grid.n
    data = jax.block_until_ready(jnp.asarray(values))

    phases = Phases()
    native = Native(phases, "native", one=False)
    native_one = Native(phases, "native 1t", one=True)
    counted = Counted()
    current: dict[str, jax.Array] = {}
    scales = iter(range(1, 10 * (repeats + 1)))

    def new_values(name: str) -> Callable[[], None]:
        def setup():  # values never seen before: every call builds a hierarchy
            current[name] = jax.block_until_ready(data * (1 + 1e-12 * next(scales)))

        return setup

    steps = {
        "native": Step(lambda: native(matrix, b_host)),
        "native 1t": Step(lambda: native_one(matrix, b_host)),
        "ours forward new": Step(
            counted("forward new", lambda: ours_forward(current["forward"], b, indices, size)),
            new_values("forward"),
        ),
        "ours forward cold": Step(
            counted("forward cold", lambda: ours_forward(data, b, indices, size)),
            lxs.clear_cache,
        ),
    }
    if grad:
        steps["ours grad new"] = Step(
            counted("grad new", lambda: ours_value_and_grad(current["grad"], b, indices, size)),
            new_values("grad"),
        )
    timings = time_interleaved(steps, repeats)
    results: dict[str, Any] = {}
    for name in ("native", "native 1t"):
        del timings[name]  # recorded as phases (setup, solve and their sum) instead
    results.update(timings)
    results.update(phases.timings())
    results["ours first call"] = Timing.once(timings["ours forward cold"].first)

    x, stats = counted.output["forward new"]
    iterations, residual = int(stats["num_steps"]), float(stats["relative_residual"])
    true_residual = relative_residual(matrix, x, b_host)
    if not (residual <= RTOL and true_residual <= RTOL * (1 + 1e-6)):
        raise RuntimeError(
            f"{problem.name}: ours stopped at {residual:.2e} (stats), {true_residual:.2e} (true)"
        )
    results["ours iterations"] = f"{iterations} / {residual:.1e}"
    for key, side in (("native", native), ("native 1t", native_one)):
        counts = sorted(set(side.iterations))
        text = "/".join(str(c) for c in counts)
        results[f"{key} iterations"] = f"{text} / {relative_residual(matrix, side.x, b_host):.1e}"
    for key, name in (
        ("setups forward", "forward new"),
        ("setups cold", "forward cold"),
        ("setups grad", "grad new"),
    ):
        if name not in counted.setups:
            continue
        results[key] = setups_text(counted.setups[name])
        if set(counted.setups[name]) != {1}:
            print(f"warning: {problem.name}: {name} setups per call {counted.setups[name]}")
    return results


def setups_text(per_call: list[int]) -> str:
    """`1 in each of 4 calls`, or every count and a warning when any call made more or fewer."""
    if set(per_call) == {1}:
        return f"1 in each of {len(per_call)} calls"
    return f"{', '.join(str(c) for c in per_call)} (warm-up first) **expected 1 each**"


def loop_steps(problem: Problem) -> dict[str, Any]:
    """Step 3: `STEPS` changing matrices; ours with reuse, ours rebuilding, native rebuilding."""
    grid = problem.grid
    fields = loop_coefficients(grid)
    host_values = [grid.values(c) for c in fields]
    matrices = [grid.matrix(v) for v in host_values]
    datas = jax.block_until_ready([jnp.asarray(v) for v in host_values])
    b_host = np.random.default_rng(0).standard_normal(grid.n)
    b = jnp.asarray(b_host)
    indices, size = grid.coo_indices(), grid.n
    native = Native(Phases(), "loop", one=True)
    record: dict[str, Any] = {}

    def ours(name: str, fn) -> Callable[[], Any]:
        def run():  # the cache was cleared (untimed) before: no hierarchy carried over
            outputs = [block(fn(data, b, indices, size)) for data in datas]
            record[name] = (outputs, lxs.cache_info().factorizations)
            return outputs[-1]

        return run

    def native_loop():
        native.iterations.clear()
        for matrix in matrices:
            x = native(matrix, b_host)
        return x

    timings = time_interleaved(
        {
            "loop reuse": Step(ours("reuse", ours_reuse), lxs.clear_cache),
            "loop rebuild": Step(ours("rebuild", ours_forward), lxs.clear_cache),
            "loop native": Step(native_loop),
        },
        problem.loop_repeats,
    )
    results: dict[str, Any] = dict(timings)
    for name in ("reuse", "rebuild"):
        outputs, setups = record[name]
        steps = [int(stats["num_steps"]) for _, stats in outputs]
        worst = max(float(stats["relative_residual"]) for _, stats in outputs)
        worst_true = max(
            relative_residual(m, x, b_host) for m, (x, _) in zip(matrices, outputs, strict=True)
        )
        if not (worst <= RTOL and worst_true <= RTOL * (1 + 1e-6)):
            raise RuntimeError(f"{problem.name}: loop {name} residual {worst:.2e}/{worst_true:.2e}")
        results[f"loop {name} setups"] = str(setups)
        results[f"loop {name} iterations"] = iterations_text(steps) + f", ≤ {worst:.1e}"
    results["loop native setups"] = str(len(matrices))
    residual = relative_residual(matrices[-1], native.x, b_host)
    results["loop native iterations"] = (
        iterations_text(native.iterations) + f", last {residual:.1e}"
    )
    return results


def smooth_coefficients(grid: Grid, drift: float = DRIFT) -> list[np.ndarray]:
    """`STEPS` coefficient fields moving along one random direction, `drift` per step (the
    way an optimization's design moves), from the same start as `loop_coefficients`."""
    rng = np.random.default_rng(1)
    coefficients = np.exp(SIGMA * rng.standard_normal(grid.faces))
    direction = np.random.default_rng(2).standard_normal(grid.faces)
    return [coefficients * np.exp(drift * k * direction) for k in range(STEPS)]


class KrylovSteps:
    """Krylov steps of our AMG backend's solves since the last `take()`, forward and
    transposed (`record_amg_solves`)."""

    def __init__(self) -> None:
        self.solves = record_amg_solves()

    def take(self) -> tuple[int, int]:
        forward = sum(steps for transposed, steps in self.solves if not transposed)
        backward = sum(steps for transposed, steps in self.solves if transposed)
        self.solves.clear()
        return forward, backward


def general_loss(data, b, indices, size, solver):
    """Not self-adjoint: the adjoint right-hand side `x` differs from `b`, so the backward
    pass runs its own transposed solve."""
    x = lx.linear_solve(operator_from(data, indices, size), b, solver=solver).value
    return 0.5 * jnp.sum(x**2)


WARM = lxs.AMG(rtol=RTOL, warm_start=True)
ours_grad_cold = jax.jit(
    jax.value_and_grad(functools.partial(general_loss, solver=FORWARD)), static_argnums=3
)
ours_grad_warm = jax.jit(
    jax.value_and_grad(functools.partial(general_loss, solver=WARM)), static_argnums=3
)


def warm_steps(problem: Problem, counter: KrylovSteps) -> dict[str, Any]:
    """Warm starts: `value_and_grad` over `STEPS` changing matrices, cold and warm, for the
    random drift of `loop_steps` and for a smooth drift; Krylov steps forward / backward."""
    results: dict[str, Any] = {}
    for kind, fields in (
        ("random", loop_coefficients(problem.grid)),
        ("smooth", smooth_coefficients(problem.grid)),
        ("slow", smooth_coefficients(problem.grid, SLOW_DRIFT)),
    ):
        results.update(_warm_loop(problem, counter, kind, fields))
    return results


def _warm_loop(problem: Problem, counter: KrylovSteps, kind: str, fields) -> dict[str, Any]:
    grid = problem.grid
    b = jnp.asarray(np.random.default_rng(0).standard_normal(grid.n))
    indices, size = grid.coo_indices(), grid.n
    datas = jax.block_until_ready([jnp.asarray(grid.values(c)) for c in fields])
    steps: dict[str, tuple[int, int]] = {}

    def loop(name, fn):
        def run():
            counter.take()
            outputs = [block(fn(data, b, indices, size)) for data in datas]
            steps[name] = counter.take()
            return outputs[-1]

        return run

    results: dict[str, Any] = dict(
        time_interleaved(
            {
                f"warm {kind} cold": Step(loop("cold", ours_grad_cold), lxs.clear_cache),
                f"warm {kind} warm": Step(loop("warm", ours_grad_warm), lxs.clear_cache),
            },
            problem.loop_repeats,
        )
    )
    for name in ("cold", "warm"):
        forward, backward = steps[name]
        results[f"warm {kind} {name} steps"] = f"{forward} / {backward}"
    (cold_f, cold_b), (warm_f, warm_b) = steps["cold"], steps["warm"]
    results[f"warm {kind} saving"] = f"{1 - warm_f / cold_f:.0%} / {1 - warm_b / cold_b:.0%}"
    return results


def delaunay_poisson(points: int, seed: int = 0) -> sp.csr_matrix:
    """The P1 finite-element Laplacian on a Delaunay triangulation of random points in the
    unit square (an unstructured mesh), with its boundary points eliminated (Dirichlet)."""
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(seed)
    side = int(np.sqrt(points))
    t = np.linspace(0.0, 1.0, side, endpoint=False)
    zero, one = np.zeros_like(t), np.ones_like(t)
    boundary = np.concatenate(
        [np.stack(pair, axis=1) for pair in ((t, zero), (one, t), (1 - t, one), (zero, 1 - t))]
    )
    inside = rng.uniform(0.001, 0.999, (points - len(boundary), 2))
    xy = np.concatenate([boundary, inside])
    triangles = Delaunay(xy).simplices
    corners = xy[triangles]  # (elements, 3, 2)
    edges = np.stack(
        [
            corners[:, 2] - corners[:, 1],
            corners[:, 0] - corners[:, 2],
            corners[:, 1] - corners[:, 0],
        ],
        axis=1,
    )
    area = 0.5 * np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0])
    local = np.einsum("eik,ejk->eij", edges, edges) / (4 * area[:, None, None])
    rows = np.repeat(triangles, 3, axis=1).ravel()
    cols = np.tile(triangles, (1, 3)).ravel()
    n = len(xy)
    matrix = sp.coo_matrix((local.ravel(), (rows, cols)), shape=(n, n)).tocsr()
    keep = np.arange(len(boundary), n)
    matrix = matrix[keep][:, keep].tocsr()
    matrix.sort_indices()
    return matrix


def rhs_results(quick: bool, repeats: int) -> list[list[str]]:
    """Many right-hand sides against one hierarchy: a vmapped solve over k columns against
    k separate calls (the hierarchy built once, before timing, in both), and native pyamg
    solving the k columns with the same kind of hierarchy, on unstructured 2D Poisson."""
    cases = [(8_000, 16), (32_000, 16)] if quick else [(33_000, 16), (262_000, 64)]
    return [_rhs_case(points, k, repeats) for points, k in cases]


def _rhs_case(points: int, k: int, repeats: int) -> list[str]:
    matrix = delaunay_poisson(points)
    n = matrix.shape[0]
    coo = matrix.tocoo()
    indices = jnp.asarray(np.stack([coo.row, coo.col], axis=1).astype(np.int32))
    data = jnp.asarray(coo.data)
    bs = np.random.default_rng(0).standard_normal((k, n))
    b_device = jnp.asarray(bs)

    def one(b):
        return solve(data, b, indices, n, FORWARD)

    single = jax.jit(one)
    batched = jax.jit(jax.vmap(one))
    block(single(b_device[0]))  # compile; builds the hierarchy
    block(batched(b_device))  # compile
    native_ml = pyamg.smoothed_aggregation_solver(matrix.copy())

    def native():
        with one_blas_thread():
            return [native_ml.solve(b, tol=RTOL, accel="cg") for b in bs]

    timings = time_interleaved(
        {
            "vmap": Step(lambda: batched(b_device)),
            "separate": Step(lambda: [single(b_device[j]) for j in range(k)]),
            "native": Step(native),
        },
        repeats,
    )
    x, stats = batched(b_device)
    worst = max(relative_residual(matrix, x[j], bs[j]) for j in range(k))
    if not worst <= RTOL * (1 + 1e-6):
        raise RuntimeError(f"vmapped AMG residual {worst:.2e} above {RTOL:g}")
    steps = np.asarray(stats["num_steps"])
    vmap_t, separate_t = timings["vmap"].median, timings["separate"].median
    return [
        f"unstructured 2D Poisson, n = {n:,}, {k} right-hand sides",
        format_seconds(vmap_t),
        format_seconds(separate_t),
        format_seconds(timings["native"].median),
        f"{separate_t / vmap_t:.2f}",
        f"{steps.min()}-{steps.max()}, worst {worst:.1e}",
    ]


def iterations_text(steps: list[int]) -> str:
    return f"Σ {sum(steps)}: {', '.join(str(s) for s in steps)}"


def cholmod_steps(values: np.ndarray, coo: np.ndarray, b: np.ndarray, repeats: int, note: str):
    """Ours with `lxs.Cholmod()`, new values in every call; runs in a child process.

    After every call the setups of each call so far (the growth of `factorizations`) are
    written to the file `note`, as numbers separated by spaces, for the parent to report.
    """
    size = b.shape[0]
    indices, b = jnp.asarray(coo), jnp.asarray(b)
    copies = iter(
        jax.block_until_ready([jnp.asarray(values * (1 + 1e-12 * k)) for k in range(repeats + 1)])
    )
    setups: list[int] = []

    def forward():
        before = lxs.cache_info().factorizations
        x = block(ours_cholmod(next(copies), b, indices, size)[0])
        setups.append(lxs.cache_info().factorizations - before)
        Path(note).write_text(" ".join(str(s) for s in setups))
        return x

    return {"forward": forward}


def cholmod_results(problem: Problem, limit: float) -> dict[str, Any]:
    grid = problem.grid
    values = grid.values(np.ones(grid.faces))
    b = np.random.default_rng(0).standard_normal(grid.n)
    coo = np.asarray(grid.coo_indices())
    with tempfile.TemporaryDirectory() as directory:
        note = Path(directory) / "setups"
        args = (values, coo, b, problem.cholmod_repeats, str(note))
        results = time_isolated(cholmod_steps, args, problem.cholmod_repeats, limit)
        setups = [int(s) for s in note.read_text().split()] if note.exists() else []
    forward = isolated_result(results, "forward")
    out: dict[str, Any] = {"cholmod forward": forward}
    out["cholmod first call"] = (
        Timing.once(forward.first) if isinstance(forward, Timing) else forward
    )
    if setups:
        out["cholmod setups"] = setups_text(setups)
        if set(setups) != {1}:
            print(f"warning: {problem.name}: Cholmod factorizations per call {setups}")
    return out


def run_problem(
    problem: Problem, parts: set[str], limit: float, counter: KrylovSteps
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "forward" in parts:
        results.update(forward_steps(problem, grad="grad" in parts))
        lxs.clear_cache()
    if "loop" in parts:
        results.update(loop_steps(problem))
        lxs.clear_cache()
    if "warm" in parts:
        results.update(warm_steps(problem, counter))
        lxs.clear_cache()
    if "cholmod" in parts:
        results.update(cholmod_results(problem, limit))
    return results


# --- The report.

ROWS = [
    ("native `smoothed_aggregation_solver` (setup)", "native setup"),
    ("native `ml.solve(tol=1e-8, accel='cg')`", "native solve"),
    ("**native setup + solve**", "native total"),
    ("native iterations / true relative residual", "native iterations"),
    ("native setup, 1 BLAS thread", "native 1t setup"),
    ("native solve, 1 BLAS thread", "native 1t solve"),
    ("**native setup + solve, 1 BLAS thread**", "native 1t total"),
    ("native iterations / true relative residual, 1 BLAS thread", "native 1t iterations"),
    ("**ours forward, new values** (setup + solve)", "ours forward new"),
    ("ours forward, cold (cache cleared)", "ours forward cold"),
    ("ours forward, first call (compile + cold)", "ours first call"),
    ("ours iterations / relative residual (`Solution.stats`)", "ours iterations"),
    ("ours setups (`factorizations` growth) per forward call", "setups forward"),
    ("**ours `value_and_grad`, new values**", "ours grad new"),
    ("ours setups per `value_and_grad` call", "setups grad"),
    (f"loop of {STEPS}: ours `AMG(reuse=2)`", "loop reuse"),
    (f"loop of {STEPS}: ours `AMG()` (rebuild every step)", "loop rebuild"),
    (f"loop of {STEPS}: native pyamg rebuild, 1 BLAS thread", "loop native"),
    ("loop setups: ours `reuse=2`", "loop reuse setups"),
    ("loop setups: ours rebuild", "loop rebuild setups"),
    ("loop setups: native", "loop native setups"),
    ("loop iterations: ours `reuse=2`", "loop reuse iterations"),
    ("loop iterations: ours rebuild", "loop rebuild iterations"),
    ("loop iterations: native", "loop native iterations"),
    (f"warm starts, random drift: {STEPS} × `value_and_grad`, cold", "warm random cold"),
    ("warm starts, random drift: `AMG(warm_start=True)`", "warm random warm"),
    ("warm starts, random drift: Krylov steps forward / backward, cold", "warm random cold steps"),
    ("warm starts, random drift: Krylov steps forward / backward, warm", "warm random warm steps"),
    ("**warm starts, random drift: fewer steps** forward / backward", "warm random saving"),
    (f"warm starts, smooth drift: {STEPS} × `value_and_grad`, cold", "warm smooth cold"),
    ("warm starts, smooth drift: `AMG(warm_start=True)`", "warm smooth warm"),
    ("warm starts, smooth drift: Krylov steps forward / backward, cold", "warm smooth cold steps"),
    ("warm starts, smooth drift: Krylov steps forward / backward, warm", "warm smooth warm steps"),
    ("**warm starts, smooth drift: fewer steps** forward / backward", "warm smooth saving"),
    (f"warm starts, slow smooth drift: {STEPS} × `value_and_grad`, cold", "warm slow cold"),
    ("warm starts, slow smooth drift: `AMG(warm_start=True)`", "warm slow warm"),
    (
        "warm starts, slow smooth drift: Krylov steps forward / backward, cold",
        "warm slow cold steps",
    ),
    (
        "warm starts, slow smooth drift: Krylov steps forward / backward, warm",
        "warm slow warm steps",
    ),
    ("**warm starts, slow smooth drift: fewer steps** forward / backward", "warm slow saving"),
    ("ours `Cholmod()` forward, new values (child process)", "cholmod forward"),
    ("ours `Cholmod()` forward, first call (compile + analysis)", "cholmod first call"),
    ("ours `Cholmod()` factorizations per call", "cholmod setups"),
]

TARGETS = [
    (
        "**ours / native forward, 1 BLAS thread** (like for like)",
        "ours forward new",
        "native 1t total",
        1.05,
    ),
    ("ours / native forward, default BLAS threads", "ours forward new", "native total", 1.05),
    ("**`value_and_grad` / forward**", "ours grad new", "ours forward new", 1.6),
]

RATIOS = [
    ("ours cold / native, 1 BLAS thread", "ours forward cold", "native 1t total"),
    ("native default threads / 1 BLAS thread", "native total", "native 1t total"),
    ("loop: ours `reuse=2` / ours rebuild", "loop reuse", "loop rebuild"),
    ("loop: ours rebuild / native rebuild", "loop rebuild", "loop native"),
    ("loop: ours `reuse=2` / native rebuild", "loop reuse", "loop native"),
    ("ours `Cholmod` / ours `AMG` forward", "cholmod forward", "ours forward new"),
    ("warm starts, random drift: warm / cold time", "warm random warm", "warm random cold"),
    ("warm starts, smooth drift: warm / cold time", "warm smooth warm", "warm smooth cold"),
    ("warm starts, slow smooth drift: warm / cold time", "warm slow warm", "warm slow cold"),
]


def main() -> None:
    parser = command_line(
        __doc__,
        quick="small sizes, few repetitions",
        repeats="timed repetitions of every call",
        limit="seconds after which a Cholmod call is abandoned",
    )
    parser.set_defaults(limit=120.0)
    parser.add_argument("--loop-repeats", type=int, help="timed repetitions of every loop")
    parser.add_argument("--cholmod-repeats", type=int, help="timed Cholmod calls")
    parser.add_argument("--grid2", type=int, help="2D grid side (default 1024, quick 256)")
    parser.add_argument("--grid3", type=int, help="3D grid side (default 64, quick 32)")
    parser.add_argument(
        "--raw", action="store_true", help="also print every timed repetition of every row"
    )
    parser.add_argument(
        "--problems", default="2d,3d", help="comma-separated subset of 2d,3d (default both)"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default all; grad needs forward)",
    )
    args = parser.parse_args()
    parts = set(choose(parser, args.parts, PARTS, "--parts"))
    chosen = choose(parser, args.problems, ("2d", "3d"), "--problems")

    side2 = args.grid2 or (256 if args.quick else 1024)
    side3 = args.grid3 or (32 if args.quick else 64)
    repeats = args.repeats or (3 if args.quick else 5)
    loop_repeats = args.loop_repeats or (1 if args.quick else 2)
    cholmod_repeats = args.cholmod_repeats or (2 if args.quick else 3)
    problems = [
        Problem(
            f"Poisson {side}{power}", Grid.make(side, dim), repeats, loop_repeats, cholmod_repeats
        )
        for key, side, dim, power in (("2d", side2, 2, "²"), ("3d", side3, 3, "³"))
        if key in chosen
    ]
    title = "AMG benchmark" + (
        "" if parts == set(PARTS) else f" (parts: {', '.join(sorted(parts))})"
    )
    report = Report(title, args.quick)
    counter = KrylovSteps()
    all_results = []
    for problem in problems:
        print(f"running {problem.name} (n={problem.grid.n}) ...", flush=True)
        all_results.append(run_problem(problem, parts, args.limit, counter))
        if args.raw:
            for key, value in all_results[-1].items():
                if isinstance(value, Timing):
                    times = ", ".join(format_seconds(t) for t in value.times)
                    print(f"  {key}: first {format_seconds(value.first)}; {times}")

    facts = [
        ["n"] + [f"{problem.grid.n:,}" for problem in problems],
        ["nnz"] + [f"{problem.nnz:,}" for problem in problems],
        ["repetitions (calls / loops / Cholmod calls)"]
        + [f"{p.repeats} / {p.loop_repeats} / {p.cholmod_repeats}" for p in problems],
    ]
    names = [problem.name for problem in problems]
    report.table(results_table(names, all_results, facts, ROWS, TARGETS, RATIOS))
    report.add(
        "Forward = hierarchy setup + one solve to a relative residual of 1e-8 (smoothed "
        "aggregation, V-cycle, CG). Ours builds a hierarchy in every call: 'new values' "
        "scales the values by a new 1 + 1e-12 k, 'cold' clears the cache first. Ours holds "
        "BLAS to one thread, so the like-for-like native row is the one under "
        "`threadpool_limits(1)`. Our CG stops on the true residual, pyamg's on its "
        "recursively updated one (recomputed every 8 iterations). Loop: "
        f"{STEPS} variable-coefficient diffusion matrices (log-normal face coefficients, "
        f"σ = {SIGMA:g}, each scaled by a random factor in [{1 - DRIFT:g}, {1 + DRIFT:g}] "
        "per step), the cache cleared before each loop; 'setups' counts hierarchies built "
        "(our `cache_info().factorizations` after the loop). Targets: ours / native forward "
        "≤ 1.05, `value_and_grad` / forward ≤ 1.6."
        + (" With --quick the sizes are far below those the targets are for." if args.quick else "")
    )
    if "rhs" in parts:
        print("running many right-hand sides ...", flush=True)
        rhs_rows = rhs_results(args.quick, 1 if args.quick else 2)
        header = [
            "many right-hand sides (median)",
            "ours vmap (one call)",
            "ours separate calls",
            "native pyamg, column by column",
            "separate / vmap (target ≥ 3)",
            "iterations per column, worst relative residual",
        ]
        report.table(markdown_table(header, rhs_rows))
    report.publish("amg.md")


if __name__ == "__main__":
    main()
