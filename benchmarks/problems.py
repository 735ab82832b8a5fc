"""Problems several benchmarks share, and the native side's assembly of them.

Poisson matrices on grids, the MBB half-beam (Q4 plane stress, top88's numbering and
element stiffness, its element entries as FEM COO with duplicates) and `LowerTriangle`,
the cheapest assembly of a fixed COO structure into a `cvxopt.spmatrix` that we know. The
benchmarks build their own problems on purpose (they do not import the tests), so that a
change to the tests' matrices never moves a benchmark's figures.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


E_MIN, PENALTY = 1e-9, 3.0  # SIMP: E = E_MIN + rho^PENALTY (1 - E_MIN)


def element_stiffness(nu: float = 0.3) -> np.ndarray:
    """The 8 x 8 stiffness of a unit square Q4 plane-stress element (E = 1), top88's layout."""
    a11 = np.array([[12, 3, -6, -3], [3, 12, 3, 0], [-6, 3, 12, -3], [-3, 0, -3, 12]])
    a12 = np.array([[-6, -3, 0, 3], [-3, -6, -3, -6], [0, -3, -6, 3], [3, -6, 3, -6]])
    b11 = np.array([[-4, 3, -2, 9], [3, -4, -9, 4], [-2, -9, -4, -3], [9, 4, -3, -4]])
    b12 = np.array([[2, -3, 4, -9], [-3, 2, 9, -2], [4, 9, 2, 3], [-9, -2, 3, 2]])
    a = np.block([[a11, a12], [a12.T, a11]])
    b = np.block([[b11, b12], [b12.T, b11]])
    return (a + nu * b) / (24 * (1 - nu**2))


def poisson_2d(grid: int) -> sp.csc_matrix:
    """5-point Laplacian on a `grid` x `grid` interior grid of the unit square, scaled by 1/h^2."""
    h = 1.0 / (grid + 1)
    second_difference = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(grid, grid))
    identity = sp.identity(grid)
    laplacian = sp.kron(identity, second_difference) + sp.kron(second_difference, identity)
    return sp.csc_matrix(laplacian / h**2)


def poisson_3d(grid: int) -> sp.csc_matrix:
    """7-point Laplacian on a `grid`³ interior grid (unscaled)."""
    second_difference = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(grid, grid))
    eye = sp.identity(grid)
    return sp.csc_matrix(
        sp.kron(sp.kron(eye, eye), second_difference)
        + sp.kron(sp.kron(eye, second_difference), eye)
        + sp.kron(sp.kron(second_difference, eye), eye)
    )


def mbb_parts(nelx: int, nely: int):
    """`(rows, cols, keep, size)`: the reduced COO structure of the MBB half-beam.

    Element e contributes `ke.reshape(-1) * E_e` at positions `8 * 8 * e + (0..63)` of the
    full COO list; `keep` selects those between free dofs, renumbered by `rows` / `cols`.
    """
    nodes = np.arange((nelx + 1) * (nely + 1)).reshape(nelx + 1, nely + 1).T
    first = (2 * nodes[:-1, :-1] + 2).T.reshape(-1)  # 0-based dof of each element's node
    offsets = np.array([0, 1, 2 * nely + 2, 2 * nely + 3, 2 * nely, 2 * nely + 1, -2, -1])
    edof = first[:, None] + offsets[None, :]
    rows = np.repeat(edof, 8, axis=1).reshape(-1)
    cols = np.tile(edof, (1, 8)).reshape(-1)
    ndof = 2 * (nelx + 1) * (nely + 1)
    fixed = np.union1d(np.arange(0, 2 * (nely + 1), 2), [ndof - 1])
    free = np.setdiff1d(np.arange(ndof), fixed)
    renumber = -np.ones(ndof, dtype=np.int64)
    renumber[free] = np.arange(free.size)
    keep = (renumber[rows] >= 0) & (renumber[cols] >= 0)
    return renumber[rows[keep]], renumber[cols[keep]], np.flatnonzero(keep), free.size


def simp_values(xp, density, ke, keep):
    """The MBB beam's COO values for element densities (SIMP), with numpy or jax.numpy."""
    young = E_MIN + density**PENALTY * (1 - E_MIN)
    return (young[:, None] * ke[None, :]).reshape(-1)[keep]


def elasticity2d(nelx: int, nely: int, density=None) -> sp.coo_matrix:
    """MBB half-beam stiffness (Q4, plane stress), fixed dofs removed: SPD, as COO with the
    duplicates of FEM assembly (as `elasticity2d` in tests/helpers.py)."""
    rows, cols, keep, size = mbb_parts(nelx, nely)
    scale = np.ones(nelx * nely) if density is None else np.asarray(density)
    values = (scale[:, None] * element_stiffness().reshape(1, -1)).reshape(-1)
    return sp.coo_matrix((values[keep], (rows, cols)), shape=(size, size))


def coalesce(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct `keys`, and the position of every key among them.

    A stable argsort, as lineax-sparse's pattern sorts its keys (FEM keys come in sorted
    runs), so that neither side is slowed by a slower algorithm.
    """
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.ones(ordered.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    slot = np.empty(keys.size, dtype=np.intp)  # intp: np.bincount copies other types
    slot[order] = np.cumsum(first) - 1
    return ordered[first], slot


class LowerTriangle:
    """A `cvxopt.spmatrix` of the lower triangle of a fixed COO structure, refilled in place.

    `assemble(values)` sums the COO values (duplicates included; entries with a negative
    row or column, fixed dofs, dropped) into the matrix's values in cvxopt's column-major
    order: a gather of the entries kept, one `np.bincount` and the `V` setter. The cheapest
    assembly for cvxopt we know, so that the native side is not slowed by its assembly
    (0.66-0.81x the time of one `np.bincount` over every entry with a bin for those
    dropped, on the MBB beam 180 x 60 and the 3D cantilever).
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int):
        import cvxopt  # here: a benchmark without CHOLMOD does not load cvxopt's BLAS

        self.dense = cvxopt.matrix
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        self.kept = np.flatnonzero((rows >= 0) & (cols >= 0) & (rows >= cols))
        unique, self.slot = coalesce(cols[self.kept] * n + rows[self.kept])
        self.size = unique.size
        self.matrix = cvxopt.spmatrix(
            cvxopt.matrix(np.ones(unique.size)),
            cvxopt.matrix(unique % n, tc="i"),
            cvxopt.matrix(unique // n, tc="i"),
            (n, n),
        )
        if not np.array_equal(np.asarray(self.matrix.I).ravel(), unique % n):
            raise RuntimeError("cvxopt stores the lower triangle in another order")

    def assemble(self, values: np.ndarray):
        summed = np.bincount(self.slot, weights=values[self.kept], minlength=self.size)
        self.matrix.V = self.dense(summed)
        return self.matrix
