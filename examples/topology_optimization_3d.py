"""3D topology optimization of a cantilever with 8-node hexahedra, solved by CHOLMOD or AMG.

The 88-line algorithm of examples/topology_optimization.py (SIMP with E0 = 1, Emin = 1e-9,
penal 3, density filter, OC update) on a 3D cantilever: a `nelx` x `nely` x `nelz` grid of
unit trilinear hexahedra (nu = 0.3), clamped on the face x = 0, loaded downwards (-y) along
the lower edge of the free end, as in the 3D follow-up of the 88-line code (top3d). The
default grid, 48 x 24 x 24, has 90,000 free degrees of freedom.

Two solvers are offered:

- `--solver amg` (default): smoothed-aggregation AMG from pyamg as a CG preconditioner,
  given the six rigid body modes (three translations, three rotations) as near-nullspace
  vectors, each solve starting from the previous iteration's displacement
  (`warm_start=True`). The hierarchy is rebuilt every iteration: the densities move by up
  to 0.2 per iteration, and keeping it (`reuse=2`) cost 16% more time over 20 iterations
  (79.4 against 68.4 s; with neither, 72.4 s);
- `--solver cholmod`: sparse Cholesky, ordered by nested dissection (chosen by
  `ordering="auto"` for this 3D mesh); its symbolic analysis is done once.

The gradient of the compliance is `jax.grad` through the solve; one iteration is one jitted
call. The script prints the compliance and the time per iteration; the last line reads
`final compliance C after N iterations`. Unless `--no-plot`, it writes the design as
`<output>.png`: `topology_optimization_3d.png`, or `topology_optimization_3d_small.png` with
`--small`, unless `--output` is given.

    python examples/topology_optimization_3d.py                    # 48 x 24 x 24, AMG
    python examples/topology_optimization_3d.py --solver cholmod
    python examples/topology_optimization_3d.py --small            # 12 x 6 x 6
"""

from __future__ import annotations

import argparse


OUTPUT = "topology_optimization_3d"  # default prefix of the PNG


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--nelx", type=int, default=48, help="elements along the beam")
    parser.add_argument("--nely", type=int, default=24, help="elements in the load direction")
    parser.add_argument("--nelz", type=int, default=24, help="elements across the beam")
    parser.add_argument("--volfrac", type=float, default=0.3, help="volume fraction")
    parser.add_argument("--penal", type=float, default=3.0, help="SIMP penalization power")
    parser.add_argument("--rmin", type=float, default=1.5, help="filter radius, in elements")
    parser.add_argument("--solver", choices=("amg", "cholmod"), default="amg", help="linear solver")
    parser.add_argument("--rtol", type=float, default=1e-8, help="AMG's relative tolerance")
    parser.add_argument(
        "--max-iterations", type=int, default=20, help="at most this many iterations"
    )
    parser.add_argument("--small", action="store_true", help="12 x 6 x 6")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (there is none when stderr is not a terminal)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--output",
        default=OUTPUT,
        help="PNG prefix; --small appends _small to the default",
    )
    # As in topology_optimization.py: None survives parsing unless --output is given.
    args = parser.parse_args(argv, namespace=argparse.Namespace(output=None))
    if args.output is None:
        args.output = f"{OUTPUT}_small" if args.small else OUTPUT
    if args.small:
        args.nelx, args.nely, args.nelz = 12, 6, 6
    for name in ("nelx", "nely", "nelz", "max_iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from topology_optimization import filter_fields, optimize, Problem, RowSparse, Settings  # noqa: E402


jax.config.update("jax_enable_x64", True)

NU = 0.3
# Local node order of a hexahedron: corners (x, y, z) of the unit cube.
CORNERS = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]]
)


def element_stiffness(nu: float = NU) -> np.ndarray:
    """The 24 x 24 stiffness of a unit cube trilinear element with E = 1 (2x2x2 Gauss).

    Dofs are (x, y, z) of each corner in the order of `CORNERS`.
    """
    lam = nu / ((1 + nu) * (1 - 2 * nu))
    mu = 1 / (2 * (1 + nu))
    elasticity = np.zeros((6, 6))
    elasticity[:3, :3] = lam
    elasticity[np.arange(3), np.arange(3)] += 2 * mu
    elasticity[np.arange(3, 6), np.arange(3, 6)] = mu
    signs = 2 * CORNERS - 1  # corner coordinates in [-1, 1]^3
    point = 1 / np.sqrt(3)
    stiffness = np.zeros((24, 24))
    for gauss in np.array(np.meshgrid(*[[-point, point]] * 3, indexing="ij")).reshape(3, -1).T:
        # d N_a / d xi for N_a = prod_d (1 + s_ad xi_d) / 8; the map to the unit cube has
        # Jacobian 1/2 per axis, so d/dx = 2 d/dxi and the weight is det = 1/8.
        factors = 1 + signs * gauss  # (8, 3)
        gradient = np.empty((8, 3))
        for d in range(3):
            others = [e for e in range(3) if e != d]
            gradient[:, d] = signs[:, d] * factors[:, others[0]] * factors[:, others[1]] / 8 * 2
        strain = np.zeros((6, 24))
        for a in range(8):
            gx, gy, gz = gradient[a]
            strain[:, 3 * a : 3 * a + 3] = [
                [gx, 0, 0],
                [0, gy, 0],
                [0, 0, gz],
                [gy, gx, 0],
                [0, gz, gy],
                [gz, 0, gx],
            ]
        stiffness += strain.T @ elasticity @ strain / 8
    # Exactly symmetric (the products above leave 1e-17 differences): the assembled
    # stiffness is then exactly symmetric too, which the solvers' fast paths test for.
    return (stiffness + stiffness.T) / 2


