"""Topology optimization of the MBB half-beam (the classic 88-line algorithm) in JAX.

Minimizes the compliance of the MBB half-beam for a given volume fraction: SIMP
interpolation E = Emin + x^p (E0 - Emin) with E0 = 1, Emin = 1e-9, bilinear Q4 plane-stress
elements (nu = 0.3) on a `nelx` x `nely` grid, a sensitivity or density filter of radius
`rmin`, and the optimality-criteria update (move limit 0.2, bisection on the volume
constraint). It follows Andreassen, Clausen, Schevenels, Lazarov and Sigmund, "Efficient
topology optimization in MATLAB using 88 lines of code" (2011), step for step, with three
differences that are the point of this example:

- the stiffness matrix is a BCOO with one fixed sparsity pattern, rebuilt from the element
  densities in every iteration and solved with `lineax_sparse.Cholmod` (or `AMG` with the
  rigid body modes as near-nullspace, or `SuperLU`);
- the compliance gradient comes from `jax.grad` through `lineax.linear_solve`: the adjoint
  solve reuses the forward factorization, and no sensitivity formula is written by hand;
- a whole iteration (assembly, solve, gradient, filter, OC bisection) is one jitted call.

The filter is a sparse matrix H stored row by row (`RowSparse`), and the bisection uses
that the filtered volume sum(H x / Hs) is the linear functional (H (1 / Hs)) . x, so that
no bisection step applies the filter; the iterates are those of the 88-line code.

With the defaults (60 x 20, volfrac 0.5, penal 3, rmin 2.4, sensitivity filter) the final
compliance is 216.81; with `--filter density` it is 233.71, the values the 88-line code gives.

    python examples/topology_optimization.py                  # 60 x 20, about 100 iterations
    python examples/topology_optimization.py --filter density
    python examples/topology_optimization.py --nelx 180 --nely 60 --volfrac 0.4 \\
        --rmin 5.4 --filter density
    python examples/topology_optimization.py --small          # 30 x 10, for a quick check

Unless `--no-plot`, it writes `<output>.png` (the final design) and `<output>_convergence.png`
into the working directory. The prefix is `topology_optimization`, or, so that a quick check
does not overwrite the full run's pictures, `topology_optimization_small` with `--small`, unless
`--output` is given. The progress bar shows only when stderr is a terminal. The last line
printed is `final compliance C after N iterations`.
"""

from __future__ import annotations

import argparse


OUTPUT = "topology_optimization"  # default prefix of the PNGs


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with --small and the default prefix applied and the values checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--nelx", type=int, default=60, help="elements along the beam")
    parser.add_argument("--nely", type=int, default=20, help="elements across the beam")
    parser.add_argument("--volfrac", type=float, default=0.5, help="volume fraction")
    parser.add_argument("--penal", type=float, default=3.0, help="SIMP penalization power")
    parser.add_argument("--rmin", type=float, default=2.4, help="filter radius, in elements")
    parser.add_argument(
        "--filter",
        choices=("sensitivity", "density"),
        default="sensitivity",
        help="filter the sensitivities or the densities",
    )
    parser.add_argument(
        "--solver", choices=("cholmod", "amg", "superlu"), default="cholmod", help="linear solver"
    )
    parser.add_argument(
        "--max-iterations", type=int, default=1000, help="at most this many iterations"
    )
    parser.add_argument("--small", action="store_true", help="30 x 10 with rmin 1.2")
    parser.add_argument("--no-plot", action="store_true", help="write no PNGs")
    parser.add_argument(
        "--output",
        default=OUTPUT,
        help="prefix of the PNGs; --small appends _small to the default",
    )
    # The namespace's None survives parsing unless --output is given: only then is the
    # prefix the user's, and the default (shown by --help) is filled in below.
    args = parser.parse_args(argv, namespace=argparse.Namespace(output=None))
    if args.output is None:
        args.output = f"{OUTPUT}_small" if args.small else OUTPUT
    if args.small:
        args.nelx, args.nely, args.rmin = 30, 10, 1.2
    for name in ("nelx", "nely", "max_iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 0 < args.volfrac <= 1 or args.rmin <= 0 or args.penal < 1:
        parser.error("need 0 < --volfrac <= 1, --rmin > 0 and --penal >= 1")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)

