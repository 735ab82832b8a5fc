"""Benchmark `lineax_sparse.SuperLU` against scipy's SuperLU and `jax.experimental.sparse`.

Measured side by side on a 2D Poisson matrix (512 x 512 grid, n = 262144) and on the real
matrices rajat19 and west0479 from tests/data:

- native: `scipy.sparse.linalg.splu(A)` and `.solve(b)`;
- ours: `lx.linear_solve(SparseOperator, b, solver=lxs.SuperLU())` under `jax.jit`, forward
  and `jax.value_and_grad` with respect to the matrix values and `b`;
- `jax.experimental.sparse.linalg.spsolve` (on CPU in jax 0.10.2 a host callback to
  `scipy.sparse.linalg.spsolve`: a fresh SuperLU factorization per call, three per gradient,
  and no batching rule), in a child process so that a call slower than `--limit` can be
  abandoned;
- 64 right-hand sides: one vmapped call against 64 separate calls.

lineax-sparse caches factorizations by content, so each forward repetition is made to
refactorize in one of two ways, both reported: "cold" clears the cache before the call (the
column ordering is recomputed too, like a fresh `splu`), "new values" scales the matrix values
by 1 + 1e-12 k with a k never used before (the ordering of the pattern is reused, as in an
optimisation loop). Times are medians over the repetitions after one warm-up call (which includes
compilation). The Markdown table goes to stdout and to benchmarks/results/superlu.md.

Part `orderings` (`--part orderings`) compares SuperLU's column orderings: for each matrix,
`splu(A, permc_spec=...)` with COLAMD, MMD_AT_PLUS_A and MMD_ATA (NATURAL is left out: its
fill on a grid is that of a band), called through scipy directly, each ordering in its own
child process that is abandoned after `--limit` seconds (a bad ordering can take many
minutes), medians of `--repeats` calls (default 3) after a warm-up; then the ordering
`SuperLU(ordering="auto")` chooses for the matrix, the previous rule's choice
(MMD_AT_PLUS_A for every structurally symmetric pattern), each as a ratio to the best
ordering, and ours: the jitted `SuperLU()` forward solve, cold (the cache cleared before
each call: ordering, factorization, checks and one solve). Matrices: MAC Stokes saddle
points (n = 4,719, 10,679 and 67,199), circuits (rajat19, west0479), hangGlider_2,
bcsstk13, 2D Poisson 512², the MBB beam 180 × 60 and 3D Poisson 30³. The load average is
printed per matrix. The table goes to benchmarks/results/superlu_orderings.md.

    python benchmarks/bench_superlu.py            # both parts, about 15 minutes
    python benchmarks/bench_superlu.py --quick    # smoke test, a minute or two
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_superlu.py --part orderings
"""

from __future__ import annotations

import dataclasses
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.io
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from jax.experimental import sparse as jsparse
from jax.experimental.sparse.linalg import spsolve

import lineax_sparse as lxs
from common import (
    command_line,
    Failure,
    format_result,
    isolated_result,
    markdown_table,
    Phases,
    Report,
    Result,
    results_table,
    Step,
    time_call,
    time_interleaved,
    time_isolated,
    Timing,
)
from problems import elasticity2d, poisson_2d, poisson_3d


jax.config.update("jax_enable_x64", True)

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "data"
BATCH = 64


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    matrix: sp.csc_matrix
    repeats: int


def read_matrix(name: str) -> sp.csc_matrix:
    return sp.csc_matrix(scipy.io.mmread(DATA_DIR / f"{name}.mtx"), dtype=np.float64)


def loss(data, b, indices, size):
    operator = lxs.SparseOperator(jsparse.BCOO((data, indices), shape=(size, size)))
    x = lx.linear_solve(operator, b, solver=lxs.SuperLU()).value
    return jnp.sum(x**2)


@jax.jit
def ours_solve(operator, b):
    return lx.linear_solve(operator, b, solver=lxs.SuperLU()).value


