"""Sparse Jacobians inside optimistix and diffrax: `lxs.Materialise` against lineax's routes.

Four tables, each printed with the machine's load and written to
benchmarks/results/jacobian.md:

1. **Newton** (optimistix `Newton`, rtol = atol = 1e-10) on the nonlinear diffusion problem of
   `examples/nonlinear_diffusion.py`, N x N grids from N = 30: lineax's dense default
   (`AutoLinearSolver`), lineax `GMRES` and `BiCGStab` (rtol = atol = 1e-10), and
   `Materialise(SuperLU())`, `Materialise(AutoSparse())`, `Materialise(AMG(krylov="gmres"))`
   with the pattern from `detect_sparsity`. Each route runs at growing sizes until a solve
   takes longer than `--limit` seconds (or fails); each (route, size) in a fresh process.
   Times exclude compilation (median of the warm runs).
2. **Kvaerno5** (diffrax, `VeryChord` root finder, PI step control, rtol = atol = 1e-6) on the
   Brusselator of `examples/stiff_reaction_diffusion.py` to t = 0.3, 2 N^2 unknowns, same
   routes.
3. **The targets**, timed in turns in one process: Newton dense vs `Materialise(SuperLU())` at
   n = 2,500 and 4,900; Kvaerno5 at n = 2,048; and, at n >= 1e4, one Newton step's parts:
   linearisation, materialisation (coloured JVPs and decompression; the colouring is done
   once and excluded), factorization and solve.
4. **Colouring** of 2D / 3D stencil and FEM patterns at n = 1e4 .. 1e6: colours of columns
   (JVPs) and rows (VJPs) and asdex's host time for each.
5. **Verification** (`--parts verify`): the cost of checking each materialised matrix
   against the operator (one more product with a probe vector, in the same `vmap` as the
   coloured JVPs): one Newton step (linearise, `Materialise(SuperLU())`, factorize, solve)
   and the materialisation alone, with `verify=True` and `verify=False`, in turns in one
   process (alternating which goes first) at n = 1e4 .. 1.6e5; medians of 20 repetitions,
   each call at new values (no factorization is found in the cache), with the load average
   before and after.

    python benchmarks/bench_jacobian.py            # about 25 minutes
    python benchmarks/bench_jacobian.py --quick    # small sizes, a few minutes
    python benchmarks/bench_jacobian.py --parts verify   # the verification's cost only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from common import (
    command_line,
    error_text,
    examples_on_path,
    format_seconds,
    markdown_table,
    pin_blas_threads,
    Report,
    run_child,
    send_result,
    Step,
    time_interleaved,
)


pin_blas_threads()  # here and in every child, before numpy loads OpenBLAS
examples_on_path()

ROUTES = ("dense", "gmres", "bicgstab", "superlu", "auto", "amg")
ROUTE_NAMES = {
    "dense": "lineax dense default",
    "gmres": "lineax GMRES",
    "bicgstab": "lineax BiCGStab",
    "superlu": "Materialise(SuperLU())",
    "auto": "Materialise(AutoSparse())",
    "amg": 'Materialise(AMG(krylov="gmres"))',
}


# ------------------------------------------------------------------ the cases (in children)


def _jax():
    import cvxopt  # noqa: F401  (first, so that it decides CHOLMOD's BLAS)
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _linear_solver(route: str, pattern):
    import lineax as lx

    import lineax_sparse as lxs

    if route == "dense":
        return lx.AutoLinearSolver(well_posed=None)
    if route == "gmres":
        return lx.GMRES(rtol=1e-10, atol=1e-10)
    if route == "bicgstab":
        return lx.BiCGStab(rtol=1e-10, atol=1e-10)
    inner = {
        "superlu": lxs.SuperLU(),
        "auto": lxs.AutoSparse(),
        "amg": lxs.AMG(krylov="gmres", rtol=1e-10),
    }[route]
    return lxs.Materialise(inner, pattern)


def _newton(grid: int):
    jax = _jax()
    import equinox as eqx
    import jax.numpy as jnp
    import optimistix as optx

    import lineax_sparse as lxs
    from nonlinear_diffusion import manufactured, newton, residual

    n = grid * grid
    u_exact, f = manufactured(grid)
    args = (jnp.asarray(f), jnp.zeros((grid, 0)))
    pattern = lxs.detect_sparsity(lambda u: residual(u, args), jnp.zeros(n))

    def make(route):
        solver = newton(_linear_solver(route, pattern), grid)

        @eqx.filter_jit
        def run():
            sol = optx.root_find(residual, solver, jnp.zeros(n), args, throw=False, max_steps=50)
            return sol.value, sol.result, sol.stats["num_steps"]

        return run

    def describe(out):
        value, result, steps = out
        import numpy as np

        converged = bool(result == optx.RESULTS.successful)
        worst = float(jnp.max(jnp.abs(residual(value, args))))
        error = float(np.max(np.abs(np.asarray(value) - u_exact)))
        return {
            "converged": bool(converged and np.isfinite(worst)),
            "iterations": int(steps),
            "residual": worst,
            "discretization": error,
        }

    return jax, make, describe, pattern


def _kvaerno(grid: int, t1: float):
    jax = _jax()
    import diffrax
    import equinox as eqx
    import jax.numpy as jnp

    import lineax_sparse as lxs
    from stiff_reaction_diffusion import initial_state, integrate, vector_field

    y0 = initial_state(grid)
    params = (1.0, 3.4)
    pattern = lxs.detect_sparsity(lambda y: vector_field(0.0, y, params), y0)

    def make(route):
        linear_solver = _linear_solver(route, pattern)

        @eqx.filter_jit
        def run():
            sol = integrate(params, y0, linear_solver, t1, 1e-6, throw=False)
            return sol.ys[0][-1], sol.result, sol.stats["num_steps"]

        return run

    def describe(out):
        u, result, steps = out
        ok = bool(result == diffrax.RESULTS.successful) and bool(jnp.all(jnp.isfinite(u)))
        return {"converged": ok, "steps": int(steps), "u_mean": float(jnp.mean(u))}

    return jax, make, describe, pattern


def run_case(case: dict) -> dict:
    """One route at one size: compile and run once, then time `repeats` warm runs."""
    if case["kind"] == "newton":
        jax, make, describe, _ = _newton(case["grid"])
    else:
        jax, make, describe, _ = _kvaerno(case["grid"], case["t1"])
    try:
        run = make(case["route"])
        start = time.perf_counter()
        out = jax.block_until_ready(run())
        first = time.perf_counter() - start
    except Exception as error:  # noqa: BLE001 - reported in the table
        return {"error": f"failed: {error_text(error, 120)}"}
    result = {"first": first, **describe(out)}
    times = []
    for _ in range(case["repeats"]):
        if sum(times) + first > case["limit"]:
            break
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    result["time"] = statistics.median(times) if times else first
    return result


def run_targets(case: dict) -> dict:
    """Dense and sparse in turns in one process; the parts of a Newton step."""

    if case["kind"] in ("newton", "kvaerno"):
        if case["kind"] == "newton":
            jax, make, describe, _ = _newton(case["grid"])
        else:
            jax, make, describe, _ = _kvaerno(case["grid"], case["t1"])
        steps = {route: Step(make(route)) for route in ("dense", "superlu")}
        timings = time_interleaved(steps, case["repeats"])  # the warm-up turn compiles
        return {route: timing.median for route, timing in timings.items()}
    # "parts": one Newton step at the manufactured solution's neighbourhood
    jax, make, describe, pattern = _newton(case["grid"])
    import jax.numpy as jnp
    import lineax as lx

    import lineax_sparse as lxs
    from nonlinear_diffusion import residual

    n, args, u = _step_problem(case["grid"])
    lxs.SparseOperator.from_operator(  # colour the pattern now: done once, excluded
        lx.FunctionLinearOperator(lambda v: v, jax.ShapeDtypeStruct((n,), jnp.float64)),
        pattern,
    )

    @jax.jit
    def linearise(u):
        value, linear = jax.linearize(lambda w: residual(w, args), u)
        return value, jax.vmap(linear)(jnp.eye(2, n))  # a product, so nothing is dropped

    import equinox as eqx

    @eqx.filter_jit
    def materialise(u):
        _, linear = jax.linearize(lambda w: residual(w, args), u)
        op = lx.FunctionLinearOperator(linear, jax.ShapeDtypeStruct((n,), jnp.float64))
        return lxs.SparseOperator.from_operator(op, pattern)

    @eqx.filter_jit
    def step(u):
        value, linear = jax.linearize(lambda w: residual(w, args), u)
        op = lx.FunctionLinearOperator(linear, jax.ShapeDtypeStruct((n,), jnp.float64))
        solver = lxs.Materialise(lxs.SuperLU(), pattern)
        return u - lx.linear_solve(op, value, solver=solver).value

    operator = materialise(u)
    factor_solve = jax.jit(lambda op, b: lx.linear_solve(op, b, solver=lxs.SuperLU()).value)
    parts = {
        "linearise": lambda k: linearise(u + 1e-9 * k),
        "materialise": lambda k: materialise(u + 1e-9 * k),
        "factorize+solve": lambda k: factor_solve(
            lxs.SparseOperator(
                jax.experimental.sparse.BCOO(
                    (operator.data * (1 + 1e-12 * k), operator.indices), shape=(n, n)
                )
            ),
            jnp.ones(n),
        ),
        "newton step": lambda k: step(u + 1e-9 * k),
    }

    def at_new_values(part):  # call k (0: the warm-up) at new values: nothing cached
        calls = iter(range(10**9))
        return Step(lambda: part(next(calls)))

    steps = {name: at_new_values(part) for name, part in parts.items()}
    timings = time_interleaved(steps, case["repeats"])
    result = {name: timing.median for name, timing in timings.items()}
    result["colours"] = _colours(pattern, n)
    return result


def _colours(pattern, n: int) -> int:
    """The colours of the pattern's columns: the JVPs of one materialisation."""
    from lineax_sparse._matrixfree.jacobian import as_pattern

    return int(as_pattern(pattern).bind(n, n).coloring().num_colors)


