"""Benchmark the 3D topology optimization example against NumPy + pyamg / cvxopt baselines.

Runs the cantilever of examples/topology_optimization_3d.py for the same number of
iterations from the same start, in turns within one process:

- ours: the example's own `optimize` (one jitted iteration: assembly, solve, `jax.grad`,
  filter, OC), called with exactly the problem, settings and solver the example's `main`
  builds for the command line `--solver amg|cholmod --nelx .. --nely .. --nelz ..`: the
  harness runs `main` with `optimize` intercepted, so new example options (and their
  defaults) are picked up without touching this file;
- native AMG and native Cholmod: benchmarks/top3d_native.py, the same algorithm in NumPy +
  SciPy with hand-written sensitivities (one solve per iteration), pyamg + scipy CG with the
  example's `rtol` and hierarchy-reuse factor, or cvxopt CHOLMOD with the symbolic analysis
  reused.

An untimed warm-up run of two iterations of each variant comes first (ours compiles in
it). Then each round runs every variant once, ours and native alternating who goes first.
Ours starts each run with an empty cache (it analyses the pattern again, as the natives
build their first hierarchy or call `symbolic` again). The time per iteration is the
median over all runs' iterations except each run's first. The compliance histories must
agree (same algorithm): the largest relative difference is reported, and above 1e-6 the
script exits with status 1 after printing the table. The table goes to stdout and (except
with `--quick`) to benchmarks/results/topology_3d.md.

`--ab COMMIT` compares the example itself between two trees: a temporary `git worktree` of
COMMIT and this tree. Each side's examples/topology_optimization_3d.py runs in a
subprocess (`--no-plot`, its iteration limit) with that tree's `src` first on `sys.path`;
the sides alternate over the rounds, and the per-iteration medians (each run's first two
iterations, which compile, left out) and their ratio are reported (also written to
benchmarks/results/topology_3d_ab.md).

    python benchmarks/bench_topology_3d.py                      # 48 x 24 x 24, 5 iterations
    python benchmarks/bench_topology_3d.py --quick              # 12 x 6 x 6, 3 iterations
    python benchmarks/bench_topology_3d.py --size 24 12 12 --iterations 3 --solvers amg
    python benchmarks/bench_topology_3d.py --ab HEAD~1 --solvers amg --rounds 3
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    choose,
    command_line,
    examples_on_path,
    format_seconds,
    markdown_table,
    PeakMemory,
    pin_blas_threads,
    record_amg_solves,
    Report,
    ROOT,
    run_child,
    source_version,
    turn_order,
)


# Before NumPy loads OpenBLAS: on a shared 2-core machine threaded BLAS only adds noise, and
# lineax-sparse holds its own host calls to one thread anyway.
pin_blas_threads()
examples_on_path()

import cvxopt  # noqa: E402, F401, I001  (before anything that may load CHOLMOD: the first decides its BLAS)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import top3d_native as native  # noqa: E402
import topology_optimization_3d as example  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)

TOLERANCE = 1e-6  # largest relative compliance difference between two runs
QUICK_SIZE = (12, 6, 6)
NAMES = {"amg": "AMG", "cholmod": "Cholmod"}


@dataclasses.dataclass
class Run:
    seconds: list[float]
    compliance: list[float]
    steps: str  # CG iterations per iteration, as text ("" without iterations)
    setups: int | None  # hierarchy setups or numeric factorizations, None if unknown
    memory: str  # peak resident memory during the run, as text


# --- Ours: the example's own functions.


@dataclasses.dataclass(frozen=True)
class ExampleCall:
    """What the example's `main` passes to `optimize`, and the rmin of its problem."""

    args: tuple
    kwargs: dict
    bound: dict  # the same, by parameter name
    rmin: float


class _Intercepted(Exception):
    pass


