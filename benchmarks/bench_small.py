"""Small systems: `AutoSparse` against dense LU and the sparse route, n = 3 .. 5,000.

Every crossing into a native library costs a callback and its checks (about 1 ms), which
is most of a small system's time: below a size, `AutoSparse` factorizes densely in XLA.
Two workloads, the routes of each size timed in turns in one process (one warm-up call
with the compilation, then `--repeats` calls, medians), the load average printed with each
table and written to benchmarks/results/small.md:

1. **ode**: diffrax, the Brusselator of `examples/stiff_reaction_diffusion.py` (Kvaerno5,
   `VeryChord`, PI control, rtol = atol = 1e-6, to t = 0.3; n = 2 N^2) and Robertson's
   ROBER (n = 3, KenCarp4 as in diffrax's own test, rtol = atol = 1e-8, to t = 1: 6,731
   steps; the host path takes about 5 minutes to t = 100).
   Routes: lineax's dense LU (`AutoLinearSolver(well_posed=None)`, diffrax's default),
   `Materialise(SuperLU())` and `Materialise(AutoSparse())`, with the pattern from
   `detect_sparsity`.
2. **loop**: a jitted loop of 20 steps on a sparse non-symmetric matrix of size n (a
   stencil with neighbours at distances 1 and ceil(sqrt(n)), diagonally dominant), each
   step with new values: one factorization and one solve, as a Newton iteration. Routes:
   `lineax.LU()` on the `SparseOperator`, `SuperLU()`, `AutoSparse()`.
3. **threshold**: both workloads near the crossover with `AutoSparse` forced onto its dense
   path (`dense_below=10**9`) and its host path (`dense_below=0`): where `DENSE_BELOW`
   comes from.

The ratio column is `AutoSparse` over the faster of the other two (the goal: at most 1.2);
"faster" says which of dense LU and the sparse route wins (the crossover). A dense route
whose time, extrapolated as n^3, would exceed `--limit` seconds is skipped.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_small.py            # about 30 minutes
    python benchmarks/bench_small.py --quick                           # n <= 512
    python benchmarks/bench_small.py --parts loop --sizes 64,128,256   # some sizes
"""

from __future__ import annotations

import math

from common import (
    block,
    choose,
    command_line,
    examples_on_path,
    Failure,
    format_result,
    load_text,
    markdown_table,
    pin_blas_threads,
    Report,
    Step,
    time_interleaved,
    Timing,
)


pin_blas_threads()  # before numpy loads OpenBLAS
examples_on_path()

import cvxopt  # noqa: E402, F401  (first, so that it decides CHOLMOD's BLAS)
import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


ROUTES = ("dense", "sparse", "auto")
#: The threshold study: AutoSparse forced onto each of its paths.
PATHS = ("dense path", "host path")
PARTS = ("ode", "loop", "threshold")
#: Brusselator grids N (n = 2 N^2); 0 stands for ROBER (n = 3).
ODE_GRIDS = (0, 2, 4, 8, 12, 16, 24, 32, 50)
LOOP_SIZES = (3, 8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 2048, 5000)
THRESHOLD_GRIDS = (8, 10, 12, 14, 16, 20)  # n = 128 .. 800
THRESHOLD_SIZES = (128, 192, 256, 320, 384, 448, 512, 640, 768)
LOOP_STEPS = 20


# ------------------------------------------------------------------ ode


def rober(t, y, args):
    del t, args
    k1, k2, k3 = 0.04, 3e7, 1e4
    return jnp.stack(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2],
            k2 * y[1] ** 2,
        ]
    )


def rober_run(linear_solver):
    """KenCarp4 on ROBER as diffrax's test does (an explicit zero term, PID control)."""
    root_finder = diffrax.VeryChord(rtol=1e-8, atol=1e-8, linear_solver=linear_solver)
    term = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: jnp.zeros(3)), diffrax.ODETerm(rober)
    )

    @eqx.filter_jit
    def run():
        return diffrax.diffeqsolve(
            term,
            diffrax.KenCarp4(root_finder=root_finder),
            0.0,
            1.0,
            2e-4,
            jnp.array([1.0, 0.0, 0.0]),
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
            max_steps=100_000,
        ).ys

    return run