def _step_problem(grid: int):
    """`(n, args, u)`: the nonlinear-diffusion residual's arguments on a `grid` x `grid`
    mesh and a fixed point to linearise it at, for the parts that time one Newton step."""
    import jax.numpy as jnp
    import numpy as np

    from nonlinear_diffusion import manufactured

    n = grid * grid
    _, f = manufactured(grid)
    args = (jnp.asarray(f), jnp.zeros((grid, 0)))
    return n, args, jnp.asarray(np.random.default_rng(0).uniform(0, 1, n))


def run_verify(case: dict) -> dict:
    """One Newton step and one materialisation with and without the probe check, in turns."""
    load_before = os.getloadavg()[0]
    jax, _, _, pattern = _newton(case["grid"])
    import equinox as eqx
    import jax.numpy as jnp
    import lineax as lx

    import lineax_sparse as lxs
    from nonlinear_diffusion import residual

    n, args, u = _step_problem(case["grid"])
    structure = jax.ShapeDtypeStruct((n,), jnp.float64)

    def step(verify):
        solver = lxs.Materialise(lxs.SuperLU(), pattern, verify=verify)

        @eqx.filter_jit
        def run(u):
            value, linear = jax.linearize(lambda w: residual(w, args), u)
            op = lx.FunctionLinearOperator(linear, structure)
            return u - lx.linear_solve(op, value, solver=solver).value

        return run

    def materialise(verify):
        @eqx.filter_jit
        def run(u):
            _, linear = jax.linearize(lambda w: residual(w, args), u)
            op = lx.FunctionLinearOperator(linear, structure)
            return lxs.SparseOperator.from_operator(op, pattern, verify=verify).data

        return run

    parts = {
        ("step", True): step(True),
        ("step", False): step(False),
        ("materialise", True): materialise(True),
        ("materialise", False): materialise(False),
    }
    calls = iter(range(1, 10**9))  # every call at new values: never a cached factorization
    point = {}

    def at_new_point(part):
        def new_point():  # untimed
            point["x"] = jax.block_until_ready(u + 1e-9 * next(calls))

        return Step(lambda: part(point["x"]), new_point)

    # Alternating who goes first: no position in a turn is favoured.
    steps = {f"{kind} {verify}": at_new_point(part) for (kind, verify), part in parts.items()}
    timings = time_interleaved(steps, case["repeats"], alternate=True)
    verified, unverified = timings["step True"].times, timings["step False"].times
    turn_ratios = [a / b for a, b in zip(verified, unverified, strict=True)]
    return {
        "n": n,
        "step_verified": timings["step True"].median,
        "step_unverified": timings["step False"].median,
        "materialise_verified": timings["materialise True"].median,
        "materialise_unverified": timings["materialise False"].median,
        "median_turn_ratio": statistics.median(turn_ratios),
        "colours": _colours(pattern, n),
        "load": [load_before, os.getloadavg()[0]],
    }


