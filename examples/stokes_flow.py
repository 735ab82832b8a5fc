"""Stokes flow in a lid-driven cavity past an obstacle: a symmetric indefinite saddle point.

Solves the incompressible Stokes equations -Laplace(u) + alpha(x; theta) u + grad p = 0,
div u = 0 on the unit square with Taylor-Hood elements (continuous quadratic velocity,
continuous linear pressure) on N x N squares, each split into two triangles along its
diagonal. The lid y = 1 moves with u = (16 x^2 (1 - x)^2, 0) (the regularised cavity: no
corner singularity), the other walls are at rest. The obstacle is a Brinkman penalty: alpha
is 1e4 inside a disc of radius r and centre (cx, cy), 0 outside, blended over a width of
0.02 by a smooth step, so that theta = (r, cx, cy) is a design parameter with a gradient.

The boundary velocities are eliminated and the pressure at the corner (0, 0) is pinned to 0,
which leaves n = 2 (2N - 1)^2 + (N + 1)^2 - 1 unknowns (N = 75: 50,177; N = 150: 201,602)
and the symmetric indefinite matrix [[A, B^T], [B, 0]]: A (viscosity and penalty) is
positive definite, so the matrix has as many positive eigenvalues as velocity unknowns and as
many negative ones as pressure unknowns. The element matrices are computed in JAX,
vmapped over the elements, into the values of one static sparsity pattern
(`lxs.SparseOperator.from_pattern`, tagged `lx.symmetric_tag`), and solved with each of
`lxs.Pardiso` (LDL^T), `lxs.UMFPACK` (LU) and `lxs.SuperLU` (LU) side by side.

The flow quantity is the dissipation J = int |grad u|^2 + alpha |u|^2 dx (the power the lid
puts in); its gradient dJ/dtheta is `jax.grad` through `lx.linear_solve` and is checked
against central finite differences.

    python examples/stokes_flow.py                # N = 75, n = 50,177
    python examples/stokes_flow.py --small        # N = 12, n = 1,226
    python examples/stokes_flow.py --cells 100 --solvers pardiso,umfpack

`stokes_system(cells)` returns the same system as a scipy matrix and a right-hand side with
NumPy and scipy only (no JAX), for benchmarks. Unless `--no-plot`, the script writes
`<output>.png` (speed, streamlines and pressure); the prefix is `stokes_flow`, or
`stokes_flow_small` with `--small`, unless `--output` is given.
"""

from __future__ import annotations

import argparse


OUTPUT = "stokes_flow"  # default prefix of the PNG
SOLVERS = ("pardiso", "umfpack", "superlu")
PARDISO_MISSING = "install the pardiso extra: pip install -e '.[pardiso]'"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with --small and the default prefix applied and the values checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--cells", type=int, default=75, help="squares per side (N)")
    parser.add_argument("--small", action="store_true", help="N = 12")
    parser.add_argument(
        "--solvers",
        default=",".join(SOLVERS),
        help="comma-separated, of " + ", ".join(SOLVERS) + " (those not installed are skipped)",
    )
    parser.add_argument(
        "--theta",
        type=float,
        nargs=3,
        default=(0.15, 0.5, 0.5),
        metavar=("R", "CX", "CY"),
        help="obstacle radius and centre",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per solver")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--output", default=OUTPUT, help="prefix of the PNG; --small appends _small to the default"
    )
    args = parser.parse_args(argv, namespace=argparse.Namespace(output=None))
    if args.output is None:
        args.output = f"{OUTPUT}_small" if args.small else OUTPUT
    if args.small:
        args.cells = 12
    if args.cells < 2 or args.repeats < 1:
        parser.error(f"need --cells >= 2 and --repeats >= 1, got {args.cells}, {args.repeats}")
    args.solvers = [name.strip() for name in args.solvers.split(",") if name.strip()]
    unknown = sorted(set(args.solvers) - set(SOLVERS))
    if unknown or not args.solvers:
        parser.error(f"--solvers: unknown {unknown}; choose among {', '.join(SOLVERS)}")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import dataclasses  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


