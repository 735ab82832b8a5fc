"""3D linear elasticity solved by PETSc through lineax, and differentiated with `jax.grad`.

A cantilever of `nelx` x `nely` x `nelz` unit trilinear hexahedra (nu = 0.3), clamped on
the face x = 0 and loaded downwards (-y) along the lower edge of its free end (the mesh,
element stiffness and load of examples/topology_optimization_3d.py), with one Young's
modulus per element: `E`, a JAX array (log-normal, a factor of about 1.6 either way). The
stiffness K(E) = sum_e E_e K_e is assembled in JAX straight into its coalesced pattern
(`Cantilever.stiffness`, see there) and solved with `lxs.PETSc`:

- `--pc gamg` (default): CG preconditioned by PETSc's smoothed-aggregation AMG (GAMG),
  given the six rigid body modes (three translations, three rotations) as near-nullspace;
- `--pc hypre`: CG preconditioned by hypre's BoomerAMG, set for 3 displacement components
  per node (`HYPRE_OPTIONS`: nodal coarsening, PMIS, ext+i interpolation, one level of
  aggressive coarsening; BoomerAMG can also take the rigid body modes, with
  `pc_hypre_boomeramg_vec_interp_variant`: measured at 101,400 dofs, 30 iterations against
  48 at the same time, so they are not used here);
- `--pc mumps`: a direct solve, MUMPS's sparse Cholesky factorization (`KSP preonly`).

It then differentiates the compliance c(E) = f^T u(E), K(E) u = f, with
`jax.value_and_grad`: one setup and one solve, since the backward pass's adjoint solve
K w = f, with K exactly symmetric, is answered from the forward one
(`lxs.cache_info().reused_solutions`), and checks the gradient against its closed form
dc/dE_e = -u_e^T k u_e (k the unit element stiffness) and against a central finite
difference along a random direction. It prints the sizes, the times (first call with
compilation; setup + solve for new values of E; a solve with a new right-hand side for the
same E; `value_and_grad`),
PETSc's iteration counts and residuals (`Solution.stats`), and the peak memory of every
rank (`lxs.petsc_peak_memory()`). The last line holds the figures as `name=value` pairs.

Several MPI ranks: `lxs.petsc_serve()` (in `main`, right after the command line is read)
returns at once on rank 0, which runs this program (JAX included) alone; the other ranks
serve PETSc's work and exit when rank 0 finishes, so the matrix and the preconditioner are
distributed over all ranks.

    python examples/elasticity_3d_petsc.py                  # 50 x 25 x 25: 101,400 dofs
    python examples/elasticity_3d_petsc.py --small          # 12 x 6 x 6: 1,764 dofs, seconds
    python examples/elasticity_3d_petsc.py --pc hypre       # or --pc mumps
    mpiexec -n 2 python examples/elasticity_3d_petsc.py --small
    # Open MPI as root: mpiexec --allow-run-as-root --oversubscribe -n 2 python ...
"""

from __future__ import annotations

import argparse