def run_colouring(case: dict) -> dict:
    import asdex
    import numpy as np
    import scipy.sparse as sp

    pattern = _colouring_pattern(case["pattern"], case["n"])
    coo = sp.coo_matrix(pattern)
    sparsity = asdex.SparsityPattern.from_coo(coo.row, coo.col, coo.shape)
    out = {"n": int(pattern.shape[0]), "nnz": int(pattern.nnz)}
    for mode, colour in (("fwd", asdex.color_cols), ("rev", asdex.color_rows)):
        start = time.perf_counter()
        _, colours = colour(sparsity)
        out[mode] = {"colours": int(colours), "seconds": time.perf_counter() - start}
    del np
    return out


def _colouring_pattern(kind: str, target: int):
    """A square 0/1 pattern of about `target` unknowns."""
    import numpy as np
    import scipy.sparse as sp

    def path(m):
        return sp.diags([1, 1, 1], [-1, 0, 1], shape=(m, m), format="csr")

    if kind == "2D 5-point":
        m = round(target**0.5)
        eye = sp.eye(m)
        return (sp.kron(eye, path(m)) + sp.kron(path(m), eye)).tocsr()
    if kind == "3D 7-point":
        m = round(target ** (1 / 3))
        eye = sp.eye(m)
        return (
            sp.kron(sp.kron(eye, eye), path(m))
            + sp.kron(sp.kron(eye, path(m)), eye)
            + sp.kron(sp.kron(path(m), eye), eye)
        ).tocsr()
    if kind == "2D Q4 FEM (2 dofs)":
        m = round((target / 2) ** 0.5)  # nodes per side; 9-point node coupling
        nodes = (sp.kron(path(m), path(m)) != 0).astype(np.int8)
        return sp.kron(nodes, np.ones((2, 2), np.int8)).tocsr()
    if kind == "3D hex FEM (3 dofs)":
        m = round((target / 3) ** (1 / 3))  # 27-point node coupling
        nodes = (sp.kron(sp.kron(path(m), path(m)), path(m)) != 0).astype(np.int8)
        return sp.kron(nodes, np.ones((3, 3), np.int8)).tocsr()
    raise ValueError(kind)


