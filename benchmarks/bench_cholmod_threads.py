"""CHOLMOD through ctypes against cvxopt's calls: threads, shared symbolic analysis, blocks.

Three studies, each timed in turns within this process (medians; the load average is
printed under every table):

- threads: a numeric factorization and a one-column solve (the native calls alone, and
  the backend's `factor` + `solve` with every check) of a 2D Poisson matrix, 2k times on
  one thread against k times on each of two threads at once, each thread with its own
  matrix and factor. The ratio two threads / one is about 0.5 when the calls run side by
  side, about 1 when they hold the GIL (cvxopt's `numeric` and `solve`).
- symbolic: what a new factor object costs on the 3D cantilever of the topology example
  (30 x 15 x 15 elements): a `cholmod.symbolic(A, p=ordering)` per factor (cvxopt's path)
  against a copy of the pattern's one symbolic factor (`cholmod_l_copy_factor`), alone and
  followed by the numeric factorization.
- block: 64 right-hand sides of a 2D Poisson 512^2 with one factorization: `jax.vmap` over
  `lx.linear_solve(op, b, lxs.Cholmod(), state=...)` under `jax.jit` (one host call, every
  check), the backend's checked `solve` of the block (no jax), the native block solve
  through ctypes alone, and cvxopt's `cholmod.solve` of the block (one column at a time).

    python benchmarks/bench_cholmod_threads.py [--quick] [--repeats N] [--studies ...]
"""

from __future__ import annotations

from common import (
    choose,
    command_line,
    format_seconds,
    pin_blas_threads,
    Report,
    Step,
    time_interleaved,
)
from common.timing import threads_at_once


pin_blas_threads()

import threading  # noqa: E402

import cvxopt  # noqa: E402, I001  (first: it decides the BLAS of the CHOLMOD it loads)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from cvxopt import cholmod  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from lineax_sparse.backends.cholmod import engines, native  # noqa: E402
from lineax_sparse.backends.cholmod.backend import CholmodBackend  # noqa: E402
from lineax_sparse.backends.cholmod.capsule import capsule_address  # noqa: E402
from lineax_sparse.backends.pattern import Pattern  # noqa: E402
from problems import poisson_2d  # noqa: E402
from top3d_native import Cantilever, element_stiffness  # noqa: E402


jax.config.update("jax_enable_x64", True)
STUDIES = ("threads", "symbolic", "block")


def _pattern(matrix: sp.csc_matrix) -> Pattern:
    n = matrix.shape[0]
    columns = np.repeat(np.arange(n), np.diff(matrix.indptr))
    return Pattern(n, np.stack([matrix.indices, columns], axis=1).astype(np.int32))


def _csc(matrix) -> sp.csc_matrix:
    matrix = sp.csc_matrix(matrix)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _backend(engine, matrix):
    """A supernodal `CholmodBackend` on `engine` (NATIVE or CVXOPT) and its analysis."""
    backend = CholmodBackend("auto", "LL", "amd")
    backend._engine, backend.parallel = engine, engine is engines.NATIVE
    pattern = _pattern(matrix)
    return backend, pattern, backend.analyse(pattern)


def _twice(call):
    return lambda: (call(), call())