PRECONDITIONERS = ("gamg", "hypre", "mumps")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--nelx", type=int, default=50, help="elements along the beam")
    parser.add_argument("--nely", type=int, default=25, help="elements in the load direction")
    parser.add_argument("--nelz", type=int, default=25, help="elements across the beam")
    parser.add_argument("--small", action="store_true", help="12 x 6 x 6 elements")
    parser.add_argument("--pc", choices=PRECONDITIONERS, default="gamg", help="preconditioner")
    parser.add_argument("--rtol", type=float, default=1e-8, help="CG's relative tolerance")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moduli and directions")
    args = parser.parse_args(argv)
    if args.small:
        args.nelx, args.nely, args.nelz = 12, 6, 6
    for name in ("nelx", "nely", "nelz"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import itertools  # noqa: E402
import time  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from topology_optimization_3d import _rigid_body_modes, CORNERS, element_stiffness  # noqa: E402


jax.config.update("jax_enable_x64", True)

#: The 27 offsets between the nodes of one hexahedron, lexicographic: offset `26 - k` is
#: `-OFFSETS[k]`.
OFFSETS = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
TAGS = (lx.symmetric_tag, lx.positive_semidefinite_tag)
#: BoomerAMG for 3 unknowns per node (with `block_size=3`, which PETSc passes on as hypre's
#: number of functions): coarsening on the nodes (6: the Frobenius norms of the 3 x 3
#: blocks) with interpolation kept within each displacement component, PMIS coarsening with
#: ext+i interpolation of at most 4 entries per row, a strong threshold of 0.5 (hypre's
#: advice for 3D) and one level of aggressive coarsening. At 101,400 dofs this took 52
#: iterations where PETSc's BoomerAMG defaults took 63, at a tenth of the time per
#: iteration (their classical interpolation makes dense coarse levels). Option names are
#: case-insensitive in PETSc: `p_max` is BoomerAMG's `P_max`.
HYPRE_OPTIONS = {
    "pc_hypre_type": "boomeramg",
    "pc_hypre_boomeramg_nodal_coarsen": 6,
    "pc_hypre_boomeramg_coarsen_type": "PMIS",
    "pc_hypre_boomeramg_interp_type": "ext+i",
    "pc_hypre_boomeramg_p_max": 4,
    "pc_hypre_boomeramg_strong_threshold": 0.5,
    "pc_hypre_boomeramg_agg_nl": 1,
}


def make_solver(pc: str, modes: np.ndarray, rtol: float = 1e-8, max_steps: int = 1000):
    """The `lxs.PETSc` solver for `--pc` (`modes`: the rigid body modes, (n, 6)).

    `block_size=3`: the three displacements of a node are numbered together, which GAMG
    aggregates together and BoomerAMG coarsens together.
    """
    if pc == "gamg":
        return lxs.PETSc(
            ksp_type="cg",
            pc_type="gamg",
            rtol=rtol,
            max_steps=max_steps,
            near_nullspace=modes,
            block_size=3,
        )
    if pc == "hypre":
        return lxs.PETSc(
            ksp_type="cg",
            pc_type="hypre",
            rtol=rtol,
            max_steps=max_steps,
            options=HYPRE_OPTIONS,
            block_size=3,
        )
    if pc == "mumps":
        return lxs.PETSc(
            ksp_type="preonly", pc_type="cholesky", options={"pc_factor_mat_solver_type": "mumps"}
        )
    raise ValueError(f"unknown preconditioner {pc!r}: one of {PRECONDITIONERS}")


class Cantilever(eqx.Module):
    """The clamped cantilever: the reduced stiffness as a function of the element moduli.

    Nodes are numbered `(ix * (nely + 1) + iy) * (nelz + 1) + iz`, dofs `3 * node + axis`,
    elements `(ex * nely + ey) * nelz + ez` (the order of `E.reshape(shape)`); the dofs of
    the clamped face x = 0 are removed and the others renumbered in order.

    The stiffness entry between node p (component i) and node p + o (component j), for each
    of the 27 offsets o, is the sum over the elements shared by both nodes of E_e times
    the matching entry of the unit element stiffness k. For every node p that sum is
    `sum_a E[element with p as its corner a] * blocks[a, i, o, j]`: one (nodes, 8) x
    (8, 243) product over the moduli shifted once per corner, a stencil of all the entries
    of every node's rows, already summed (no duplicates to add up, unlike an assembly of
    the 576 entries of each element). `gather` then picks the stored entries from it in
    CSR order. Each entry is read from the copy of its pair that lies in the upper triangle,
    so the matrix is exactly symmetric (the solvers' fast paths test for that).
    """

    blocks: jax.Array  # (8, 3, 27, 3): k[3a + i, 3b + j] for corner b = corner a + offset o
    gather: jax.Array  # (nnz,) positions in the (nodes * 243) stencil, CSR order
    load: jax.Array  # (n,) on the free dofs
    # The reduced matrix's pattern, analysed once: static, so that only values reach PETSc.
    pattern: lxs.StaticPattern = eqx.field(static=True)
    shape: tuple[int, int, int] = eqx.field(static=True)  # elements along x, y, z

    @property
    def size(self) -> int:
        return self.pattern.n

    @property
    def nnz(self) -> int:
        return self.pattern.nnz

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))

    def stiffness(self, young: jax.Array) -> lxs.SparseOperator:
        """K(E) for the element moduli `young` (nelx * nely * nelz,), as a SparseOperator."""
        nelx, nely, nelz = self.shape
        padded = jnp.pad(young.reshape(self.shape), 1)  # modulus 0 outside the mesh
        # Node (x, y, z) is corner c of the element at (x, y, z) - c, padded index + 1.
        by_corner = jnp.stack(
            [
                padded[1 - cx : 2 - cx + nelx, 1 - cy : 2 - cy + nely, 1 - cz : 2 - cz + nelz]
                for cx, cy, cz in CORNERS
            ]
        ).reshape(8, -1)
        stencil = by_corner.T @ self.blocks.reshape(8, -1)  # (nodes, 3 * 27 * 3)
        values = stencil.reshape(-1)[self.gather]
        return lxs.SparseOperator.from_pattern(self.pattern, values, tags=TAGS)

    def compliance(self, young: jax.Array, solver) -> jax.Array:
        """c = f^T u with K(E) u = f."""
        return self.load @ self.displacement(young, solver).value

    def displacement(self, young: jax.Array, solver, load: jax.Array | None = None):
        """The lineax `Solution` of K(E) u = f (`load`, by default the tip load)."""
        load = self.load if load is None else load
        return lx.linear_solve(self.stiffness(young), load, solver=solver)


