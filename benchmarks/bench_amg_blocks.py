"""Benchmark `lineax_sparse.AMG` on blocks of right-hand sides: one vmapped call over k
columns (solved in lockstep over the block, `backends/amg/blocks.py`) against k separate
calls, on unstructured 2D Poisson (P1 elements on a Delaunay mesh of random points, boundary
eliminated; `bench_amg.delaunay_poisson`), smoothed aggregation + CG, V-cycle, default
smoother (symmetric Gauss-Seidel), rtol = 1e-8; also BiCGStab and stand-alone cycles.

Both sides run under `jax.jit` with the hierarchy built before timing; they take turns within
each repetition (one process, one BLAS thread), and the table gives medians, the ratio
separate / block, each column's iterations in both (they should be equal), the worst true
relative residual of the block's columns and the load average at the time of the row.

    python benchmarks/bench_amg_blocks.py               # n = 32k, k = 2 to 64: 5 minutes
    python benchmarks/bench_amg_blocks.py --large       # adds n = 260k, k = 16
    python benchmarks/bench_amg_blocks.py --quick       # n = 8k, k = 4, 16: 20 seconds
"""

from __future__ import annotations

from common import command_line, format_seconds, pin_blas_threads, Report, Step, time_interleaved


pin_blas_threads()

import collections  # noqa: E402
import os  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from bench_amg import delaunay_poisson, relative_residual  # noqa: E402


jax.config.update("jax_enable_x64", True)

RTOL = 1e-8
SOLVERS = {
    "cg": lxs.AMG(rtol=RTOL),
    "bicgstab": lxs.AMG(rtol=RTOL, krylov="bicgstab"),
    "none": lxs.AMG(rtol=RTOL, krylov="none", max_steps=500),
}


def _iterations(steps) -> str:
    """Per-column iteration counts as `count×value`, most frequent first."""
    counts = collections.Counter(int(s) for s in steps)
    return ", ".join(f"{c}×{v}" if c > 1 else f"{v}" for v, c in counts.most_common())


def case(points: int, k: int, krylov: str, repeats: int) -> list[str]:
    matrix = delaunay_poisson(points)
    n = matrix.shape[0]
    op = lxs.SparseOperator.from_scipy(matrix, tags=lx.positive_semidefinite_tag)
    bs = np.random.default_rng(0).standard_normal((k, n))
    b_device = jnp.asarray(bs)
    solver = SOLVERS[krylov]

    def one(b):
        solution = lx.linear_solve(op, b, solver=solver)
        return solution.value, solution.stats["num_steps"]

    single = jax.jit(one)
    batched = jax.jit(jax.vmap(one))
    jax.block_until_ready(single(b_device[0]))  # compiles; builds the hierarchy
    jax.block_until_ready(batched(b_device))
    timings = time_interleaved(
        {
            "separate": Step(lambda: [single(b_device[j]) for j in range(k)]),
            "block": Step(lambda: batched(b_device)),
        },
        repeats,
        alternate=True,
    )
    load = os.getloadavg()[0]
    x, steps = batched(b_device)
    separate_steps = [int(single(b_device[j])[1]) for j in range(k)]
    worst = max(relative_residual(matrix, x[j], bs[j]) for j in range(k))
    if not worst <= RTOL * (1 + 1e-6):
        raise RuntimeError(f"block AMG residual {worst:.2e} above {RTOL:g}")
    separate_t, block_t = timings["separate"].median, timings["block"].median
    same = "same" if list(np.asarray(steps)) == separate_steps else _iterations(separate_steps)
    return [
        f"{n:,}",
        str(k),
        krylov,
        format_seconds(separate_t),
        format_seconds(block_t),
        f"**{separate_t / block_t:.2f}**",
        _iterations(np.asarray(steps)),
        same,
        f"{worst:.1e}",
        f"{load:.2f}",
    ]