def solve_with_state(operator, state, b):
    return lx.linear_solve(operator, b, solver=lxs.SuperLU(), state=state).value


ours_solve_with_state = jax.jit(solve_with_state)
ours_solve_batch = jax.jit(jax.vmap(solve_with_state, in_axes=(None, None, 0)))
ours_value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=3)


def spsolve_loss(data, b, indices, indptr):
    return jnp.sum(spsolve(data, indices, indptr, b) ** 2)


def spsolve_steps(csr: sp.csr_matrix, b: np.ndarray, batch: np.ndarray):
    """The `jax.experimental.sparse` measurements; runs in a child process."""
    args = [jnp.asarray(a) for a in (csr.data, csr.indices, csr.indptr)]
    b, batch = jnp.asarray(b), jnp.asarray(batch)
    forward = jax.jit(spsolve)
    value_and_grad = jax.jit(jax.value_and_grad(spsolve_loss, argnums=(0, 1)))
    vmapped = jax.jit(jax.vmap(spsolve, in_axes=(None, None, None, 0)))
    return {
        "forward": lambda: forward(*args, b),
        "value_and_grad": lambda: value_and_grad(args[0], b, args[1], args[2]),
        "vmap": lambda: vmapped(*args, batch),
    }


def time_native_split(matrix: sp.csc_matrix, b: np.ndarray, repeats: int) -> dict[str, Timing]:
    """`splu` and `solve` timed separately within each call."""
    phases = Phases()

    def call():
        start = time.perf_counter()
        lu = spla.splu(matrix)
        factored = time.perf_counter()
        lu.solve(b)
        phases.record("native factor", factored - start)
        phases.record("native solve", time.perf_counter() - factored)

    time_call(call, repeats)
    return phases.timings()


def perturbed(operator: lxs.SparseOperator, scales) -> list[lxs.SparseOperator]:
    """Copies of `operator` with values scaled by (1 + 1e-12 s): each one refactorizes."""
    copies = []
    for scale in scales:
        data = operator.data * (1 + 1e-12 * scale)
        copies.append(
            lxs.SparseOperator(jsparse.BCOO((data, operator.indices), shape=(operator.size,) * 2))
        )
    return jax.block_until_ready(copies)


def run_problem(problem: Problem, limit: float) -> dict[str, Result]:
    matrix, repeats = problem.matrix, problem.repeats
    n = matrix.shape[0]
    rng = np.random.default_rng(0)
    b_host = rng.standard_normal(n)
    batch_host = rng.standard_normal((BATCH, n))
    operator = lxs.SparseOperator.from_scipy(matrix)
    indices, size = operator.indices, operator.size
    b = jnp.asarray(b_host)
    results: dict[str, Result] = dict(time_native_split(matrix, b_host, repeats))

    # Every repetition must factorize. "cold" steps clear the cache first; "new" steps get
    # values never factorized before (odd scales for forward, even ones for the gradient),
    # and follow a cold step that left the pattern's ordering in the cache.
    forward_copies = iter(perturbed(operator, range(1, 2 * repeats + 3, 2)))
    grad_copies = iter(perturbed(operator, range(2, 2 * repeats + 4, 2)))
    forward = time_interleaved(
        {
            "native total": Step(lambda: spla.splu(matrix).solve(b_host)),
            "ours forward cold": Step(lambda: ours_solve(operator, b), lxs.clear_cache),
            "ours forward new": Step(lambda: ours_solve(next(forward_copies), b)),
            "ours grad cold": Step(
                lambda: ours_value_and_grad(operator.data, b, indices, size), lxs.clear_cache
            ),
            "ours grad new": Step(
                lambda: ours_value_and_grad(next(grad_copies).data, b, indices, size)
            ),
        },
        repeats,
    )
    results.update(forward)
    results["ours first call"] = Timing.once(forward["ours forward cold"].first)

    # Solve cost only: our two variants get the factorization through `state=` (made once,
    # here), so neither refactorizes nor even asks for a factorization. Without `state=`,
    # each of the 64 calls would also run `init`, which the content cache answers with a hit
    # after hashing the matrix values: a per-call overhead the single vmapped call pays once.
    lxs.clear_cache()
    state = lxs.SuperLU().init(operator, {})
    lu = spla.splu(matrix)
    columns = np.asfortranarray(batch_host.T)  # SuperLU's layout for several right-hand sides
    batch = jnp.asarray(batch_host)
    rows = list(batch)
    batched = time_interleaved(
        {
            "ours vmap": Step(lambda: ours_solve_batch(operator, state, batch)),
            "ours loop": Step(
                lambda: [ours_solve_with_state(operator, state, row) for row in rows]
            ),
            "native block": Step(lambda: lu.solve(columns)),
            "native loop": Step(lambda: [lu.solve(row) for row in batch_host]),
        },
        repeats,
    )
    results.update(batched)
    info = lxs.cache_info()
    if info.factorizations != 1 or info.misses != 0:
        raise RuntimeError(f"the 64-right-hand-side runs refactorized: {info}")

    csr = matrix.tocsr()
    csr.sort_indices()
    spsolve_results = time_isolated(spsolve_steps, (csr, b_host, batch_host), repeats, limit)
    for step in ("forward", "value_and_grad", "vmap"):
        results[f"spsolve {step}"] = isolated_result(spsolve_results, step)
    return results