def threads_study(report: Report, grid: int, calls: int, repeats: int) -> None:
    matrix = _csc(poisson_2d(grid))
    rng = np.random.default_rng(0)

    def maker(engine, checked: bool):
        """make() -> a numeric factorization + one-column solve with its own matrix."""

        def make():
            backend, pattern, analysis = _backend(engine, matrix)
            a = _csc(matrix * (1.0 + rng.uniform()))
            values = np.ascontiguousarray(a.data[analysis.lower])
            rhs = np.ones((a.shape[0], 1))
            options = backend._cholmod_options
            if checked:
                return lambda: backend.solve(
                    backend.factor(pattern, analysis, a, None), rhs, False, False, None
                )
            obj = engine.fresh(analysis, "d", values, options)

            def call():
                engine.numeric(obj, analysis, "d", values, options)
                return engine.solve(obj, "d", rhs, options)

            return call

        return make

    rows = [
        "| numeric + solve | one thread, 2k calls | two threads, k each | two / one |",
        "|---|---|---|---|",
    ]
    variants = {
        "cvxopt (`cholmod.numeric` + `.solve`)": maker(engines.CVXOPT, False),
        "ctypes (`cholmod_l_factorize` + `_solve2`)": maker(engines.NATIVE, False),
        "backend `factor` + `solve`, ctypes (all checks)": maker(engines.NATIVE, True),
    }
    for name, make in variants.items():
        one, two = make(), make()
        timings = time_interleaved(
            {
                "one": Step(threads_at_once([_twice(one)], calls)),
                "two": Step(threads_at_once([one, two], calls)),
            },
            repeats,
            alternate=True,
        )
        ratio = timings["two"].median / timings["one"].median
        rows.append(
            f"| {name} | {format_seconds(timings['one'].median)} | "
            f"{format_seconds(timings['two'].median)} | {ratio:.2f} |"
        )
    report.table(
        "\n".join(rows),
        f"Threads: Poisson {grid}^2 (n = {grid * grid}), k = {calls}, medians of {repeats}, "
        f"one BLAS thread, {threading.active_count()} Python thread(s) before the runs:",
        echo=True,
    )


def cantilever(nelx: int, nely: int, nelz: int) -> sp.csc_matrix:
    """The stiffness matrix of the topology example's cantilever at random densities."""
    mesh = Cantilever.build(nelx, nely, nelz)
    density = np.random.default_rng(1).uniform(0.2, 1.0, nelx * nely * nelz)
    values = (density[:, None] * element_stiffness().reshape(1, -1)).reshape(-1)
    kept = (mesh.rows >= 0) & (mesh.cols >= 0)
    return _csc(
        sp.coo_matrix((values[kept], (mesh.rows[kept], mesh.cols[kept])), shape=(mesh.n, mesh.n))
    )


def symbolic_study(report: Report, size: tuple[int, int, int], repeats: int) -> None:
    matrix = cantilever(*size)
    backend, pattern, analysis = _backend(engines.NATIVE, matrix)
    options, n = backend._cholmod_options, matrix.shape[0]
    values = np.ascontiguousarray(matrix.data[analysis.lower])
    template = analysis.template("d", values)
    made: list = []  # kept until the turn ends, so that frees are not timed

    def symbolic():
        with backend._options():
            made.append(cholmod.symbolic(template, p=analysis.ordering))

    def copy():
        made.append(native.copy(capsule_address(analysis.symbolic), n))

    def symbolic_numeric():
        symbolic()
        engines.CVXOPT.numeric(made[-1], analysis, "d", values, options)

    def copy_numeric():
        copy()
        engines.NATIVE.numeric(made[-1], analysis, "d", values, options)

    timings = time_interleaved(
        {
            "symbolic": Step(symbolic, made.clear),
            "copy": Step(copy, made.clear),
            "symbolic + numeric": Step(symbolic_numeric, made.clear),
            "copy + numeric": Step(copy_numeric, made.clear),
        },
        repeats,
        alternate=True,
    )
    t = {name: timing.median for name, timing in timings.items()}
    rows = [
        "| per factor object | cvxopt `symbolic(A, p=...)` | copy of one symbolic | ratio |",
        "|---|---|---|---|",
        f"| new factor object | {format_seconds(t['symbolic'])} | {format_seconds(t['copy'])} "
        f"| {t['copy'] / t['symbolic']:.3f} |",
        f"| new object + numeric | {format_seconds(t['symbolic + numeric'])} | "
        f"{format_seconds(t['copy + numeric'])} | "
        f"{t['copy + numeric'] / t['symbolic + numeric']:.2f} |",
    ]
    report.table(
        "\n".join(rows),
        f"Symbolic: 3D cantilever {size[0]} x {size[1]} x {size[2]} (n = {n}, "
        f"{analysis.ordering_kind} ordering), medians of {repeats}:",
        echo=True,
    )


