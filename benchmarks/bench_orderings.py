"""Benchmark CHOLMOD's fill-reducing orderings: AMD against METIS nested dissection.

For each matrix and each ordering, as `lineax_sparse.Cholmod` runs them (the backend's own
ordering code, then cvxopt's CHOLMOD with the backend's options: `nmethods=1`, postorder,
`mode="auto"`):

- the ordering, once per pattern in `analyse` (AMD: `cvxopt.amd.order`; nested dissection:
  the symmetric graph of the pattern and `pymetis.nested_dissection`);
- `cholmod.symbolic(A, p=p)`, also once per pattern;
- the size of the factor: nnz(L) (CHOLMOD's stored entries, supernodal blocks included)
  and its bytes (`factor_bytes`, what the cache counts);
- `cholmod.numeric`, refactorizing one factor object in place (an optimisation loop's
  steady state), and one `cholmod.solve` with one right-hand side.

Matrices: 2D Poisson (5-point, 512²), the MBB half-beam (Q4 plane stress, 180 × 60), 3D
Poisson (7-point, 64³) and the cantilever of examples/topology_optimization_3d.py (trilinear
hexahedra, 3 dofs per node, 30 × 15 × 15 and 48 × 24 × 24), all with unit values (densities
1). The two orderings take turns within each repetition (medians over the repetitions after
one warm-up), so that a drifting load weighs on both alike. BLAS runs on one thread
(`OPENBLAS_NUM_THREADS=1`, set before any import), as the backend runs it. The Markdown
table goes to stdout and to benchmarks/results/orderings.md.

    python benchmarks/bench_orderings.py            # full run, about 4 minutes
    python benchmarks/bench_orderings.py --quick    # small sizes, about 10 s
    python benchmarks/bench_orderings.py --problems hex48 --repeats 3
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable

from common import (
    choose,
    command_line,
    markdown_table,
    pin_blas_threads,
    Report,
    ROOT,
    Step,
    time_interleaved,
    Timing,
)


pin_blas_threads()  # before numpy and cvxopt load their BLAS

import cvxopt  # noqa: E402, I001  (first: it decides which BLAS CHOLMOD uses)
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from cvxopt import cholmod  # noqa: E402

from lineax_sparse.backends.cholmod import Backend as CholmodBackend  # noqa: E402
from lineax_sparse.backends.cholmod.capsule import (  # noqa: E402
    column_counts,
    factor_bytes,
    factor_entries,
)
from lineax_sparse.backends.cholmod.ordering import (  # noqa: E402
    AMD_FILL_RATIO,
    AMD_FLOPS_PER_ENTRY,
    choose_ordering,
    fill_reducing_ordering,
)
from problems import elasticity2d, poisson_2d, poisson_3d  # noqa: E402


sys.path.insert(0, str(ROOT / "examples"))


ORDERINGS = ("amd", "nested_dissection")
SHORT = {"amd": "AMD", "nested_dissection": "ND"}


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    build: Callable[[], sp.csc_matrix]
    repeats: int


def mbb(nelx: int, nely: int) -> sp.csc_matrix:
    return sp.csc_matrix(elasticity2d(nelx, nely))


def cantilever(nelx: int, nely: int, nelz: int) -> sp.csc_matrix:
    """The stiffness of examples/topology_optimization_3d.py's cantilever, densities 1."""
    from topology_optimization_3d import cantilever_problem, element_stiffness

    problem, _ = cantilever_problem(nelx, nely, nelz, rmin=1.5)
    indices = problem.indices
    values = np.tile(element_stiffness().reshape(-1), nelx * nely * nelz)
    values = values[np.asarray(problem.keep)]
    n = problem.size
    return sp.csc_matrix(sp.coo_matrix((values, (indices[:, 0], indices[:, 1])), shape=(n, n)))


# key: (name, builder, quick size, full size, quick repetitions, full repetitions)
PROBLEMS = {
    "poisson2d": ("Poisson 2D {}²", poisson_2d, (128,), (512,), 3, 5),
    "mbb": ("MBB {}×{} Q4", mbb, (60, 20), (180, 60), 5, 9),
    "poisson3d": ("Poisson 3D {}³", poisson_3d, (24,), (64,), 3, 2),
    "hex30": ("cantilever {}×{}×{} H8", cantilever, (12, 6, 6), (30, 15, 15), 3, 5),
    "hex48": ("cantilever {}×{}×{} H8", cantilever, (20, 10, 10), (48, 24, 24), 3, 2),
}