E0, E_MIN, NU = 1.0, 1e-9, 0.3
MOVE = 0.2  # OC move limit
BISECTION_TOLERANCE = 1e-3  # (l2 - l1) / (l1 + l2)
CHANGE_TOLERANCE = 0.01  # stop when max |x_new - x| <= this


def element_stiffness(nu: float = NU) -> np.ndarray:
    """The 8 x 8 stiffness of a unit square Q4 plane-stress element with E = 1.

    Dofs in the order of the 88-line code: (x, y) of the lower-left, lower-right, upper-right
    and upper-left nodes.
    """
    a11 = np.array([[12, 3, -6, -3], [3, 12, 3, 0], [-6, 3, 12, -3], [-3, 0, -3, 12]])
    a12 = np.array([[-6, -3, 0, 3], [-3, -6, -3, -6], [0, -3, -6, 3], [3, -6, 3, -6]])
    b11 = np.array([[-4, 3, -2, 9], [3, -4, -9, 4], [-2, -9, -4, -3], [9, 4, -3, -4]])
    b12 = np.array([[2, -3, 4, -9], [-3, 2, 9, -2], [4, 9, 2, 3], [-9, -2, 3, 2]])
    a = np.block([[a11, a12], [a12.T, a11]])
    b = np.block([[b11, b12], [b12.T, b11]])
    return (a + nu * b) / (24 * (1 - nu**2))


class RowSparse(eqx.Module):
    """A sparse matrix stored row by row, padded to the longest row (ELLPACK).

    `H @ v` is one gather and one row sum. The filter is applied about 40 times per
    iteration at 180 x 60 (rmin 5.4: 1M entries): as a BCOO its matvec took 2.3-4.4 ms,
    as a BCSR 6.8 ms, in this layout 1.4 ms.
    """

    columns: jax.Array  # (m, k) int32, padding points at column 0 with weight 0
    weights: jax.Array  # (m, k)

    @classmethod
    def from_coo(cls, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, m: int):
        order = np.lexsort((cols, rows))
        rows, cols, weights = rows[order], cols[order], weights[order]
        counts = np.bincount(rows, minlength=m)
        position = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        columns = np.zeros((m, max(int(counts.max(initial=0)), 1)), dtype=np.int32)
        padded = np.zeros(columns.shape)
        columns[rows, position] = cols
        padded[rows, position] = weights
        return cls(jnp.asarray(columns), jnp.asarray(padded))

    def __matmul__(self, vector: jax.Array) -> jax.Array:
        return jnp.sum(self.weights * vector[self.columns], axis=1)


class Problem(eqx.Module):
    """The mesh, the reduced system's fixed pattern and the filter, as arrays.

    Element e = elx * nely + ely (column by column, as `x(:)` in MATLAB). `keep` selects the
    COO entries of the element matrices that couple two free dofs; `indices` are their
    positions in the reduced (free-dofs-only) stiffness matrix.
    """

    ke: jax.Array  # (64,) the element stiffness, flattened
    keep: jax.Array  # (nse,) positions in the (nel * 64,) element-entry list
    # The reduced matrix's COO pattern, (nse, 2) indices analysed once: static, so that the
    # solver sends only values to the host although `problem` is an argument of a jitted
    # function (an index array there would be a tracer).
    pattern: lxs.StaticPattern = eqx.field(static=True)
    load: jax.Array  # (n,) on the free dofs
    filter_matrix: RowSparse  # H (symmetric)
    filter_sums: jax.Array  # Hs = H 1
    volume_weights: jax.Array  # H (1 / Hs): sum(H x / Hs) = volume_weights . x
    shape: tuple[int, ...] = eqx.field(static=True)  # elements along each axis
    size: int = eqx.field(static=True)  # number of free dofs

    @property
    def indices(self) -> np.ndarray:
        return self.pattern.indices