def cantilever_problem(nelx: int, nely: int, nelz: int, rmin: float) -> tuple[Problem, np.ndarray]:
    """The cantilever and the rigid body modes on its free dofs, shape (n, 6)."""
    shape = np.array([nelx, nely, nelz])
    nodes_per_axis = shape + 1

    def node_number(i, j, k):
        return (i * nodes_per_axis[1] + j) * nodes_per_axis[2] + k

    ex, ey, ez = (a.reshape(-1) for a in np.meshgrid(*map(np.arange, shape), indexing="ij"))
    corner_nodes = node_number(
        ex[:, None] + CORNERS[:, 0], ey[:, None] + CORNERS[:, 1], ez[:, None] + CORNERS[:, 2]
    )
    edof = (3 * corner_nodes[:, :, None] + np.arange(3)).reshape(-1, 24)
    rows = np.repeat(edof, 24, axis=1).reshape(-1)
    cols = np.tile(edof, (1, 24)).reshape(-1)
    nnode = int(np.prod(nodes_per_axis))
    ndof = 3 * nnode
    node_xyz = np.stack(
        [a.reshape(-1) for a in np.meshgrid(*map(np.arange, nodes_per_axis), indexing="ij")],
        axis=1,
    )
    clamped = np.flatnonzero(node_xyz[:, 0] == 0)
    fixed = (3 * clamped[:, None] + np.arange(3)).reshape(-1)
    free = np.setdiff1d(np.arange(ndof), fixed)
    number = np.full(ndof, -1)
    number[free] = np.arange(free.size)
    keep = np.flatnonzero((number[rows] >= 0) & (number[cols] >= 0))
    indices = np.stack([number[rows[keep]], number[cols[keep]]], axis=1).astype(np.int32)
    load = np.zeros(ndof)
    loaded = np.flatnonzero((node_xyz[:, 0] == nelx) & (node_xyz[:, 1] == 0))
    load[3 * loaded + 1] = -1.0
    filter_matrix = _filter(shape, rmin)
    problem = Problem(
        ke=jnp.asarray(element_stiffness().reshape(-1)),
        keep=jnp.asarray(keep),
        pattern=lxs.static_pattern(indices, int(free.size)),
        load=jnp.asarray(load[free]),
        **filter_fields(filter_matrix, int(np.prod(shape))),
        shape=(nelx, nely, nelz),
        size=int(free.size),
    )
    return problem, _rigid_body_modes(node_xyz)[free]


def _rigid_body_modes(node_xyz: np.ndarray) -> np.ndarray:
    """Three translations and three rotations of all nodes, as (3 * nodes, 6)."""
    centre = node_xyz - node_xyz.mean(axis=0)
    x, y, z = centre.T
    modes = np.zeros((node_xyz.shape[0], 3, 6))
    for d in range(3):
        modes[:, d, d] = 1.0
    # Rotations about x, y and z: u = omega x r.
    modes[:, 1, 3], modes[:, 2, 3] = -z, y
    modes[:, 0, 4], modes[:, 2, 4] = z, -x
    modes[:, 0, 5], modes[:, 1, 5] = -y, x
    return modes.reshape(-1, 6)


