"""The bridge's overhead: lineax-sparse's CHOLMOD against the same work done natively.

The native side is the fastest loop we know of written with NumPy and cvxopt, with the
symbolic factorization cached and the COO entries scattered into the lower triangle through
precomputed positions (one `np.bincount`): per call `numeric` + `solve`, and for a gradient
a second `solve` and the gather `-lambda[rows] * x[cols]` over the COO entries. Ours is
`jax.jit` of `lineax.linear_solve(SparseOperator(BCOO((data, indices))), b,
solver=lxs.Cholmod())` with the indices a NumPy constant (a static pattern), new values in
every call. Both sides get new values in every call (a cycle of 8 value arrays, more than the
factorizations our cache keeps per pattern), so every call factorizes.

- MBB 180 x 60 Q4 half-beam (n = 22,020): uncoalesced FEM COO input, 64 entries per
  element (about 690k), random SIMP densities;
- 2D Poisson 512² (n = 262,144): coalesced COO input, values scaled.

`value_and_grad` differentiates `sum(w * x) + sum(x**2) / 2` (not self-adjoint: the adjoint
right-hand side `w + x` differs from `b`) with respect to the COO values. When sparsax is
installed (`pip install sparsax`), its CHOLMOD solve is timed beside them: sparsax and cvxopt
load the same CHOLMOD shared object, and whichever is imported first decides the BLAS of
both, so cvxopt is imported first here and both use cvxopt's. Every side runs with
`OPENBLAS_NUM_THREADS=1`, in turns within each repetition; times are medians.

    python benchmarks/bench_bridge.py            # full run, a few minutes
    python benchmarks/bench_bridge.py --quick    # MBB 60 x 20 and Poisson 128², seconds
"""

from __future__ import annotations

from unittest import mock

from common import (
    command_line,
    format_seconds,
    import_sparsax,
    markdown_table,
    pin_blas_threads,
    Report,
    Step,
    time_interleaved,
)


pin_blas_threads()  # before numpy loads OpenBLAS: every side on one BLAS thread

import cvxopt  # noqa: E402  (imported before sparsax: it decides CHOLMOD's BLAS)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
from cvxopt import cholmod  # noqa: E402
from jax.experimental import sparse as jsparse  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
import lineax_sparse._operator.operator  # noqa: E402
import problems  # noqa: E402


jax.config.update("jax_enable_x64", True)

sparsax = import_sparsax()  # optional: its rows are skipped without it
CYCLE = 8  # distinct value arrays per step: more than the cache keeps per pattern


class Workload:
    """One COO structure, `CYCLE` value arrays, a right-hand side and a loss weight."""

    def __init__(self, name, rows, cols, n, values, target_forward, target_grad):
        self.name = name
        self.rows, self.cols, self.n = rows, cols, n
        self.indices = np.stack([rows, cols], axis=1).astype(np.int32)
        self.values = values  # list of numpy arrays
        rng = np.random.default_rng(0)
        self.b = rng.standard_normal(n)
        self.w = rng.standard_normal(n)
        self.target_forward = target_forward
        self.target_grad = target_grad


def mbb(nelx: int, nely: int) -> Workload:
    rows, cols, keep, n = problems.mbb_parts(nelx, nely)
    rng = np.random.default_rng(1)
    ke = problems.element_stiffness().reshape(-1)
    densities = [rng.uniform(0.1, 1.0, nelx * nely) for _ in range(2 * CYCLE)]
    values = [problems.simp_values(np, density, ke, keep) for density in densities]
    return Workload(f"MBB {nelx}×{nely}, FEM COO", rows, cols, n, values, 1.10, 1.15)


def poisson(grid: int) -> Workload:
    coo = problems.poisson_2d(grid).tocoo()
    values = [coo.data * (1 + 0.01 * k) for k in range(2 * CYCLE)]
    return Workload(f"Poisson {grid}²", coo.row, coo.col, coo.shape[0], values, 1.05, None)


# --- native: NumPy + cvxopt


class Native:
    def __init__(self, work: Workload):
        self.work = work
        self.lower = problems.LowerTriangle(work.rows, work.cols, work.n)
        matrix = self.lower.assemble(work.values[0])
        self.factor = cholmod.symbolic(matrix)
        self.b = cvxopt.matrix(work.b)

    def _factorize(self, values):
        matrix = self.lower.assemble(values)
        cholmod.numeric(matrix, self.factor)

    def forward(self, values):
        self._factorize(values)
        x = cvxopt.matrix(self.b)  # `solve` overwrites its argument
        cholmod.solve(self.factor, x)
        return np.asarray(x).ravel()

    def value_and_grad(self, values):
        self._factorize(values)
        x = cvxopt.matrix(self.b)
        cholmod.solve(self.factor, x)
        x = np.asarray(x).ravel()
        loss = self.work.w @ x + 0.5 * x @ x
        adjoint = cvxopt.matrix(self.work.w + x)
        cholmod.solve(self.factor, adjoint)
        adjoint = np.asarray(adjoint).ravel()
        return loss, -adjoint[self.work.rows] * x[self.work.cols]


# --- ours