def cantilever(nelx: int, nely: int, nelz: int) -> tuple[Cantilever, np.ndarray]:
    """The cantilever, and its rigid body modes on the free dofs, shape (n, 6)."""
    shape = np.array([nelx, nely, nelz])
    node_shape = shape + 1
    nodes = int(np.prod(node_shape))
    node_xyz = np.stack(
        [a.reshape(-1) for a in np.meshgrid(*map(np.arange, node_shape), indexing="ij")], axis=1
    )
    free_node = node_xyz[:, 0] > 0
    free = np.flatnonzero(np.repeat(free_node, 3))
    number = np.full(3 * nodes, -1, dtype=np.int64)
    number[free] = np.arange(free.size)
    rows, cols, gather = _stored_entries(node_xyz, node_shape, free_node, number)
    # Rows in order, columns in order within each row: CSR order. The matrix is symmetric,
    # so the transposed pairs are the same matrix in CSC order, which the pattern analysis
    # takes as it is (no sort, no sum).
    pattern = lxs.static_pattern(np.stack([cols, rows], axis=1), int(free.size))
    ke = element_stiffness()
    blocks = np.zeros((8, 3, 27, 3))
    offset_index = {tuple(o): k for k, o in enumerate(OFFSETS)}
    for a, b in itertools.product(range(8), repeat=2):
        k = offset_index[tuple(CORNERS[b] - CORNERS[a])]
        blocks[a, :, k, :] = ke[3 * a : 3 * a + 3, 3 * b : 3 * b + 3]
    load = np.zeros(3 * nodes)
    tip = np.flatnonzero((node_xyz[:, 0] == nelx) & (node_xyz[:, 1] == 0))
    load[3 * tip + 1] = -1.0
    problem = Cantilever(
        blocks=jnp.asarray(blocks),
        gather=jnp.asarray(gather),
        load=jnp.asarray(load[free]),
        pattern=pattern,
        shape=(nelx, nely, nelz),
    )
    return problem, _rigid_body_modes(node_xyz)[free]