def block_study(report: Report, grid: int, columns: int, repeats: int) -> None:
    matrix = _csc(poisson_2d(grid))
    n = matrix.shape[0]
    rhs = np.random.default_rng(1).standard_normal((columns, n))
    operator = lxs.SparseOperator.from_scipy(matrix, tags=lx.positive_semidefinite_tag)
    lxs.clear_cache()
    state = lxs.Cholmod().init(operator, {})

    @jax.jit
    @jax.vmap
    def vmapped(b):
        return lx.linear_solve(operator, b, solver=lxs.Cholmod(), state=state).value

    batch = jnp.asarray(rhs)
    backend, pattern, analysis = _backend(engines.NATIVE, matrix)
    factor = backend.factor(pattern, analysis, matrix, None)
    reference, _, reference_analysis = _backend(engines.CVXOPT, matrix)
    cvxopt_factor = reference.factor(pattern, reference_analysis, matrix, None)
    block = np.asfortranarray(rhs.T)
    work: dict = {}

    def fresh_copy():  # cvxopt's `solve` overwrites its argument: a copy, untimed
        work["block"] = cvxopt.matrix(block)

    timings = time_interleaved(
        {
            "vmapped": Step(lambda: vmapped(batch)),
            "backend": Step(lambda: backend.solve(factor, block, False, False, None)),
            "native": Step(
                lambda: native.solve(factor.native, block, "d", backend._cholmod_options)
            ),
            "cvxopt": Step(lambda: cholmod.solve(cvxopt_factor.native, work["block"]), fresh_copy),
        },
        repeats,
        alternate=True,
    )
    info = lxs.cache_info()
    if info.factorizations != 1 or info.misses != 0:
        raise RuntimeError(f"the vmapped runs refactorized: {info}")
    native_time = timings["native"].median
    rows = ["| 64 right-hand sides | median | / native block |", "|---|---|---|"]
    names = {
        "vmapped": "`jax.vmap` of `lx.linear_solve` under `jit` (ours, all checks)",
        "backend": "backend `solve` of the block (all checks, no jax)",
        "native": "native block solve (ctypes `cholmod_l_solve2`, groups of 16)",
        "cvxopt": "cvxopt `cholmod.solve` of the block (column by column)",
    }
    for key, name in names.items():
        median = timings[key].median
        rows.append(f"| {name} | {format_seconds(median)} | {median / native_time:.2f} |")
    report.table(
        "\n".join(rows),
        f"Block: Poisson {grid}^2 (n = {n}), {columns} right-hand sides, one factorization "
        f"({backend.nbytes(factor) / 2**20:.0f} MiB), medians of {repeats}:",
        echo=True,
    )


def main() -> None:
    parser = command_line(__doc__, quick="small sizes", repeats="timed repetitions (7)")
    parser.add_argument(
        "--studies", default=",".join(STUDIES), help="a subset of " + ",".join(STUDIES)
    )
    parser.add_argument("--calls", type=int, default=8, help="calls per thread, k (8)")
    args = parser.parse_args()
    studies = choose(parser, args.studies, STUDIES, "--studies")
    repeats = args.repeats or (3 if args.quick else 7)
    if not native.available():
        raise SystemExit(f"no ctypes CHOLMOD here: {native.unavailable_reason()}")
    report = Report("bench_cholmod_threads", args.quick, echo=True)
    if "threads" in studies:
        threads_study(report, 64 if args.quick else 256, args.calls, repeats)
    if "symbolic" in studies:
        symbolic_study(report, (6, 3, 3) if args.quick else (30, 15, 15), repeats)
    if "block" in studies:
        block_study(report, 64 if args.quick else 512, 64, repeats)
    report.publish(None if args.quick else "cholmod_threads.md")


if __name__ == "__main__":
    main()