def ode_routes(grid: int, routes=ROUTES) -> tuple[int, dict]:
    """n and the routes' runs for the Brusselator on an N x N grid (ROBER for 0)."""
    if grid == 0:
        pattern = lxs.detect_sparsity(lambda y: rober(0.0, y, None), jnp.ones(3))
        return 3, {route: rober_run(_linear_solver(route, pattern)) for route in routes}
    from stiff_reaction_diffusion import initial_state, integrate, vector_field

    y0, params = initial_state(grid), (1.0, 3.4)
    pattern = lxs.detect_sparsity(lambda y: vector_field(0.0, y, params), y0)

    def make(route):
        linear_solver = _linear_solver(route, pattern)
        return eqx.filter_jit(lambda: integrate(params, y0, linear_solver, 0.3, 1e-6).ys)

    return 2 * grid * grid, {route: make(route) for route in routes}


def _sparse_solver(route: str):
    return {
        "sparse": lxs.SuperLU(),
        "auto": lxs.AutoSparse(),
        "dense path": lxs.AutoSparse(dense_below=10**9),
        "host path": lxs.AutoSparse(dense_below=0),
    }[route]


def _linear_solver(route: str, pattern):
    if route == "dense":
        return lx.AutoLinearSolver(well_posed=None)
    return lxs.Materialise(_sparse_solver(route), pattern)


# ------------------------------------------------------------------ loop


def stencil(n: int) -> sp.csr_matrix:
    """Neighbours at distances 1 and ceil(sqrt(n)), random couplings, diagonal 4: a 2D-like
    non-symmetric pattern for any n, diagonally dominant."""
    width = max(1, math.ceil(math.sqrt(n)))
    rng = np.random.default_rng(0)
    offsets = sorted({0, 1, -1, width, -width} & set(range(-n + 1, n)))
    diagonals = [
        np.full(n, 4.0) if k == 0 else -1.0 + 0.3 * rng.standard_normal(n - abs(k)) for k in offsets
    ]
    return sp.diags(diagonals, offsets, shape=(n, n)).tocsr()


def loop_routes(n: int, routes=ROUTES) -> tuple[int, dict]:
    op = lxs.SparseOperator.from_scipy(stencil(n))
    pattern = op.pattern
    b = jnp.asarray(np.linspace(1.0, 2.0, n))

    def make(solver):
        @jax.jit
        def run(data):
            def step(i, total):
                values = data * (1.0 + 0.01 * i.astype(data.dtype))
                matrix = lxs.SparseOperator.from_pattern(pattern, values)
                return total + lx.linear_solve(matrix, b, solver).value

            return jax.lax.fori_loop(0, LOOP_STEPS, step, jnp.zeros(n))

        return lambda: run(op.data)

    return n, {
        route: make(lx.LU() if route == "dense" else _sparse_solver(route)) for route in routes
    }


# ------------------------------------------------------------------ the tables


def measure(part: str, sizes, repeats: int, limit: float) -> list[list[str]]:
    rows = []
    last: tuple[int, float] | None = None  # (n, seconds) of the dense route
    for size in sizes:
        n, runs = (ode_routes if part == "ode" else loop_routes)(size)
        results: dict[str, Timing | Failure] = {}
        if last is not None and last[1] * (n / last[0]) ** 3 > limit:
            results["dense"] = Failure(f"skipped (> {limit:g} s)")
            del runs["dense"]
        for route, run in runs.items():  # compile outside the turns
            try:
                block(run())
            except Exception as error:  # noqa: BLE001 - reported in the table
                results[route] = Failure(f"failed: {type(error).__name__}")
        steps = {route: Step(run) for route, run in runs.items() if route not in results}
        results.update(time_interleaved(steps, repeats, alternate=True))
        if isinstance(results.get("dense"), Timing):
            last = (n, results["dense"].median)
        rows.append(_row(size if part == "ode" else None, n, results))
        print(f"  {part} n={n}: {rows[-1]}  ({load_text()})", flush=True)
    return rows


