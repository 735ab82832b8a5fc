"""Batched FEM studies with `jax.vmap`: a material sweep and a design-sensitivity study.

Both use the MBB half-beam of examples/topology_optimization.py (Q4 plane-stress elements,
solved with `lineax_sparse.Cholmod`).

1. Material sweep. The stiffness matrix depends on Young's modulus E and Poisson's ratio
   nu: K(E, nu) = E (A + nu B) / (24 (1 - nu^2)) element by element. The compliance
   c = f^T K^-1 f is computed for a batch of (E, nu) pairs by one `jax.vmap`: the whole
   batch is one host call that analyses the pattern once and factorizes each matrix, as
   `lineax_sparse.cache_info()` shows. Checks: the vmapped results equal a Python loop of
   separate solves, and E c(E, nu) does not depend on E (K is linear in E).

2. Design sensitivities. `jax.vmap(jax.grad(compliance))` over a batch of SIMP density
   fields gives every design's gradient in one batched forward solve and one batched
   adjoint solve (which reuses the factorizations). Checks: each gradient against the
   hand-derived SIMP sensitivity -p x^(p-1) (E0 - Emin) u_e^T k u_e, and one directional
   derivative against a central finite difference.

3. Time per item. The sweep is timed for batch sizes 1, 2, 4, ... as a Python loop of
   jitted solves and as one vmapped call (whose distinct matrices factorize side by side
   on the cores, `lineax_sparse.set_num_threads`); unless `--no-plot`, the times per item
   are plotted to `<output>.png`.

    python examples/batched_solves.py            # 120 x 40 mesh, batches of 32 and 8
    python examples/batched_solves.py --small    # 30 x 10, batches of 8 and 4
"""

from __future__ import annotations

import argparse


OUTPUT = "batched_solves"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--nelx", type=int, default=120, help="elements along the beam")
    parser.add_argument("--nely", type=int, default=40, help="elements across the beam")
    parser.add_argument("--materials", type=int, default=32, help="batch of the sweep")
    parser.add_argument("--designs", type=int, default=8, help="batch of the sensitivities")
    parser.add_argument("--small", action="store_true", help="30 x 10, batches of 8 and 4")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--output", default=OUTPUT, help="prefix of the PNG; --small appends _small to the default"
    )
    # The namespace's None survives parsing unless --output is given: only then is the
    # prefix the user's (--help shows the default).
    args = parser.parse_args(argv, namespace=argparse.Namespace(output=None))
    if args.output is None:
        args.output = f"{OUTPUT}_small" if args.small else OUTPUT
    if args.small:
        args.nelx, args.nely, args.materials, args.designs = 30, 10, 8, 4
    if min(args.nelx, args.nely, args.materials, args.designs) < 1:
        parser.error("sizes and batches must be positive")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import sparse as jsparse  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from topology_optimization import compliance, E0, E_MIN, mbb_problem, Problem  # noqa: E402


jax.config.update("jax_enable_x64", True)

A11 = [[12, 3, -6, -3], [3, 12, 3, 0], [-6, 3, 12, -3], [-3, 0, -3, 12]]
A12 = [[-6, -3, 0, 3], [-3, -6, -3, -6], [0, -3, -6, 3], [3, -6, 3, -6]]
B11 = [[-4, 3, -2, 9], [3, -4, -9, 4], [-2, -9, -4, -3], [9, 4, -3, -4]]
B12 = [[2, -3, 4, -9], [-3, 2, 9, -2], [4, 9, 2, 3], [-9, -2, 3, 2]]
PENAL = 3.0
SOLVER = lxs.Cholmod()
TAGS = (lx.symmetric_tag, lx.positive_semidefinite_tag)


def element_stiffness(young: jax.Array, nu: jax.Array) -> jax.Array:
    """The Q4 element stiffness as a differentiable function of E and nu (8 x 8)."""
    a = jnp.block([[jnp.array(A11), jnp.array(A12)], [jnp.array(A12).T, jnp.array(A11)]])
    b = jnp.block([[jnp.array(B11), jnp.array(B12)], [jnp.array(B12).T, jnp.array(B11)]])
    return young * (a + nu * b) / (24 * (1 - nu**2))


