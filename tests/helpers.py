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