def measure_threshold(grids, sizes, repeats: int) -> list[list[str]]:
    """`AutoSparse` forced onto its dense and its host path, in turns, near the crossover."""
    rows = []
    cases = [("ode", grid) for grid in grids] + [("loop", n) for n in sizes]
    for workload, size in cases:
        make = ode_routes if workload == "ode" else loop_routes
        n, runs = make(size, PATHS)
        for run in runs.values():
            block(run())
        results = time_interleaved({route: Step(run) for route, run in runs.items()}, repeats, True)
        dense, host = results["dense path"], results["host path"]
        rows.append(
            [
                "Brusselator" if workload == "ode" else "loop",
                f"{n:,}",
                format_result(dense),
                format_result(host),
                f"{dense.median / host.median:.2f}",
            ]
        )
        print(f"  threshold {rows[-1]}  ({load_text()})", flush=True)
    return rows


def _row(size: int | None, n: int, results: dict) -> list[str]:
    label = f"{n:,}" + (" (ROBER)" if size == 0 and n == 3 else "")
    dense, sparse, auto = (results.get(route) for route in ROUTES)
    known = [r.median for r in (dense, sparse) if isinstance(r, Timing)]
    ratio = "–"
    if isinstance(auto, Timing) and known:
        value = auto.median / min(known)
        ratio = f"{value:.2f}" + ("" if value <= 1.2 else " **>1.2**")
    faster = "–"
    if isinstance(dense, Timing) and isinstance(sparse, Timing):
        faster = "dense" if dense.median < sparse.median else "sparse"
    elif isinstance(sparse, Timing):
        faster = "sparse"
    return [label, *(format_result(r) for r in (dense, sparse, auto)), ratio, faster]


COLUMNS = {
    "threshold": ["workload", "n", "dense path", "host path", "dense / host"],
    "ode": [
        "n",
        "dense LU (diffrax default)",
        "Materialise(SuperLU())",
        "Materialise(AutoSparse())",
        "AutoSparse / min",
        "faster of the two",
    ],
    "loop": [
        "n",
        "lineax LU()",
        "SuperLU()",
        "AutoSparse()",
        "AutoSparse / min",
        "faster of the two",
    ],
}
CAPTIONS = {
    "threshold": "AutoSparse(dense_below=10**9) (dense path) against AutoSparse(dense_below=0) "
    "(host path), same workloads",
    "ode": "diffrax: Brusselator (Kvaerno5, to t = 0.3) and ROBER (KenCarp4, to t = 1), "
    "warm solves",
    "loop": f"Jitted loop of {LOOP_STEPS} steps (new values, one factorization and one solve "
    "each), time per call",
}


def main() -> None:
    parser = command_line(
        __doc__,
        quick="n <= 512 only",
        repeats="timed calls per route and size",
        limit="seconds a dense route may take before larger sizes skip it",
    )
    parser.set_defaults(repeats=5, limit=60.0)
    parser.add_argument("--parts", default=",".join(PARTS), help="tables to run")
    parser.add_argument("--sizes", default=None, help="comma-separated n (loop) or N (ode)")
    args = parser.parse_args()
    parts = choose(parser, args.parts, PARTS, "--parts")
    report = Report("Small systems benchmark", args.quick, echo=True)
    for part in parts:
        if part == "threshold":
            grids, sizes = THRESHOLD_GRIDS, THRESHOLD_SIZES
            if args.quick:
                grids, sizes = grids[:2], sizes[:3]
            rows = measure_threshold(grids, sizes, args.repeats)
            report.table(markdown_table(COLUMNS[part], rows), CAPTIONS[part], echo=True)
            continue
        sizes = ODE_GRIDS if part == "ode" else LOOP_SIZES
        if args.sizes is not None:
            sizes = tuple(int(size) for size in args.sizes.split(","))
        if args.quick:
            sizes = tuple(s for s in sizes if (2 * s * s if part == "ode" else s) <= 512)
        rows = measure(part, sizes, args.repeats, args.limit)
        report.table(markdown_table(COLUMNS[part], rows), CAPTIONS[part], echo=True)
    report.publish(None if args.sizes else "small.md")


if __name__ == "__main__":
    main()