def example_call(solver: str, size: tuple[int, int, int] | None, iterations: int) -> ExampleCall:
    """Run the example's `main` up to its `optimize` call and return that call's arguments.

    The command line is the example's own (`--solver`, the grid, `--max-iterations`), so the
    solver is built exactly as the example builds it, with whatever defaults it has today.
    """
    help_text = _help_text()
    for flag in ("--solver", "--max-iterations", "--nelx", "--nely", "--nelz"):
        if flag not in help_text:
            raise RuntimeError(f"examples/topology_optimization_3d.py has no {flag} any more")
    argv = ["--solver", solver, "--max-iterations", str(iterations)]
    if size is not None:
        argv += ["--nelx", str(size[0]), "--nely", str(size[1]), "--nelz", str(size[2])]
    argv += [flag for flag in ("--no-plot", "--no-progress") if flag in help_text]
    real_optimize, real_problem = example.optimize, example.cantilever_problem
    seen: dict[str, Any] = {}

    def problem(*args, **kwargs):
        seen["problem"] = inspect.signature(real_problem).bind(*args, **kwargs).arguments
        return real_problem(*args, **kwargs)

    def optimize(*args, **kwargs):
        seen["optimize"] = (args, kwargs)
        raise _Intercepted

    example.optimize, example.cantilever_problem = optimize, problem
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            example.main(argv)
    except _Intercepted:
        pass
    finally:
        example.optimize, example.cantilever_problem = real_optimize, real_problem
    if "optimize" not in seen or "problem" not in seen:
        raise RuntimeError(
            "the example's main() no longer calls cantilever_problem() and optimize(): "
            "update bench_topology_3d.py"
        )
    args, kwargs = seen["optimize"]
    if "progress" in inspect.signature(real_optimize).parameters:
        kwargs = {**kwargs, "progress": False}
    bound = dict(inspect.signature(real_optimize).bind(*args, **kwargs).arguments)
    return ExampleCall(args, kwargs, bound, float(seen["problem"]["rmin"]))


def _help_text() -> str:
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        example.main(["--help"])
    return text.getvalue()


def per_iteration_steps(record: list[tuple[bool, int]]) -> str:
    """`forward+adjoint` CG steps per iteration (a forward solve opens an iteration)."""
    groups: list[list[int]] = []
    for transposed, steps in record:
        if not transposed or not groups:
            groups.append([])
        groups[-1].append(steps)
    return ", ".join("+".join(map(str, group)) for group in groups)


def run_ours(call: ExampleCall, record: list | None, iterations: int | None = None) -> Run:
    """One run of the example's `optimize` from an empty cache (`iterations`, if given,
    replaces the example's iteration limit)."""
    lxs.clear_cache()
    if record is not None:
        record.clear()
    args, kwargs = call.args, call.kwargs
    if iterations is not None:
        signature = inspect.signature(example.optimize)
        bound = signature.bind(**{**call.bound, "max_iterations": iterations})
        args, kwargs = bound.args, bound.kwargs
    with PeakMemory() as memory:
        _, history = example.optimize(*args, **kwargs)
    info = lxs.cache_info()
    steps = per_iteration_steps(record) if record else ""
    extra = getattr(info, "reused_solutions", 0)
    if extra and steps:
        steps += f" ({extra} adjoint solves answered from memory)"
    lxs.clear_cache()  # free the factors before the next run
    gc.collect()
    return Run(
        list(history.seconds),
        list(history.compliance),
        steps,
        getattr(info, "factorizations", None),
        memory.text(),
    )


# --- Native.


@dataclasses.dataclass(frozen=True)
class NativeConfig:
    shape: tuple[int, int, int]
    volfrac: float
    penal: float
    rmin: float
    amg: native.AMGOptions
    change_tolerance: float


def native_config(call: ExampleCall) -> tuple[NativeConfig, list[str]]:
    """The native run matching the example's call, and the differences it cannot mirror."""
    problem, settings, solver = (call.bound[k] for k in ("problem", "settings", "solver"))
    differences: list[str] = []
    if not getattr(settings, "density_filter", True):
        raise RuntimeError("the native versions implement the density filter only")
    amg = native.AMGOptions()
    if isinstance(solver, lxs.AMG):
        amg = native.AMGOptions(
            float(solver.rtol),
            int(solver.reuse),
            int(solver.max_steps),
            warm_start=bool(getattr(solver, "warm_start", False)),
        )
        differences = amg_differences(solver)
    tolerance = getattr(sys.modules.get("topology_optimization"), "CHANGE_TOLERANCE", 0.01)
    config = NativeConfig(
        tuple(problem.shape),
        float(settings.volfrac),
        float(settings.penal),
        call.rmin,
        amg,
        float(tolerance),
    )
    return config, differences


