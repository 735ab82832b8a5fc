"""Which native calls release the GIL: each call made 2k times on one thread, and k times on
each of two threads at once, in turns; the ratio two threads / one thread is about 0.5 when
the call releases the GIL (the two run side by side) and about 1 when it holds it.

What it says decides how a batch can use the cores: a call that holds the GIL can only run
in parallel from another process or through an interface that releases it (ctypes does).
Each thread works on its own matrix, factorization and right-hand side. The CHOLMOD rows
"ctypes" are the calls the Cholmod backend makes (through ctypes, one `cholmod_common` per
thread); the "cvxopt" rows cvxopt's own module.

    python benchmarks/bench_gil.py [--quick] [--repeats N]
"""

from common import command_line, format_seconds, pin_blas_threads, Report, Step
from common.timing import threads_at_once, time_interleaved


pin_blas_threads()


import cvxopt  # noqa: E402, I001  (first: it decides the BLAS of the CHOLMOD it loads)
import numpy as np  # noqa: E402
import pyamg  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
from cvxopt import cholmod  # noqa: E402

from lineax_sparse.backends.cholmod import engines, native  # noqa: E402
from lineax_sparse.backends.cholmod.backend import CholmodBackend  # noqa: E402
from lineax_sparse.backends.pattern import Pattern  # noqa: E402
from problems import poisson_2d  # noqa: E402


def _spmatrix(matrix):
    coo = matrix.tocoo()
    return cvxopt.spmatrix(coo.data, coo.row.tolist(), coo.col.tolist(), matrix.shape)


def _calls(grid: int) -> dict[str, callable]:
    """name -> make(), where make() returns a call with its own native objects."""
    matrix = poisson_2d(grid)
    n = matrix.shape[0]

    def cholmod_numeric():
        a = _spmatrix(matrix)
        factor = cholmod.symbolic(a)
        return lambda: cholmod.numeric(a, factor)

    def cholmod_solve():
        a = _spmatrix(matrix)
        factor = cholmod.symbolic(a)
        cholmod.numeric(a, factor)
        rhs = cvxopt.matrix(np.ones(n))
        return lambda: cholmod.solve(factor, cvxopt.matrix(rhs))

    def ctypes_backend():
        """On the backend's ctypes path: an analysis, the values of the lower triangle, a
        factor object factorized from them, and the options."""
        backend = CholmodBackend("auto", "LL", "amd")
        if backend._engine is not engines.NATIVE:
            raise SystemExit(f"no ctypes CHOLMOD here: {native.unavailable_reason()}")
        csc = sp.csc_matrix(matrix)
        csc.sort_indices()
        columns = np.repeat(np.arange(n), np.diff(csc.indptr))
        pattern = Pattern(n, np.stack([csc.indices, columns], axis=1).astype(np.int32))
        analysis = backend.analyse(pattern)
        values = np.ascontiguousarray(csc.data[analysis.lower])
        obj = engines.NATIVE.fresh(analysis, "d", values, backend._cholmod_options)
        engines.NATIVE.numeric(obj, analysis, "d", values, backend._cholmod_options)
        return analysis, values, obj, backend._cholmod_options

    def ctypes_numeric():
        analysis, values, obj, options = ctypes_backend()
        return lambda: engines.NATIVE.numeric(obj, analysis, "d", values, options)

    def ctypes_solve():
        _, _, obj, options = ctypes_backend()
        rhs = np.ones((n, 1))
        return lambda: engines.NATIVE.solve(obj, "d", rhs, options)

    def superlu_factor():
        csc = matrix.tocsc()
        return lambda: spla.splu(csc)

    def superlu_solve():
        lu = spla.splu(matrix.tocsc())
        rhs = np.ones(n)
        return lambda: lu.solve(rhs)

    def pyamg_cycle():
        ml = pyamg.smoothed_aggregation_solver(matrix.tocsr())
        rhs = np.ones(n)
        return lambda: ml.solve(rhs, maxiter=1, tol=1e-30)

    return {
        "cvxopt cholmod.numeric": cholmod_numeric,
        "cvxopt cholmod.solve": cholmod_solve,
        "ctypes cholmod_l_factorize (the backend's)": ctypes_numeric,
        "ctypes cholmod_l_solve2 (the backend's)": ctypes_solve,
        "scipy splu (factorize)": superlu_factor,
        "scipy SuperLU.solve": superlu_solve,
        "pyamg V-cycle (ml.solve, 1 step)": pyamg_cycle,
    }


def _twice(call):
    """`call` made twice in a row (one thread doing the work of two)."""
    return lambda: (call(), call())


def main() -> None:
    parser = command_line(__doc__, quick="a 64^2 grid", repeats="timed repetitions (7)")
    parser.add_argument("--grid", type=int, default=256, help="Poisson grid side (256)")
    parser.add_argument("--calls", type=int, default=8, help="calls per thread, k (8)")
    args = parser.parse_args()
    grid = 64 if args.quick else args.grid
    repeats = args.repeats or 7
    report = Report("bench_gil", args.quick, echo=True)
    rows = [
        "| native call | one thread, 2k calls | two threads, k each | ratio | GIL |",
        "|---|---|---|---|---|",
    ]
    for name, make in _calls(grid).items():
        one, two = make(), make()
        timings = time_interleaved(
            {
                "one": Step(threads_at_once([_twice(one)], args.calls)),
                "two": Step(threads_at_once([one, two], args.calls)),
            },
            repeats,
            alternate=True,
        )
        ratio = timings["two"].median / timings["one"].median
        verdict = "released" if ratio < 0.75 else "held" if ratio > 0.9 else "partly"
        rows.append(
            f"| {name} | {format_seconds(timings['one'].median)} | "
            f"{format_seconds(timings['two'].median)} | {ratio:.2f} | {verdict} |"
        )
    report.table(
        "\n".join(rows),
        f"Poisson {grid}^2 (n = {grid * grid}), k = {args.calls} calls per thread, medians of "
        f"{repeats}, one BLAS thread:",
    )
    report.publish("gil")


if __name__ == "__main__":
    main()