RUNNERS = {
    "case": run_case,
    "targets": run_targets,
    "colouring": run_colouring,
    "verify": run_verify,
}


# ------------------------------------------------------------------ the parent


def spawn(case: dict, timeout: float) -> dict:
    """Run `case` in a fresh Python process; `{"error": ...}` if it fails or times out."""
    return run_child([__file__, "--child", json.dumps(case)], timeout)


def sweep(kind: str, sizes, args, t1: float = 0.3) -> list[list[str]]:
    rows = []
    stopped: dict[str, str] = {}
    for grid in sizes:
        n = grid * grid if kind == "newton" else 2 * grid * grid
        for route in ROUTES:
            if route in stopped:
                rows.append([ROUTE_NAMES[route], f"{n:,}", stopped[route], "", "", ""])
                continue
            case = {
                "runner": "case",
                "kind": kind,
                "grid": grid,
                "route": route,
                "repeats": 3,
                "limit": args.limit,
                "t1": t1,
            }
            result = spawn(case, timeout=3 * args.limit + 240)
            print(f"  {kind} {route} n={n}: {result}", flush=True)
            if "error" in result:
                rows.append([ROUTE_NAMES[route], f"{n:,}", result["error"], "", "", ""])
                stopped[route] = "(stopped at a smaller size)"
                continue
            converged = "yes" if result["converged"] else "**no**"
            if kind == "newton":
                detail = [str(result["iterations"]), f"{result['discretization']:.2e}"]
            else:
                detail = [str(result["steps"]), f"{result['u_mean']:.8f}"]
            rows.append(
                [ROUTE_NAMES[route], f"{n:,}", format_seconds(result["time"]), converged] + detail
            )
            if result["time"] > args.limit or not result["converged"]:
                reason = (
                    "slower than the limit" if result["time"] > args.limit else "no convergence"
                )
                stopped[route] = f"(stopped: {reason} at a smaller size)"
    return rows


