"""What the failure checks of the direct solvers cost, next to the factorization they guard.

For each matrix (n >= 2e4 unless `--quick`), on the host backends directly (no JAX, so that
nothing but the checks and the native library is timed), medians over `--repeats`:

- SuperLU: a factorization with the pattern's column ordering reused (`SuperLUBackend.factor`,
  checks included); the singularity check inside it, timed separately: the column maxima of
  |A| (one O(nnz) pass), reading the pivots from the factor (`superlu_pivots`, O(n)) and
  comparing them; the condition estimate that a suspicious pivot or residual asks for
  (`_rcond`, 4 to 6 block solves), which well-conditioned matrices never pay; one solve
  (backward error and refinement included).
- CHOLMOD: the same for `CholmodBackend.factor` (pivots against the diagonal bound, the
  condition estimate when a pivot is small).

The goal: the check costs under 5% of the factorization at n >= 2e4. BLAS is held to one
thread (`OPENBLAS_NUM_THREADS=1` is set here before numpy loads).

    python benchmarks/bench_checks.py            # about a minute
    python benchmarks/bench_checks.py --quick    # smaller matrices, seconds
"""

from __future__ import annotations

import time

from common import command_line, markdown_table, Phases, pin_blas_threads, Report, time_call


pin_blas_threads()  # before numpy loads OpenBLAS

import cvxopt  # noqa: E402, F401, I001  (first: it decides the BLAS of CHOLMOD)
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from lineax_sparse.backends import numerics as checks  # noqa: E402
from lineax_sparse.backends.cholmod import Backend as CholmodBackend  # noqa: E402
from lineax_sparse.backends.pattern import Pattern  # noqa: E402
from lineax_sparse.backends.superlu import Backend as SuperLUBackend  # noqa: E402
from lineax_sparse.backends.superlu import pivots as superlu_pivots  # noqa: E402
from problems import elasticity2d, poisson_2d, poisson_3d  # noqa: E402


def _prepared(matrix: sp.spmatrix):
    coo = sp.coo_matrix(matrix)
    pattern = Pattern(matrix.shape[0], np.stack([coo.row, coo.col], 1).astype(np.int32))
    return pattern, pattern.csc(pattern.assemble(coo.data))


def _timed(phases: Phases, name: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    phases.record(name, time.perf_counter() - start)
    return out


def superlu_row(name: str, matrix, repeats: int) -> list[str]:
    backend = SuperLUBackend("COLAMD", 1.0, False)
    pattern, csc = _prepared(matrix)
    analysis = backend.analyse(pattern)
    rhs = np.random.default_rng(0).standard_normal((csc.shape[0], 1))
    phases = Phases()

    def check(factor):
        column_max = checks.column_maxima(csc)
        pivots = superlu_pivots.pivots(factor.lu, np.float64)
        columns = factor.column_order[np.argsort(factor.lu.perm_c)]
        return bool(np.all(np.abs(pivots) / column_max[columns] >= checks.PIVOT_GATE))

    def call():
        factor = _timed(phases, "factor", backend.factor, pattern, analysis, csc, None)
        _timed(phases, "check", check, factor)
        factor.condition.rcond = None
        _timed(phases, "estimate", backend._rcond, factor)
        _timed(phases, "solve", backend.solve, factor, rhs, False, False, None)

    backend.factor(pattern, analysis, csc, None)  # the first one computes the ordering
    time_call(call, repeats)
    return _row("SuperLU", name, csc.shape[0], phases)


def cholmod_row(name: str, matrix, repeats: int) -> list[str]:
    backend = CholmodBackend("auto", "LL", "amd")
    pattern, csc = _prepared(matrix)
    analysis = backend.analyse(pattern)
    rhs = np.random.default_rng(0).standard_normal((csc.shape[0], 1))
    phases = Phases()
    held = {"factor": backend.factor(pattern, analysis, csc, None)}

    def call():
        del held["factor"]  # its CHOLMOD object is refactorized in place, as in a loop
        factor = held["factor"] = _timed(
            phases, "factor", backend.factor, pattern, analysis, csc, None
        )
        arguments = (factor.capsule, "d", pattern, csc, analysis.permutations["d"])
        _timed(phases, "check", backend._pivot_failure, *arguments)
        factor.condition.rcond = None
        _timed(phases, "estimate", backend._rcond, factor)
        _timed(phases, "solve", backend.solve, factor, rhs, False, False, None)

    time_call(call, repeats)
    return _row("CHOLMOD", name, csc.shape[0], phases)


def _row(solver: str, name: str, n: int, phases: Phases) -> list[str]:
    median = {phase: 1e3 * timing.median for phase, timing in phases.timings().items()}
    factor, check, estimate = median["factor"], median["check"], median["estimate"]
    return [
        solver,
        name,
        f"{n:,}",
        f"{factor:.1f}",
        f"{check:.2f}",
        f"**{check / factor:.2%}**",
        f"{estimate:.1f} ({estimate / factor:.0%})",
        f"{median['solve']:.2f}",
    ]


def main() -> None:
    parser = command_line(
        __doc__, quick="small matrices, 3 repetitions", repeats="timed repetitions per matrix"
    )
    parser.set_defaults(repeats=7)
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    if args.quick:
        matrices = {"MBB 60 x 20": elasticity2d(60, 20), "Poisson 64^2": poisson_2d(64)}
    else:
        matrices = {
            "MBB 180 x 60": elasticity2d(180, 60),
            "Poisson 150^2": poisson_2d(150),
            "Poisson 300^2": poisson_2d(300),
            "Poisson 30^3": poisson_3d(30),
        }
    report = Report("Failure checks benchmark", args.quick)
    rows = []
    for name, matrix in matrices.items():
        rows.append(superlu_row(name, matrix, repeats))
    for name, matrix in matrices.items():
        if "30^3" in name:
            continue  # CHOLMOD on it is the same story; keep the run short
        rows.append(cholmod_row(name, matrix, repeats))
    header = [
        "solver",
        "matrix",
        "n",
        "factorization, checks included (ms)",
        "singularity check (ms)",
        "check / factorization",
        "condition estimate when asked (ms, / factorization)",
        "one checked solve (ms)",
    ]
    report.table(markdown_table(header, rows))
    report.publish("checks.md")


if __name__ == "__main__":
    main()
