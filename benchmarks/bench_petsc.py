"""Benchmark `lineax_sparse.PETSc` on 3D linear elasticity against `lxs.AMG` and `lxs.Cholmod`.

The problem is the cantilever of examples/elasticity_3d_petsc.py (unit trilinear hexahedra,
clamped at x = 0, tip load, log-normal Young's modulus per element, stiffness assembled in
JAX from the moduli), on a 2k x k x k grid: k = 25 gives 101,400 dofs, k = 43 499,488 and
k = 60 1,339,560. Every solver's operator is tagged symmetric positive semidefinite, and
every iterative solve runs to a relative residual of 1e-8 (checked on the true residual).

Parts (`--part`):

1. `table` (default): one row per solver and size, each solver in a fresh child process
   (so that peak memories do not mix and every solver starts cold):
   - PETSc CG + GAMG, with the six rigid body modes as near-nullspace;
   - PETSc CG + hypre BoomerAMG with the systems options of the example's `HYPRE_OPTIONS`
     (block size 3, nodal coarsening on the 3 x 3 blocks, PMIS, ext+i, one level of
     aggressive coarsening; `lxs.PETSc` accepts rigid body modes for GAMG only);
   - `lxs.AMG` (pyamg smoothed aggregation + CG) with the rigid body modes;
   - PETSc MUMPS, sparse Cholesky (`preonly` + `cholesky`), and `lxs.Cholmod()` (nested
     dissection, which `ordering="auto"` picks for these meshes).
   Columns: the first call (compilation excluded: the functions are compiled ahead of
   time, so it is the pattern's analysis, the setup and the solve); setup + solve with new
   moduli (a new hierarchy or factorization); a solve with a new right-hand side and the
   same moduli (the hierarchy or factorization reused); `jax.value_and_grad` of the
   compliance f^T u with respect to the moduli, new moduli (setup, forward solve, and the
   adjoint solve, which for this self-adjoint loss is answered from the forward one); the
   iterations (`Solution.stats`); the largest difference of the solution from CHOLMOD's;
   the child's peak RSS above its RSS before the first solve, over the first solve and
   over the whole run; and the times relative to `lxs.AMG` (iterative rows) or
   `lxs.Cholmod` (MUMPS). Medians over `--repeats` rounds of new moduli.
2. `ranks`: PETSc CG + GAMG on 1 rank and on 2 MPI ranks, side by side: the same child
   measurement under `mpiexec -n 1` and `mpiexec -n 2`, with the peak RSS of every rank
   (`lxs.petsc_peak_memory()`), and the largest difference between the two solutions
   (saved with `np.save`). Launched under `mpiexec` itself, `--part ranks` is the
   measurement (`lxs.petsc_serve()` first), which the driver runs.
3. `huge`: a size whose CHOLMOD factor does not fit in this machine's memory (default
   120 x 60 x 60, 1.34M dofs, 106M stored entries). CHOLMOD's symbolic analysis, exactly
   as `lxs.Cholmod()` does it (`ordering="auto"`: AMD, then METIS nested dissection,
   keeping the sparser factor; no numeric factorization is attempted) predicts the
   factor's bytes from `cholmod_factor`'s `xsize`/`ssize` (values and row indices of the
   supernodal factor, as `backends/cholmod/capsule.py` counts a factor's `nbytes`), compared with
   the physical memory: 29.6 GB predicted against 25.3 GB (measured: 32 s of analysis,
   10.8 GB peak for it). Then PETSc CG + GAMG solves it (first call, setup + solve with
   new moduli, a new right-hand side; `--grad` adds `value_and_grad`) with its time,
   iterations and peak memory. Extrapolated from 5e5 dofs (5.5 GB peak without the
   gradient), the solve should peak near 14 GB; its `value_and_grad` program alone took
   2 GB more to compile at 5e5, hence off by default here.

Memory: the children run with `LINEAX_SPARSE_CACHE_BYTES` = 10 GB unless the environment
sets it, so that a factorization of the 5e5-dof system (a 7.8 GB CHOLMOD factor) stays
cached for its second solve. A CHOLMOD run there holds two factors from its second matrix
on (the next one is made before the previous is evicted, whose object stays in the pool
for the one after): about 16 GB, plus 4 GB of problem and compiled programs. Run it with
nothing else on the machine, or leave it out (`--solvers gamg,hypre,amg,mumps`).

    python benchmarks/bench_petsc.py                      # table at 1e5 and 5e5 dofs
    python benchmarks/bench_petsc.py --quick              # tiny sizes, about a minute
    python benchmarks/bench_petsc.py --sizes 1e5 --repeats 3 --solvers gamg,amg
    python benchmarks/bench_petsc.py --part ranks --sizes 5e5   # 1 rank vs 2 ranks
    mpiexec -n 2 python benchmarks/bench_petsc.py --part ranks --sizes 1e5  # 2 ranks alone
    python benchmarks/bench_petsc.py --part huge          # 1.34M dofs: CHOLMOD out of memory
    # Open MPI as root needs `--allow-run-as-root --oversubscribe` after `mpiexec`.

The tables go to stdout and to benchmarks/results/petsc.md, petsc_ranks.md, petsc_huge.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from common import (
    choose,
    command_line,
    error_text,
    examples_on_path,
    format_bytes,
    format_seconds,
    markdown_table,
    PeakMemory,
    physical_memory,
    pin_blas_threads,
    process_memory,
    Report,
    run_child,
    send_result,
)


# Before NumPy loads OpenBLAS: on a shared 2-core machine threaded BLAS only adds noise, and
# lineax-sparse holds its own host calls to one thread anyway. (PETSc's MUMPS uses Debian's
# libblas, which is single-threaded.)
pin_blas_threads()
examples_on_path()

import cvxopt  # noqa: E402, F401, I001  (before PETSc, which links Debian's CHOLMOD: the first decides)
import elasticity_3d_petsc as example  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)

RTOL = 1e-8
#: Rows of the table, in order: name -> label.
SOLVERS = {
    "gamg": "PETSc CG + GAMG (rigid body modes)",
    "hypre": "PETSc CG + BoomerAMG (hypre, nodal)",
    "amg": "`lxs.AMG` (pyamg SA + CG, rigid body modes)",
    "mumps": "PETSc MUMPS Cholesky",
    "cholmod": "`lxs.Cholmod` (ordering auto: ND in 3D)",
}
#: Each PETSc row against: GAMG and BoomerAMG against `lxs.AMG`, MUMPS against CHOLMOD.
REFERENCE = {"gamg": "amg", "hypre": "amg", "mumps": "cholmod"}
DEFAULT_SIZES = "1e5,5e5"
QUICK_SIZES = "8x4x4,16x8x8"
HUGE = "120x60x60"
CACHE_BYTES = str(10 * 10**9)


def make_solver(name: str, modes: np.ndarray):
    if name in ("gamg", "hypre", "mumps"):
        return example.make_solver(name, modes, rtol=RTOL)
    if name == "amg":
        return lxs.AMG(rtol=RTOL, near_nullspace=modes)
    if name == "cholmod":
        return lxs.Cholmod()
    raise ValueError(f"unknown solver {name!r}: one of {', '.join(SOLVERS)}")


def grid_for(size: str) -> tuple[int, int, int]:
    """`"50x25x25"` as given, or a number of dofs (`"1e5"`): the 2k x k x k grid nearest it
    (3 * 2k * (k + 1)^2 free dofs)."""
    if "x" in size:
        nel = tuple(int(part) for part in size.split("x"))
        if len(nel) != 3 or min(nel) < 1:
            raise ValueError(f"a grid is three positive integers, e.g. 50x25x25, got {size!r}")
        return nel  # type: ignore[return-value]
    target = float(size)
    k = min(range(1, 400), key=lambda k: abs(6 * k * (k + 1) ** 2 - target))
    return (2 * k, k, k)


def dofs_of(nel: tuple[int, int, int]) -> int:
    nelx, nely, nelz = nel
    return 3 * nelx * (nely + 1) * (nelz + 1)


# --- One measurement (in a child process).


def timed(fn, *args) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def measure(name: str, nel, repeats: int, grad: bool, save: str | None) -> dict[str, Any]:
    """Build the problem, compile ahead of time, then time the first solve and `repeats`
    rounds of (new moduli: setup + solve; new right-hand side: solve; new moduli:
    `value_and_grad`)."""
    start = time.perf_counter()
    problem, modes = example.cantilever(*nel)
    solver = make_solver(name, modes)
    young = example.moduli(problem, 0)
    rng = np.random.default_rng(1)

    def new_moduli():
        return young * jax.numpy.asarray(rng.uniform(0.9, 1.1, young.size))

    moduli = [new_moduli() for _ in range(repeats)]
    grad_moduli = [new_moduli() for _ in range(repeats)]
    loads = [jax.numpy.asarray(rng.standard_normal(problem.size)) for _ in range(repeats)]
    built = time.perf_counter() - start
    start = time.perf_counter()
    solve = example.solve.lower(problem, young, problem.load, solver).compile()
    value_and_grad = None
    if grad and repeats:
        value_and_grad = example.compliance_and_gradient.lower(problem, young, solver).compile()
    compiled = time.perf_counter() - start
    jax.block_until_ready(moduli + grad_moduli + loads)

    with PeakMemory() as memory:
        first, solution = timed(solve, problem, young, problem.load, solver)
        peak_first = memory.increase()
        u = np.asarray(solution.value)
        if save:
            np.save(save, u)
        result: dict[str, Any] = {
            "solver": name,
            "nel": list(nel),
            "dofs": problem.size,
            "nnz": problem.nnz,
            "build_s": built,
            "compile_s": compiled,
            "first_s": first,
            "first_iterations": int(solution.stats["num_steps"]),
            "setup_s": [],
            "solve_s": [],
            "grad_s": [],
            "iterations": [],
            "rhs_iterations": [],
            "residual": [],
        }
        for k in range(repeats):
            seconds, solution = timed(solve, problem, moduli[k], problem.load, solver)
            result["setup_s"].append(seconds)
            result["iterations"].append(int(solution.stats["num_steps"]))
            result["residual"].append(float(solution.stats["relative_residual"]))
            seconds, solution = timed(solve, problem, moduli[k], loads[k], solver)
            result["solve_s"].append(seconds)
            result["rhs_iterations"].append(int(solution.stats["num_steps"]))
            if value_and_grad is not None:
                seconds, _ = timed(value_and_grad, problem, grad_moduli[k], solver)
                result["grad_s"].append(seconds)
    result["peak_first"] = peak_first
    result["peak_run"] = memory.final - memory.start
    result["rss_before"] = memory.start
    result["hwm"] = memory.final
    if name in ("gamg", "hypre", "mumps"):
        result["ranks"] = lxs.petsc_ranks()
        result["petsc_peaks"] = lxs.petsc_peak_memory()
        # The live hierarchy (or factor) of the last moduli: what each rank's heap grew by.
        result["petsc_held"] = lxs.petsc_held_memory()
    result["cache"] = str(lxs.cache_info())
    # The first solve's residual, recomputed here (after the peaks are read: it costs memory).
    load = problem.load
    residual = load - problem.stiffness(young).mv(jax.numpy.asarray(u))
    result["true_residual"] = float(jax.numpy.linalg.norm(residual) / jax.numpy.linalg.norm(load))
    return result


def cholmod_prediction(nel) -> dict[str, Any]:
    """CHOLMOD's symbolic analysis of the pattern as `lxs.Cholmod()` makes it (no numeric
    factorization): the ordering `ordering="auto"` keeps, nnz(L), and the factor's bytes."""
    from lineax_sparse.backends.cholmod import Backend as CholmodBackend, capsule

    start = time.perf_counter()
    problem, _ = example.cantilever(*nel)
    built = time.perf_counter() - start
    start = time.perf_counter()
    analysis = CholmodBackend("auto", "LL", "auto").analyse(problem.pattern.host)
    seconds = time.perf_counter() - start
    n = problem.size
    symbolic = analysis.pools["d"][0]
    head = capsule.factor_head(symbolic, n, None)
    counts = capsule.column_counts(symbolic, n)
    if head is None or counts is None:
        raise RuntimeError("CHOLMOD's factor struct did not validate: no prediction")
    index = 8 if head.itype == capsule.CHOLMOD_LONG else 4
    if head.is_super:  # as capsule.factor_bytes counts a numeric supernodal factor
        factor = head.xsize * 8 + (head.ssize + 3 * (head.nsuper + 1) + 2 * n) * index
    else:
        factor = int(counts.sum()) * (8 + index) + 6 * (n + 2) * index
    lower = int(analysis.lower.size)
    return {
        "nel": list(nel),
        "dofs": n,
        "nnz": problem.nnz,
        "build_s": built,
        "analysis_s": seconds,
        "ordering": analysis.ordering_kind,
        "supernodal": bool(head.is_super),
        "nnz_L": int(counts.sum()),
        "stored_L": int(head.xsize) if head.is_super else int(counts.sum()),
        "factor_bytes": int(factor),
        # The lower triangle cvxopt hands CHOLMOD (values and 64-bit row indices).
        "matrix_bytes": lower * 16,
        "largest_update": int(head.maxcsize) * 8 if head.is_super else 0,
        "physical": physical_memory(),
        "hwm": process_memory("VmHWM"),
    }