# What the native AMG does, per field of `lxs.AMG` ("auto" resolves to SA + CG for the
# positive semidefinite stiffness); the `MIRRORED` fields are taken from the example's solver.
NATIVE_AMG = {
    "method": ("smoothed_aggregation", "auto"),
    "krylov": ("cg", "auto"),
    "cycle": ("V",),
    "smoother": ("default",),
    "atol": (0, 0.0),
    "adjoint_rtol": (None,),
}
MIRRORED = {"rtol", "reuse", "max_steps", "near_nullspace", "warm_start"}


def amg_differences(solver) -> list[str]:
    """The example's AMG settings the native version does not share (new options included:
    any other field that is set, e.g. a warm start, is listed)."""
    differences = []
    for field in dataclasses.fields(solver):
        value = getattr(solver, field.name)
        if field.name in MIRRORED:
            continue
        if not isinstance(value, (str, int, float, type(None))):
            differences.append(f"AMG({field.name}=<{type(value).__name__}>)")
            continue
        if field.name in NATIVE_AMG:
            if value not in NATIVE_AMG[field.name]:
                differences.append(f"AMG({field.name}={value!r})")
        elif value not in (None, False, 0):
            differences.append(f"AMG({field.name}={value!r})")
    return differences


def check_same_problem(call: ExampleCall, config: NativeConfig) -> None:
    """Fail unless the native mesh, load, element stiffness, filter and modes are ours."""
    problem, solver = call.bound["problem"], call.bound["solver"]
    mesh = native.Cantilever.build(*config.shape)
    _, sums = native.density_filter(config.shape, config.rmin)
    pairs = {
        "size": (problem.size, mesh.n),
        "load": (problem.load, mesh.load),
        "ke": (problem.ke, native.element_stiffness().reshape(-1)),
        "filter_sums": (problem.filter_sums, sums),
    }
    near_nullspace = getattr(solver, "near_nullspace", None)
    if near_nullspace is not None:
        pairs["near_nullspace"] = (near_nullspace, mesh.modes)
    for name, (ours, theirs) in pairs.items():
        ours = np.asarray(ours)
        if ours.shape != np.shape(theirs) or not np.allclose(ours, theirs, rtol=1e-12, atol=1e-14):
            raise RuntimeError(f"native {name} differs from the example's")


def run_native(solver: str, config: NativeConfig, iterations: int) -> Run:
    with PeakMemory() as memory:
        result = native.run(
            solver,
            config.shape,
            iterations,
            config.volfrac,
            config.penal,
            config.rmin,
            config.amg,
            config.change_tolerance,
        )
    gc.collect()
    return Run(
        result.seconds,
        result.compliance,
        ", ".join(map(str, result.cg_steps)),
        result.setups,
        memory.text(),
    )


# --- Report.


def steady(runs: list[Run]) -> float:
    return statistics.median(t for run in runs for t in run.seconds[1:])


def relative_difference(runs: list[Run], reference: Run) -> float:
    """The largest relative compliance difference to `reference` over all iterations."""
    worst = 0.0
    for run in runs:
        if len(run.compliance) != len(reference.compliance):
            return float("inf")
        a, b = np.array(run.compliance), np.array(reference.compliance)
        worst = max(worst, float(np.max(np.abs(a - b) / np.abs(b))))
    return worst