def mbb_problem(nelx: int, nely: int, rmin: float) -> Problem:
    """The MBB half-beam: symmetry (x fixed) on the left edge, a roller at the lower-right
    corner, a unit downward load at the upper-left corner."""
    nodes = np.arange((nelx + 1) * (nely + 1)).reshape(nelx + 1, nely + 1).T  # [row, column]
    first = (2 * nodes[:-1, :-1] + 2).T.reshape(-1)  # x dof of each element's lower-left node
    offsets = np.array([0, 1, 2 * nely + 2, 2 * nely + 3, 2 * nely, 2 * nely + 1, -2, -1])
    edof = first[:, None] + offsets[None, :]
    rows = np.repeat(edof, 8, axis=1).reshape(-1)
    cols = np.tile(edof, (1, 8)).reshape(-1)
    ndof = 2 * (nelx + 1) * (nely + 1)
    fixed = np.union1d(np.arange(0, 2 * (nely + 1), 2), [ndof - 1])
    free = np.setdiff1d(np.arange(ndof), fixed)
    number = np.full(ndof, -1)
    number[free] = np.arange(free.size)
    keep = np.flatnonzero((number[rows] >= 0) & (number[cols] >= 0))
    indices = np.stack([number[rows[keep]], number[cols[keep]]], axis=1).astype(np.int32)
    load = np.zeros(ndof)
    load[1] = -1.0
    filter_matrix = density_filter(nelx, nely, rmin)
    return Problem(
        ke=jnp.asarray(element_stiffness().reshape(-1)),
        keep=jnp.asarray(keep),
        pattern=lxs.static_pattern(indices, int(free.size)),
        load=jnp.asarray(load[free]),
        **filter_fields(filter_matrix, nelx * nely),
        shape=(nelx, nely),
        size=int(free.size),
    )


def filter_fields(filter_matrix: RowSparse, nel: int) -> dict[str, object]:
    sums = filter_matrix @ jnp.ones(nel)
    return {
        "filter_matrix": filter_matrix,
        "filter_sums": sums,
        "volume_weights": filter_matrix @ (1 / sums),
    }


def density_filter(nelx: int, nely: int, rmin: float) -> RowSparse:
    """H with H[e, f] = max(0, rmin - distance(e, f)) between element centres."""
    reach = int(np.ceil(rmin)) - 1
    elx, ely = np.meshgrid(np.arange(nelx), np.arange(nely), indexing="ij")
    elx, ely = elx.reshape(-1), ely.reshape(-1)  # element e = elx * nely + ely
    rows, cols, weights = [], [], []
    for dx in range(-reach, reach + 1):
        for dy in range(-reach, reach + 1):
            ox, oy = elx + dx, ely + dy
            inside = (ox >= 0) & (ox < nelx) & (oy >= 0) & (oy < nely)
            weight = max(0.0, rmin - np.hypot(dx, dy))
            if weight > 0:
                rows.append((elx * nely + ely)[inside])
                cols.append((ox * nely + oy)[inside])
                weights.append(np.full(int(inside.sum()), weight))
    rows, cols, weights = (np.concatenate(part) for part in (rows, cols, weights))
    return RowSparse.from_coo(rows, cols, weights, nelx * nely)


def stiffness(problem: Problem, density: jax.Array, penal: float) -> lxs.SparseOperator:
    """The reduced stiffness matrix for the element densities (SIMP), as a SparseOperator."""
    young = E_MIN + density**penal * (E0 - E_MIN)
    values = (young[:, None] * problem.ke[None, :]).reshape(-1)[problem.keep]
    tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
    return lxs.SparseOperator.from_pattern(problem.pattern, values, tags=tags)


def compliance(density: jax.Array, problem: Problem, penal: float, solver) -> jax.Array:
    """c = f^T u with K(density) u = f."""
    displacement = lx.linear_solve(stiffness(problem, density, penal), problem.load, solver=solver)
    return problem.load @ displacement.value


def filtered(problem: Problem, values: jax.Array) -> jax.Array:
    """H values / Hs."""
    return (problem.filter_matrix @ values) / problem.filter_sums


@dataclasses.dataclass(frozen=True)
class Settings:
    volfrac: float
    penal: float
    density_filter: bool