ALPHA_MAX = 1e4  # the Brinkman penalty inside the obstacle
WIDTH = 0.02  # of the smooth step from 0 to ALPHA_MAX across the obstacle's edge
DEFAULT_THETA = (0.15, 0.5, 0.5)  # obstacle radius, centre x, centre y

# The 7-point Gauss rule of degree 5 on a triangle (Strang and Fix): exact for the
# viscous (degree 2), divergence (degree 2) and constant-penalty (degree 4) integrands.
_A1, _A2 = (6 - np.sqrt(15)) / 21, (6 + np.sqrt(15)) / 21
QUADRATURE_POINTS = np.array(
    [[1 / 3, 1 / 3, 1 / 3]]
    + [np.roll([1 - 2 * a, a, a], k).tolist() for a in (_A1, _A2) for k in range(3)]
)  # barycentric coordinates, (7, 3)
QUADRATURE_WEIGHTS = np.array(
    [9 / 40] + [(155 - np.sqrt(15)) / 1200] * 3 + [(155 + np.sqrt(15)) / 1200] * 3
)  # summing to 1: multiply by the area


def p2_basis(barycentric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The six quadratic basis functions at points given in barycentric coordinates (Q, 3).

    Local nodes: the vertices 0, 1, 2, then the midpoints of edges 01, 12, 20. Returns the
    values (Q, 6) and the derivatives with respect to the three barycentric coordinates
    (Q, 6, 3), which the chain rule turns into gradients.
    """
    lam = barycentric
    q = lam.shape[0]
    values = np.stack(
        [lam[:, i] * (2 * lam[:, i] - 1) for i in range(3)]
        + [4 * lam[:, i] * lam[:, (i + 1) % 3] for i in range(3)],
        axis=1,
    )
    derivatives = np.zeros((q, 6, 3))
    for i in range(3):
        derivatives[:, i, i] = 4 * lam[:, i] - 1
        j = (i + 1) % 3
        derivatives[:, 3 + i, i] = 4 * lam[:, j]
        derivatives[:, 3 + i, j] = 4 * lam[:, i]
    return values, derivatives


def element_matrices(xp, corners, alpha):
    """The 15 x 15 Taylor-Hood element matrices [[A + M, B^T], [B, 0]], with numpy or jax.numpy.

    `corners` (E, 3, 2) are the vertices (counter-clockwise), `alpha` (E, 7) the penalty at
    the quadrature points. Local unknowns: the x velocities of the six nodes, their y
    velocities, the pressures of the three vertices. A is int grad u : grad v, M is
    int alpha u . v, B is -int q div v.
    """
    values, derivatives = p2_basis(QUADRATURE_POINTS)
    w = QUADRATURE_WEIGHTS
    d = corners[:, 1] - corners[:, 0]
    e = corners[:, 2] - corners[:, 0]
    det = d[:, 0] * e[:, 1] - d[:, 1] * e[:, 0]  # twice the area
    grad1 = xp.stack([e[:, 1], -e[:, 0]], axis=1) / det[:, None]
    grad2 = xp.stack([-d[:, 1], d[:, 0]], axis=1) / det[:, None]
    grad_lambda = xp.stack([-grad1 - grad2, grad1, grad2], axis=1)  # (E, 3, 2)
    gradients = xp.einsum("qkm,emc->eqkc", derivatives, grad_lambda)  # (E, Q, 6, 2)
    area = (0.5 * det)[:, None, None]
    weighted = gradients * w[:, None, None]
    stiffness = area * xp.einsum("eqkc,eqlc->ekl", weighted, gradients, optimize=True)
    mass = area * xp.einsum("eq,qk,ql->ekl", alpha * w, values, values, optimize=True)
    divergence = -area[..., None] * xp.einsum(
        "qi,eqkc->eick", QUADRATURE_POINTS, weighted, optimize=True
    )  # (E, 3, 2, 6)
    block = stiffness + mass
    block = 0.5 * (block + xp.swapaxes(block, 1, 2))  # symmetric to the last bit
    zero_uv = xp.zeros_like(block)
    b = xp.concatenate([divergence[:, :, 0], divergence[:, :, 1]], axis=2)  # (E, 3, 12)
    velocity = xp.concatenate(
        [xp.concatenate([block, zero_uv], axis=2), xp.concatenate([zero_uv, block], axis=2)],
        axis=1,
    )
    top = xp.concatenate([velocity, xp.swapaxes(b, 1, 2)], axis=2)
    bottom = xp.concatenate([b, xp.zeros((b.shape[0], 3, 3), dtype=b.dtype)], axis=2)
    return xp.concatenate([top, bottom], axis=1)


def obstacle(xp, points, theta):
    """The Brinkman penalty alpha(x; theta) at `points` (..., 2): a smooth step across the disc."""
    radius, cx, cy = theta[0], theta[1], theta[2]
    distance = xp.sqrt((points[..., 0] - cx) ** 2 + (points[..., 1] - cy) ** 2 + 1e-30)
    return ALPHA_MAX * 0.5 * (1 + xp.tanh((radius - distance) / WIDTH))


@dataclasses.dataclass(frozen=True)
class Mesh:
    """N x N squares of the unit square, each split along its diagonal into two triangles.

    The quadratic nodes form a (2N + 1) x (2N + 1) grid (vertices, edge midpoints, and the
    midpoints of the diagonals): node iy * (2N + 1) + ix is at (ix, iy) / (2N). Pressure
    vertex b * (N + 1) + a is node (2a, 2b). Full unknowns: x velocities (M = (2N + 1)^2),
    y velocities (M), pressures ((N + 1)^2). `number` maps them to the reduced system: the
    interior x velocities, the interior y velocities, the pressures but the pinned one
    (vertex 0, at the corner (0, 0)); -1 for the eliminated ones.
    """

    cells: int
    nodes: np.ndarray  # (M, 2) coordinates of the quadratic nodes
    corners: np.ndarray  # (E, 3, 2) vertex coordinates, counter-clockwise
    dofs: np.ndarray  # (E, 15) full unknown numbers of each element's local unknowns
    number: np.ndarray  # (2 M + V,) reduced number, or -1
    lid: np.ndarray  # (2 M,) the prescribed velocity: the lid's, 0 on the other walls

    @property
    def size(self) -> int:
        return int(np.count_nonzero(self.number >= 0))

    @property
    def velocity_unknowns(self) -> int:
        return 2 * (2 * self.cells - 1) ** 2

    @property
    def quadrature_points(self) -> np.ndarray:
        return np.einsum("qm,emc->eqc", QUADRATURE_POINTS, self.corners)  # (E, Q, 2)


def make_mesh(cells: int) -> Mesh:
    side = 2 * cells + 1
    m = side * side
    a, b = (g.ravel() for g in np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij"))
    lower = np.stack([[2 * a, 2 * b], [2 * a + 2, 2 * b], [2 * a + 2, 2 * b + 2]], axis=0)
    upper = np.stack([[2 * a, 2 * b], [2 * a + 2, 2 * b + 2], [2 * a, 2 * b + 2]], axis=0)
    grid = np.concatenate([lower, upper], axis=2).transpose(2, 0, 1)  # (E, 3, 2) node coords
    middle = (grid + np.roll(grid, -1, axis=1)) // 2  # midpoints of edges 01, 12, 20
    points = np.concatenate([grid, middle], axis=1)  # (E, 6, 2)
    nodes = points[..., 1] * side + points[..., 0]
    vertices = (grid[..., 1] // 2) * (cells + 1) + grid[..., 0] // 2
    dofs = np.concatenate([nodes, m + nodes, 2 * m + vertices], axis=1)
    ix, iy = np.arange(m) % side, np.arange(m) // side
    interior = (ix > 0) & (ix < side - 1) & (iy > 0) & (iy < side - 1)
    free = np.concatenate([interior, interior, np.arange((cells + 1) ** 2) > 0])
    number = np.full(free.size, -1)
    number[free] = np.arange(np.count_nonzero(free))
    x = ix / (side - 1)
    lid = np.zeros(2 * m)
    lid[:m] = np.where(iy == side - 1, 16 * x**2 * (1 - x) ** 2, 0.0)
    coordinates = np.stack([ix, iy], axis=1) / (side - 1)
    return Mesh(cells, coordinates, grid / (side - 1), dofs, number, lid)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the element matrices' entries go: the reduced matrix's COO pattern (`keep`,
    `rows`, `cols`) and the right-hand side's couplings to the moving lid (`lift`)."""

    keep: np.ndarray  # positions in the (E * 225,) list of element entries
    rows: np.ndarray
    cols: np.ndarray
    lift: np.ndarray  # positions of the entries (free row, lid column)
    lift_rows: np.ndarray  # their reduced rows
    lift_values: np.ndarray  # the lid velocity of their columns


def make_layout(mesh: Mesh) -> Layout:
    # Masks per element (E, 15, 15) rather than fancy indexing over the E * 225 entries:
    # 0.3 s instead of 2.8 s at N = 150.
    reduced = mesh.number[mesh.dofs]  # (E, 15)
    free = reduced >= 0
    # The blocks that are zero in every element are left out of the pattern: x velocity
    # with y velocity (neither the viscous term nor the penalty couples them: 36% of the
    # entries) and pressure with pressure.
    coupled = np.ones((15, 15), dtype=bool)
    coupled[:6, 6:12] = coupled[6:12, :6] = coupled[12:, 12:] = False
    keep = np.flatnonzero(free[:, :, None] & free[:, None, :] & coupled)
    rows = np.broadcast_to(reduced[:, :, None], (*reduced.shape, 15)).reshape(-1)
    cols = np.broadcast_to(reduced[:, None, :], (*reduced.shape[:1], 15, 15)).reshape(-1)
    lid = np.concatenate([mesh.lid, np.zeros(mesh.number.size - mesh.lid.size)])[mesh.dofs]
    lift = np.flatnonzero(free[:, :, None] & (lid[:, None, :] != 0))
    lid_values = np.broadcast_to(lid[:, None, :], (*lid.shape[:1], 15, 15)).reshape(-1)
    return Layout(keep, rows[keep], cols[keep], lift, rows[lift], lid_values[lift])


def stokes_system(cells: int, theta=DEFAULT_THETA):
    """The reduced Stokes system of N = `cells`, with NumPy and scipy only (no JAX).

    Returns `(matrix, rhs)`: the full symmetric indefinite matrix [[A, B^T], [B, 0]] as a
    `scipy.sparse.csc_matrix` with n = 2 (2N - 1)^2 + (N + 1)^2 - 1 rows (no explicit
    zeros) and the right-hand side (n,), in the example's numbering. Assembly takes about
    1.5 s at N = 150 (n = 201,602, 3.7 million nonzeros).
    """
    import scipy.sparse as sp

    mesh = make_mesh(cells)
    layout = make_layout(mesh)
    theta = np.asarray(theta, dtype=float)
    flat = element_matrices(np, mesh.corners, obstacle(np, mesh.quadrature_points, theta))
    flat = flat.reshape(-1)
    n = mesh.size
    matrix = sp.csc_matrix((flat[layout.keep], (layout.rows, layout.cols)), shape=(n, n))
    # Duplicates are summed in another order for (i, j) than for (j, i): the two can differ
    # in the last bit (1.7e-18), and a solver reading one triangle may check the other.
    # Floating point addition commutes, so the average is symmetric to the bit.
    matrix = ((matrix + matrix.T) * 0.5).tocsc()
    rhs = -np.bincount(layout.lift_rows, flat[layout.lift] * layout.lift_values, minlength=n)
    return matrix, rhs


def velocity_field(mesh: Mesh, solution: np.ndarray) -> np.ndarray:
    """The (2, 2N + 1, 2N + 1) velocity at every quadratic node, boundary values included."""
    velocity = mesh.lid.copy()
    free = mesh.number[: velocity.size] >= 0
    velocity[free] = solution[mesh.number[: velocity.size][free]]
    side = 2 * mesh.cells + 1
    return velocity.reshape(2, side, side)


def pressure_field(mesh: Mesh, solution: np.ndarray) -> np.ndarray:
    """The (N + 1, N + 1) pressure at the vertices, shifted to mean zero over the vertices."""
    pressure = np.concatenate([[0.0], solution[mesh.velocity_unknowns :]])
    pressure -= pressure.mean()
    return pressure.reshape(mesh.cells + 1, mesh.cells + 1)


# --- The JAX part: imported inside the functions, so that `stokes_system` needs no JAX.


def jax_problem(mesh: Mesh, layout: Layout):
    """The arrays the jitted functions take (a dict) and the reduced matrix's static pattern."""
    import jax.numpy as jnp

    import lineax_sparse as lxs

    indices = np.stack([layout.rows, layout.cols], axis=1).astype(np.int32)
    arrays = {
        "corners": mesh.corners,
        "points": mesh.quadrature_points,
        "keep": layout.keep,
        "lift": layout.lift,
        "lift_rows": layout.lift_rows,
        "lift_values": layout.lift_values,
        "velocity_dofs": mesh.dofs[:, :12],
        "lid": mesh.lid,
        "free_velocity": np.flatnonzero(mesh.number[: mesh.lid.size] >= 0),
    }
    return {k: jnp.asarray(v) for k, v in arrays.items()}, lxs.static_pattern(indices, mesh.size)


def system(arrays, pattern, theta):
    """(operator, rhs, element matrices) for the obstacle `theta`, all in JAX."""
    import jax
    import jax.numpy as jnp
    import lineax as lx

    import lineax_sparse as lxs

    def one_element(corners, alpha):  # the batched NumPy code, for one element
        return element_matrices(jnp, corners[None], alpha[None])[0]

    alpha = obstacle(jnp, arrays["points"], theta)
    ke = jax.vmap(one_element)(arrays["corners"], alpha)  # (E, 15, 15)
    flat = ke.reshape(-1)
    operator = lxs.SparseOperator.from_pattern(pattern, flat[arrays["keep"]], tags=lx.symmetric_tag)
    lift = flat[arrays["lift"]] * arrays["lift_values"]
    rhs = -jax.ops.segment_sum(lift, arrays["lift_rows"], num_segments=pattern.n)
    return operator, rhs, ke


def dissipation(arrays, ke, solution):
    """J = int |grad u|^2 + alpha |u|^2 = U^T (A + M) U over all velocities, the lid's too."""
    import jax.numpy as jnp

    free = arrays["free_velocity"]
    velocity = arrays["lid"].at[free].set(solution[: free.size])
    local = velocity[arrays["velocity_dofs"]]  # (E, 12)
    return jnp.einsum("ek,ekl,el->", local, ke[:, :12, :12], local)


def make_functions(pattern, solver):
    """Jitted `flow(arrays, theta) -> (solution, J, stats)` and `value_and_grad` of J."""
    import jax
    import lineax as lx

    def flow(arrays, theta):
        operator, rhs, ke = system(arrays, pattern, theta)
        solution = lx.linear_solve(operator, rhs, solver=solver)
        return solution.value, dissipation(arrays, ke, solution.value), solution.stats

    def objective(arrays, theta):
        operator, rhs, ke = system(arrays, pattern, theta)
        return dissipation(arrays, ke, lx.linear_solve(operator, rhs, solver=solver).value)

    return jax.jit(flow), jax.jit(jax.value_and_grad(objective, argnums=1)), jax.jit(objective)


def make_solver(name: str):
    """`(solver, None)`, or `(None, why not)` when this installation cannot run it."""
    import jax.numpy as jnp
    import lineax as lx

    import lineax_sparse as lxs

    label = {"pardiso": "Pardiso", "umfpack": "UMFPACK", "superlu": "SuperLU"}[name]
    cls = getattr(lxs, label, None)
    if cls is None:
        hint = f": {PARDISO_MISSING}" if name == "pardiso" else ""
        return None, f"this lineax-sparse has no lxs.{label}{hint}"
    # A 2 x 2 symmetric indefinite solve: a missing native library (MKL for Pardiso) shows here.
    probe = lxs.SparseOperator.from_scipy(_two_by_two(), tags=lx.symmetric_tag)
    try:
        solver = cls()
        lx.linear_solve(probe, jnp.ones(2), solver=solver)
    except ImportError as error:  # what the solvers raise when their library is missing
        hint = PARDISO_MISSING if name == "pardiso" else str(error).splitlines()[0]
        return None, f"lxs.{label} cannot run here ({hint})"
    return solver, None


def _two_by_two():
    import scipy.sparse as sp

    return sp.csc_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))