def problems(quick: bool, repeats: int | None) -> dict[str, Problem]:
    chosen = {}
    for key, (name, build, small, large, few, many) in PROBLEMS.items():
        size = small if quick else large
        count = repeats or (few if quick else many)
        chosen[key] = Problem(name.format(*size), functools.partial(build, *size), count)
    return chosen


def lower_triangle(matrix: sp.csc_matrix):
    """`(template, rows, cols)`: the lower triangle as a `cvxopt.spmatrix`, and its indices."""
    lower = sp.tril(matrix, format="csc")
    lower.sort_indices()
    coo = lower.tocoo()
    rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
    template = cvxopt.spmatrix(
        cvxopt.matrix(coo.data),
        cvxopt.matrix(rows, tc="i"),
        cvxopt.matrix(cols, tc="i"),
        matrix.shape,
    )
    return template, rows, cols


def measure(problem: Problem) -> dict:
    matrix = problem.build()
    matrix.sum_duplicates()
    n = matrix.shape[0]
    template, rows, cols = lower_triangle(matrix)
    backend = CholmodBackend("auto", "LL", "amd")  # for its CHOLMOD options
    b = np.random.default_rng(0).standard_normal(n)

    orderings = {}
    timings = time_interleaved(
        {
            kind: Step(
                lambda kind=kind: orderings.__setitem__(
                    kind, fill_reducing_ordering(kind, template, rows, cols)
                )
            )
            for kind in ORDERINGS
        },
        problem.repeats,
    )
    results = {kind: {"ordering": timings[kind]} for kind in ORDERINGS}

    factors = {}
    for kind in ORDERINGS:
        with backend._options():
            start = time.perf_counter()
            factors[kind] = cholmod.symbolic(template, p=orderings[kind])
            seconds = time.perf_counter() - start
        results[kind]["symbolic"] = Timing.once(seconds)
        if kind == "amd":  # the statistics `"auto"` decides by (a symbolic factor's)
            counts = column_counts(factors[kind], n)

    def numeric(kind):
        with backend._options():
            cholmod.numeric(template, factors[kind])

    rhs = {}

    def solve(kind):
        with backend._options():
            cholmod.solve(factors[kind], rhs[kind])

    def fresh_rhs(kind):
        rhs[kind] = cvxopt.matrix(b)  # `solve` overwrites its argument

    timings = time_interleaved(
        {kind: Step(lambda kind=kind: numeric(kind)) for kind in ORDERINGS}, problem.repeats
    )
    for kind in ORDERINGS:
        results[kind]["numeric"] = timings[kind]
    timings = time_interleaved(
        {
            kind: Step(lambda kind=kind: solve(kind), lambda kind=kind: fresh_rhs(kind))
            for kind in ORDERINGS
        },
        problem.repeats,
    )
    for kind in ORDERINGS:
        results[kind]["solve"] = timings[kind]
        x = np.asarray(rhs[kind]).ravel()
        residual = np.linalg.norm(matrix @ x - b) / np.linalg.norm(b)
        if not residual < 1e-8:
            raise RuntimeError(f"{problem.name}, {kind}: relative residual {residual:.1e}")
        results[kind]["nnz(L)"] = factor_entries(factors[kind], n, "d")
        results[kind]["bytes"] = factor_bytes(factors[kind], n, "d")
    factors.clear()

    # What `ordering="auto"` pays in `analyse` and what it picks (its symbolic factor is
    # then refactorized by the first factorization, so "amd" pays its symbolic too).
    picks = []

    def auto_order():  # as `analyse` calls it, with the backend's CHOLMOD options
        settings = backend._cholmod_options
        picks.append(choose_ordering("auto", template, rows, cols, settings)[1])

    def amd_order():
        order = fill_reducing_ordering("amd", template, rows, cols)
        with backend._options():
            cholmod.symbolic(template, p=order)

    timings = time_interleaved(
        {"auto": Step(auto_order), "amd": Step(amd_order)}, min(problem.repeats, 3)
    )
    entries = float(counts.sum()) if counts is not None else float("nan")
    flops = float(np.square(counts, dtype=np.float64).sum()) if counts is not None else 0.0
    return {
        "n": n,
        "nnz": matrix.nnz,
        "degree": (matrix.nnz - n) / n,
        "auto": picks[-1],
        "auto analyse": timings["auto"],
        "amd analyse": timings["amd"],
        "flops per entry": flops / entries,
        "fill ratio": entries / (np.count_nonzero(rows > cols) + n),
        "results": results,
        "load": os.getloadavg()[0],
    }


