"""Batches: a vmapped batch against the Python loop of jitted calls, on 1 and 2 threads.

Each study times, in turns within one process, the same work done three ways: a Python
loop of jitted single solves, one `jax.vmap`ped call on one thread
(`lxs.set_num_threads(1)`), and the same call on every core. Factorizations are part of
every timed call (the cache is cleared before each), so a batch of matrices pays its
factorizations each time. A scaling model fitted to the 1- and 2-thread times (time per
item = serial + parallel / threads) says what to expect on a 16-core node. Every parallel
result is compared with the sequential one bit for bit.

Studies (`--parts`):

- `sweep`: the MBB beam 120 x 40 (examples/batched_solves.py), 32 (E, nu) pairs, Cholmod.
- `cantilever`: the 3D cantilever 30 x 15 x 15 (examples/topology_optimization_3d.py),
  8 SIMP density fields, one pattern, Cholmod and SuperLU.
- `independent`: 8 matrices of different patterns under one vmap (2D Poisson with random
  coefficients and different sizes padded to one), SuperLU.

    python benchmarks/bench_batched.py [--quick] [--parts sweep,cantilever] [--repeats N]
"""

from common import (
    choose,
    command_line,
    examples_on_path,
    format_seconds,
    markdown_table,
    pin_blas_threads,
    Report,
    Step,
    time_interleaved,
)


pin_blas_threads()
examples_on_path()

import cvxopt  # noqa: E402, F401, I001  (first: it decides the BLAS of the CHOLMOD it loads)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)

PARTS = ("sweep", "cantilever", "independent")
TAGS = (lx.symmetric_tag, lx.positive_semidefinite_tag)


class Study:
    """A batch of `count` items: `loop()` solves them one jitted call at a time, `batch()`
    in one vmapped call; both return the stacked results."""

    def __init__(self, name: str, count: int, loop, batch):
        self.name, self.count, self.loop, self.batch = name, count, loop, batch


