"""The 3D cantilever topology optimization in plain NumPy + SciPy: pyamg or cvxopt CHOLMOD.

This is what a user would write without lineax-sparse: the same algorithm as
examples/topology_optimization_3d.py (unit trilinear hexahedra with nu = 0.3, SIMP with
E0 = 1, Emin = 1e-9, penal 3, density filter of radius rmin, OC update with move limit 0.2
and bisection to (l2 - l1) / (l1 + l2) <= 1e-3; the face x = 0 clamped, a unit load in -y on
every node of the edge x = nelx, y = 0; every density starts at volfrac, unfiltered), with
the sensitivities written by hand. The compliance is self-adjoint, so one solve per
iteration gives them: dc_e = -penal x_e^(penal - 1) (E0 - Emin) u_e^T KE u_e. Two linear
solvers are offered:

- `AMGSolver`: the stiffness summed into a fixed CSR structure (the entries between free
  dofs gathered, one `np.bincount` over their precomputed slots), pyamg's
  `smoothed_aggregation_solver` with the six rigid body modes as `B`,
  `scipy.sparse.linalg.cg` to `rtol` preconditioned by one V-cycle
  (`ml.aspreconditioner()`). With `reuse > 0` it keeps a hierarchy across iterations as
  `lxs.AMG(reuse=...)` does (see `AMGSolver`).
- `CholmodSolver`: the lower triangle summed into one `cvxopt.spmatrix` of fixed
  structure (`problems.LowerTriangle`), `cholmod.symbolic` once, `cholmod.numeric` +
  `cholmod.solve` per iteration.

Used by benchmarks/bench_topology_3d.py; also runnable on its own:

    python benchmarks/top3d_native.py --solver amg --nelx 24 --nely 12 --nelz 12 --iterations 3
    python benchmarks/top3d_native.py --solver cholmod --nelx 24 --nely 12 --nelz 12
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

import cvxopt
import numpy as np
import pyamg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from cvxopt import cholmod

from common import command_line
from problems import coalesce, LowerTriangle


E0, E_MIN, NU, MOVE = 1.0, 1e-9, 0.3, 0.2
BISECTION_TOLERANCE = 1e-3
CHANGE_TOLERANCE = 0.01  # the example stops once max |x_new - x| <= this
# Local node order of a hexahedron: corners (x, y, z) of the unit cube, as in the example.
CORNERS = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]]
)
# lineax-sparse seeds NumPy's global generator with this before every pyamg setup (pyamg
# draws the start vector of its spectral radius estimates from it); seeding alike gives
# both sides the same hierarchy, hence the same CG iteration counts.
PYAMG_SEED = 0x5EED


def element_stiffness(nu: float = NU) -> np.ndarray:
    """The 24 x 24 stiffness of the unit cube trilinear element, E = 1, 2x2x2 Gauss points.

    Dofs are (x, y, z) of each corner in the order of `CORNERS`.
    """
    lam = nu / ((1 + nu) * (1 - 2 * nu))
    mu = 1 / (2 * (1 + nu))
    elasticity = np.zeros((6, 6))
    elasticity[:3, :3] = lam
    elasticity[range(3), range(3)] += 2 * mu
    elasticity[range(3, 6), range(3, 6)] = mu
    signs = 2 * CORNERS - 1
    point = 1 / np.sqrt(3)
    others = [[1, 2], [0, 2], [0, 1]]
    stiffness = np.zeros((24, 24))
    for gauss in itertools.product((-point, point), repeat=3):
        factors = 1 + signs * np.array(gauss)
        # dN/dx = 2 dN/dxi for N = prod_d (1 + s_d xi_d) / 8 on the unit cube.
        dx, dy, dz = (
            signs[:, d] * factors[:, a] * factors[:, b] / 8 * 2 for d, (a, b) in enumerate(others)
        )
        strain = np.zeros((6, 24))
        strain[0, 0::3], strain[1, 1::3], strain[2, 2::3] = dx, dy, dz
        strain[3, 0::3], strain[3, 1::3] = dy, dx  # gamma_xy
        strain[4, 1::3], strain[4, 2::3] = dz, dy  # gamma_yz
        strain[5, 0::3], strain[5, 2::3] = dz, dx  # gamma_zx
        stiffness += strain.T @ elasticity @ strain / 8  # weight 1 times det J = 1/8
    return stiffness


@dataclasses.dataclass(frozen=True)
class Cantilever:
    """Mesh, boundary conditions and load of the example's cantilever, as NumPy arrays.

    Element e = (ex nely + ey) nelz + ez, node (i, j, k) = (i (nely+1) + j) (nelz+1) + k,
    dof 3 node + axis: the example's numbering, so that densities compare entry by entry.
    """

    shape: tuple[int, int, int]
    edof: np.ndarray  # (nel, 24) global dofs of each element
    rows: np.ndarray  # (nel * 576,) free-dof row of each element entry, -1 if fixed
    cols: np.ndarray  # (nel * 576,) free-dof column, -1 if fixed
    free: np.ndarray  # global numbers of the free dofs
    ndof: int
    load: np.ndarray  # (n,) on the free dofs
    modes: np.ndarray  # (n, 6) rigid body modes on the free dofs

    @property
    def n(self) -> int:
        return int(self.free.size)

    @classmethod
    def build(cls, nelx: int, nely: int, nelz: int) -> Cantilever:
        shape = np.array([nelx, nely, nelz])
        per_axis = shape + 1
        ex, ey, ez = (a.reshape(-1) for a in np.meshgrid(*map(np.arange, shape), indexing="ij"))
        corner = (
            (ex[:, None] + CORNERS[:, 0]) * per_axis[1] + ey[:, None] + CORNERS[:, 1]
        ) * per_axis[2] + (ez[:, None] + CORNERS[:, 2])
        edof = (3 * corner[:, :, None] + np.arange(3)).reshape(-1, 24)
        xyz = np.stack(
            [a.reshape(-1) for a in np.meshgrid(*map(np.arange, per_axis), indexing="ij")], axis=1
        )
        ndof = 3 * xyz.shape[0]
        fixed = (3 * np.flatnonzero(xyz[:, 0] == 0)[:, None] + np.arange(3)).reshape(-1)
        free = np.setdiff1d(np.arange(ndof), fixed)
        number = np.full(ndof, -1)
        number[free] = np.arange(free.size)
        load = np.zeros(ndof)
        load[3 * np.flatnonzero((xyz[:, 0] == nelx) & (xyz[:, 1] == 0)) + 1] = -1.0
        return cls(
            shape=(nelx, nely, nelz),
            edof=edof,
            rows=number[np.repeat(edof, 24, axis=1).reshape(-1)],
            cols=number[np.tile(edof, (1, 24)).reshape(-1)],
            free=free,
            ndof=ndof,
            load=load[free],
            modes=rigid_body_modes(xyz)[free],
        )


def rigid_body_modes(xyz: np.ndarray) -> np.ndarray:
    """Translations along x, y, z and rotations about x, y, z (about the centroid), (3 nodes, 6)."""
    x, y, z = (xyz - xyz.mean(axis=0)).T
    modes = np.zeros((xyz.shape[0], 3, 6))
    modes[:, [0, 1, 2], [0, 1, 2]] = 1.0
    modes[:, 1, 3], modes[:, 2, 3] = -z, y
    modes[:, 0, 4], modes[:, 2, 4] = z, -x
    modes[:, 0, 5], modes[:, 1, 5] = -y, x
    return modes.reshape(-1, 6)


def density_filter(shape: tuple[int, int, int], rmin: float) -> tuple[sp.csr_matrix, np.ndarray]:
    """H[e, f] = max(0, rmin - |centre_e - centre_f|) and its row sums Hs."""
    shape_ = np.array(shape)
    reach = int(np.ceil(rmin)) - 1
    grid = np.stack([a.reshape(-1) for a in np.meshgrid(*map(np.arange, shape), indexing="ij")])
    rows, cols, weights = [], [], []
    for offset in itertools.product(range(-reach, reach + 1), repeat=3):
        weight = rmin - float(np.linalg.norm(offset))
        if weight <= 0:
            continue
        other = grid + np.array(offset)[:, None]
        inside = np.all((other >= 0) & (other < shape_[:, None]), axis=0)
        rows.append(np.ravel_multi_index(grid[:, inside], shape))
        cols.append(np.ravel_multi_index(other[:, inside], shape))
        weights.append(np.full(int(inside.sum()), weight))
    nel = int(np.prod(shape))
    h = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(nel, nel)
    )
    return h, np.asarray(h.sum(axis=1)).ravel()


@dataclasses.dataclass(frozen=True)
class AMGOptions:
    """The native AMG's settings; the defaults are the example's `lxs.AMG(rtol=1e-8,
    reuse=2)` with lineax-sparse's defaults (`max_steps=500`, back-off, no warm start)."""

    rtol: float = 1e-8
    reuse: int = 2
    max_steps: int = 500
    backoff: bool = True
    warm_start: bool = False