def timed(fn, *args):
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def central_differences(objective, arrays, theta: np.ndarray, step: float = 1e-5):
    """dJ/dtheta by central differences along each component of theta."""
    differences = np.zeros(theta.size)
    for i in range(theta.size):
        shift = np.zeros(theta.size)
        shift[i] = step
        plus, minus = objective(arrays, theta + shift), objective(arrays, theta - shift)
        differences[i] = (float(plus) - float(minus)) / (2 * step)
    return differences


def main(argv: list[str] | None = None) -> None:
    import os
    import statistics

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    args = parse_arguments(argv)
    start = time.perf_counter()
    mesh = make_mesh(args.cells)
    layout = make_layout(mesh)
    arrays, pattern = jax_problem(mesh, layout)
    theta = jnp.asarray(args.theta, dtype=jnp.float64)
    matrix, rhs = stokes_system(args.cells, args.theta)  # NumPy's assembly: the residual's
    print(
        f"Stokes cavity N = {args.cells}: n = {mesh.size} ({mesh.velocity_unknowns} velocities,"
        f" {mesh.size - mesh.velocity_unknowns} pressures), nnz = {matrix.nnz}, obstacle r ="
        f" {args.theta[0]} at ({args.theta[1]}, {args.theta[2]}); set up in"
        f" {time.perf_counter() - start:.2f} s"
    )
    solvers, functions = {}, {}
    for name in args.solvers:
        solver, why_not = make_solver(name)
        if solver is None:
            print(f"skipping {name}: {why_not}")
            continue
        solvers[name] = solver
        functions[name] = make_functions(pattern, solver)
    if not solvers:
        raise SystemExit("no solver of --solvers is available")

    first, results = {}, {}
    for name, (flow, _, _) in functions.items():
        first[name], results[name] = timed(flow, arrays, theta)
    # Each timed call has a new theta (a step of 1e-9 per call), as in a design loop: new
    # values to factorize, the pattern's ordering and analysis reused from the first call.
    times = {name: {"solve": [], "grad": []} for name in functions}
    gradients = {}
    for turn in range(args.repeats):  # in turns, so that a change of load hits every solver
        for name, (flow, value_and_grad, _) in functions.items():
            step = theta + 1e-9 * (turn + 1)
            times[name]["solve"].append(timed(flow, arrays, step)[0])
            times[name]["grad"].append(timed(value_and_grad, arrays, step + 1e-10)[0])
        for name, (_, value_and_grad, _) in functions.items():
            gradients[name] = value_and_grad(arrays, theta)[1]
    assemble = jax.jit(lambda arrays, theta: system(arrays, pattern, theta)[:2])
    timed(assemble, arrays, theta)
    assembly = statistics.median(timed(assemble, arrays, theta)[0] for _ in range(3))
    reference = next(iter(functions))
    differences = central_differences(functions[reference][2], arrays, np.asarray(theta))
    print(
        f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats} calls, each with new"
        " values (factorized anew, the analysis reused); the first call includes compilation"
        f" and analysis; assembly in JAX alone {assembly:.3f} s"
    )
    header = f"{'solver':9s} {'first call s':>12s} {'solve s':>9s} {'value_and_grad s':>16s}"
    print(f"{header} {'J':>16s} {'rel. residual':>13s} {'grad vs FD':>10s}")
    residuals, errors = {}, {}
    for name in functions:
        solution, value, _ = results[name]
        solution = np.asarray(solution)
        residuals[name] = np.linalg.norm(rhs - matrix @ solution) / np.linalg.norm(rhs)
        gradient = np.asarray(gradients[name])
        errors[name] = np.linalg.norm(gradient - differences) / np.linalg.norm(differences)
        print(
            f"{name:9s} {first[name]:12.3f} {statistics.median(times[name]['solve']):9.3f} "
            f"{statistics.median(times[name]['grad']):16.3f} {float(value):16.10f} "
            f"{residuals[name]:13.2e} {errors[name]:10.2e}"
        )
    print(f"dJ/dtheta (r, cx, cy) by jax.grad ({reference}): {np.asarray(gradients[reference])}")
    print(f"central differences (step 1e-5):         {differences}")
    if not args.no_plot:
        plot(mesh, np.asarray(results[reference][0]), args.theta, args.output)
        print(f"wrote {args.output}.png")
    values = [float(results[name][1]) for name in functions]
    print(
        f"stokes N={args.cells} n={mesh.size} J={values[0]:.12g} "
        f"J_spread={(max(values) - min(values)) / abs(values[0]):.2e} "
        f"residual_max={max(residuals.values()):.2e} gradient_check={max(errors.values()):.2e} "
        f"solvers={','.join(functions)}"
    )