#: The route sweeps: kind, grid sizes (--quick, full), table title, detail columns.
SWEEPS = (
    (
        "newton",
        (30, 50, 100),
        (30, 50, 70, 100, 200, 400, 700),
        "Newton, nonlinear diffusion (warm solve; error against the manufactured solution)",
        ["iterations", "error"],
    ),
    (
        "kvaerno",
        (16, 32),
        (16, 32, 64, 128, 256),
        "Kvaerno5, Brusselator to t = 0.3 (warm solve; mean of u(t1) to compare routes)",
        ["steps", "mean u"],
    ),
)


def targets_table(quick: bool) -> str:
    rows = []
    for kind, grid, target in (("newton", 50, 30), ("newton", 70, 100), ("kvaerno", 32, 15)):
        if quick and grid > 50:
            continue
        case = {"runner": "targets", "kind": kind, "grid": grid, "repeats": 3, "t1": 0.3}
        result = spawn(case, timeout=3600)
        print(f"  targets {kind} {grid}: {result}", flush=True)
        n = grid * grid if kind == "newton" else 2 * grid * grid
        if "error" in result:
            rows.append([kind, f"{n:,}", result["error"], "", "", ""])
            continue
        ratio = result["dense"] / result["superlu"]
        verdict = "met" if ratio >= target else "**missed**"
        rows.append(
            [
                "Newton" if kind == "newton" else "Kvaerno5",
                f"{n:,}",
                format_seconds(result["dense"]),
                format_seconds(result["superlu"]),
                f"**{ratio:.0f}x**",
                f"≥ {target}x: {verdict}",
            ]
        )
    return markdown_table(["solver", "n", "dense", "sparse", "speed-up", "target"], rows)


def step_parts_table(quick: bool) -> str:
    rows = []
    for grid in (50,) if quick else (100, 200, 400):
        case = {"runner": "targets", "kind": "parts", "grid": grid, "repeats": 5}
        result = spawn(case, timeout=1800)
        print(f"  parts {grid}: {result}", flush=True)
        if "error" in result:
            rows.append([f"{grid * grid:,}", result["error"], "", "", "", "", ""])
            continue
        share = result["materialise"] / result["newton step"]
        rows.append(
            [
                f"{grid * grid:,}",
                str(result["colours"]),
                f"{result['linearise'] * 1e3:.1f}",
                f"{result['materialise'] * 1e3:.1f}",
                f"{result['factorize+solve'] * 1e3:.1f}",
                f"{result['newton step'] * 1e3:.1f}",
                f"**{share:.1%}** (≤ 20%: {'met' if share <= 0.2 else '**missed**'})",
            ]
        )
    header = ["n", "colours", "linearise", "materialise", "factorize + solve", "Newton step"]
    return markdown_table([*header, "materialise / step"], rows)


def colouring_table(quick: bool) -> str:
    rows = []
    for kind in ("2D 5-point", "3D 7-point", "2D Q4 FEM (2 dofs)", "3D hex FEM (3 dofs)"):
        for target in (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000):
            case = {"runner": "colouring", "pattern": kind, "n": target}
            result = spawn(case, timeout=900)
            print(f"  colouring {kind} {target}: {result}", flush=True)
            if "error" in result:
                rows.append([kind, f"~{target:,}", "", result["error"], "", "", ""])
                continue
            fwd, rev = result["fwd"], result["rev"]
            rows.append(
                [
                    kind,
                    f"{result['n']:,}",
                    f"{result['nnz']:,}",
                    str(fwd["colours"]),
                    f"{fwd['seconds']:.2f}",
                    str(rev["colours"]),
                    f"{rev['seconds']:.2f}",
                ]
            )
    header = ["pattern", "n", "nnz", "column colours", "s", "row colours", "s"]
    return markdown_table(header, rows)


