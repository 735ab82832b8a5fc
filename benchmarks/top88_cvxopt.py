"""The 88-line topology optimization in plain NumPy + SciPy + cvxopt CHOLMOD: the baseline.

This is what a user would write without lineax-sparse: the same algorithm as
examples/topology_optimization.py (MBB half-beam, SIMP, Q4 elements, sensitivity or density
filter, OC update with bisection), with hand-written sensitivities and CHOLMOD called
directly. The symbolic factorization is computed once and reused: every iteration runs only
`cholmod.numeric` + `cholmod.solve` on the same factor object.

Two ways of building the cvxopt matrix in each iteration are offered:

- `assembly="plain"`: `scipy.sparse.coo_matrix((sK, (iK, jK))).tocsc()`, the free rows and
  columns sliced out, its lower triangle handed to `cvxopt.spmatrix(V, I, J)`, as a
  straightforward port of the MATLAB code would;
- `assembly="tuned"`: the lower triangle's positions are precomputed once, and each iteration
  sums the element entries into them with one `np.bincount` and writes the values into the
  same `cvxopt.spmatrix` (the fastest assembly for cvxopt we know). The OC bisection then
  also uses that the filtered volume is linear in the new densities, sum(H x / Hs) =
  (H (1 / Hs)) . x, instead of filtering in every bisection step, as ours does.

Used by benchmarks/bench_topology.py; also runnable on its own:

    python benchmarks/top88_cvxopt.py --nelx 60 --nely 20   # prints the final compliance
"""

from __future__ import annotations

import time

import cvxopt
import numpy as np
import scipy.sparse as sp
from cvxopt import cholmod

from common import command_line
from problems import element_stiffness


E0, E_MIN, MOVE = 1.0, 1e-9, 0.2