def comparison_table(
    runs: dict[str, list[Run]], labels: dict[str, str], warm_up: dict[str, Run]
) -> tuple[str, float]:
    names = list(runs)
    reference_name = next((n for n in ("native cholmod", "native amg") if n in runs), names[0])
    reference = runs[reference_name][0]
    differences = {name: relative_difference(runs[name], reference) for name in names}
    median = {name: steady(runs[name]) for name in names if any(r.seconds[1:] for r in runs[name])}

    def ratio(name: str) -> str:
        if not name.startswith("native"):
            return "1" if ("native " + name.split()[1]) in runs else "–"
        partner = "ours " + name.split()[1]
        if partner not in median or name not in median:
            return "–"
        return f"**{median[partner] / median[name]:.2f}**"

    rows = [
        ["iterations per run", *[str(len(runs[n][0].compliance)) for n in names]],
        [
            "time per iteration (median, first of each run excluded)",
            *[format_seconds(median[n]) if n in median else "–" for n in names],
        ],
        ["**ours / native, per iteration**", *[ratio(n) for n in names]],
        [
            "first iteration (median over rounds: analysis, first setup)",
            *[format_seconds(statistics.median(r.seconds[0] for r in runs[n])) for n in names],
        ],
        [
            "warm-up run, iterations 1 and 2 (ours: compilations)",
            *[" / ".join(format_seconds(t) for t in warm_up[n].seconds) for n in names],
        ],
        [
            f"compliance after {len(reference.compliance)} iterations",
            *[f"{runs[n][0].compliance[-1]:.10g}" for n in names],
        ],
        [
            f"max relative difference to {labels[reference_name]} (all iterations, all rounds)",
            *[f"{differences[n]:.1e}" for n in names],
        ],
        ["CG iterations per iteration, round 1", *[runs[n][0].steps or "–" for n in names]],
        [
            "hierarchy setups / numeric factorizations, round 1",
            *[str(runs[n][0].setups) if runs[n][0].setups is not None else "–" for n in names],
        ],
        [
            "peak RSS during the run, round 1 (in parentheses: above the RSS at its start)",
            *[runs[n][0].memory for n in names],
        ],
    ]
    table = markdown_table(["", *[labels[n] for n in names]], rows)
    return table, max(differences.values())


def main() -> None:
    parser = command_line(__doc__, quick="12 x 6 x 6, 3 iterations, 1 round")
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        metavar=("NELX", "NELY", "NELZ"),
        help="grid (default: the example's, 48 24 24)",
    )
    parser.add_argument("--iterations", type=int, default=5, help="iterations per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, in turns")
    parser.add_argument("--solvers", default="amg,cholmod", help="comma-separated: amg,cholmod")
    parser.add_argument(
        "--ab", metavar="COMMIT", help="compare the example of COMMIT with this tree's instead"
    )
    args = parser.parse_args()
    if args.quick:
        args.size, args.iterations, args.rounds = list(QUICK_SIZE), 3, 1
    solvers = choose(parser, args.solvers, list(NAMES), "--solvers")
    if args.iterations < 2 or args.rounds < 1:
        parser.error("need --iterations >= 2 (the first is excluded) and --rounds >= 1")
    size = tuple(args.size) if args.size else None
    if args.ab:
        if args.iterations <= AB_WARM:
            parser.error(f"--ab needs --iterations > {AB_WARM} (the first {AB_WARM} compile)")
        compare_commits(args, solvers, size)
    else:
        compare_native(args, solvers, size)


def compare_native(args, solvers: list[str], size) -> None:
    calls = {s: example_call(s, size, args.iterations) for s in solvers}
    configs, notes = {}, []
    for solver, call in calls.items():
        configs[solver], differences = native_config(call)
        check_same_problem(call, configs[solver])
        notes += differences
    record = record_amg_solves() if "amg" in solvers else None
    config = next(iter(configs.values()))
    shape = config.shape
    report = Report(
        f"3D topology optimization benchmark: cantilever {shape[0]}×{shape[1]}×{shape[2]}, "
        f"volfrac {config.volfrac}, penal {config.penal}, rmin {config.rmin}, density filter, "
        f"{args.iterations} iterations, {args.rounds} rounds"
    )
    # Untimed: ours compiles in its first two iterations (the start design is weakly typed,
    # the next ones are not), the natives warm their imports and allocator.
    print("warm-up: 2 iterations of each ...", flush=True)
    warm_up = {}
    for solver in solvers:
        warm_up[f"ours {solver}"] = run_ours(calls[solver], record, 2)
        warm_up[f"native {solver}"] = run_native(solver, configs[solver], 2)
    labels, runs = {}, {}
    for solver in solvers:
        labels[f"ours {solver}"] = f"ours ({NAMES[solver]}, jit, jax.grad)"
        labels[f"native {solver}"] = (
            "NumPy + pyamg + scipy CG" if solver == "amg" else "NumPy + cvxopt CHOLMOD"
        )
        runs[f"ours {solver}"], runs[f"native {solver}"] = [], []
    for round_number in range(args.rounds):
        print(f"round {round_number + 1} of {args.rounds} ...", flush=True)
        for solver in solvers:
            # Alternate who goes first, so that a drifting load weighs on both alike.
            for side in turn_order(("ours", "native"), round_number):
                if side == "ours":
                    result = run_ours(calls[solver], record if solver == "amg" else None)
                else:
                    result = run_native(solver, configs[solver], args.iterations)
                runs[f"{side} {solver}"].append(result)
                print(
                    f"  {side} {solver}: {len(result.seconds)} iterations, median "
                    f"{format_seconds(statistics.median(result.seconds[1:]))}, compliance "
                    f"{result.compliance[-1]:.10g}",
                    flush=True,
                )
    table, worst = comparison_table(runs, labels, warm_up)
    amg = configs["amg"].amg if "amg" in configs else None
    caption = (
        f"AMG: rtol {amg.rtol:g}, reuse {amg.reuse}, max_steps {amg.max_steps}, warm_start "
        f"{amg.warm_start} (from the example's solver)"
        if amg
        else ""
    )
    report.table(table, caption)
    report.add(NATIVE_NOTE)
    if notes:
        report.add("Not mirrored by the native version: " + "; ".join(notes) + ".")
    report.publish(None if args.quick else "topology_3d.md")
    if worst > TOLERANCE:
        print(f"compliance histories differ by {worst:.1e} > {TOLERANCE:g}", file=sys.stderr)
        raise SystemExit(1)