@eqx.filter_jit
def iteration(problem: Problem, x: jax.Array, physical: jax.Array, settings: Settings, solver):
    """One iteration of the 88-line loop: returns (x_new, physical_new, compliance, change)."""
    c, dc = jax.value_and_grad(compliance)(physical, problem, settings.penal, solver)
    if settings.density_filter:
        dc = problem.filter_matrix @ (dc / problem.filter_sums)
        dv = problem.volume_weights  # H (1 / Hs)
    else:
        dc = (problem.filter_matrix @ (x * dc)) / problem.filter_sums / jnp.maximum(1e-3, x)
        dv = jnp.ones_like(x)
    target = settings.volfrac * x.size
    # The volume of the physical densities is linear in x_new: sum(H x_new / Hs) equals
    # volume_weights . x_new, so the bisection needs no filter application per step.
    volume_weights = problem.volume_weights if settings.density_filter else jnp.ones_like(x)

    def update(multiplier):
        step = x * jnp.sqrt(-dc / dv / multiplier)
        return jnp.maximum(
            0.0, jnp.maximum(x - MOVE, jnp.minimum(1.0, jnp.minimum(x + MOVE, step)))
        )

    def bisect(bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        too_much = update(middle) @ volume_weights > target
        return jnp.where(too_much, middle, low), jnp.where(too_much, high, middle)

    def open_bracket(bounds):
        low, high = bounds
        return (high - low) / (low + high) > BISECTION_TOLERANCE

    low, high = jax.lax.while_loop(open_bracket, bisect, (jnp.zeros(()), jnp.full((), 1e9)))
    x_new = update(0.5 * (low + high))
    physical_new = filtered(problem, x_new) if settings.density_filter else x_new
    return x_new, physical_new, c, jnp.max(jnp.abs(x_new - x))


def make_solver(name: str, problem: Problem):
    if name == "cholmod":
        return lxs.Cholmod()
    if name == "superlu":
        return lxs.SuperLU()
    if name == "amg":
        return lxs.AMG(rtol=1e-10, near_nullspace=rigid_body_modes(problem), warm_start=True)
    raise ValueError(f"unknown solver {name!r}")


def rigid_body_modes(problem: Problem) -> np.ndarray:
    """The three plane rigid body modes (two translations, one rotation) on the free dofs."""
    nelx, nely = problem.shape
    node = np.arange((nelx + 1) * (nely + 1))
    x, y = node // (nely + 1), -(node % (nely + 1))  # node rows count downwards
    modes = np.zeros((2 * node.size, 3))
    modes[0::2, 0] = 1.0
    modes[1::2, 1] = 1.0
    modes[0::2, 2], modes[1::2, 2] = -y, x
    ndof = 2 * node.size
    fixed = np.union1d(np.arange(0, 2 * (nely + 1), 2), [ndof - 1])
    return modes[np.setdiff1d(np.arange(ndof), fixed)]


@dataclasses.dataclass
class History:
    compliance: list[float] = dataclasses.field(default_factory=list)
    volume: list[float] = dataclasses.field(default_factory=list)
    change: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)


def optimize(problem: Problem, settings: Settings, solver, max_iterations: int, progress=True):
    """Run the loop until the change is at most 0.01; returns (physical densities, History)."""
    # float64, not weakly typed: the second iteration would otherwise compile again.
    x = jnp.full(int(np.prod(problem.shape)), settings.volfrac, dtype=jnp.float64)
    physical = x
    history = History()
    bar = _progress_bar(max_iterations, progress)
    for _ in range(max_iterations):
        start = time.perf_counter()
        x_new, physical_new, c, change = iteration(problem, x, physical, settings, solver)
        change = float(change)  # waits for the iteration
        history.seconds.append(time.perf_counter() - start)
        history.compliance.append(float(c))
        history.volume.append(float(jnp.mean(physical)))
        history.change.append(change)
        x, physical = x_new, physical_new
        bar.update(1)
        bar.set_postfix(compliance=f"{float(c):.4f}", change=f"{change:.4f}")
        if not np.isfinite(float(c)):
            break
        if change <= CHANGE_TOLERANCE:
            break
    bar.close()
    return physical, history


