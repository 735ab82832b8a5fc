"""Benchmark the topology optimization example against a NumPy + cvxopt CHOLMOD baseline.

Runs the 88-line algorithm on the MBB half-beam, side by side in one process:

- ours: examples/topology_optimization.py, one jitted call per iteration (assembly as a
  BCOO, `lineax_sparse.Cholmod`, `jax.grad` for the sensitivities, filter, OC bisection);
- baseline "plain": benchmarks/top88_cvxopt.py with scipy assembly and a fresh
  `cvxopt.spmatrix` per iteration, the symbolic factorization reused;
- baseline "tuned": the same with a precomputed scatter into one `cvxopt.spmatrix`.

Each round runs the three to convergence (max |x_new - x| <= 0.01) from the same start, one
after the other (in reverse order every other round); ours starts each run with an empty
cache, so it analyses the pattern again, as the baselines call `symbolic` again. The time
per iteration is the median over all iterations of all rounds except each run's first (ours
compiles in its first round's first iteration). The three must reach the same compliance
in the same number of iterations, else the run fails: they are the same algorithm.

    python benchmarks/bench_topology.py             # 180 x 60, density filter, 3 rounds
    python benchmarks/bench_topology.py --quick     # 60 x 20, 1 round
"""

from __future__ import annotations

import statistics
import time

from common import (
    command_line,
    examples_on_path,
    format_seconds,
    markdown_table,
    Report,
    turn_order,
)


examples_on_path()

import jax  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
import topology_optimization as ours  # noqa: E402
from top88_cvxopt import Top88  # noqa: E402


jax.config.update("jax_enable_x64", True)


def run_ours(problem, settings, max_iterations: int):
    lxs.clear_cache()
    _, history = ours.optimize(problem, settings, lxs.Cholmod(), max_iterations, progress=False)
    return history.compliance, history.seconds


def run_baseline(args, assembly: str, max_iterations: int):
    run = Top88(
        args.nelx, args.nely, args.volfrac, 3.0, args.rmin, args.filter == "density", assembly
    )
    compliances, seconds = [], []
    for _ in range(max_iterations):
        start = time.perf_counter()
        c, change = run.step()
        seconds.append(time.perf_counter() - start)
        compliances.append(c)
        if change <= ours.CHANGE_TOLERANCE:
            break
    return compliances, seconds


def main() -> None:
    parser = command_line(__doc__, quick="60 x 20 (rmin 2.4), 1 round")
    parser.add_argument("--nelx", type=int, default=180)
    parser.add_argument("--nely", type=int, default=60)
    parser.add_argument("--volfrac", type=float, default=0.4)
    parser.add_argument("--rmin", type=float, default=5.4)
    parser.add_argument("--filter", choices=("sensitivity", "density"), default="density")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-iterations", type=int, default=2000)
    args = parser.parse_args()
    if args.quick:
        args.nelx, args.nely, args.volfrac, args.rmin, args.rounds = 60, 20, 0.5, 2.4, 1

    problem = ours.mbb_problem(args.nelx, args.nely, args.rmin)
    settings = ours.Settings(args.volfrac, 3.0, args.filter == "density")
    names = ("ours", "plain", "tuned")
    runs: dict[str, list[tuple[list[float], list[float]]]] = {name: [] for name in names}
    title = (
        f"Topology optimization benchmark: MBB {args.nelx}×{args.nely}, volfrac {args.volfrac}, "
        f"rmin {args.rmin}, {args.filter} filter, {args.rounds} rounds"
    )
    report = Report(title)
    for round_number in range(args.rounds):
        print(f"round {round_number + 1} of {args.rounds} ...", flush=True)
        for name in turn_order(names, round_number):
            if name == "ours":
                runs[name].append(run_ours(problem, settings, args.max_iterations))
            else:
                runs[name].append(run_baseline(args, name, args.max_iterations))

    reference = runs["tuned"][0][0]
    for name in names:
        for compliances, _ in runs[name]:
            if len(compliances) != len(reference):
                raise RuntimeError(
                    f"{name} took {len(compliances)} iterations, the baseline {len(reference)}"
                )
            difference = abs(compliances[-1] - reference[-1]) / reference[-1]
            if difference > 1e-6:
                raise RuntimeError(f"{name}: final compliance differs by {difference:.2e}")

    def per_iteration(name: str) -> float:
        return statistics.median(t for _, seconds in runs[name] for t in seconds[1:])

    def first(name: str) -> float:
        return statistics.median(seconds[0] for _, seconds in runs[name])

    median = {name: per_iteration(name) for name in names}
    rows = [
        ["iterations to convergence", *[str(len(runs[name][0][0])) for name in names]],
        ["final compliance", *[f"{runs[name][0][0][-1]:.4f}" for name in names]],
        ["time per iteration (median)", *[format_seconds(median[name]) for name in names]],
        ["first iteration (median over rounds)", *[format_seconds(first(name)) for name in names]],
        [
            "total per run (median)",
            *[format_seconds(statistics.median(sum(s) for _, s in runs[name])) for name in names],
        ],
        [
            "**ours / this, per iteration**",
            "1",
            *[f"**{median['ours'] / median[n]:.2f}**" for n in names[1:]],
        ],
    ]
    table = markdown_table(
        ["", "ours (jit, Cholmod, jax.grad)", "NumPy + cvxopt, plain", "NumPy + cvxopt, tuned"],
        rows,
    )
    report.table(table)
    report.publish("topology.md")


if __name__ == "__main__":
    main()