NATIVE_NOTE = (
    "Native sensitivities come from the one forward solve (the compliance is self-adjoint); "
    "ours differentiates through the solve, whose adjoint solve AMG answers from the forward "
    "one when the values are exactly symmetric (else a second CG run: the `+` in the CG row). "
    "Native hierarchy reuse follows lineax-sparse's rule (top3d_native.AMGSolver): keep a "
    "hierarchy while CG converges within reuse × the iterations of its first solve from "
    "scratch, else build one for the current matrix and continue from the iterate; after "
    "such a rebuild the next 1, 2, 4, ... (≤ 16) matrices get a fresh hierarchy, and a reuse "
    "that works halves that back-off (once per iteration on both sides)."
)


# --- A/B: the example of another commit against this tree's.

# Runs in a fresh interpreter (`run_child`): imports one tree's lineax_sparse and example,
# runs the example's main() with the flags it has, and sends its per-iteration history.
DRIVER = r"""
import contextlib, io, json, sys
import cvxopt  # noqa: F401  (first: it decides which CHOLMOD and BLAS are loaded)

config = json.loads(sys.argv[1])
sys.path[:0] = [config["src"], config["examples"]]
sys.path.append(config["benchmarks"])  # this tree's harness, for `send_result`
from common import send_result
import lineax_sparse
if not lineax_sparse.__file__.startswith(config["src"]):
    raise SystemExit(f"lineax_sparse came from {lineax_sparse.__file__}, not {config['src']}")
import topology_optimization_3d as example

text = io.StringIO()
with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
    example.main(["--help"])
argv, dropped = [], []
for flag, value in config["options"]:
    if flag in text.getvalue():
        argv += [flag] + ([] if value is None else [str(value)])
    else:
        dropped.append(flag)
histories = []
optimize = getattr(example, "optimize", None)
if optimize is not None:
    def recording(*args, **kwargs):
        result = optimize(*args, **kwargs)
        histories.append(result[1])
        return result
    example.optimize = recording
output = io.StringIO()
with contextlib.redirect_stdout(output):
    example.main(argv)
report = {"dropped": dropped, "output": output.getvalue()}
if histories:
    report["seconds"] = list(histories[-1].seconds)
    report["compliance"] = list(histories[-1].compliance)
send_result(report)
"""


# Iterations each A/B run leaves out of its median: a fresh process compiles in its first
# iteration, and again in its second while the example's start design is weakly typed.
AB_WARM = 2


@dataclasses.dataclass
class Side:
    label: str
    src: Path
    examples: Path
    seconds: list[list[float]] = dataclasses.field(default_factory=list)
    compliance: list[float] = dataclasses.field(default_factory=list)
    dropped: set[str] = dataclasses.field(default_factory=set)