ROWS = [
    ("native `splu` + `solve`", "native total"),
    ("native `splu` (factor only)", "native factor"),
    ("native `solve` (1 rhs)", "native solve"),
    ("ours forward, cold (cache cleared)", "ours forward cold"),
    ("ours forward, new values (ordering reused)", "ours forward new"),
    ("ours forward, first call (compile + cold)", "ours first call"),
    ("`jax.experimental.sparse` `spsolve` forward", "spsolve forward"),
    ("ours `value_and_grad`, cold", "ours grad cold"),
    ("ours `value_and_grad`, new values", "ours grad new"),
    ("`spsolve` `value_and_grad`", "spsolve value_and_grad"),
    (f"ours vmap over {BATCH} rhs (one call)", "ours vmap"),
    (f"ours {BATCH} separate calls", "ours loop"),
    (f"`spsolve` vmap over {BATCH} rhs", "spsolve vmap"),
    (f"native `solve` of an (n, {BATCH}) block", "native block"),
    (f"native {BATCH} separate `solve`s", "native loop"),
]

RATIOS = [
    (
        "**ours / native forward, cold** (target ≤ 1.05 at n ≈ 250k)",
        "ours forward cold",
        "native total",
    ),
    ("ours / native forward, new values", "ours forward new", "native total"),
    ("`spsolve` / native forward", "spsolve forward", "native total"),
    ("**`value_and_grad` / forward, cold** (target ≤ 1.3)", "ours grad cold", "ours forward cold"),
    ("`value_and_grad` / forward, new values", "ours grad new", "ours forward new"),
    ("`spsolve` `value_and_grad` / forward", "spsolve value_and_grad", "spsolve forward"),
    (f"**ours vmap{BATCH} / {BATCH} separate** (target ≤ 0.1)", "ours vmap", "ours loop"),
    (f"native block / {BATCH} separate", "native block", "native loop"),
]


def main_part(args) -> None:
    limit = args.limit or 60.0
    grid = args.grid or (128 if args.quick else 512)
    big_repeats = args.repeats or (3 if args.quick else 5)
    small_repeats = args.repeats or (5 if args.quick else 20)
    problems = [
        Problem(f"Poisson {grid}²", poisson_2d(grid), big_repeats),
        Problem("rajat19", read_matrix("rajat19"), small_repeats),
        Problem("west0479", read_matrix("west0479"), small_repeats),
    ]
    report = Report("SuperLU benchmark", args.quick)
    all_results = []
    for problem in problems:
        print(f"running {problem.name} (n={problem.matrix.shape[0]}) ...", flush=True)
        all_results.append(run_problem(problem, limit))
    facts = [
        ["n"] + [f"{problem.matrix.shape[0]:,}" for problem in problems],
        ["nnz"] + [f"{problem.matrix.nnz:,}" for problem in problems],
        ["repetitions"] + [str(problem.repeats) for problem in problems],
    ]
    names = [problem.name for problem in problems]
    report.table(results_table(names, all_results, facts, ROWS, ratios=RATIOS))
    report.add(
        "Forward = factorization + one solve. Ours refactorizes in every repetition: "
        "'cold' clears the cache first, 'new values' scales the values by a new 1 + 1e-12 k. "
        f"The {BATCH}-rhs rows reuse one factorization passed as `state=`."
    )
    report.publish("superlu.md")