def ms(timing: Timing) -> str:
    return f"{timing.median * 1e3:,.1f}"


def ratio(results: dict, key: str) -> str:
    nd, amd = results["nested_dissection"][key], results["amd"][key]
    if isinstance(nd, Timing):
        nd, amd = nd.median, amd.median
    return f"**{nd / amd:.2f}**" if key == "numeric" else f"{nd / amd:.2f}"


def orderings_table(measured: dict[str, dict]) -> str:
    header = [
        "matrix",
        "n",
        "avg. degree",
        "ordering",
        "ordering ms",
        "symbolic ms",
        "nnz(L)",
        "factor MB",
        "numeric ms",
        "solve ms",
        "load",
    ]
    rows = []
    for name, entry in measured.items():
        results = entry["results"]
        for kind in ORDERINGS:
            r = results[kind]
            rows.append(
                [
                    name,
                    f"{entry['n']:,}",
                    f"{entry['degree']:.1f}",
                    SHORT[kind] + (" ← auto" if entry["auto"] == kind else ""),
                    ms(r["ordering"]),
                    ms(r["symbolic"]),
                    f"{r['nnz(L)'] / 1e6:.2f}M",
                    f"{r['bytes'] / 2**20:,.0f}",
                    ms(r["numeric"]),
                    ms(r["solve"]),
                    f"{entry['load']:.2f}",
                ]
            )
        rows.append(
            [
                name,
                "",
                "",
                "ND / AMD",
                ratio(results, "ordering"),
                ratio(results, "symbolic"),
                ratio(results, "nnz(L)"),
                ratio(results, "bytes"),
                ratio(results, "numeric"),
                ratio(results, "solve"),
                "",
            ]
        )
    return markdown_table(header, rows)


def auto_table(measured: dict[str, dict]) -> str:
    header = [
        "matrix",
        "AMD: fl / nnz(L)",
        "AMD: nnz(L) / nnz(tril A)",
        "`auto` picks",
        "`auto` ordering + symbolic ms",
        "`amd` ordering + symbolic ms",
        "load",
    ]
    rows = [
        [
            name,
            f"{entry['flops per entry']:,.0f}",
            f"{entry['fill ratio']:.1f}",
            SHORT[entry["auto"]],
            ms(entry["auto analyse"]),
            ms(entry["amd analyse"]),
            f"{entry['load']:.2f}",
        ]
        for name, entry in measured.items()
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = command_line(
        __doc__, quick="small sizes, few repetitions", repeats="timed repetitions of every step"
    )
    parser.add_argument(
        "--problems",
        default="poisson2d,mbb,poisson3d,hex30,hex48",
        help="comma-separated subset of poisson2d,mbb,poisson3d,hex30,hex48 (default all)",
    )
    args = parser.parse_args()
    available = problems(args.quick, args.repeats)
    chosen = choose(parser, args.problems, list(available), "--problems")

    report = Report("CHOLMOD orderings benchmark", args.quick, echo=True)
    measured = {}
    for key in chosen:
        problem = available[key]
        print(f"running {problem.name} (load {os.getloadavg()[0]:.2f}) ...", flush=True)
        measured[problem.name] = measure(problem)

    report.table(orderings_table(measured))
    report.table(auto_table(measured))
    report.add(
        "Medians over the repetitions after one warm-up (symbolic: one call). "
        "ordering = what `analyse` pays once per pattern; numeric = refactorization of "
        "one factor object in place; solve = one right-hand side. nnz(L) counts the "
        "supernodal blocks as CHOLMOD stores them. `load` = 1-minute load average after "
        'the matrix\'s measurements; `← auto` marks what `ordering="auto"` chooses. '
        f"`auto` tries nested dissection when AMD's factor costs ≥ {AMD_FLOPS_PER_ENTRY} "
        f"flops per entry (fl = Σ c_j², c_j the column counts) and fills ≥ "
        f"{AMD_FILL_RATIO}× the lower triangle, and keeps the sparser factor; its "
        "ordering time includes the symbolic analyses it decides by, which the first "
        "factorization reuses."
    )
    report.publish("orderings.md")


if __name__ == "__main__":
    main()