def ours(work: Workload, check_indices: bool = True):
    """Jitted forward and `value_and_grad` steps; `check_indices=False` traces them without
    the check that the operator's indices are its static pattern's (to time that check)."""
    indices = work.indices  # a NumPy constant: the operator's pattern is static
    n = work.n
    b, w = jnp.asarray(work.b), jnp.asarray(work.w)

    def solve(data):
        matrix = jsparse.BCOO((data, indices), shape=(n, n))
        operator = lxs.SparseOperator(matrix, tags=lx.positive_semidefinite_tag)
        return lx.linear_solve(operator, b, solver=lxs.Cholmod()).value

    def loss(data):
        x = solve(data)
        return w @ x + 0.5 * x @ x

    forward, value_and_grad = jax.jit(solve), jax.jit(jax.value_and_grad(loss))
    if check_indices:
        return forward, value_and_grad
    values = jnp.asarray(work.values[0])
    unchecked = lambda key, indices, data, argument: data  # noqa: E731
    with mock.patch.object(lineax_sparse._operator.operator, "check_indices", unchecked):
        jax.block_until_ready((forward(values), value_and_grad(values)))  # traced now
    return forward, value_and_grad


def sparsax_steps(work: Workload):
    """sparsax's CHOLMOD solve on the same COO input (None when not installed)."""
    if sparsax is None:
        return None
    rows, cols = work.indices[:, 0], work.indices[:, 1]  # NumPy: static, as sparsax wants
    b, w = jnp.asarray(work.b), jnp.asarray(work.w)

    def solve(data):
        return sparsax.solve(rows, cols, data, b)  # sums duplicates, reads one triangle

    def loss(data):
        x = solve(data)
        return w @ x + 0.5 * x @ x

    return jax.jit(solve), jax.jit(jax.value_and_grad(loss))


def run(work: Workload, repeats: int) -> list[list[str]]:
    native = Native(work)
    host_values = work.values
    device_values = [jnp.asarray(v) for v in host_values]
    forward, value_and_grad = ours(work)
    _, unchecked_value_and_grad = ours(work, check_indices=False)
    alternative = sparsax_steps(work)
    counters: dict[str, int] = {}

    def pick(step: str) -> int:
        """Each step cycles through its own values, so that no call finds a factorization
        made by another step's call (the cache keeps 2 per pattern; the cycle is 8)."""
        counters[step] = (counters.get(step, 0) + 1) % CYCLE
        # The unchecked variant runs half a cycle behind, on values retired long since.
        shift = CYCLE // 2 if step.startswith("u ") else 0
        return (counters[step] + shift) % CYCLE + (CYCLE if "value_and_grad" in step else 0)

    # Check agreement first (untimed).
    reference = native.forward(host_values[0])
    mine = np.asarray(forward(device_values[0]))
    error = np.linalg.norm(mine - reference) / np.linalg.norm(reference)
    native_loss, native_grad = native.value_and_grad(host_values[0])
    my_loss, my_grad = value_and_grad(device_values[0])
    grad_error = np.linalg.norm(np.asarray(my_grad) - native_grad) / np.linalg.norm(native_grad)
    if error > 1e-8 or grad_error > 1e-6:
        raise RuntimeError(f"disagreement: solution {error:.1e}, gradient {grad_error:.1e}")

    lxs.clear_cache()  # the counters below are those of the timed calls
    steps = {
        "native forward": Step(lambda: native.forward(host_values[pick("nf")])),
        "ours forward": Step(lambda: forward(device_values[pick("of")])),
        "native value_and_grad": Step(
            lambda: native.value_and_grad(host_values[pick("n value_and_grad")])
        ),
        "ours value_and_grad": Step(
            lambda: value_and_grad(device_values[pick("o value_and_grad")])
        ),
        "ours value_and_grad, indices unchecked": Step(
            lambda: unchecked_value_and_grad(device_values[pick("u value_and_grad")])
        ),
    }
    if alternative is not None:
        steps["sparsax forward"] = Step(lambda: alternative[0](device_values[pick("sf")]))
        steps["sparsax value_and_grad"] = Step(
            lambda: alternative[1](device_values[pick("s value_and_grad")])
        )
    timings = time_interleaved(steps, repeats)
    median = {name: timing.median for name, timing in timings.items()}
    rows = [[work.name, name, format_seconds(median[name]), ""] for name in steps]
    for kind, target in (("forward", work.target_forward), ("value_and_grad", work.target_grad)):
        ratio = median[f"ours {kind}"] / median[f"native {kind}"]
        verdict = "" if target is None else (" (met)" if ratio <= target else " (**missed**)")
        goal = "" if target is None else f" ≤ {target:.2f}"
        rows.append([work.name, f"ours / native {kind}", f"**{ratio:.3f}**", f"{goal}{verdict}"])
        if alternative is not None:
            other = median[f"ours {kind}"] / median[f"sparsax {kind}"]
            verdict = " (met)" if other < 1 else " (**missed**)"
            rows.append([work.name, f"ours / sparsax {kind}", f"**{other:.3f}**", f"< 1{verdict}"])
    check = median["ours value_and_grad"] / median["ours value_and_grad, indices unchecked"]
    rows.append([work.name, "value_and_grad / with the index check left out", f"{check:.3f}", ""])
    info = lxs.cache_info()
    rows.append(
        [work.name, "agreement with native", f"{error:.1e} (x), {grad_error:.1e} (grad)", ""]
    )
    rows.append(
        [work.name, "cache", f"hits {info.hits}, reused solutions {info.reused_solutions}", ""]
    )
    return rows


def main() -> None:
    parser = command_line(__doc__, quick="small problems, few repeats", repeats="timed rounds")
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 25)
    workloads = [mbb(60, 20), poisson(128)] if args.quick else [mbb(180, 60), poisson(512)]
    report = Report("Bridge overhead benchmark", args.quick)
    rows = []
    for work in workloads:
        lxs.clear_cache()
        rows += run(work, repeats)
    report.table(markdown_table(["workload", "row", "median", "target"], rows))
    report.publish("bridge.md")


if __name__ == "__main__":
    main()