def sweep_study(quick: bool) -> list[Study]:
    import batched_solves as example
    from topology_optimization import mbb_problem

    nelx, nely, count = (30, 10, 8) if quick else (120, 40, 32)
    problem = mbb_problem(nelx, nely, rmin=1.5)
    rng = np.random.default_rng(0)
    young = jnp.asarray(rng.uniform(0.5, 2.0, count))
    nu = jnp.asarray(np.tile(np.linspace(0.1, 0.45, count // 2), 2)[:count])
    one = jax.jit(example.material_compliance)
    sweep = jax.jit(jax.vmap(example.material_compliance, in_axes=(0, 0, None)))
    return [
        Study(
            f"material sweep, MBB {nelx} x {nely} ({problem.size} dofs), Cholmod",
            count,
            lambda: jnp.stack([one(young[i], nu[i], problem) for i in range(count)]),
            lambda: sweep(young, nu, problem),
        )
    ]


def cantilever_study(quick: bool) -> list[Study]:
    from topology_optimization import stiffness
    from topology_optimization_3d import cantilever_problem

    shape, count = ((10, 5, 5), 4) if quick else ((30, 15, 15), 8)
    problem, _ = cantilever_problem(*shape, rmin=1.5)
    nel = int(np.prod(problem.shape))
    densities = jnp.asarray(np.random.default_rng(2).uniform(0.2, 1.0, (count, nel)))
    studies = []
    for name, solver in (("Cholmod", lxs.Cholmod()), ("SuperLU", lxs.SuperLU())):

        def displacement(density, solver=solver):
            operator = stiffness(problem, density, 3.0)
            return lx.linear_solve(operator, problem.load, solver=solver).value

        one, many = jax.jit(displacement), jax.jit(jax.vmap(displacement))
        studies.append(
            Study(
                f"cantilever {'x'.join(map(str, shape))} ({problem.size} dofs), {name}",
                count,
                lambda one=one: jnp.stack([one(d) for d in densities]),
                lambda many=many: many(densities),
            )
        )
    return studies


def independent_study(quick: bool) -> list[Study]:
    """Matrices of different patterns: 2D five-point Laplacians with random conductivities
    and a random set of links removed (each matrix its own pattern), one size."""
    from jax.experimental import sparse as jsparse

    grid, count = (30, 4) if quick else (200, 8)
    n = grid * grid
    rng = np.random.default_rng(3)
    datas, indices = [], []
    index = np.arange(n).reshape(grid, grid)
    for _ in range(count):
        links = np.concatenate(
            [
                np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1),
                np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1),
            ]
        )
        kept = rng.random(len(links)) > 0.1
        weights = np.where(kept, rng.uniform(0.5, 2.0, len(links)), 0.0)
        rows = np.concatenate([links[:, 0], links[:, 1], links[:, 0], links[:, 1], np.arange(n)])
        cols = np.concatenate([links[:, 1], links[:, 0], links[:, 0], links[:, 1], np.arange(n)])
        values = np.concatenate([-weights, -weights, weights, weights, np.full(n, 1e-2)])
        # Removed links stay as padding (index n, value 0): one nse for the whole batch,
        # but a different pattern per matrix.
        rows = np.where(np.tile(kept, 4).tolist() + [True] * n, rows, n)
        cols = np.where(np.tile(kept, 4).tolist() + [True] * n, cols, n)
        datas.append(values)
        indices.append(np.stack([rows, cols], axis=1).astype(np.int32))
    datas, indices = jnp.asarray(np.stack(datas)), jnp.asarray(np.stack(indices))
    b = jnp.ones(n)

    def solve(data, index):
        matrix = jsparse.BCOO((data, index), shape=(n, n))
        # COLAMD: on these randomly thinned grids SuperLU's minimum degree on A^T + A (what
        # `ordering="auto"` picks for a symmetric pattern) takes 25 s and 790 MB per matrix,
        # COLAMD 0.36 s and 47 MB.
        solver = lxs.SuperLU(ordering="COLAMD")
        return lx.linear_solve(lxs.SparseOperator(matrix), b, solver=solver).value

    one, many = jax.jit(solve), jax.jit(jax.vmap(solve))
    return [
        Study(
            f"{count} independent patterns, 2D Laplacian {grid}^2 ({n} unknowns), SuperLU (COLAMD)",
            count,
            lambda: jnp.stack([one(datas[i], indices[i]) for i in range(count)]),
            lambda: many(datas, indices),
        )
    ]


def _with_threads(threads: int, fn):
    def run():
        lxs.set_num_threads(threads)
        return fn()

    return run


def measure(study: Study, repeats: int, cores: int) -> tuple[list[str], dict]:
    steps = {
        "loop": Step(_with_threads(1, study.loop), lxs.clear_cache),
        "vmap, 1 thread": Step(_with_threads(1, study.batch), lxs.clear_cache),
        f"vmap, {cores} threads": Step(_with_threads(cores, study.batch), lxs.clear_cache),
    }
    timings = time_interleaved(steps, repeats, alternate=True)
    lxs.clear_cache()
    sequential = np.asarray(_with_threads(1, study.batch)())
    lxs.clear_cache()
    parallel = np.asarray(_with_threads(cores, study.batch)())
    identical = np.array_equal(sequential, parallel, equal_nan=True)
    loop = np.asarray(study.loop())
    agree = float(np.max(np.abs(loop - parallel)) / np.max(np.abs(loop)))
    t_loop = timings["loop"].median
    t1 = timings["vmap, 1 thread"].median
    tp = timings[f"vmap, {cores} threads"].median
    # Amdahl per item: t(T) = serial + parallel / T, from T = 1 and T = cores.
    parallel_part = max(0.0, (t1 - tp) / (1 - 1 / cores)) if cores > 1 else 0.0
    serial_part = max(0.0, t1 - parallel_part)
    at16 = serial_part + parallel_part / min(16, study.count)
    row = [
        study.name,
        str(study.count),
        format_seconds(t_loop),
        format_seconds(t1),
        format_seconds(tp),
        f"{tp / t_loop:.2f}",
        f"{t1 / tp:.2f}",
        f"{format_seconds(at16)} ({at16 / t_loop:.2f})",
        "yes" if identical else "NO",
        f"{agree:.1e}",
    ]
    return row, {"loop": t_loop, "one": t1, "parallel": tp}


def main() -> None:
    parser = command_line(
        __doc__, quick="small problems (a smoke test)", repeats="timed repetitions"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="studies to run")
    parser.set_defaults(repeats=5)
    args = parser.parse_args()
    parts = choose(parser, args.parts, PARTS, "--parts")
    cores = lxs.num_threads()
    report = Report("Batched solves: loop vs vmap, 1 and all threads", args.quick, echo=True)
    makers = {"sweep": sweep_study, "cantilever": cantilever_study}
    makers["independent"] = independent_study
    rows = []
    for part in parts:
        for study in makers[part](args.quick):
            row, _ = measure(study, args.repeats, cores)
            rows.append(row)
            print(" | ".join(row), flush=True)
    header = [
        "batch",
        "items",
        "loop of jitted calls",
        "vmap, 1 thread",
        f"vmap, {cores} threads",
        "vmap / loop",
        f"speed-up 1 -> {cores} threads",
        "model: 16 threads (/ loop)",
        "same bits 1 vs many",
        "vs loop (max rel.)",
    ]
    report.table(
        markdown_table(header, rows),
        f"Medians of {args.repeats} runs in turns (the cache cleared before each run, so "
        "every run factorizes); OPENBLAS_NUM_THREADS=1; cvxopt imported first.",
    )
    report.publish("bench_batched.txt")


if __name__ == "__main__":
    main()