def plot(mesh: Mesh, solution: np.ndarray, theta, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    velocity = velocity_field(mesh, solution)
    pressure = pressure_field(mesh, solution)
    speed = np.hypot(velocity[0], velocity[1])
    line = np.linspace(0, 1, 2 * mesh.cells + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    image = left.imshow(
        speed, origin="lower", extent=(0, 1, 0, 1), cmap="viridis", interpolation="bilinear"
    )
    # No streamlines inside the obstacle, where the flow is penalised to rest.
    x, y = np.meshgrid(line, line)
    inside = np.hypot(x - theta[1], y - theta[2]) < theta[0]
    u, v = (np.ma.masked_where(inside, part) for part in velocity)
    left.streamplot(line, line, u, v, color="white", density=1.2, linewidth=0.6, arrowsize=0.6)
    figure.colorbar(image, ax=left, label="speed |u|")
    left.set_title(f"velocity: speed and streamlines (N = {mesh.cells})", pad=12)
    vertices = np.linspace(0, 1, mesh.cells + 1)
    # The lid's corners hold the pressure's extremes: clip the colours to the bulk.
    low, high = np.percentile(pressure, [2, 98])
    filled = right.contourf(
        vertices, vertices, np.clip(pressure, low, high), levels=24, cmap="RdBu_r"
    )
    figure.colorbar(filled, ax=right, label="pressure p (mean 0; 2-98% range)")
    right.set_title("pressure", pad=12)
    for axes in (left, right):
        circle = plt.Circle(
            (theta[1], theta[2]),
            theta[0],
            fill=False,
            color="tab:orange",
            linewidth=1.5,
            linestyle="--",
        )
        axes.add_patch(circle)
        axes.annotate(
            "",
            xy=(0.75, 1.0),
            xytext=(0.25, 1.0),
            annotation_clip=False,
            arrowprops={"arrowstyle": "-|>", "color": "tab:red", "linewidth": 2},
        )
        axes.set_xlabel("x")
        axes.set_ylabel("y")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_aspect("equal")
    left.plot([], [], color="tab:orange", linestyle="--", label=f"obstacle (r = {theta[0]})")
    left.plot([], [], color="tab:red", linewidth=2, label="lid u = 16 x² (1 - x)²")
    figure.legend(loc="lower center", ncol=2, fontsize=9)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.savefig(f"{output}.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


if __name__ == "__main__":
    main()
