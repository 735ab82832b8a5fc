"""Shared test helpers: matrix factories, the real matrices, dtype-aware tolerances."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import scipy.io
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs


DATA = pathlib.Path(__file__).parent / "data"


class KeyGenerator:
    """Deterministic stream of JAX keys (no global seeding)."""

    def __init__(self, seed: int = 5678):
        self._key = jr.PRNGKey(seed)

    def __call__(self):
        self._key, key = jr.split(self._key)
        return key


def tolerance(dtype) -> float:
    """Relative tolerance for a direct solve of a modestly conditioned system."""
    return {
        jnp.dtype(jnp.float32): 1e-4,
        jnp.dtype(jnp.complex64): 1e-4,
        jnp.dtype(jnp.float64): 1e-10,
        jnp.dtype(jnp.complex128): 1e-10,
    }[jnp.dtype(dtype)]


def assert_close(actual, expected, dtype, factor: float = 1.0):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    error = float(np.max(np.abs(actual - expected), initial=0.0)) / scale
    assert error <= factor * tolerance(dtype), f"relative error {error:.3e}"


def random_sparse(n: int, density: float, dtype, seed: int, spd: bool = False):
    """A well-conditioned random sparse matrix (diagonally dominant) as scipy CSR."""
    rng = np.random.default_rng(seed)
    real = np.dtype(dtype).kind == "f"
    matrix = sp.random(n, n, density=density, random_state=rng, format="csr")
    if not real:
        imag = sp.random(n, n, density=density, random_state=rng, format="csr")
        matrix = matrix + 1j * imag
    if spd:
        matrix = matrix @ matrix.conj().T
    row_sums = np.asarray(abs(matrix).sum(axis=1)).ravel()
    matrix = matrix + sp.diags(row_sums + 1.0)
    return matrix.astype(dtype).tocsr()


def poisson2d(m: int, dtype=np.float64):
    """5-point Laplacian on an m x m interior grid (SPD, n = m^2), as scipy CSR."""
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
    eye = sp.eye_array(m)
    return (sp.kron(eye, t) + sp.kron(t, eye)).astype(dtype).tocsr()


def load(name: str):
    """A matrix from tests/data (SuiteSparse), symmetric files expanded, as scipy CSR."""
    return sp.csr_matrix(scipy.io.mmread(DATA / name))


def operator(matrix, tags=()) -> lxs.SparseOperator:
    return lxs.SparseOperator.from_scipy(matrix, tags=tags)


def with_data(op: lxs.SparseOperator, data) -> lxs.SparseOperator:
    """The same pattern with other values (traced or not)."""
    bcoo = jsparse.BCOO((data, op.indices), shape=(op.size, op.size))
    return lxs.SparseOperator(bcoo, op.tags)


def dense_from_data(op: lxs.SparseOperator, data):
    """Dense matrix built with jnp from `data`: an independent, differentiable reference."""
    rows, cols = op.indices[:, 0], op.indices[:, 1]
    return jnp.zeros((op.size, op.size), data.dtype).at[rows, cols].add(data)


def random_vector(key, n: int, dtype):
    if jnp.issubdtype(dtype, jnp.complexfloating):
        real_dtype = jnp.finfo(dtype).dtype
        k1, k2 = jr.split(key)
        return jax.lax.complex(jr.normal(k1, (n,), real_dtype), jr.normal(k2, (n,), real_dtype))
    return jr.normal(key, (n,), dtype)


def finite_difference(fn, x, direction, step: float = 1e-6):
    """Central difference of scalar `fn` at `x` along `direction` (float64)."""
    return (fn(x + step * direction) - fn(x - step * direction)) / (2 * step)


def jit_solve(solver):
    import lineax as lx

    @jax.jit
    def solve(op, b):
        return lx.linear_solve(op, b, solver=solver).value

    return solve


def _q4_stiffness(nu: float = 0.3) -> np.ndarray:
    """Element stiffness of a unit square Q4 plane-stress element (E = 1), top88 layout."""
    a11 = np.array([[12, 3, -6, -3], [3, 12, 3, 0], [-6, 3, 12, -3], [-3, 0, -3, 12]])
    a12 = np.array([[-6, -3, 0, 3], [-3, -6, -3, -6], [0, -3, -6, 3], [3, -6, 3, -6]])
    b11 = np.array([[-4, 3, -2, 9], [3, -4, -9, 4], [-2, -9, -4, -3], [9, 4, -3, -4]])
    b12 = np.array([[2, -3, 4, -9], [-3, 2, 9, -2], [4, 9, 2, 3], [-9, -2, 3, 2]])
    a = np.block([[a11, a12], [a12.T, a11]])
    b = np.block([[b11, b12], [b12.T, b11]])
    return (a + nu * b) / (24 * (1 - nu**2))


def elasticity2d(nelx: int, nely: int, density=None):
    """MBB half-beam stiffness (Q4, plane stress), fixed dofs removed: SPD, scipy CSR.

    Returns the reduced matrix assembled *with duplicates* as COO, as FEM codes do.
    """
    nodes = np.arange((nelx + 1) * (nely + 1)).reshape(nelx + 1, nely + 1).T
    first = (2 * nodes[:-1, :-1] + 2).T.reshape(-1)  # 0-based dof of each element's node
    offsets = np.array([0, 1, 2 * nely + 2, 2 * nely + 3, 2 * nely, 2 * nely + 1, -2, -1])
    edof = first[:, None] + offsets[None, :]
    ke = _q4_stiffness()
    scale = np.ones(nelx * nely) if density is None else np.asarray(density)
    rows = np.repeat(edof, 8, axis=1).reshape(-1)
    cols = np.tile(edof, (1, 8)).reshape(-1)
    values = (scale[:, None] * ke.reshape(1, -1)).reshape(-1)
    ndof = 2 * (nelx + 1) * (nely + 1)
    fixed = np.union1d(np.arange(0, 2 * (nely + 1), 2), [ndof - 1])
    free = np.setdiff1d(np.arange(ndof), fixed)
    renumber = -np.ones(ndof, dtype=np.int64)
    renumber[free] = np.arange(free.size)
    keep = (renumber[rows] >= 0) & (renumber[cols] >= 0)
    return sp.coo_matrix(
        (values[keep], (renumber[rows[keep]], renumber[cols[keep]])), shape=(free.size,) * 2
    )


# The real and generated matrices the solver suites run on: name -> (factory, forward-error
# tolerance vs a dense solve, positive definite?). The tolerance is about cond(A) * 1e-15,
# the accuracy any backward-stable solver can promise.
MATRICES = {
    "random-real": (lambda: random_sparse(60, 0.08, np.float64, seed=10), 1e-11, False),
    "random-complex": (lambda: random_sparse(60, 0.08, np.complex128, seed=11), 1e-11, False),
    "random-spd": (lambda: random_sparse(60, 0.05, np.float64, seed=12, spd=True), 1e-11, True),
    "random-hpd": (
        lambda: random_sparse(60, 0.05, np.complex128, seed=13, spd=True),
        1e-11,
        True,
    ),
    "poisson": (lambda: poisson2d(12), 1e-11, True),
    "elasticity": (lambda: elasticity2d(24, 8).tocsr(), 1e-8, True),
    "494_bus": (lambda: load("494_bus.mtx"), 1e-8, True),
    "bcsstk13": (lambda: load("bcsstk13.mtx"), 1e-4, True),
    "west0479": (lambda: load("west0479.mtx"), 1e-3, False),
    "rajat19": (lambda: load("rajat19.mtx"), 1e-4, False),
    "young1c": (lambda: load("young1c.mtx"), 1e-11, False),
    "hangGlider_2": (lambda: load("hangGlider_2.mtx"), 1e-3, False),
}

_matrix_cache: dict = {}


def matrix(name: str):
    if name not in _matrix_cache:
        _matrix_cache[name] = MATRICES[name][0]()
    return _matrix_cache[name]


def matrix_operator(name: str) -> lxs.SparseOperator:
    import lineax as lx

    tags = lx.positive_semidefinite_tag if MATRICES[name][2] else ()
    return operator(matrix(name), tags)


# Solver suites: the solver, every matrix it must solve, and the few it is differentiated on
# (cheap, well conditioned, one of each kind it supports).
SOLVERS = {
    "superlu": (
        lxs.SuperLU(),
        [n for n in MATRICES],
        ["random-real", "random-complex", "poisson", "rajat19"],
    ),
    "cholmod": (
        lxs.Cholmod(),
        [n for n, (_, _, definite) in MATRICES.items() if definite],
        ["random-spd", "random-hpd", "poisson", "elasticity"],
    ),
}


def symmetric_direction(op: lxs.SparseOperator):
    """A perturbation of the values that keeps a symmetric matrix symmetric."""
    rows, cols = op.indices[:, 0], op.indices[:, 1]
    return op.data * jnp.cos(rows + cols).astype(op.data.dtype)


def rigid_body_modes2d(nelx: int, nely: int) -> np.ndarray:
    """The three 2D rigid body modes on the free dofs of `elasticity2d(nelx, nely)`: (n, 3)."""
    node = np.arange((nelx + 1) * (nely + 1))
    x, y = node // (nely + 1), node % (nely + 1)
    modes = np.zeros((2 * node.size, 3))
    modes[0::2, 0] = 1.0
    modes[1::2, 1] = 1.0
    modes[0::2, 2], modes[1::2, 2] = -y, x
    ndof = 2 * node.size
    fixed = np.union1d(np.arange(0, 2 * (nely + 1), 2), [ndof - 1])
    return modes[np.setdiff1d(np.arange(ndof), fixed)]


def poisson3d(m: int):
    """7-point Laplacian on an m^3 grid (SPD), scipy CSR."""
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
    eye = sp.eye_array(m)
    return (
        sp.kron(sp.kron(eye, eye), t)
        + sp.kron(sp.kron(eye, t), eye)
        + sp.kron(sp.kron(t, eye), eye)
    ).tocsr()


def anisotropic2d(m: int, epsilon: float = 1e-3):
    """-u_xx - epsilon u_yy on an m x m grid (SPD), scipy CSR."""
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
    eye = sp.eye_array(m)
    return (sp.kron(eye, t) + epsilon * sp.kron(t, eye)).tocsr()


def convection_diffusion2d(m: int, peclet: float = 0.8):
    """Upwind convection-diffusion with wind (1, 1) on an m x m grid: non-symmetric, CSR."""
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
    upwind = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m))
    eye = sp.eye_array(m)
    diffusion = sp.kron(eye, t) + sp.kron(t, eye)
    convection = sp.kron(eye, upwind) + sp.kron(upwind, eye)
    return (diffusion + peclet * convection).tocsr()