# --- Children.


def child_main(args) -> None:
    """`--part child`: one measurement, written as JSON to `--result`."""
    try:
        nel = grid_for(args.nel)
        if args.what == "predict":
            result = cholmod_prediction(nel)
        else:
            result = measure(args.solver, nel, args.repeats, not args.no_grad, args.save)
        result["ok"] = True
    except Exception as error:  # reported in the table
        result = {"ok": False, "error": error_text(error)}
        traceback.print_exc()
    send_result(result, args.result)


def mpiexec(ranks: int) -> list[str]:
    launcher = shutil.which("mpiexec") or "mpiexec"
    flags = []
    version = subprocess.run([launcher, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        flags.append("--oversubscribe")
        if os.geteuid() == 0:
            flags.append("--allow-run-as-root")
    return [launcher, *flags, "-n", str(ranks)]


def child_arguments(part, solver, nel, repeats, save, no_grad) -> list[str]:
    grid = "x".join(map(str, nel))
    # The ranks part names its size with --sizes (as a user launching it under mpiexec does).
    arguments = ["--part", part, "--solver", solver, "--repeats", str(repeats)]
    arguments += ["--sizes" if part == "ranks" else "--nel", grid]
    arguments += ["--save", save] if save else []
    return arguments + (["--no-grad"] if no_grad else [])


def run_measurement(arguments: list[str], limit: float, prefix: list[str] | None = None) -> dict:
    """Run this script with `arguments` in a child process; its JSON result, or why not."""
    # Without MPI's variables: a process that initialized MPI as a singleton has them, and a
    # child `mpiexec` that inherits them takes itself for a rank of that job.
    mpi = ("OMPI_", "PMIX_", "OPAL_", "PRTE_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(mpi)}
    env.setdefault("LINEAX_SPARSE_CACHE_BYTES", CACHE_BYTES)
    return run_child([__file__, *arguments], limit, prefix or (), env)


# --- Formatting.


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def iterations_text(result: dict) -> str:
    counts = sorted(set(result["iterations"])) or [result["first_iterations"]]
    rhs = sorted(set(result["rhs_iterations"]))
    text = "/".join(str(c) for c in counts)
    if rhs:
        text += f"; new rhs {'/'.join(str(c) for c in rhs)}"
    return text


def ratios_text(result: dict, reference: dict | None, label: str) -> str:
    if not reference or not reference.get("ok"):
        return "–"
    parts = []
    for key in ("setup_s", "solve_s", "grad_s"):
        ours, theirs = median(result[key]), median(reference[key])
        parts.append(f"{ours / theirs:.2f}" if ours and theirs else "–")
    return f"{' / '.join(parts)} (vs {label})"


def difference(u: np.ndarray | None, reference: np.ndarray | None) -> str:
    if u is None or reference is None:
        return "–"
    return f"{np.max(np.abs(u - reference)) / np.max(np.abs(reference)):.1e}"


TABLE_HEADER = [
    "size / solver",
    "first call",
    "setup + solve, new moduli",
    "solve, new rhs",
    "`value_and_grad`",
    "iterations",
    "max ‖u − u_CHOLMOD‖ / max ‖u‖ (entries)",
    "peak RSS increase: first solve / run",
    "time ratio setup+solve / solve / v&g",
]


def table_rows(nel, results: dict[str, dict], solutions: dict[str, np.ndarray]) -> list[list[str]]:
    reference_u = solutions.get("cholmod", solutions.get("mumps"))
    rows = []
    some = next((r for r in results.values() if r.get("ok")), None)
    size = f"{nel[0]}x{nel[1]}x{nel[2]}"
    if some:
        size += f": {some['dofs']:,} dofs, nnz {some['nnz']:,}"
    rows.append([f"**{size}**"] + [""] * (len(TABLE_HEADER) - 1))
    for name, result in results.items():
        if not result.get("ok"):
            rows.append([SOLVERS[name], result["error"]] + ["–"] * (len(TABLE_HEADER) - 2))
            continue
        reference = REFERENCE.get(name)
        rows.append(
            [
                SOLVERS[name],
                format_seconds(result["first_s"]),
                format_seconds(median(result["setup_s"])),
                format_seconds(median(result["solve_s"])),
                format_seconds(median(result["grad_s"])),
                iterations_text(result),
                difference(solutions.get(name), None if name == "cholmod" else reference_u),
                f"{format_bytes(result['peak_first'])} / {format_bytes(result['peak_run'])}",
                ratios_text(result, results.get(reference), reference) if reference else "",
            ]
        )
    return rows


# --- Parts.


def table_part(args, report: Report) -> None:
    solvers = args.solvers
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for size in args.sizes.split(","):
            nel = grid_for(size)
            results, solutions = {}, {}
            for name in SOLVERS:
                if name not in solvers:
                    continue
                print(f"{nel} {name} ...", flush=True)
                path = Path(directory) / f"{name}.npy"
                arguments = child_arguments("child", name, nel, args.repeats, str(path), False)
                results[name] = run_measurement(arguments, args.limit)
                if results[name].get("ok"):
                    solutions[name] = np.load(path)
                    path.unlink()
                    r = results[name]
                    print(
                        f"  first {format_seconds(r['first_s'])}, setup+solve "
                        f"{format_seconds(median(r['setup_s']))}, solve "
                        f"{format_seconds(median(r['solve_s']))}, v&g "
                        f"{format_seconds(median(r['grad_s']))}, iterations {iterations_text(r)}, "
                        f"peak +{format_bytes(r['peak_run'])}",
                        flush=True,
                    )
                else:
                    print(f"  {results[name]['error']}", flush=True)
            rows += table_rows(nel, results, solutions)
    caption = f"{args.repeats} rounds of new moduli per row, medians:"
    report.table(markdown_table(TABLE_HEADER, rows), caption)
    report.add(
        "3D elasticity, cantilever of unit hexahedra (examples/elasticity_3d_petsc.py), "
        f"relative tolerance {RTOL:g} on the true residual for the iterative rows. Each row "
        "runs in its own process, one after the other. First call: the first solve after "
        "ahead-of-time compilation (pattern analysis, setup, solve). Setup + solve: new "
        "moduli, so a new hierarchy or factorization. Solve, new rhs: same moduli, a new "
        "right-hand side (the cached hierarchy or factorization). `value_and_grad`: of the "
        "compliance with respect to the element moduli, new moduli. Iterations: Krylov "
        "iterations of the setup + solve rounds (direct rows: refinement steps). Peak RSS "
        "increase: the process's peak above its RSS before the first solve. Time ratio: "
        "PETSc rows against `lxs.AMG` (iterative) or `lxs.Cholmod` (MUMPS); below 1 is "
        "faster."
    )


def ranks_measure(args) -> None:
    """Under mpiexec: the GAMG measurement on every rank of the job (printed and saved)."""
    lxs.petsc_serve()  # ranks > 0 serve rank 0's PETSc work here, and exit
    nel = grid_for(args.sizes.split(",")[0])
    result = measure(args.solver or "gamg", nel, args.repeats, not args.no_grad, args.save)
    result["ok"] = True
    send_result(result, args.result)
    peaks = ", ".join(format_bytes(p) for p in result.get("petsc_peaks", []))
    times = ", ".join(
        f"{label} {format_seconds(median(result[key]))}"
        for label, key in (("setup + solve", "setup_s"), ("solve", "solve_s"), ("v&g", "grad_s"))
    )
    print(
        f"{result['solver']} on {result.get('ranks', 1)} rank(s), {result['dofs']:,} dofs: "
        f"first {format_seconds(result['first_s'])}, {times}, iterations "
        f"{iterations_text(result)}; peak RSS per rank {peaks}"
    )


def ranks_part(args, report: Report) -> None:
    """The driver: the measurement under `mpiexec -n 1` and `-n 2`, side by side."""
    nel = grid_for(args.sizes.split(",")[0])
    solver = args.solver or "gamg"
    results, solutions = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        for ranks in (1, 2):
            print(f"{nel} {solver} on {ranks} rank(s) ...", flush=True)
            path = Path(directory) / f"{ranks}.npy"
            arguments = child_arguments("ranks", solver, nel, args.repeats, str(path), args.no_grad)
            results[ranks] = run_measurement(arguments, args.limit, prefix=mpiexec(ranks))
            if results[ranks].get("ok"):
                solutions[ranks] = np.load(path)
            else:
                print(f"  {results[ranks]['error']}", flush=True)

    def column(ranks):
        r = results[ranks]
        if not r.get("ok"):
            return [r["error"]] + ["–"] * 8
        return [
            str(r.get("ranks", "?")),
            format_seconds(r["first_s"]),
            format_seconds(median(r["setup_s"])),
            format_seconds(median(r["solve_s"])),
            format_seconds(median(r["grad_s"])),
            iterations_text(r),
            " + ".join(format_bytes(p) for p in r.get("petsc_peaks", [])),
            format_bytes(r["peak_run"]),
            " + ".join(format_bytes(p) for p in r.get("petsc_held", [])),
        ]

    labels = [
        "ranks in use (`lxs.petsc_ranks()`)",
        "first call",
        "setup + solve, new moduli",
        "solve, new rhs",
        "`value_and_grad`",
        "iterations",
        "peak RSS per rank (`lxs.petsc_peak_memory()`)",
        "rank 0: peak RSS increase during the solves",
        "PETSc objects held per rank (`lxs.petsc_held_memory()`)",
    ]
    one, two = column(1), column(2)
    rows = [[label, a, b] for label, a, b in zip(labels, one, two, strict=True)]
    if 1 in solutions and 2 in solutions:
        rows.append(
            ["max ‖u₂ − u₁‖ / max ‖u₁‖ (entries)", difference(solutions[2], solutions[1]), ""]
        )
    dofs = next((r["dofs"] for r in results.values() if r.get("ok")), dofs_of(nel))
    caption = (
        f"{SOLVERS[solver]}, cantilever {nel[0]}x{nel[1]}x{nel[2]} ({dofs:,} dofs), "
        f"{args.repeats} rounds, medians:"
    )
    report.table(markdown_table(["", "1 rank", "2 ranks"], rows), caption)
    report.add(
        "Each column is `mpiexec -n P python benchmarks/bench_petsc.py --part ranks`: "
        "rank 0 runs the JAX program and holds the whole problem, the other rank holds "
        "only its rows of the matrix and of the hierarchy. The peaks per rank are "
        "absolute (rank 0's includes JAX and the problem)."
    )


def huge_part(args, report: Report) -> None:
    nel = grid_for(args.sizes.split(",")[0]) if args.sizes_given else grid_for(HUGE)
    print(f"{nel}: CHOLMOD's symbolic analysis ...", flush=True)
    predicted = run_measurement(
        ["--part", "child", "--what", "predict", "--nel", "x".join(map(str, nel))], args.limit
    )
    print(f"  {predicted}", flush=True)
    print(f"{nel}: PETSc CG + GAMG ...", flush=True)
    arguments = child_arguments("child", "gamg", nel, args.repeats, None, args.no_grad)
    solved = run_measurement(arguments, args.limit)
    print(f"  {'ok' if solved.get('ok') else solved.get('error')}", flush=True)
    rows = []
    if predicted.get("ok"):
        p = predicted
        needed = p["factor_bytes"] + p["matrix_bytes"]
        verdict = "**does not fit**" if needed > p["physical"] else "fits"
        rows += [
            ["dofs / nnz", f"{p['dofs']:,} / {p['nnz']:,}"],
            [
                "CHOLMOD symbolic analysis (`ordering='auto'`)",
                f"{format_seconds(p['analysis_s'])}: {p['ordering']}, "
                f"{'supernodal' if p['supernodal'] else 'simplicial'}",
            ],
            ["nnz(L) (column counts) / entries stored", f"{p['nnz_L']:,} / {p['stored_L']:,}"],
            ["predicted factor (values + indices)", format_bytes(p["factor_bytes"])],
            ["+ the lower triangle passed to CHOLMOD", format_bytes(p["matrix_bytes"])],
            [
                "physical memory",
                f"{format_bytes(p['physical'])} ({p['physical'] / 2**30:.1f} GiB): {verdict}",
            ],
            ["peak RSS of the analysis process", format_bytes(p["hwm"])],
        ]
    else:
        rows.append(["CHOLMOD prediction", predicted.get("error", "?")])
    if solved.get("ok"):
        s = solved
        rows += [
            [
                "PETSc CG + GAMG: first call (analysis + setup + solve)",
                format_seconds(s["first_s"]),
            ],
            ["setup + solve, new moduli", format_seconds(median(s["setup_s"]))],
            ["solve, new right-hand side", format_seconds(median(s["solve_s"]))],
            ["`value_and_grad` of the compliance", format_seconds(median(s["grad_s"]))],
            [
                "iterations / true relative residual of the first solve",
                f"{iterations_text(s)} / {s['true_residual']:.1e}",
            ],
            ["peak RSS increase during the solves", format_bytes(s["peak_run"])],
            ["peak RSS of the process (problem, JAX, PETSc)", format_bytes(s["hwm"])],
            [
                "assembly of the problem / ahead-of-time compilation",
                f"{format_seconds(s['build_s'])} / {format_seconds(s['compile_s'])}",
            ],
        ]
    else:
        rows.append(["PETSc CG + GAMG", solved.get("error", "?")])
    report.table(markdown_table([f"cantilever {nel[0]}x{nel[1]}x{nel[2]}", ""], rows))
    report.add(
        "The prediction is CHOLMOD's own symbolic analysis of the pattern, as "
        "`lxs.Cholmod()` runs it before factorizing (AMD, and METIS nested dissection "
        "where AMD's factor is expensive, keeping the sparser); the factor's size counts "
        "the supernodal values and row indices as `backends/cholmod/capsule.py` does for `nbytes`. "
        "No numeric factorization was attempted. CHOLMOD needs the factor and the matrix "
        "at once, and more (its update workspace) while factorizing."
    )


def under_mpiexec() -> bool:
    return any(
        name in os.environ
        for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
    )


PARTS = {  # --part: (title, results file)
    "table": ("PETSc benchmark", "petsc.md"),
    "ranks": ("PETSc on 1 and 2 MPI ranks", "petsc_ranks.md"),
    "huge": ("Beyond CHOLMOD's memory", "petsc_huge.md"),
}


def main() -> None:
    parser = command_line(
        __doc__,
        quick="tiny sizes, one round",
        repeats="rounds of new moduli (default 3, quick 1)",
        limit="seconds per child process",
    )
    parser.set_defaults(limit=3600.0)
    parser.add_argument("--part", choices=("table", "ranks", "huge", "child"), default="table")
    parser.add_argument(
        "--sizes",
        help=f"comma-separated sizes: dofs (1e5) or grids (50x25x25); default {DEFAULT_SIZES} "
        f"(ranks: the first of them; huge: {HUGE})",
    )
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="rows of the table")
    parser.add_argument("--solver", help="ranks part: the solver (default gamg)")
    parser.add_argument(
        "--grad",
        action=argparse.BooleanOptionalAction,
        help="time value_and_grad of the compliance (default: yes, except in the huge part)",
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    # Internal (child processes).
    parser.add_argument("--what", default="measure", help=argparse.SUPPRESS)
    parser.add_argument("--nel", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes_given = args.sizes is not None
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    if args.repeats is None:
        args.repeats = 1 if args.quick or args.part == "huge" else 3
    if args.grad is None:
        args.grad = args.part != "huge"
    args.no_grad = not args.grad

    if args.part == "child":
        child_main(args)
        return
    if args.part == "ranks" and (args.measure or under_mpiexec()):
        ranks_measure(args)
        return
    args.solvers = choose(parser, args.solvers, list(SOLVERS), "--solvers")
    if args.part == "huge" and args.quick and not args.sizes_given:
        args.sizes, args.sizes_given = "16x8x8", True
    title, name = PARTS[args.part]
    report = Report(title, args.quick)
    {"table": table_part, "ranks": ranks_part, "huge": huge_part}[args.part](args, report)
    report.publish(None if args.quick else name)


if __name__ == "__main__":
    main()