def _progress_bar(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # the `examples` extra brings tqdm; without it, no bar
        enabled = False
    # In a log file or a pipe, every update of the bar would be one more carriage return.
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    return tqdm(total=total, desc="iterations", unit="it", file=sys.stderr, leave=False)


class _NoBar:
    def update(self, count):
        pass

    def set_postfix(self, **values):
        pass

    def close(self):
        pass


def plot(physical: np.ndarray, history: History, nelx: int, nely: int, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    design = np.asarray(physical).reshape(nelx, nely).T
    figure, axes = plt.subplots(figsize=(8, 8 * nely / nelx + 1.2))
    # Element centres at integers: the mesh spans -0.5 .. nelx - 0.5 (rows downwards).
    axes.imshow(-design, cmap="gray", vmin=-1, vmax=0, interpolation="none")
    axes.set_xlabel("x (elements)")
    axes.set_ylabel("y (elements, downwards)")
    # The boundary conditions of mbb_problem: x fixed on the left edge (symmetry), a roller at
    # the lower-right corner, the unit load downwards at the upper-left corner.
    edge = np.arange(0, nely + 1, max(1, nely // 12)) - 0.5  # about a dozen markers at most
    axes.plot(
        np.full(edge.size, -0.5),
        edge,
        ">",
        color="tab:green",
        markersize=5,
        clip_on=False,
        label="symmetry: x fixed",
    )
    axes.plot(
        [nelx - 0.5],
        [nely - 0.5],
        "^",
        color="tab:blue",
        markersize=9,
        clip_on=False,
        label="roller: y fixed",
    )
    arrow = max(2.0, 0.15 * nely)  # elements
    axes.annotate(
        "",
        xy=(-0.5, -0.5),
        xytext=(-0.5, -0.5 - arrow),
        annotation_clip=False,
        arrowprops={"arrowstyle": "-|>", "color": "tab:red", "linewidth": 2},
    )
    axes.plot([], [], color="tab:red", linewidth=2, label="unit load")
    figure.tight_layout()
    figure.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    axes.set_title(
        f"MBB half-beam {nelx} x {nely}: density after {len(history.compliance)} iterations, "
        f"compliance {history.compliance[-1]:.2f}",
        pad=8 + arrow * 8 * 72 / nelx,  # the arrow's length in points, and some
    )
    figure.savefig(f"{output}.png", dpi=120, bbox_inches="tight")
    plt.close(figure)

    figure, left = plt.subplots(figsize=(7, 3.8))
    steps = np.arange(1, len(history.compliance) + 1)
    left.plot(steps, history.compliance, color="tab:blue", label="compliance (left axis)")
    left.set_xlabel("iteration")
    left.set_ylabel("compliance f . u", color="tab:blue")
    left.set_yscale("log")
    right = left.twinx()
    right.plot(steps, history.change, color="tab:orange", label="max |x_new - x| (right axis)")
    right.axhline(
        CHANGE_TOLERANCE,
        color="tab:orange",
        linestyle="--",
        linewidth=1,
        label=f"stopping tolerance {CHANGE_TOLERANCE:g}",
    )
    right.set_ylabel("largest density change", color="tab:orange")
    right.set_yscale("log")
    lines = left.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    right.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)
    left.set_title(f"MBB half-beam {nelx} x {nely}: convergence of the optimality criteria")
    figure.tight_layout()
    figure.savefig(f"{output}_convergence.png", dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    problem = mbb_problem(args.nelx, args.nely, args.rmin)
    settings = Settings(args.volfrac, args.penal, args.filter == "density")
    solver = make_solver(args.solver, problem)
    print(
        f"MBB beam {args.nelx} x {args.nely}: {problem.size} dofs, {args.filter} filter, "
        f"volfrac {args.volfrac}, penal {args.penal}, rmin {args.rmin}, solver {args.solver}"
    )
    start = time.perf_counter()
    physical, history = optimize(problem, settings, solver, args.max_iterations)
    total = time.perf_counter() - start
    iterations = len(history.compliance)
    steady = history.seconds[1:] or history.seconds
    print(
        f"iterations={iterations} compliance={history.compliance[-1]:.6f} "
        f"volume={history.volume[-1]:.6f} change={history.change[-1]:.6f} "
        f"ms_per_iteration={1e3 * statistics.median(steady):.2f} "
        f"first_iteration_s={history.seconds[0]:.2f} total_s={total:.2f}"
    )
    if not args.no_plot:
        plot(physical, history, args.nelx, args.nely, args.output)
        print(f"wrote {args.output}.png and {args.output}_convergence.png")
    print(f"final compliance {history.compliance[-1]:.4f} after {iterations} iterations")


if __name__ == "__main__":
    main()