class AMGSolver:
    """K u = f by CG with a smoothed aggregation preconditioner (pyamg), K summed into CSR.

    Hierarchy reuse (`reuse > 0`), as `lxs.AMG(reuse=...)` does it: a hierarchy is built for
    the first matrix, and the iteration count of its first solve is its baseline. Later
    matrices keep it as long as CG converges within `reuse` x baseline iterations; a solve
    that does not is continued from its iterate with a hierarchy built for the current
    matrix, which becomes the kept one; its baseline is set by the next solve from scratch
    (a continuation starts near the solution and would set it too low).
    With `backoff` (lineax-sparse since 4619787), each such rebuild makes the next `penalty`
    matrices (1, 2, 4, ... up to `MAX_SKIP`) build their own hierarchy without trying the
    kept one, and every reused hierarchy that converges in budget halves `penalty`.
    `reuse = 0` builds a hierarchy for every matrix.

    `warm_start` (as `lxs.AMG(warm_start=True)`): CG starts from the last solution or its
    extrapolation 2 u_1 - u_0 from the last two, whichever leaves the smaller residual, or
    from zero if neither beats it.
    """

    MAX_SKIP = 16

    def __init__(self, mesh: Cantilever, options: AMGOptions):
        n = mesh.n
        self.rtol, self.reuse, self.max_steps = options.rtol, options.reuse, options.max_steps
        self.backoff, self.warm_start = options.backoff, options.warm_start
        self.modes = np.ascontiguousarray(mesh.modes)
        self.kept = np.flatnonzero((mesh.rows >= 0) & (mesh.cols >= 0))
        rows, cols = mesh.rows[self.kept].astype(np.int64), mesh.cols[self.kept]
        unique, self.slot = coalesce(rows * n + cols)
        self.size = unique.size
        self.indices = (unique % n).astype(np.int32)
        counts = np.bincount(unique // n, minlength=n)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        self.n = n
        self.hierarchy: Any = None  # pyamg's MultilevelSolver
        self.baseline: int | None = None
        self.skip = self.penalty = 0
        self.solutions: list[np.ndarray] = []  # the last two, for warm starts
        self.setups = 0
        self.steps: list[int] = []  # CG iterations of each solve, continuations included

    def assemble(self, values: np.ndarray) -> sp.csr_matrix:
        summed = np.bincount(self.slot, weights=values[self.kept], minlength=self.size)
        # A new matrix object each time: a kept hierarchy refers to the matrix it was built
        # from (its finest level and smoother), which must not change under it.
        return sp.csr_matrix((summed, self.indices, self.indptr), shape=(self.n, self.n))

    def _setup(self, matrix: sp.csr_matrix) -> None:
        state = np.random.get_state()
        np.random.seed(PYAMG_SEED)
        try:
            self.hierarchy = pyamg.smoothed_aggregation_solver(matrix, B=self.modes)
        finally:
            np.random.set_state(state)
        self.baseline = None
        self.setups += 1

    def _cg(self, matrix, load, start, budget) -> tuple[np.ndarray, int, bool]:
        steps = [0]

        def count(_):
            steps[0] += 1

        x, info = spla.cg(
            matrix,
            load,
            x0=start,
            rtol=self.rtol,
            maxiter=budget,
            M=self.hierarchy.aspreconditioner(cycle="V"),
            callback=count,
        )
        return x, steps[0], info == 0

    def _start(self, matrix, load) -> np.ndarray | None:
        if not (self.warm_start and self.solutions):
            return None
        candidates = [self.solutions[-1]]
        if len(self.solutions) == 2:
            candidates.append(2 * self.solutions[1] - self.solutions[0])
        best, best_norm = None, np.linalg.norm(load)
        for candidate in candidates:
            norm = np.linalg.norm(load - matrix @ candidate)
            if norm < best_norm:
                best, best_norm = candidate, norm
        return best

    def solve(self, values: np.ndarray, load: np.ndarray) -> np.ndarray:
        matrix = self.assemble(values)
        reused = self.reuse > 0 and self.hierarchy is not None
        if reused and self.skip > 0:  # a reuse failed lately: build afresh
            self.skip -= 1
            reused = False
        if not reused:
            self._setup(matrix)
        budget = self.max_steps
        if reused and self.baseline is not None:
            budget = min(self.max_steps, max(self.reuse * self.baseline, 1))
        u, steps, converged = self._cg(matrix, load, self._start(matrix, load), budget)
        if self.baseline is None and converged:
            self.baseline = steps
        if reused and converged and self.backoff:
            self.penalty //= 2
        if reused and not converged:
            if self.backoff:
                self.penalty = min(max(1, 2 * self.penalty), self.MAX_SKIP)
                self.skip = self.penalty
            self._setup(matrix)
            u, more, converged = self._cg(matrix, load, u, self.max_steps)
            self.baseline = None
            steps += more
        if not converged:
            raise RuntimeError(f"CG did not reach rtol={self.rtol} in {steps} iterations")
        self.steps.append(steps)
        self.solutions = [*self.solutions[-1:], u]
        return u


class CholmodSolver:
    """K u = f by CHOLMOD through cvxopt: the symbolic analysis once, then numeric + solve."""

    def __init__(self, mesh: Cantilever):
        self.lower = LowerTriangle(mesh.rows, mesh.cols, mesh.n)
        self.factor = None
        self.setups = 0
        self.steps: list[int] = []  # no iterations: stays empty

    def solve(self, values: np.ndarray, load: np.ndarray) -> np.ndarray:
        matrix = self.lower.assemble(values)
        if self.factor is None:
            self.factor = cholmod.symbolic(matrix)  # cvxopt's defaults (CHOLMOD's AMD)
        cholmod.numeric(matrix, self.factor)
        self.setups += 1
        solution = cvxopt.matrix(load)
        cholmod.solve(self.factor, solution)
        return np.asarray(solution).ravel()


class Top3D:
    """State of one run; `step()` performs one iteration and returns (compliance, change)."""

    def __init__(self, mesh: Cantilever, solver, volfrac: float, penal: float, rmin: float):
        self.mesh, self.solver, self.volfrac, self.penal = mesh, solver, volfrac, penal
        self.ke = element_stiffness()
        self.ke_flat = self.ke.reshape(1, -1)
        self.h, self.hs = density_filter(mesh.shape, rmin)
        self.volume_weights = self.h @ (1 / self.hs)  # sum(H x / Hs) = volume_weights . x
        self.x = np.full(int(np.prod(mesh.shape)), volfrac)
        self.physical = self.x.copy()  # the example starts unfiltered too
        self.u = np.zeros(mesh.ndof)

    def step(self) -> tuple[float, float]:
        young = E_MIN + self.physical**self.penal * (E0 - E_MIN)
        values = (young[:, None] * self.ke_flat).reshape(-1)
        displacement = self.solver.solve(values, self.mesh.load)
        c = float(self.mesh.load @ displacement)
        self.u[self.mesh.free] = displacement
        ue = self.u[self.mesh.edof]
        energy = np.sum((ue @ self.ke) * ue, axis=1)
        dc = -self.penal * (E0 - E_MIN) * self.physical ** (self.penal - 1) * energy
        dc = self.h @ (dc / self.hs)  # density filter: chain rule through H x / Hs
        dv = self.volume_weights
        target = self.volfrac * self.x.size
        low, high = 0.0, 1e9
        while (high - low) / (low + high) > BISECTION_TOLERANCE:
            middle = 0.5 * (low + high)
            if self._update(dc, dv, middle) @ self.volume_weights > target:
                low = middle
            else:
                high = middle
        new = self._update(dc, dv, 0.5 * (low + high))
        change = float(np.max(np.abs(new - self.x)))
        self.x, self.physical = new, (self.h @ new) / self.hs
        return c, change

    def _update(self, dc, dv, multiplier):
        step = self.x * np.sqrt(-dc / dv / multiplier)
        return np.maximum(
            0.0, np.maximum(self.x - MOVE, np.minimum(1.0, np.minimum(self.x + MOVE, step)))
        )


@dataclasses.dataclass
class Run:
    """Per-iteration wall-clock seconds, compliance and change of one run, and its solver's
    CG iterations per solve (AMG) and hierarchy setups or numeric factorizations."""

    seconds: list[float]
    compliance: list[float]
    change: list[float]
    cg_steps: list[int]
    setups: int


def make_solver(name: str, mesh: Cantilever, amg: AMGOptions):
    if name == "amg":
        return AMGSolver(mesh, amg)
    if name == "cholmod":
        return CholmodSolver(mesh)
    raise ValueError(f"solver must be 'amg' or 'cholmod', got {name!r}")


def run(
    solver_name: str,
    shape: tuple[int, int, int],
    iterations: int,
    volfrac: float = 0.3,
    penal: float = 3.0,
    rmin: float = 1.5,
    amg: AMGOptions = AMGOptions(),
    change_tolerance: float = CHANGE_TOLERANCE,
) -> Run:
    """`iterations` iterations from the uniform design (fewer if the change drops to
    `change_tolerance`, as the example stops). Mesh, filter and scatter structures are built
    before the clock starts, as the example builds its problem before `optimize`."""
    mesh = Cantilever.build(*shape)
    solver = make_solver(solver_name, mesh, amg)
    top = Top3D(mesh, solver, volfrac, penal, rmin)
    result = Run([], [], [], solver.steps, 0)
    for _ in range(iterations):
        start = time.perf_counter()
        c, change = top.step()
        result.seconds.append(time.perf_counter() - start)
        result.compliance.append(c)
        result.change.append(change)
        if not np.isfinite(c) or change <= change_tolerance:
            break
    result.setups = solver.setups
    return result


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--solver", choices=("amg", "cholmod"), default="amg")
    parser.add_argument("--nelx", type=int, default=48)
    parser.add_argument("--nely", type=int, default=24)
    parser.add_argument("--nelz", type=int, default=24)
    parser.add_argument("--volfrac", type=float, default=0.3)
    parser.add_argument("--penal", type=float, default=3.0)
    parser.add_argument("--rmin", type=float, default=1.5)
    parser.add_argument("--rtol", type=float, default=1e-8, help="CG's relative tolerance")
    parser.add_argument("--reuse", type=int, default=2, help="0: a new hierarchy every time")
    parser.add_argument("--no-backoff", action="store_true", help="reuse as before 4619787")
    parser.add_argument("--warm-start", action="store_true", help="CG from the last solutions")
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    amg = AMGOptions(args.rtol, args.reuse, backoff=not args.no_backoff, warm_start=args.warm_start)
    shape = (args.nelx, args.nely, args.nelz)
    result = run(args.solver, shape, args.iterations, args.volfrac, args.penal, args.rmin, amg)
    for i, (seconds, c) in enumerate(zip(result.seconds, result.compliance, strict=True)):
        steps = f" cg={result.cg_steps[i]}" if result.cg_steps else ""
        print(f"iteration {i + 1}: compliance={c:.10g} s={seconds:.3f}{steps}")
    steady = result.seconds[1:] or result.seconds
    print(f"s_per_iteration={np.median(steady):.3f} setups={result.setups}")
    print(f"final compliance {result.compliance[-1]:.4f} after {len(result.compliance)} iterations")


if __name__ == "__main__":
    main()
