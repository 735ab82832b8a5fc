"""Benchmark the topology optimization example against a NumPy + cvxopt CHOLMOD baseline.

Runs the 88-line algorithm on the MBB half-beam, side by side in one process:

- ours: examples/topology_optimization.py, one jitted call per iteration (assembly as a
  BCOO, `lineax_sparse.Cholmod`, `jax.grad` for the sensitivities, filter, OC bisection);
- baseline "plain": benchmarks/top88_cvxopt.py with scipy assembly and a fresh
  `cvxopt.spmatrix` per iteration, the symbolic factorization reused;
- baseline "tuned": the same with a precomputed scatter into one `cvxopt.spmatrix`.

Each round runs the three to convergence (max |x_new - x| <= 0.01) from the same start, one
after the other; ours starts each round with an empty cache, so it analyses the pattern
again, as the baselines call `symbolic` again. The time per iteration is the median over
all iterations of all rounds except each run's first (ours compiles in its first round's
first iteration). The three must reach the same compliance in the same number of
iterations, else the run fails: they are the same algorithm.

    python benchmarks/bench_topology.py             # 180 x 60, density filter, 3 rounds
    python benchmarks/bench_topology.py --quick     # 60 x 20, 1 round
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

import lineax_sparse as lxs  # noqa: E402
import topology_optimization as ours  # noqa: E402
from common import environment, markdown_table, source_version, write_result  # noqa: E402
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nelx", type=int, default=180)
    parser.add_argument("--nely", type=int, default=60)
    parser.add_argument("--volfrac", type=float, default=0.4)
    parser.add_argument("--rmin", type=float, default=5.4)
    parser.add_argument("--filter", choices=("sensitivity", "density"), default="density")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-iterations", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="60 x 20 (rmin 2.4), 1 round")
    args = parser.parse_args()
    if args.quick:
        args.nelx, args.nely, args.volfrac, args.rmin, args.rounds = 60, 20, 0.5, 2.4, 1

    problem = ours.mbb_problem(args.nelx, args.nely, args.rmin)
    settings = ours.Settings(args.volfrac, 3.0, args.filter == "density")
    names = ("ours", "plain", "tuned")
    runs: dict[str, list[tuple[list[float], list[float]]]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        print(f"round {round_number + 1} of {args.rounds} ...", flush=True)
        runs["ours"].append(run_ours(problem, settings, args.max_iterations))
        runs["plain"].append(run_baseline(args, "plain", args.max_iterations))
        runs["tuned"].append(run_baseline(args, "tuned", args.max_iterations))

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
        ["time per iteration (median)", *[f"{1e3 * median[name]:.1f} ms" for name in names]],
        [
            "first iteration (median over rounds)",
            *[f"{1e3 * first(name):.0f} ms" for name in names],
        ],
        [
            "total per run (median)",
            *[f"{statistics.median(sum(s) for _, s in runs[name]):.2f} s" for name in names],
        ],
        [
            "**ours / this, per iteration**",
            "1",
            *[f"**{median['ours'] / median[n]:.2f}**" for n in names[1:]],
        ],
    ]
    title = (
        f"Topology optimization benchmark: MBB {args.nelx}×{args.nely}, volfrac {args.volfrac}, "
        f"rmin {args.rmin}, {args.filter} filter, {args.rounds} rounds\n"
        f"{environment()}; source {source_version()}"
    )
    table = markdown_table(
        ["", "ours (jit, Cholmod, jax.grad)", "NumPy + cvxopt, plain", "NumPy + cvxopt, tuned"],
        rows,
    )
    text = f"{title}\n\n{table}\n"
    print(text)
    write_result("topology.md", text)


if __name__ == "__main__":
    main()
