"""What reporting the residual of the solution returned costs a float32 solve.

A float32 (x64 off) caller gets the host's float64 solution rounded to float32, and
`stats["relative_residual"]` is that rounded solution's residual: one more sparse product
on the host, paid only when the solution is rounded. Timed in turns within one process,
with the product (`with`) and with it replaced by a stub (`without`), for a float32 2D
Poisson through `lx.linear_solve(..., Cholmod())` under `jax.jit`:

- `solve`: a new right-hand side each call, the factorization found in the cache (the
  case where the product weighs most);
- `factor + solve`: new matrix values each call (a factorization each time).

BLAS is held to one thread.

    python benchmarks/bench_statistics.py            # 256^2, about a minute
    python benchmarks/bench_statistics.py --quick    # 64^2, seconds
"""

from __future__ import annotations

import statistics
import time

from common import command_line, markdown_table, pin_blas_threads, Report, Step, time_interleaved


pin_blas_threads()  # before numpy loads OpenBLAS

import cvxopt  # noqa: E402, F401, I001  (first: it decides the BLAS of CHOLMOD)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from lineax_sparse._host import batch  # noqa: E402
from problems import poisson_2d  # noqa: E402


def _stub(entry, rhs, solution, dtype, transpose, conjugate):
    del entry, solution, dtype, transpose, conjugate
    return np.zeros(rhs.shape[0])


def main() -> None:
    parser = command_line(__doc__, quick="64^2 instead of 256^2", repeats="timed turns")
    parser.set_defaults(repeats=21)
    args = parser.parse_args()
    grid = 64 if args.quick else 256
    matrix = poisson_2d(grid).astype(np.float32).tocoo()
    n = matrix.shape[0]
    indices = jnp.asarray(np.stack([matrix.row, matrix.col], axis=1).astype(np.int32))
    data = jnp.asarray(matrix.data)
    tags = lx.positive_semidefinite_tag

    @jax.jit
    def solve(values, b):
        bcoo = jax.experimental.sparse.BCOO((values, indices), shape=(n, n))
        operator = lxs.SparseOperator(bcoo, tags)
        sol = lx.linear_solve(operator, b, lxs.Cholmod())
        return sol.value, sol.stats["relative_residual"]

    rng = np.random.default_rng(0)
    counter = iter(range(10**9))

    def fresh_rhs():
        return jnp.asarray(rng.standard_normal(n).astype(np.float32))

    def new_values():  # a power of two: the same matrix, scaled, never found in the cache
        return data * np.float32(2.0 ** (next(counter) % 40 - 20))

    real = batch._returned_residual
    product_times: list[float] = []

    def timed(*arguments):  # the product alone, timed inside the host call
        start = time.perf_counter()
        try:
            return real(*arguments)
        finally:
            product_times.append(time.perf_counter() - start)

    cases = {
        "solve": lambda: solve(data, fresh_rhs()),
        "factor + solve": lambda: solve(new_values(), fresh_rhs()),
    }
    report = Report(f"bench_statistics: float32 Poisson {grid}^2 (n = {n})", args.quick)
    rows = []
    for case, call in cases.items():

        def run(patched, call=call):
            batch._returned_residual = patched
            try:
                return call()
            finally:
                batch._returned_residual = real

        steps = {
            "with": Step(lambda run=run: run(timed)),
            "without": Step(lambda run=run: run(_stub)),
        }
        product_times.clear()
        timings = time_interleaved(steps, args.repeats, alternate=True)
        with_, without = timings["with"].median, timings["without"].median
        product = statistics.median(product_times)
        rows.append(
            [
                case,
                f"{with_ * 1e3:.2f}",
                f"{without * 1e3:.2f}",
                f"{with_ / without:.3f}",
                f"{product * 1e3:.2f} ({product / without:.1%})",
            ]
        )
    _, residual = solve(data, fresh_rhs())
    report.table(
        markdown_table(["case", "with (ms)", "without (ms)", "ratio", "product (ms, share)"], rows),
        f"medians of {args.repeats} turns; relative_residual of a float32 solve: "
        f"{float(residual):.2e}",
    )
    report.publish(None if args.quick else "bench_statistics")


if __name__ == "__main__":
    main()