def _filter(shape: np.ndarray, rmin: float) -> RowSparse:
    reach = int(np.ceil(rmin)) - 1
    grid = np.stack([a.reshape(-1) for a in np.meshgrid(*map(np.arange, shape), indexing="ij")])
    number = lambda g: (g[0] * shape[1] + g[1]) * shape[2] + g[2]
    rows, cols, weights = [], [], []
    span = range(-reach, reach + 1)
    for offset in np.array(np.meshgrid(span, span, span, indexing="ij")).reshape(3, -1).T:
        weight = max(0.0, rmin - float(np.linalg.norm(offset)))
        if weight == 0:
            continue
        other = grid + offset[:, None]
        inside = np.all((other >= 0) & (other < shape[:, None]), axis=0)
        rows.append(number(grid[:, inside]))
        cols.append(number(other[:, inside]))
        weights.append(np.full(int(inside.sum()), weight))
    rows, cols, weights = (np.concatenate(part) for part in (rows, cols, weights))
    return RowSparse.from_coo(rows, cols, weights, int(np.prod(shape)))


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    problem, modes = cantilever_problem(args.nelx, args.nely, args.nelz, args.rmin)
    if args.solver == "amg":
        solver = lxs.AMG(rtol=args.rtol, near_nullspace=modes, warm_start=True)
    else:
        solver = lxs.Cholmod()
    settings = Settings(args.volfrac, args.penal, density_filter=True)
    print(
        f"cantilever {args.nelx} x {args.nely} x {args.nelz}: {problem.size} dofs, "
        f"{problem.indices.shape[0]} element entries, solver {args.solver}"
    )
    start = time.perf_counter()
    physical, history = optimize(
        problem, settings, solver, args.max_iterations, progress=not args.no_progress
    )
    total = time.perf_counter() - start
    iterations = len(history.compliance)
    steady = history.seconds[1:] or history.seconds
    info = lxs.cache_info()
    print(
        f"iterations={iterations} compliance={history.compliance[-1]:.6f} "
        f"volume={history.volume[-1]:.6f} change={history.change[-1]:.6f} "
        f"s_per_iteration={statistics.median(steady):.3f} "
        f"first_iteration_s={history.seconds[0]:.2f} total_s={total:.2f} "
        f"setups={info.factorizations}"
    )
    if not args.no_plot:
        plot(np.asarray(physical), (args.nelx, args.nely, args.nelz), history, args.output)
        print(f"wrote {args.output}.png")
    print(f"final compliance {history.compliance[-1]:.4f} after {iterations} iterations")


def plot(physical: np.ndarray, shape: tuple[int, int, int], history, output: str) -> None:
    """The elements with density above 0.5 as voxels (x along the beam, y up), the clamped
    face and the load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    nelx, nely, nelz = shape
    solid = physical.reshape(shape) > 0.5
    figure = plt.figure(figsize=(9, 5.5))
    axes = figure.add_subplot(projection="3d")
    # Plot axes (x, z, y) so that the load direction (-y) points down on the page.
    axes.voxels(
        np.transpose(solid, (0, 2, 1)), facecolors="#4c72b0", edgecolor="#23395d", linewidth=0.1
    )
    # The support: the face x = 0 is clamped (all three displacements fixed), drawn as a wall.
    m = 0.15 * nely  # the wall reaches a little past the beam, to read as a wall
    wall = [[(0, -m, -m), (0, nelz + m, -m), (0, nelz + m, nely + m), (0, -m, nely + m)]]
    axes.add_collection3d(
        Poly3DCollection(wall, facecolor="tab:gray", edgecolor="black", alpha=0.45, hatch="//")
    )
    # The load: unit forces in -y on the nodes of the lower edge of the free end (x = nelx).
    z = np.linspace(0, nelz, min(nelz, 6) + 1)
    arrow = 0.35 * nely
    axes.quiver(
        np.full_like(z, nelx),
        z,
        np.full_like(z, arrow),
        0,
        0,
        -arrow,
        color="tab:red",
        linewidth=2,
        arrow_length_ratio=0.3,
    )
    axes.plot([nelx, nelx], [0, nelz], [0, 0], color="tab:red", linewidth=2)
    axes.set_xlim(0, nelx)
    axes.set_ylim(-m, nelz + m)
    axes.set_zlim(-m, nely + m)
    axes.set_box_aspect((nelx, nelz + 2 * m, nely + 2 * m))
    axes.view_init(elev=20, azim=-60)
    axes.set_xlabel("x (elements, along the beam)")
    axes.set_ylabel("z (elements)")
    axes.set_zlabel("y (elements)")
    handles = [
        matplotlib.patches.Patch(facecolor="#4c72b0", label="material (density > 0.5)"),
        matplotlib.patches.Patch(
            facecolor="tab:gray", alpha=0.45, hatch="//", label="clamped face x = 0"
        ),
        matplotlib.lines.Line2D(
            [], [], color="tab:red", linewidth=2, label="load (-y) at the free end"
        ),
    ]
    axes.legend(handles=handles, loc="upper left", fontsize=8)
    axes.set_title(
        f"cantilever {nelx} x {nely} x {nelz}: compliance "
        f"{history.compliance[-1]:.2f} after {len(history.compliance)} iterations"
    )
    figure.tight_layout()
    figure.savefig(f"{output}.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