def _stored_entries(node_xyz, node_shape, free_node, number, chunk: int = 1 << 14):
    """Rows, columns (free-dof numbers, int32) and stencil positions of the stored entries,
    in CSR order; nodes are taken `chunk` at a time to bound the temporaries."""
    nodes = node_xyz.shape[0]
    strides = np.array([node_shape[1] * node_shape[2], node_shape[2], 1])
    index = np.int32 if nodes * 243 < 2**31 else np.int64
    i = np.arange(3)[None, :, None, None]
    o = np.arange(27)[None, None, :, None]
    j = np.arange(3)[None, None, None, :]
    rows, cols, gather = [], [], []
    for start in range(0, nodes, chunk):
        p = np.arange(start, min(start + chunk, nodes))
        other = node_xyz[p][:, None, :] + OFFSETS[None]  # (m, 27, 3)
        inside = np.all((other >= 0) & (other < node_shape), axis=2)
        q = np.where(inside, other @ strides, 0)
        keep = inside & free_node[p][:, None] & free_node[q]
        mask = np.broadcast_to(keep[:, None, :, None], (p.size, 3, 27, 3))
        p4, q4 = p[:, None, None, None], q[:, None, :, None]
        position = ((p4 * 3 + i) * 27 + o) * 3 + j
        mirror = ((q4 * 3 + j) * 27 + (26 - o)) * 3 + i  # the entry (q, j) -> (p, i)
        upper = (p4 < q4) | ((p4 == q4) & (i <= j))
        rows.append(np.broadcast_to(number[3 * p4 + i], mask.shape)[mask].astype(np.int32))
        cols.append(np.broadcast_to(number[3 * q4 + j], mask.shape)[mask].astype(np.int32))
        gather.append(np.where(upper, position, mirror)[mask].astype(index))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(gather)


def element_dofs(shape: tuple[int, int, int]) -> np.ndarray:
    """The 24 dofs (unreduced numbering) of every element, in the order of `CORNERS`."""
    node_shape = np.array(shape) + 1
    ex, ey, ez = (a.reshape(-1) for a in np.meshgrid(*map(np.arange, shape), indexing="ij"))
    corner_nodes = (
        ((ex[:, None] + CORNERS[:, 0]) * node_shape[1] + ey[:, None] + CORNERS[:, 1])
        * node_shape[2]
        + ez[:, None]
        + CORNERS[:, 2]
    )
    return (3 * corner_nodes[:, :, None] + np.arange(3)).reshape(-1, 24)


def closed_form_gradient(problem: Cantilever, u: jax.Array) -> jax.Array:
    """dc/dE_e = -u_e^T k u_e (c = f^T K^-1 f and dK/dE_e = K_e), from the displacement."""
    nodes = int(np.prod(np.array(problem.shape) + 1))
    first_free = 3 * nodes - problem.size  # the clamped nodes are numbered first
    full = jnp.zeros(3 * nodes).at[first_free:].set(u)
    u_e = full[element_dofs(problem.shape)]
    return -jnp.einsum("ea,ab,eb->e", u_e, jnp.asarray(element_stiffness()), u_e)


@eqx.filter_jit
def solve(problem: Cantilever, young: jax.Array, load: jax.Array, solver) -> lx.Solution:
    """K(E) u = load. The problem is an argument, not a constant of the compiled program."""
    return problem.displacement(young, solver, load)


@eqx.filter_jit
def compliance(problem: Cantilever, young: jax.Array, solver) -> jax.Array:
    return problem.compliance(young, solver)


@eqx.filter_jit
def compliance_and_gradient(problem: Cantilever, young: jax.Array, solver):
    """(c, dc/dE): one solve forward, one (or none: c is self-adjoint) backward."""
    return jax.value_and_grad(lambda young: problem.compliance(young, solver))(young)