def run_side(side: Side, solver: str, size, iterations: int, workdir: Path) -> None:
    options = [["--solver", solver], ["--max-iterations", iterations], ["--no-plot", None]]
    options.append(["--no-progress", None])
    if size is not None:
        options += [["--nelx", size[0]], ["--nely", size[1]], ["--nelz", size[2]]]
    config = {"src": str(side.src), "examples": str(side.examples), "options": options}
    config["benchmarks"] = str(ROOT / "benchmarks")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # OPENBLAS pinned above
    # In `workdir`: a PNG the example writes anyway lands there.
    result = run_child(["-c", DRIVER, json.dumps(config)], None, env=env, cwd=workdir)
    if "error" in result:
        raise RuntimeError(f"{side.label}, {solver}: the example failed: {result['error']}")
    side.dropped.update(result["dropped"])
    if "seconds" in result:
        seconds, compliance = result["seconds"], result["compliance"][-1]
    else:  # no `optimize` to wrap: the summary line's median stands for the steady iterations
        median = re.search(r"\b(m?)s_per_iteration=([0-9.]+)", result["output"])
        first = re.search(r"first_iteration_s=([0-9.]+)", result["output"])
        final = re.search(r"final compliance (\S+) after (\d+)", result["output"])
        if not (median and first and final):
            raise RuntimeError(f"{side.label}: cannot read the example's output")
        scale = 1e-3 if median.group(1) else 1.0
        steady_time = float(median.group(2)) * scale
        seconds = [float(first.group(1))] + [steady_time] * (int(final.group(2)) - 1)
        compliance = float(final.group(1))
    side.seconds.append(seconds)
    side.compliance.append(compliance)
    print(
        f"  {side.label}: {len(seconds)} iterations, median "
        f"{format_seconds(statistics.median(seconds[AB_WARM:] or seconds))}, "
        f"compliance {compliance:.10g}",
        flush=True,
    )


def compare_commits(args, solvers: list[str], size) -> None:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--short", f"{args.ab}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        raise SystemExit(f"--ab: no commit {args.ab!r} in {ROOT}")
    short = commit.stdout.strip()
    grid = "×".join(map(str, size)) if size else "the example's default grid"
    report = Report(
        f"3D topology optimization A/B: {short} against this tree ({source_version()}), "
        f"{grid}, {args.iterations} iterations, {args.rounds} rounds alternating; medians "
        f"per iteration leave out each run's first {AB_WARM} (compilation)"
    )
    workdir = Path(tempfile.mkdtemp(prefix="lxs-ab-"))
    tree = workdir / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), short],
        check=True,
        capture_output=True,
    )
    rows = []
    try:
        if not (tree / "examples" / "topology_optimization_3d.py").exists():
            raise SystemExit(f"--ab: {short} has no examples/topology_optimization_3d.py")
        for solver in solvers:
            other = Side(f"{short} {solver}", tree / "src", tree / "examples")
            current = Side(f"this tree {solver}", ROOT / "src", ROOT / "examples")
            for round_number in range(args.rounds):
                print(f"{solver}: round {round_number + 1} of {args.rounds} ...", flush=True)
                for side in turn_order((other, current), round_number):
                    run_side(side, solver, size, args.iterations, workdir)
            rows.append(ab_row(solver, other, current))
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)
    table = markdown_table(
        [
            "solver",
            f"{short}: per iteration",
            "this tree: per iteration",
            f"this tree / {short}",
            f"{short}: iterations 1 / 2",
            "this tree: iterations 1 / 2",
            f"compliance {short}",
            "compliance this tree",
        ],
        rows,
    )
    report.table(table)
    report.publish(None if args.quick else "topology_3d_ab.md")


def ab_row(solver: str, other: Side, current: Side) -> list[str]:
    def per_iteration(side: Side) -> float:
        return statistics.median(t for seconds in side.seconds for t in seconds[AB_WARM:])

    def first(side: Side) -> str:
        return " / ".join(
            format_seconds(statistics.median(seconds[i] for seconds in side.seconds))
            for i in range(AB_WARM)
        )

    def label(side: Side, text: str) -> str:
        dropped = sorted(side.dropped - {"--no-progress"})
        return f"{text} (no {', '.join(dropped)})" if dropped else text

    a, b = per_iteration(other), per_iteration(current)
    return [
        NAMES[solver],
        label(other, format_seconds(a)),
        label(current, format_seconds(b)),
        f"**{b / a:.2f}**",
        first(other),
        first(current),
        f"{other.compliance[0]:.10g}",
        f"{current.compliance[0]:.10g}",
    ]


if __name__ == "__main__":
    main()