def parts(points: int, k: int, repeats: int) -> list[list[str]]:
    """Per column, in turns: one symmetric Gauss-Seidel sweep of the fine level and one
    V-cycle, for the k columns one after another against one block of k."""
    import pyamg
    from pyamg import amg_core

    from lineax_sparse.backends.amg.cycle import Cycle
    from lineax_sparse.backends.amg.kernels import gauss_seidel_block

    matrix = delaunay_poisson(points)
    n = matrix.shape[0]
    ml = pyamg.smoothed_aggregation_solver(matrix, symmetry="hermitian")
    cycle = Cycle(ml, "V", True)
    b = np.random.default_rng(0).standard_normal((n, k))
    x = np.zeros((n, k))
    columns = [np.ascontiguousarray(b[:, j]) for j in range(k)]
    vectors = [np.zeros(n) for _ in range(k)]
    A = matrix

    def sweeps():
        for column, vector in zip(columns, vectors, strict=True):
            amg_core.gauss_seidel(A.indptr, A.indices, A.data, vector, column, 0, n, 1)
            amg_core.gauss_seidel(A.indptr, A.indices, A.data, vector, column, n - 1, -1, -1)

    timings = time_interleaved(
        {
            "sweep, columns": Step(sweeps),
            "sweep, block": Step(lambda: gauss_seidel_block(A, x, b, symmetric=True)),
            "cycle, columns": Step(lambda: [cycle(column) for column in columns]),
            "cycle, block": Step(lambda: cycle(b)),
        },
        repeats,
        alternate=True,
    )
    load = f"{os.getloadavg()[0]:.2f}"
    per = {name: timing.median / k for name, timing in timings.items()}
    return [
        [
            what,
            f"{n:,}",
            str(k),
            format_seconds(per[f"{what}, columns"]),
            format_seconds(per[f"{what}, block"]),
            f"{per[f'{what}, columns'] / per[f'{what}, block']:.1f}",
            load,
        ]
        for what in ("sweep", "cycle")
    ]


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(row) + " |" for row in rows]
    )


def main() -> None:
    parser = command_line(__doc__, quick="n = 8k only", repeats="timed repetitions (5)")
    parser.add_argument("--large", action="store_true", help="add n = 260k, k = 16")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    if args.quick:
        cases = [(8_000, 4, "cg"), (8_000, 16, "cg")]
    else:
        cases = [(33_000, k, "cg") for k in (2, 4, 16, 64)]
        cases += [(33_000, 16, "bicgstab"), (33_000, 16, "none")]
    if args.large:
        cases.append((262_000, 16, "cg"))
    report = Report("AMG, blocks of right-hand sides", args.quick, echo=True)
    rows = []
    for points, k, krylov in cases:
        print(f"running n ≈ {points:,}, k = {k}, {krylov} ...", flush=True)
        rows.append(case(points, k, krylov, repeats))
    header = [
        "n",
        "k",
        "krylov",
        "k separate calls",
        "one vmapped call",
        "separate / block",
        "iterations per column (block)",
        "iterations (separate)",
        "worst relative residual",
        "load (1 min)",
    ]
    report.table(
        _markdown(header, rows),
        f"Unstructured 2D Poisson, smoothed aggregation, V-cycle, rtol = {RTOL:g}; medians of "
        f"{repeats} in turns, one process, one BLAS thread:",
    )
    points = 8_000 if args.quick else 33_000
    print("running the sweep and the cycle alone ...", flush=True)
    header = [
        "per column",
        "n",
        "k",
        "k vectors",
        "one block",
        "vectors / block",
        "load (1 min)",
    ]
    report.table(
        _markdown(header, parts(points, 16, 4 * repeats)),
        "Fine-level symmetric Gauss-Seidel sweep (pyamg's `amg_core.gauss_seidel` per vector, "
        "`kernels.gauss_seidel_block` for the block) and one V-cycle (`cycle.Cycle`), per column:",
    )
    report.publish("amg_blocks")


if __name__ == "__main__":
    main()