def moduli(problem: Cantilever, seed: int = 0) -> jax.Array:
    """Log-normal element moduli: exp(0.5 z), z standard normal."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.exp(0.5 * rng.standard_normal(problem.elements)))


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def describe(solution: lx.Solution) -> str:
    steps, residual = int(solution.stats["num_steps"]), float(solution.stats["relative_residual"])
    return f"{steps} iterations, relative residual {residual:.2e}"


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    lxs.petsc_serve()  # ranks > 0 serve PETSc's work here and exit; rank 0 goes on

    start = time.perf_counter()
    problem, modes = cantilever(args.nelx, args.nely, args.nelz)
    built = time.perf_counter() - start
    solver = make_solver(args.pc, modes, rtol=args.rtol)
    ranks = lxs.petsc_ranks()
    print(
        f"cantilever {args.nelx} x {args.nely} x {args.nelz}: {problem.elements:,} elements, "
        f"{problem.size:,} dofs, nnz {problem.nnz:,} (built in {built:.2f} s); "
        f"PETSc {args.pc} on {ranks} rank{'s' if ranks > 1 else ''}"
    )

    young = moduli(problem, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    new_young = young * jnp.asarray(rng.uniform(0.9, 1.1, problem.elements))
    new_load = jnp.asarray(rng.standard_normal(problem.size))

    first, solution = timed(solve, problem, young, problem.load, solver)
    print(f"solve, first call (compile + setup + solve): {first:.2f} s; {describe(solution)}")
    setup_solve, solution = timed(solve, problem, new_young, problem.load, solver)
    print(f"setup + solve, new moduli:                   {setup_solve:.2f} s; {describe(solution)}")
    steps = int(solution.stats["num_steps"])
    residual = float(solution.stats["relative_residual"])
    rhs_solve, other = timed(solve, problem, new_young, new_load, solver)
    print(f"solve, same moduli, new right-hand side:     {rhs_solve:.2f} s; {describe(other)}")
    matrix = problem.stiffness(new_young).matrix
    true_residual = float(
        jnp.linalg.norm(matrix @ solution.value - problem.load) / jnp.linalg.norm(problem.load)
    )

    first_grad, _ = timed(compliance_and_gradient, problem, young, solver)
    grad_time, (c, dc) = timed(compliance_and_gradient, problem, new_young, solver)
    print(
        f"value_and_grad of the compliance: first call {first_grad:.2f} s, "
        f"new moduli {grad_time:.2f} s; c = {float(c):.10e}"
    )

    # The gradient against its closed form and a central difference along a random direction:
    # a random stiffening of every element (relative, in [0, 1)), so that the derivative is
    # of the order of c (c(t E) = c(E) / t) rather than a cancellation of signs, which would
    # leave the difference to the rounding of c over eps. Its error is O(eps^2). CG's iterates
    # leave an error in c quadratic in their own, far below that.
    exact = closed_form_gradient(problem, solution.value)
    closed_form_check = float(jnp.max(jnp.abs(dc - exact)) / jnp.max(jnp.abs(exact)))
    direction = new_young * jnp.asarray(rng.uniform(0.0, 1.0, problem.elements))
    eps = 1e-4
    plus = compliance(problem, new_young + eps * direction, solver)
    minus = compliance(problem, new_young - eps * direction, solver)
    difference = float((plus - minus) / (2 * eps))
    directional = float(dc @ direction)
    gradient_check = abs(difference - directional) / abs(directional)
    print(
        f"gradient: vs the closed form -u_e^T k u_e {closed_form_check:.2e} (max, relative); "
        f"along a random direction {directional:.10e}, central difference {difference:.10e}, "
        f"relative error {gradient_check:.2e}"
    )

    peaks = lxs.petsc_peak_memory()
    print(
        "peak memory (RSS) per rank: "
        + ", ".join(f"rank {r}: {peak / 2**20:,.0f} MiB" for r, peak in enumerate(peaks))
    )
    print(
        f"elasticity pc={args.pc} ranks={ranks} dofs={problem.size} nnz={problem.nnz} "
        f"iterations={steps} relative_residual={residual:.3e} true_residual={true_residual:.3e} "
        f"compliance={float(c):.10e} gradient_check={gradient_check:.3e} "
        f"closed_form_check={closed_form_check:.3e} setup_solve_s={setup_solve:.3f} "
        f"solve_s={rhs_solve:.3f} value_and_grad_s={grad_time:.3f} "
        f"peak_rss_mib={','.join(f'{peak / 2**20:.0f}' for peak in peaks)}"
    )


if __name__ == "__main__":
    main()
