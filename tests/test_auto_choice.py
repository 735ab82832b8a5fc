"""`AutoSparse`'s choice of solver by tags, kind and size, and what each choice reports.

SPD -> CHOLMOD; symmetric indefinite -> PARDISO's `L D L^T` when MKL is installed (with the
inertia in `stats`), else the LU of its size; general -> SuperLU below `UMFPACK_FROM`
unknowns, UMFPACK from there. Each choice is checked by solving against a dense reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lineax_sparse as lxs
from lineax_sparse._solver import auto

from .helpers import operator, PARDISO_MARKS, random_symmetric_indefinite, with_data


jax.config.update("jax_enable_x64", True)

#: Skipped with the reason without MKL, unless `LXS_REQUIRE_MKL=1` (CI) makes them fail.
needs_mkl = PARDISO_MARKS[0] if PARDISO_MARKS else (lambda test: test)


def _kkt(n: int, m: int, seed: int = 0) -> sp.csc_matrix:
    """A saddle point [[K, B^T], [B, 0]] with K SPD and B of full row rank: inertia (n, m, 0)."""
    rng = np.random.default_rng(seed)
    k = sp.random(n, n, 4 / n, random_state=rng)
    k = k @ k.T + sp.eye(n)
    b = sp.random(m, n, 4 / n, random_state=rng) + sp.eye(m, n)
    return sp.bmat([[k, b.T], [b, None]]).tocsc()


def _general(n: int) -> sp.csc_matrix:
    """A convection-diffusion-like unsymmetric matrix with a dominant diagonal."""
    main = np.full(n, 4.0)
    return sp.diags([main, -np.ones(n - 1) * 1.5, -np.ones(n - 1) * 0.5], [0, 1, -1]).tocsc()


def _solve(matrix, tags, solver):
    op = operator(matrix, tags)
    b = jnp.asarray(np.random.default_rng(1).standard_normal(matrix.shape[0]))
    sol = jax.jit(lambda op, b: lx.linear_solve(op, b, solver, throw=False))(op, b)
    return op, b, sol


def _assert_solves(matrix, b, sol):
    """Against a dense solve, or (large systems) SuperLU called directly, and the residual."""
    assert sol.result == lx.RESULTS.successful
    b = np.asarray(b)
    if matrix.shape[0] <= 2_000:
        expected = np.linalg.solve(matrix.toarray(), b)
    else:
        expected = spla.spsolve(sp.csc_matrix(matrix), b)
    np.testing.assert_allclose(sol.value, expected, rtol=1e-8, atol=1e-10)
    residual = np.linalg.norm(matrix @ np.asarray(sol.value) - b) / np.linalg.norm(b)
    assert residual < 1e-12


def _backend(solver, matrix, tags) -> str:
    return solver.backend_spec(operator(matrix, tags))[0]


def test_spd_goes_to_cholmod():
    matrix = _kkt(400, 0)
    assert _backend(lxs.AutoSparse(), matrix, (lx.symmetric_tag, lx.positive_semidefinite_tag)) == (
        "cholmod"
    )


@needs_mkl
def test_symmetric_indefinite_goes_to_pardiso_with_its_inertia():
    matrix = _kkt(500, 150)
    assert _backend(lxs.AutoSparse(), matrix, lx.symmetric_tag) == "pardiso"
    _, b, sol = _solve(matrix, lx.symmetric_tag, lxs.AutoSparse(dense_below=0))
    _assert_solves(matrix, b, sol)
    np.testing.assert_array_equal(sol.stats["inertia"], [500, 150, 0])


def test_symmetric_indefinite_without_mkl_goes_to_lu(monkeypatch):
    monkeypatch.setattr(auto, "mkl_candidates", lambda: [])
    small, large = _kkt(500, 150), _kkt(auto.SYMMETRIC_UMFPACK_FROM, 200)
    assert _backend(lxs.AutoSparse(), small, lx.symmetric_tag) == "superlu"
    assert _backend(lxs.AutoSparse(), large, lx.symmetric_tag) == "umfpack"
    _, b, sol = _solve(small, lx.symmetric_tag, lxs.AutoSparse(dense_below=0))
    _assert_solves(small, b, sol)
    assert "inertia" not in sol.stats


def test_general_by_size():
    below, above = _general(auto.UMFPACK_FROM - 1), _general(auto.UMFPACK_FROM)
    assert _backend(lxs.AutoSparse(), below, ()) == "superlu"
    assert _backend(lxs.AutoSparse(), above, ()) == "umfpack"
    for matrix in (below, above):
        _, b, sol = _solve(matrix, (), lxs.AutoSparse())
        _assert_solves(matrix, b, sol)


@needs_mkl
def test_fallback_from_pardiso_reports_unknown_inertia():
    """A matrix tagged symmetric whose values are not: reported without `fallback`, solved
    by the LU with it (whose factorization has no inertia: -1)."""
    matrix = _kkt(300, 100).tolil()
    matrix[0, 1] += 0.5  # breaks the symmetry the tag promises
    matrix = matrix.tocsc()
    _, b, strict = _solve(matrix, lx.symmetric_tag, lxs.AutoSparse(dense_below=0))
    assert strict.result != lx.RESULTS.successful
    assert lxs.REASONS[int(strict.stats["reason"])].name == "not_symmetric"
    _, b, sol = _solve(matrix, lx.symmetric_tag, lxs.AutoSparse(fallback=True, dense_below=0))
    _assert_solves(matrix, b, sol)
    np.testing.assert_array_equal(sol.stats["inertia"], [-1, -1, -1])


@needs_mkl
def test_inertia_batched_under_vmap():
    """Each member of a vmapped batch reports its own inertia: A - s I has as many negative
    eigenvalues as A has below s (Sylvester)."""
    matrix = (random_symmetric_indefinite(60, 0.1, seed=3) + 0 * sp.eye(60)).tocsc()
    eigenvalues = np.linalg.eigvalsh(matrix.toarray())
    shifts = np.array([-1e3, eigenvalues[10] + 1e-3, eigenvalues[40] + 1e-3])
    op = operator(matrix, lx.symmetric_tag)
    on_diagonal = jnp.asarray(op.indices[:, 0] == op.indices[:, 1], dtype=op.data.dtype)
    b = jnp.ones(60)

    @jax.jit
    @jax.vmap
    def inertia(shift):
        shifted = with_data(op, op.data - shift * on_diagonal)
        return lx.linear_solve(shifted, b, lxs.AutoSparse(dense_below=0), throw=False).stats[
            "inertia"
        ]

    below = [int(np.sum(eigenvalues < s)) for s in shifts]
    np.testing.assert_array_equal(inertia(jnp.asarray(shifts)), [[60 - k, k, 0] for k in below])