def verify_table(quick: bool) -> str:
    rows = []
    for grid in (50,) if quick else (100, 200, 400):
        case = {"runner": "verify", "grid": grid, "repeats": 6 if quick else 20}
        result = spawn(case, timeout=3600)
        print(f"  verify {grid}: {result}", flush=True)
        if "error" in result:
            rows.append([f"{grid * grid:,}", result["error"], *[""] * 7])
            continue
        ratio = result["step_verified"] / result["step_unverified"]
        # The check's own cost, measured on the materialisation alone (steady where a
        # step's time drifts with the machine's load), as a share of a step.
        added = result["materialise_verified"] - result["materialise_unverified"]
        rows.append(
            [
                f"{result['n']:,}",
                str(result["colours"]),
                f"{result['step_unverified'] * 1e3:.1f}",
                f"{result['step_verified'] * 1e3:.1f}",
                f"**{ratio - 1:+.1%}** ({result['median_turn_ratio'] - 1:+.1%})",
                f"{result['materialise_unverified'] * 1e3:.1f}",
                f"{result['materialise_verified'] * 1e3:.1f}",
                f"**{added / result['step_unverified']:+.1%}**",
                "{:.2f} / {:.2f}".format(*result["load"]),
            ]
        )
    header = ["n", "colours", "step, unverified", "step, verified", "step cost"]
    header += ["materialise, unverified", "materialise, verified", "added materialise / step"]
    return markdown_table([*header, "load before / after"], rows)


CAPTIONS = {
    "targets": "Targets: lineax's dense default against Materialise(SuperLU()), in turns in one "
    "process (median of 3)",
    "parts": "One Newton step's parts (ms, medians of 5; materialisation = coloured JVPs of "
    "the linearisation and decompression, the colouring done once beforehand)",
    "colouring": "Colouring (asdex, greedy): colours of columns (JVPs) and of rows (VJPs), "
    "host seconds (once per pattern)",
    "verify": "Verification: one Newton step and one materialisation with `verify=False` and "
    "`verify=True` (ms, medians, in turns in one process, each call at new values; "
    "step cost: of the medians, and in parentheses the median of the per-turn "
    "ratios; added materialise / step: the materialisation's difference as a share "
    "of the unverified step; target: at most +5% of a step at n >= 1e4)",
}


def main() -> None:
    parser = command_line(
        __doc__, quick="small sizes only", limit="seconds per solve before a route stops"
    )
    parser.set_defaults(limit=60.0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--parts", default="newton,kvaerno,targets,colouring,verify", help="tables to run"
    )
    args = parser.parse_args()
    if args.child is not None:
        case = json.loads(args.child)
        send_result(RUNNERS[case["runner"]](case))
        return
    parts = args.parts.split(",")
    report = Report("Sparse Jacobians benchmark", args.quick, echo=True)
    for kind, quick, full, title, detail in SWEEPS:
        if kind in parts:
            rows = sweep(kind, quick if args.quick else full, args)
            columns = ["route", "n", "time", "converged", *detail]
            report.table(markdown_table(columns, rows), title, echo=True)
    if "targets" in parts:
        report.table(targets_table(args.quick), CAPTIONS["targets"], echo=True)
        report.table(step_parts_table(args.quick), CAPTIONS["parts"], echo=True)
    if "colouring" in parts:
        report.table(colouring_table(args.quick), CAPTIONS["colouring"], echo=True)
    if "verify" in parts:
        report.table(verify_table(args.quick), CAPTIONS["verify"], echo=True)
    report.publish("jacobian_verify.md" if parts == ["verify"] else "jacobian.md")


if __name__ == "__main__":
    main()