# --- Part `orderings`: SuperLU's column orderings, and the one "auto" chooses.

ORDERINGS = ("COLAMD", "MMD_AT_PLUS_A", "MMD_ATA")


def stokes_2d(cells: int) -> sp.csc_matrix:
    """MAC Stokes on the unit square with `cells`² cells: `[[L, D^T], [D, 0]]`, the
    5-point negative Laplacian of each velocity component on its interior faces, the cell
    divergence, a zero pressure block, the last pressure pinned (removed); n = 2 c (c - 1) +
    c² - 1. The same matrix as `stokes2d` in tests/test_superlu.py."""
    h = 1.0 / cells

    def laplacian(nx: int, ny: int):
        tx = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(nx, nx))
        ty = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(ny, ny))
        return (sp.kron(sp.eye_array(ny), tx) + sp.kron(ty, sp.eye_array(nx))) / h**2

    difference = sp.diags_array([1.0, -1.0], offsets=[0, -1], shape=(cells, cells - 1)) / h
    divergence = sp.hstack(
        [sp.kron(sp.eye_array(cells), difference), sp.kron(difference, sp.eye_array(cells))]
    )
    velocity = sp.block_diag([laplacian(cells - 1, cells), laplacian(cells, cells - 1)])
    saddle = sp.block_array([[velocity, divergence.T], [divergence, None]]).tocsc()
    keep = saddle.shape[0] - 1
    return sp.csc_matrix(saddle[:keep, :keep])


def mbb(nelx: int, nely: int) -> sp.csc_matrix:
    return sp.csc_matrix(elasticity2d(nelx, nely))


def ordering_problems(quick: bool) -> list[tuple[str, Any]]:
    """(name, builder) of the part's matrices, built one at a time."""
    stokes = (20, 30) if quick else (40, 60, 150)
    problems: list[tuple[str, Any]] = [(f"Stokes {c}²", partial(stokes_2d, c)) for c in stokes]
    problems += [(name, partial(read_matrix, name)) for name in ("rajat19", "west0479")]
    problems += [(name, partial(read_matrix, name)) for name in ("hangGlider_2", "bcsstk13")]
    grid, (nelx, nely), cube = (128, (60, 20), 12) if quick else (512, (180, 60), 30)
    problems += [
        (f"Poisson {grid}²", partial(poisson_2d, grid)),
        (f"MBB {nelx} × {nely}", partial(mbb, nelx, nely)),
        (f"Poisson {cube}³", partial(poisson_3d, cube)),
    ]
    return problems


def factor_steps(matrix: sp.csc_matrix, ordering: str) -> dict[str, Any]:
    """`splu` with one ordering; runs in a child process (`time_isolated`)."""
    return {"splu": lambda: spla.splu(matrix, permc_spec=ordering)}


def auto_choice(matrix: sp.csc_matrix) -> tuple[str, str]:
    """(what `ordering="auto"` chooses for `matrix`, what the previous rule chose)."""
    from lineax_sparse.backends.numerics import column_maxima
    from lineax_sparse.backends.superlu.backend import auto_ordering

    structure = sp.csc_matrix((np.ones(matrix.nnz), matrix.indices, matrix.indptr), matrix.shape)
    symmetric = (structure != structure.T).nnz == 0
    chosen = auto_ordering(symmetric, matrix, column_maxima(matrix), 1.0)
    return chosen, "MMD_AT_PLUS_A" if symmetric else "COLAMD"