class Top88:
    """State of one run; `step()` performs one iteration and returns (compliance, change)."""

    def __init__(self, nelx, nely, volfrac, penal, rmin, density_filter, assembly="plain"):
        if assembly not in ("plain", "tuned"):
            raise ValueError(f"assembly must be 'plain' or 'tuned', got {assembly!r}")
        self.nelx, self.nely, self.volfrac, self.penal = nelx, nely, volfrac, penal
        self.density_filter, self.assembly = density_filter, assembly
        self.ke = element_stiffness()
        nodes = np.arange((nelx + 1) * (nely + 1)).reshape(nelx + 1, nely + 1).T
        first = (2 * nodes[:-1, :-1] + 2).T.reshape(-1)
        offsets = np.array([0, 1, 2 * nely + 2, 2 * nely + 3, 2 * nely, 2 * nely + 1, -2, -1])
        self.edof = first[:, None] + offsets[None, :]
        self.ik = np.repeat(self.edof, 8, axis=1).reshape(-1)
        self.jk = np.tile(self.edof, (1, 8)).reshape(-1)
        self.ndof = 2 * (nelx + 1) * (nely + 1)
        fixed = np.union1d(np.arange(0, 2 * (nely + 1), 2), [self.ndof - 1])
        self.free = np.setdiff1d(np.arange(self.ndof), fixed)
        self.force = np.zeros(self.ndof)
        self.force[1] = -1.0
        self.h, self.hs = _filter(nelx, nely, rmin)
        self.volume_weights = self.h @ (1 / self.hs)
        self.x = np.full(nelx * nely, volfrac)
        self.physical = self.x.copy()
        self.factor = None
        if assembly == "tuned":
            number = np.full(self.ndof, -1)
            number[self.free] = np.arange(self.free.size)
            rows, cols = number[self.ik], number[self.jk]
            self.select = np.flatnonzero((rows >= 0) & (cols >= 0) & (rows >= cols))
            n = self.free.size
            keys = cols[self.select].astype(np.int64) * n + rows[self.select]
            unique, self.slot = np.unique(keys, return_inverse=True)
            self.matrix = cvxopt.spmatrix(
                cvxopt.matrix(np.ones(unique.size)),
                cvxopt.matrix(unique % n, tc="i"),
                cvxopt.matrix(unique // n, tc="i"),
                (n, n),
            )

    def _lower_matrix(self, young: np.ndarray):
        values = (young[:, None] * self.ke.reshape(1, -1)).reshape(-1)
        if self.assembly == "tuned":
            summed = np.bincount(
                self.slot, weights=values[self.select], minlength=self.matrix.V.size[0]
            )
            self.matrix.V = cvxopt.matrix(summed)
            return self.matrix
        k = sp.coo_matrix((values, (self.ik, self.jk)), shape=(self.ndof, self.ndof)).tocsc()
        k = sp.tril(k[self.free][:, self.free]).tocoo()
        n = self.free.size
        return cvxopt.spmatrix(k.data, k.row.astype(np.int64), k.col.astype(np.int64), (n, n))

    def step(self) -> tuple[float, float]:
        young = E_MIN + self.physical**self.penal * (E0 - E_MIN)
        matrix = self._lower_matrix(young)
        if self.factor is None:
            self.factor = cholmod.symbolic(matrix)  # once: the symbolic analysis is reused
        cholmod.numeric(matrix, self.factor)
        solution = cvxopt.matrix(self.force[self.free])
        cholmod.solve(self.factor, solution)
        u = np.zeros(self.ndof)
        u[self.free] = np.asarray(solution).ravel()
        ue = u[self.edof]
        energy = np.einsum("ei,ij,ej->e", ue, self.ke, ue)
        c = float(np.sum(young * energy))
        dc = -self.penal * (E0 - E_MIN) * self.physical ** (self.penal - 1) * energy
        dv = np.ones_like(self.x)
        if self.density_filter:
            dc = self.h @ (dc / self.hs)
            dv = self.h @ (dv / self.hs)
        else:
            dc = (self.h @ (self.x * dc)) / self.hs / np.maximum(1e-3, self.x)
        linear = self.assembly == "tuned"
        weights = self.volume_weights if self.density_filter else dv
        low, high, target = 0.0, 1e9, self.volfrac * self.x.size
        while (high - low) / (low + high) > 1e-3:
            middle = 0.5 * (low + high)
            if linear:
                volume = self._step(dc, dv, middle) @ weights
            else:
                volume = self._update(dc, dv, middle)[1].sum()
            if volume > target:
                low = middle
            else:
                high = middle
        new, physical = self._update(dc, dv, 0.5 * (low + high))
        change = float(np.max(np.abs(new - self.x)))
        self.x, self.physical = new, physical
        return c, change

    def _step(self, dc, dv, multiplier):
        step = self.x * np.sqrt(-dc / dv / multiplier)
        return np.maximum(
            0.0, np.maximum(self.x - MOVE, np.minimum(1.0, np.minimum(self.x + MOVE, step)))
        )

    def _update(self, dc, dv, multiplier):
        new = self._step(dc, dv, multiplier)
        return new, ((self.h @ new) / self.hs if self.density_filter else new)


def _filter(nelx: int, nely: int, rmin: float):
    reach = int(np.ceil(rmin)) - 1
    rows, cols, weights = [], [], []
    for i1 in range(nelx):
        for j1 in range(nely):
            for i2 in range(max(i1 - reach, 0), min(i1 + reach + 1, nelx)):
                for j2 in range(max(j1 - reach, 0), min(j1 + reach + 1, nely)):
                    rows.append(i1 * nely + j1)
                    cols.append(i2 * nely + j2)
                    weights.append(max(0.0, rmin - np.hypot(i1 - i2, j1 - j2)))
    nel = nelx * nely
    h = sp.csr_matrix((weights, (rows, cols)), shape=(nel, nel))
    return h, np.asarray(h.sum(axis=1)).ravel()


def main() -> None:
    parser = command_line(__doc__)
    parser.add_argument("--nelx", type=int, default=60)
    parser.add_argument("--nely", type=int, default=20)
    parser.add_argument("--volfrac", type=float, default=0.5)
    parser.add_argument("--penal", type=float, default=3.0)
    parser.add_argument("--rmin", type=float, default=2.4)
    parser.add_argument("--filter", choices=("sensitivity", "density"), default="sensitivity")
    parser.add_argument("--assembly", choices=("plain", "tuned"), default="plain")
    parser.add_argument("--max-iterations", type=int, default=1000)
    args = parser.parse_args()
    run = Top88(
        args.nelx,
        args.nely,
        args.volfrac,
        args.penal,
        args.rmin,
        args.filter == "density",
        args.assembly,
    )
    times = []
    while len(times) < args.max_iterations:
        start = time.perf_counter()
        c, change = run.step()
        times.append(time.perf_counter() - start)
        if change <= 0.01:
            break
    print(f"ms_per_iteration={1e3 * np.median(times):.2f}")
    print(f"final compliance {c:.4f} after {len(times)} iterations")


if __name__ == "__main__":
    main()
