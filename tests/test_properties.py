"""Property-based tests: random valid and invalid systems, scales and transformations thrown
at every solver, each outcome checked against dense NumPy.

The properties, whatever hypothesis draws:

- a well-posed system is solved, to a tolerance set by its dtype, and its result is
  `successful`; under `jit`, `vmap` and `grad` alike;
- a singular one, one with NaN or inf among the values that count, one with an index out of
  range known only at run time, or one tagged positive semidefinite whose values are not
  symmetric, is never `successful`, and its solution is NaN;
- nothing raises at run time (callbacks return result codes); padding entries (index `n`)
  never matter, whatever they hold; duplicates are summed.

Bounded (a fixed number of examples, no deadline for the first compilation, derandomized)
so that the default suite keeps its time budget and CI runs the same examples every time.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from hypothesis import given, HealthCheck, settings, strategies as st
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs

from .helpers import GRID, grid_names


PSD = lx.positive_semidefinite_tag
#: Every solver of the grid, by name (`Materialise` adds nothing here: it passes sparse
#: operators through).
SOLVERS = grid_names(materialise=False)
#: Which kinds of matrix each solver is given (AMG and CHOLMOD need positive definite ones).
KINDS = {
    "superlu": ("general", "spd", "singular", "singular-psd", "nonfinite", "bad-index"),
    "cholmod": ("spd", "singular-psd", "nonfinite", "asymmetric-psd", "bad-index"),
    "pardiso": (
        "general",
        "spd",
        "singular",
        "singular-psd",
        "nonfinite",
        "asymmetric-psd",
        "bad-index",
    ),
    "umfpack": ("general", "spd", "singular", "singular-psd", "nonfinite", "bad-index"),
    "auto": ("general", "spd", "singular", "singular-psd", "nonfinite", "asymmetric-psd"),
    "auto-fallback": ("general", "spd", "singular-psd", "nonfinite", "asymmetric-psd"),
    "amg": ("spd", "singular-psd", "nonfinite", "bad-index"),
    "petsc": ("general", "spd", "singular-psd", "nonfinite", "bad-index"),
}
WELL_POSED = ("general", "spd")
TOLERANCE = {np.float32: 2e-3, np.complex64: 2e-3, np.float64: 1e-9, np.complex128: 1e-9}
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclasses.dataclass
class System:
    dense: np.ndarray  # the matrix the entries make (unscaled)
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray  # entries: duplicates split, padding appended, scaled by 2^matrix_exp
    rhs: np.ndarray  # unscaled
    kind: str
    dtype: type
    matrix_exp: int
    rhs_exp: int
    transform: str
    psd_tag: bool


def _dense(kind: str, n: int, dtype, rng: np.random.Generator) -> np.ndarray:
    complex_ = np.dtype(dtype).kind == "c"

    def normal(*shape):
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if complex_ else x

    def integers(*shape):
        # Small integers: their products are exact in every dtype, so a singular matrix
        # stays exactly singular when rounded to float32.
        x = rng.integers(-3, 4, shape).astype(np.float64)
        return x + 1j * rng.integers(-3, 4, shape) if complex_ else x

    if kind == "general":
        matrix = normal(n, n) + 2 * n * np.eye(n)
    elif kind in ("spd", "nonfinite", "bad-index", "asymmetric-psd"):
        b = normal(n, n)
        matrix = b @ b.conj().T + n * np.eye(n)
        if kind == "asymmetric-psd" and n > 1:
            matrix[0, 1] += 1.0  # no longer symmetric, yet tagged positive semidefinite
    elif kind == "singular-psd":
        b = integers(n, max(n - 1, 0))
        matrix = b @ b.conj().T
        if n == 1:
            matrix = np.zeros((1, 1))
    else:  # "singular": rank n - 1 (or less), not symmetric
        matrix = integers(n, max(n - 1, 0)) @ integers(max(n - 1, 0), n)
        if n == 1:
            matrix = np.zeros((1, 1))
    return matrix.astype(dtype)


@st.composite
def systems(draw, solver_name: str) -> System:
    kind = draw(st.sampled_from(KINDS[solver_name]))
    n = draw(st.sampled_from((1, 2, 5, 8)))
    if kind == "asymmetric-psd" and n == 1:
        n = 2
    dtype = draw(
        st.sampled_from(
            (np.float64, np.complex128, np.float32)
            if GRID[solver_name].row.complex
            else (np.float64, np.float32)
        )
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dense = _dense(kind, n, dtype, rng)
    rows, cols = np.nonzero(dense) if np.any(dense) else (np.zeros(0, int), np.zeros(0, int))
    values = dense[rows, cols]
    # Duplicates, as FEM assembly writes them: some entries split in two halves.
    split = rng.random(values.size) < draw(st.sampled_from((0.0, 0.5)))
    rows = np.concatenate([rows, rows[split]])
    cols = np.concatenate([cols, cols[split]])
    values = np.concatenate([np.where(split, values / 2, values), values[split] / 2])
    # Padding entries, as `BCOO.sum_duplicates(nse=...)` writes them, holding anything.
    padding = draw(st.integers(0, 3))
    if padding:
        rows = np.concatenate([rows, np.full(padding, n)])
        cols = np.concatenate([cols, rng.integers(0, n + 1, padding)])
        values = np.concatenate([values, np.array([np.nan, np.inf, 7.0])[:padding]])
    if kind == "nonfinite":
        values[rng.integers(0, values.size - padding)] = draw(st.sampled_from((np.nan, np.inf)))
    # Powers of two keep the reference exact; float32 has a narrower range.
    limit = 100 if dtype == np.float32 else 900
    matrix_exp = draw(st.integers(-limit, limit))
    rhs_exp = draw(st.integers(max(-limit, matrix_exp - limit), min(limit, matrix_exp + limit)))
    values = np.ldexp(values.real, matrix_exp) + (
        1j * np.ldexp(values.imag, matrix_exp) if np.iscomplexobj(values) else 0
    )
    rhs = rng.standard_normal(n) * draw(st.sampled_from((1.0, 1.0, 1.0, 0.0)))
    if np.dtype(dtype).kind == "c":
        rhs = rhs + 1j * rng.standard_normal(n)
    transform = draw(st.sampled_from(("eager", "jit", "vmap", "grad")))
    if kind == "bad-index":
        transform = "jit"  # an index out of range known only at run time
    psd_tag = kind.endswith("psd") or kind in ("spd", "nonfinite", "bad-index")
    if solver_name in ("superlu", "auto") and kind == "spd":
        psd_tag = draw(st.booleans())
    return System(
        dense,
        rows,
        cols,
        values.astype(dtype),
        rhs.astype(dtype),
        kind,
        dtype,
        matrix_exp,
        rhs_exp,
        transform,
        psd_tag,
    )


def _solve(system: System, solver):
    n = system.dense.shape[0]
    tags = PSD if system.psd_tag else ()
    indices = np.stack([system.rows, system.cols], axis=1).astype(np.int32)
    b = np.ldexp(system.rhs.real, system.rhs_exp).astype(system.dtype)
    if np.iscomplexobj(system.rhs):
        b = b + 1j * np.ldexp(system.rhs.imag, system.rhs_exp).astype(system.dtype)
    data, b = jnp.asarray(system.values), jnp.asarray(b)

    def solve(data, indices, b):
        op = lxs.SparseOperator(jsparse.BCOO((data, indices), shape=(n, n)), tags)
        return lx.linear_solve(op, b, solver=solver, throw=False)

    if system.kind == "bad-index":
        indices[0, 0] = n + 3  # caught on the host: the pattern is invalid
        return jax.jit(solve)(data, jnp.asarray(indices), b), b
    indices = jnp.asarray(indices)
    if system.transform == "eager":
        return solve(data, indices, b), b
    if system.transform == "jit":
        return jax.jit(solve)(data, indices, b), b
    if system.transform == "vmap":
        both = jax.vmap(solve, in_axes=(None, None, 0))(data, indices, jnp.stack([b, 2 * b]))
        first = jax.tree_util.tree_map(lambda leaf: leaf[0], both)
        second = jax.tree_util.tree_map(lambda leaf: leaf[1], both)
        assert first.result == second.result
        np.testing.assert_allclose(
            np.asarray(second.value), 2 * np.asarray(first.value), rtol=1e-5, equal_nan=True
        )
        return first, b
    return solve(data, indices, b), b  # "grad" is checked after the forward solve


def _reference(system: System) -> np.ndarray:
    """The solution of the unscaled dense system, scaled exactly by 2^(rhs - matrix)."""
    x = np.linalg.solve(system.dense.astype(np.complex128), system.rhs.astype(np.complex128))
    shift = system.rhs_exp - system.matrix_exp
    return np.ldexp(x.real, shift) + 1j * np.ldexp(x.imag, shift)


def _check(system: System, solver_name: str) -> None:
    case = GRID[solver_name]
    solver = case.solver
    solution, b = _solve(system, solver)
    value = np.asarray(solution.value)
    # With a fallback to LU, a matrix wrongly tagged positive definite is still well posed.
    well_posed = WELL_POSED + (("asymmetric-psd",) if solver_name == "auto-fallback" else ())
    if system.kind in well_posed:
        assert solution.result == lx.RESULTS.successful, (system.kind, lx.RESULTS[solution.result])
        expected = _reference(system)
        scale = np.max(np.abs(expected), initial=0.0)
        error = np.max(np.abs(value - expected), initial=0.0)
        tolerance = TOLERANCE[system.dtype]
        if case.row.iterative:  # a relative residual of rtol at condition numbers of about 5
            tolerance = max(tolerance, 1e-6)  # (1e3 times float32's 2e-3 tested nothing)
        assert error <= tolerance * scale, (error, scale)
        if system.transform == "grad" and system.dtype == np.float64 and scale > 0:
            _check_gradient(system, solver, b)
    elif case.row.iterative and system.kind == "singular-psd" and not np.any(system.rhs):
        # x = 0 solves A x = 0 whatever A is, and an iteration cannot always tell that A is
        # singular: zeros, or a failure (a zero row is seen at setup).
        if solution.result == lx.RESULTS.successful:
            assert not np.any(value)
        else:
            assert np.all(np.isnan(value))
    else:
        assert solution.result != lx.RESULTS.successful, system.kind
        assert np.all(np.isnan(value))
        if system.kind == "nonfinite":
            assert solution.result == lx.RESULTS.nonfinite_input
        if system.kind in ("singular", "asymmetric-psd") and solver_name != "auto-fallback":
            assert solution.result == lx.RESULTS.singular


def _check_gradient(system: System, solver, b) -> None:
    """d/db of sum(x) is A^-T 1: against the dense transposed solve."""
    n = system.dense.shape[0]
    tags = PSD if system.psd_tag else ()
    indices = jnp.asarray(np.stack([system.rows, system.cols], 1).astype(np.int32))
    op = lxs.SparseOperator(jsparse.BCOO((jnp.asarray(system.values), indices), shape=(n, n)), tags)
    gradient = jax.grad(lambda v: jnp.sum(lx.linear_solve(op, v, solver=solver).value))(b)
    dense = np.ldexp(system.dense, system.matrix_exp)
    expected = np.linalg.solve(dense.T, np.ones(n))
    np.testing.assert_allclose(gradient, expected, rtol=1e-8, atol=1e-8 * np.abs(expected).max())


@pytest.mark.parametrize("solver_name", SOLVERS)
def test_random_systems(solver_name):
    @SETTINGS
    @given(systems(solver_name))
    def check(system):
        _check(system, solver_name)

    check()