def run_orderings(matrix: sp.csc_matrix, repeats: int, limit: float) -> dict[str, Any]:
    row: dict[str, Any] = {"load": os.getloadavg()[0]}
    for ordering in ORDERINGS:
        result = time_isolated(factor_steps, (matrix, ordering), repeats, limit)
        row[ordering] = isolated_result(result, "splu")
    row["auto"], row["previous"] = auto_choice(matrix)
    if isinstance(row[row["auto"]], Timing):  # ours takes the same route: it will finish
        operator = lxs.SparseOperator.from_scipy(matrix)
        b = jnp.asarray(np.random.default_rng(0).standard_normal(matrix.shape[0]))
        row["ours"] = time_call(lambda: ours_solve(operator, b), repeats, lxs.clear_cache)
    row["load after"] = os.getloadavg()[0]
    return row


def orderings_table(rows: dict[str, tuple[sp.csc_matrix, dict[str, Any]]]) -> str:
    def ratio(result: Any, best: float | None) -> str:
        if isinstance(result, Timing) and best:
            return f"{result.median / best:.2f}"
        if isinstance(result, Failure) and best and "abandoned" in result.reason:
            limit = float(result.reason.split()[1])
            return f"> {limit / best:.0f}"
        return "–"

    header = ["matrix", "n", "nnz", *ORDERINGS, "auto", "auto / best", "previous / best"]
    header += ["ours `SuperLU()` cold / best", "load"]
    table = []
    for name, (matrix, row) in rows.items():
        times = [row[o].median for o in ORDERINGS if isinstance(row[o], Timing)]
        best = min(times) if times else None
        cells = [name, f"{matrix.shape[0]:,}", f"{matrix.nnz:,}"]
        cells += [f"{format_result(row[o])} ({ratio(row[o], best)})" for o in ORDERINGS]
        cells += [row["auto"], ratio(row[row["auto"]], best)]
        cells += [f"{ratio(row[row['previous']], best)} ({row['previous']})"]
        cells += [ratio(row.get("ours"), best), f"{row['load']:.1f}-{row['load after']:.1f}"]
        table.append(cells)
    return markdown_table(header, table)


def orderings_part(quick: bool, repeats: int | None, limit: float) -> None:
    report = Report("SuperLU orderings", quick)
    repeats = repeats or (2 if quick else 3)
    rows = {}
    for name, build in ordering_problems(quick):
        matrix = build()
        print(f"running {name} (n={matrix.shape[0]}) ...", flush=True)
        rows[name] = (matrix, run_orderings(matrix, repeats, limit))
    report.table(orderings_table(rows))
    report.add(
        "`splu` alone (factorization, ordering included), medians of "
        f"{repeats} calls after a warm-up, each ordering in its own process abandoned "
        f"after {limit:.0f} s; in parentheses the ratio to the best ordering. 'auto' is "
        "what `SuperLU()` chooses for the matrix; 'previous' what it chose before "
        "(MMD_AT_PLUS_A for every structurally symmetric pattern). Ours: jitted "
        "`SuperLU()` forward (factorization + one solve + checks), cache cleared before "
        "each call. Load: the 1-minute load average before and after the matrix."
    )
    report.publish("superlu_orderings.md")


def main() -> None:
    parser = command_line(
        __doc__,
        quick="small sizes, few repetitions",
        repeats="timed repetitions for every problem",
        limit="seconds after which spsolve (default 60), or an ordering (default 120), is "
        "abandoned",
    )
    parser.add_argument("--grid", type=int, help="Poisson grid side (default 512, quick 128)")
    parser.add_argument(
        "--part", choices=("all", "main", "orderings"), default="all", help="what to run"
    )
    args = parser.parse_args()
    if args.part in ("all", "main"):
        main_part(args)
    if args.part in ("all", "orderings"):
        orderings_part(args.quick, args.repeats, args.limit or 120.0)


if __name__ == "__main__":
    main()