def material_compliance(young: jax.Array, nu: jax.Array, problem: Problem) -> jax.Array:
    """Compliance of the full (density 1) beam made of a material (E, nu)."""
    nel = int(np.prod(problem.shape))
    values = jnp.tile(element_stiffness(young, nu).reshape(-1), nel)[problem.keep]
    matrix = jsparse.BCOO((values, problem.indices), shape=(problem.size, problem.size))
    solution = lx.linear_solve(lxs.SparseOperator(matrix, tags=TAGS), problem.load, solver=SOLVER)
    return problem.load @ solution.value


def simp_sensitivity(density: jax.Array, problem: Problem) -> jax.Array:
    """The classic hand-derived gradient dc/dx_e = -p x_e^(p-1) (E0 - Emin) u_e^T k u_e."""
    young = E_MIN + density**PENAL * (E0 - E_MIN)
    values = (young[:, None] * problem.ke[None, :]).reshape(-1)[problem.keep]
    matrix = jsparse.BCOO((values, problem.indices), shape=(problem.size, problem.size))
    u = lx.linear_solve(lxs.SparseOperator(matrix, tags=TAGS), problem.load, solver=SOLVER).value
    # Element energies from the element-entry list: sum over entries of u_i k_ij u_j.
    nel = density.size
    rows, cols = problem.indices[:, 0], problem.indices[:, 1]
    element = problem.keep // problem.ke.size
    entry = problem.ke[problem.keep % problem.ke.size] * u[rows] * u[cols]
    energy = jax.ops.segment_sum(entry, element, num_segments=nel)
    return -PENAL * density ** (PENAL - 1) * (E0 - E_MIN) * energy


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def material_sweep(problem: Problem, batch: int) -> dict[str, float]:
    young, nu = _materials(batch)
    sweep = jax.jit(jax.vmap(material_compliance, in_axes=(0, 0, None)))
    one = jax.jit(material_compliance)
    sweep(young, nu, problem).block_until_ready()  # compile
    one(young[0], nu[0], problem).block_until_ready()

    lxs.clear_cache()
    batched, batched_seconds = timed(sweep, young, nu, problem)
    info = lxs.cache_info()
    lxs.clear_cache()
    start = time.perf_counter()
    looped = jnp.stack([one(young[i], nu[i], problem) for i in range(batch)])
    loop_seconds = time.perf_counter() - start
    # K is linear in E: E c(E, nu) is the same for every E at one nu.
    scaled = np.asarray(young * batched)
    pairs = np.asarray(nu)[:, None] == np.asarray(nu)[None, :]
    spread = np.max(np.abs(scaled[:, None] - scaled[None, :])[pairs]) / np.max(scaled)
    print(
        f"material sweep: {batch} (E, nu) pairs in one vmapped call: {batched_seconds:.3f} s "
        f"({_count(info.host_calls, 'host call')}, {info.analyses} analysis, {info.factorizations} "
        f"factorizations); a Python loop of {batch} jitted solves: {loop_seconds:.3f} s"
    )
    for i in range(min(batch, 4)):
        print(
            f"  E = {float(young[i]):.4f}, nu = {float(nu[i]):.3f}: "
            f"compliance {float(batched[i]):.6f}"
        )
    return {
        "sweep_host_calls": info.host_calls,
        "sweep_factorizations": info.factorizations,
        "sweep_analyses": info.analyses,
        "sweep_vs_loop": float(jnp.max(jnp.abs(batched - looped) / jnp.abs(looped))),
        "E_times_c_spread": float(spread),
        "sweep_speedup": loop_seconds / batched_seconds,
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def sensitivity_study(problem: Problem, batch: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    nel = int(np.prod(problem.shape))
    densities = jnp.asarray(rng.uniform(0.2, 1.0, (batch, nel)))
    gradients_of = jax.jit(
        jax.vmap(jax.grad(compliance), in_axes=(0, None, None, None)), static_argnums=(2, 3)
    )
    gradients_of(densities, problem, PENAL, SOLVER).block_until_ready()  # compile
    lxs.clear_cache()
    gradients, seconds = timed(gradients_of, densities, problem, PENAL, SOLVER)
    info = lxs.cache_info()
    reference = jax.jit(jax.vmap(simp_sensitivity, in_axes=(0, None)))(densities, problem)
    formula_error = float(jnp.max(jnp.abs(gradients - reference)) / jnp.max(jnp.abs(reference)))
    # A central finite difference of design 0 along a random direction.
    direction = jnp.asarray(rng.standard_normal(nel))
    step = 1e-4  # central difference: truncation O(step^2), rounding O(eps cond(K) / step)
    c = jax.jit(compliance, static_argnums=(2, 3))
    plus = c(densities[0] + step * direction, problem, PENAL, SOLVER)
    minus = c(densities[0] - step * direction, problem, PENAL, SOLVER)
    finite_difference = float((plus - minus) / (2 * step))
    directional = float(gradients[0] @ direction)
    fd_error = abs(directional - finite_difference) / abs(finite_difference)
    print(
        f"design sensitivities: vmap(grad) over {batch} designs of {nel} elements: "
        f"{seconds:.3f} s ({_count(info.host_calls, 'host call')}, "
        f"{info.factorizations} factorizations)"
    )
    print(
        f"  vs the hand-derived SIMP sensitivities: max relative difference {formula_error:.2e}; "
        f"directional derivative {directional:.8f} vs finite difference {finite_difference:.8f}"
    )
    return {
        "grad_host_calls": info.host_calls,
        "grad_factorizations": info.factorizations,
        "grad_vs_formula": formula_error,
        "grad_vs_fd": fd_error,
    }


def _materials(batch: int) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    young = jnp.asarray(rng.uniform(0.5, 2.0, batch))
    nu = jnp.asarray(np.tile(np.linspace(0.1, 0.45, max(batch // 2, 1)), 2)[:batch])
    return young, nu


def time_per_item(problem: Problem, largest: int, repeats: int = 3) -> dict[str, list]:
    """Seconds per (E, nu) pair of the loop and of the vmapped call, for batch sizes
    1, 2, 4, ... up to `largest`: medians of `repeats` runs taken in turns, each run
    factorizing its matrices (the cache is cleared before it)."""
    one = jax.jit(material_compliance)
    sweep = jax.jit(jax.vmap(material_compliance, in_axes=(0, 0, None)))
    sizes = [1 << k for k in range(largest.bit_length()) if 1 << k <= largest]
    table: dict[str, list] = {"batch": sizes, "loop": [], "vmap": []}
    for size in sizes:
        young, nu = _materials(size)

        def loop(young=young, nu=nu, size=size):
            return jnp.stack([one(young[i], nu[i], problem) for i in range(size)])

        runs = {"loop": loop, "vmap": functools.partial(sweep, young, nu, problem)}
        times: dict[str, list[float]] = {"loop": [], "vmap": []}
        for turn in range(repeats + 1):  # the first turn compiles: not timed
            for name, run in runs.items():
                lxs.clear_cache()
                _, seconds = timed(run)
                if turn:
                    times[name].append(seconds / size)
        for name in runs:
            table[name].append(statistics.median(times[name]))
    print(f"time per item, {lxs.num_threads()} threads (medians of {repeats} runs):")
    for size, loop, vmap in zip(table["batch"], table["loop"], table["vmap"], strict=True):
        print(
            f"  batch {size:3d}: loop {loop * 1e3:7.2f} ms, vmap {vmap * 1e3:7.2f} ms "
            f"({vmap / loop:.2f}x)"
        )
    return table


def plot(table: dict[str, list], title: str, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(
        table["batch"], np.array(table["loop"]) * 1e3, "o-", label="Python loop of jitted solves"
    )
    axes.plot(
        table["batch"],
        np.array(table["vmap"]) * 1e3,
        "s-",
        label=f"one jax.vmap call ({lxs.num_threads()} threads)",
    )
    axes.set_xscale("log", base=2)
    axes.set_xticks(table["batch"], [str(size) for size in table["batch"]])
    axes.set_xlabel("batch size (materials)")
    axes.set_ylabel("time per item (ms): factorization + solve")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(f"{output}.png", dpi=120)
    plt.close(figure)
    print(f"wrote {output}.png")


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    problem = mbb_problem(args.nelx, args.nely, rmin=1.5)
    print(f"MBB beam {args.nelx} x {args.nely}: {problem.size} dofs")
    results = material_sweep(problem, args.materials)
    results |= sensitivity_study(problem, args.designs)
    table = time_per_item(problem, args.materials)
    results["vmap_vs_loop_largest"] = table["vmap"][-1] / table["loop"][-1]
    if not args.no_plot:
        plot(
            table,
            f"Material sweep, MBB {args.nelx} x {args.nely} ({problem.size} dofs)",
            args.output,
        )
    print(
        "batched "
        + " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items()
        )
    )


if __name__ == "__main__":
    main()
