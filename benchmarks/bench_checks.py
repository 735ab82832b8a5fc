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

The check must stay under 5% of the factorization at n >= 2e4 (issue 10). BLAS is held to one
thread (`OPENBLAS_NUM_THREADS=1` is set here before numpy loads).

    python benchmarks/bench_checks.py            # about a minute
    python benchmarks/bench_checks.py --quick    # smaller matrices, seconds
"""

from __future__ import annotations

import argparse
import os


os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import cvxopt  # noqa: E402, F401  (first: it decides the BLAS of CHOLMOD)

from common import environment, markdown_table, poisson_2d, write_result  # noqa: E402
from helpers import elasticity2d, poisson3d  # noqa: E402
from lineax_sparse.backends import numerics as checks
from lineax_sparse.backends.cholmod.backend import CholmodBackend  # noqa: E402
from lineax_sparse.backends.pattern import Pattern  # noqa: E402
from lineax_sparse.backends.superlu import pivots as superlu_pivots  # noqa: E402
from lineax_sparse.backends.superlu.backend import SuperLUBackend  # noqa: E402


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def _prepared(matrix: sp.spmatrix):
    coo = sp.coo_matrix(matrix)
    pattern = Pattern(matrix.shape[0], np.stack([coo.row, coo.col], 1).astype(np.int32))
    return pattern, pattern.csc(pattern.assemble(coo.data))


def superlu_row(name: str, matrix, repeats: int) -> list[str]:
    backend = SuperLUBackend("COLAMD", 1.0, False)
    pattern, csc = _prepared(matrix)
    analysis = backend.analyse(pattern)
    backend.factor(pattern, analysis, csc, None)  # the first one computes the ordering
    factor_t, check_t, estimate_t, solve_t = [], [], [], []
    rhs = np.random.default_rng(0).standard_normal((csc.shape[0], 1))
    for _ in range(repeats):
        start = time.perf_counter()
        factor = backend.factor(pattern, analysis, csc, None)
        factor_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        column_max = checks.column_maxima(csc)
        pivots = superlu_pivots.pivots(factor.lu, np.float64)
        columns = factor.column_order[np.argsort(factor.lu.perm_c)]
        bool(np.all(np.abs(pivots) / column_max[columns] >= checks.PIVOT_GATE))
        check_t.append(time.perf_counter() - start)
        factor.condition.rcond = None
        start = time.perf_counter()
        backend._rcond(factor)
        estimate_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        backend.solve(factor, rhs, False, False, None)
        solve_t.append(time.perf_counter() - start)
    return _row("SuperLU", name, csc.shape[0], factor_t, check_t, estimate_t, solve_t)


def cholmod_row(name: str, matrix, repeats: int) -> list[str]:
    backend = CholmodBackend("auto", "LL", "amd")
    pattern, csc = _prepared(matrix)
    analysis = backend.analyse(pattern)
    factor_t, check_t, estimate_t, solve_t = [], [], [], []
    rhs = np.random.default_rng(0).standard_normal((csc.shape[0], 1))
    factor = backend.factor(pattern, analysis, csc, None)
    for _ in range(repeats):
        del factor  # its CHOLMOD object is refactorized in place, as in a loop
        start = time.perf_counter()
        factor = backend.factor(pattern, analysis, csc, None)
        factor_t.append(time.perf_counter() - start)
        permutation = analysis.permutations["d"]
        start = time.perf_counter()
        backend._pivot_failure(factor.capsule, "d", pattern, csc, permutation)
        check_t.append(time.perf_counter() - start)
        factor.condition.rcond = None
        start = time.perf_counter()
        backend._rcond(factor)
        estimate_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        backend.solve(factor, rhs, False, False, None)
        solve_t.append(time.perf_counter() - start)
    return _row("CHOLMOD", name, csc.shape[0], factor_t, check_t, estimate_t, solve_t)


def _row(solver, name, n, factor_t, check_t, estimate_t, solve_t) -> list[str]:
    factor, check = _median_ms(factor_t), _median_ms(check_t)
    estimate, solve = _median_ms(estimate_t), _median_ms(solve_t)
    return [
        solver,
        name,
        f"{n:,}",
        f"{factor:.1f}",
        f"{check:.2f}",
        f"**{check / factor:.2%}**",
        f"{estimate:.1f} ({estimate / factor:.0%})",
        f"{solve:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small matrices, 3 repetitions")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per matrix")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    if args.quick:
        matrices = {"MBB 60 x 20": elasticity2d(60, 20), "Poisson 64^2": poisson_2d(64)}
    else:
        matrices = {
            "MBB 180 x 60": elasticity2d(180, 60),
            "Poisson 150^2": poisson_2d(150),
            "Poisson 300^2": poisson_2d(300),
            "Poisson 30^3": poisson3d(30),
        }
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
    text = f"{environment()}\n\n" + markdown_table(header, rows)
    print(text)
    print(f"\nwritten to {write_result('checks.md', text)}")


if __name__ == "__main__":
    main()
