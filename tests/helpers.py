"""Shared test helpers: matrix factories, the real matrices, dtype-aware tolerances, and the
grid of solvers every solver suite runs over (`GRID`, made from the library's table)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import pathlib

import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from jax.experimental import sparse as jsparse

import lineax_sparse as lxs
from lineax_sparse._solver.table import SolverRow, SOLVERS as TABLE


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


#: A backward-stable solve (LU with partial pivoting, Cholesky; refined or not) leaves a
#: normwise backward error of about one eps: at most 1.3 eps on every matrix of `MATRICES`,
#: measured for SuperLU, CHOLMOD and LAPACK. The a-priori bound (n eps times the growth
#: factor) is never approached; 16 leaves room for other BLAS kernels, orderings and pivot
#: sequences, and a solution off by 1e-12 relative is still thousands of eps away.
BACKWARD_FACTOR = 16
#: What evaluating a residual adds to a backward error, in double-precision eps: rows are
#: summed exactly, so only the rounding of the products (complex: up to 2 eps) remains.
RESIDUAL_ROUNDING = 2


def eps(dtype) -> float:
    """Machine epsilon of `dtype` (of its real part for a complex dtype)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def _inf_norm(matrix) -> float:
    return float(np.max(np.asarray(abs(sp.csr_matrix(matrix)).sum(axis=1)), initial=0.0))


def _times_power_of_two(values: np.ndarray, exponent: int) -> np.ndarray:
    if np.iscomplexobj(values):
        return np.ldexp(values.real, exponent) + 1j * np.ldexp(values.imag, exponent)
    return np.ldexp(values, exponent)


def _exponent(largest: float) -> int:
    return int(np.frexp(largest)[1]) if np.isfinite(largest) else 0


def _residual(a: sp.csr_matrix, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`b - A x` with each row summed exactly (`math.fsum`) from rounded products: its
    error is at most a unit roundoff of `|A| |x|` (two for complex), whatever the number of
    entries per row (hangGlider_2 has a row of 1,463: summed in floating point, its rounding
    alone could reach 730 eps of the backward error)."""
    columns = x[a.indices]
    if np.iscomplexobj(a.data) or np.iscomplexobj(x):
        ar, ai, xr, xi = a.data.real, a.data.imag, columns.real, columns.imag
        parts = [((ar * xr, -(ai * xi)), b.real), ((ar * xi, ai * xr), b.imag)]
    else:
        parts = [((a.data * columns,), b)]
    rows = list(zip(a.indptr[:-1].tolist(), a.indptr[1:].tolist(), strict=True))
    sums = []
    for products, rhs in parts:
        negated = [(-product).tolist() for product in products]
        sums.append(
            [
                math.fsum([rhs[i], *(v for terms in negated for v in terms[start:end])])
                for i, (start, end) in enumerate(rows)
            ]
        )
    if len(sums) == 2:
        return np.array(sums[0]) + 1j * np.array(sums[1])
    return np.array(sums[0])


def backward_error(matrix, x, b) -> float:
    """The normwise backward error `|b - A x|_inf / (|A|_inf |x|_inf + |b|_inf)` of `x`
    (Rigal and Gaches: the smallest relative perturbation of `A` and `b` that `x` solves
    exactly), in double precision whatever the dtypes. It does not change when `A` and `b`,
    or `x` and `b`, are scaled together: both are scaled by powers of two first, so that
    nothing overflows at any scale of the system."""
    complex_ = any(np.iscomplexobj(v) for v in (sp.csr_matrix(matrix).data, x, b))
    wide = np.complex128 if complex_ else np.float64
    a = sp.csr_matrix(matrix).astype(wide)
    x, b = np.asarray(x).astype(wide), np.asarray(b).astype(wide)
    e = _exponent(np.max(np.abs(a.data), initial=0.0))
    a.data = _times_power_of_two(a.data, -e)
    b = _times_power_of_two(b, -e)
    f = _exponent(max(np.max(np.abs(x), initial=0.0), np.max(np.abs(b), initial=0.0)))
    x, b = _times_power_of_two(x, -f), _times_power_of_two(b, -f)
    with np.errstate(all="ignore"):
        residual = np.max(np.abs(_residual(a, x, b)), initial=0.0)
        scale = _inf_norm(a) * np.max(np.abs(x), initial=0.0) + np.max(np.abs(b), initial=0.0)
        error = residual / scale if scale > 0 else residual
    return float(error) if np.isfinite(error) else np.inf


def condition_number(matrix) -> float:
    """`kappa_inf(A) = |A|_inf |A^-1|_inf`, from a dense inverse: exact to a relative
    `kappa eps`, which is plenty for a bound (the matrices of the tests have n <= 3,000)."""
    a = sp.csr_matrix(matrix)
    dense = _times_power_of_two(a.toarray(), -_exponent(np.max(np.abs(a.data), initial=0.0)))
    return float(
        np.max(np.abs(dense).sum(axis=1)) * np.max(np.abs(np.linalg.inv(dense)).sum(axis=1))
    )


def assert_solves(
    matrix,
    x,
    b,
    dtype=None,
    *,
    reference=None,
    reference_dtype=np.float64,
    condition: float | None = None,
):
    """Assert that `x` solves `A x = b` as well as a backward-stable solve in `dtype` (by
    default `x`'s) can promise, whatever the condition number of `A`:

    - its backward error (`backward_error`) is at most `BACKWARD_FACTOR` eps of `dtype`,
      plus `RESIDUAL_ROUNDING` eps of double precision for evaluating the residual;
    - given a `reference` solution (another solver's, `reference_dtype`), which must pass
      the same test, the two differ by no more than that allows: with `x - x* = A^-1 r`,
      `|x - x*| <= kappa eta (|x| + |x*|)`, so two solutions with backward errors `eta`
      and `eta_ref` (`kappa eta <= 1/2`) differ by at most
      `4 kappa (eta + eta_ref) max(|x|, |x_ref|)` in the infinity norm, `kappa` being
      `condition` or `condition_number(A)`.

    Elementwise or fixed tolerances ask more than any solver can promise of an
    ill-conditioned matrix (hangGlider_2, condition 1e11: two correct LU solves differed by
    1.9e-9 relative in two entries); a wrong answer still fails the backward error.
    """
    dtype = np.asarray(x).dtype if dtype is None else np.dtype(dtype)
    evaluation = RESIDUAL_ROUNDING * eps(np.float64)
    limit = BACKWARD_FACTOR * eps(dtype) + evaluation
    error = backward_error(matrix, x, b)
    assert error <= limit, f"backward error {error:.2e} above {limit:.2e}"
    if reference is None:
        return
    reference_limit = BACKWARD_FACTOR * eps(reference_dtype) + evaluation
    reference_error = backward_error(matrix, reference, b)
    assert reference_error <= reference_limit, f"reference's backward error {reference_error:.2e}"
    kappa = condition_number(matrix) if condition is None else condition
    x, reference = np.asarray(x).astype(np.complex128), np.asarray(reference, np.complex128)
    size = max(np.max(np.abs(x), initial=0.0), np.max(np.abs(reference), initial=0.0))
    difference = np.max(np.abs(x - reference), initial=0.0) / max(size, np.finfo(float).tiny)
    bound = 4 * kappa * (limit + reference_limit)
    assert difference <= bound, f"forward difference {difference:.2e} above {bound:.2e}"


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


def random_symmetric_indefinite(n: int, density: float, seed: int):
    """A well-conditioned random symmetric matrix with eigenvalues of both signs (its
    diagonal dominates, with alternating signs), as scipy CSR."""
    rng = np.random.default_rng(seed)
    matrix = sp.random(n, n, density=density, random_state=rng, format="csr")
    matrix = matrix + matrix.T
    row_sums = np.asarray(abs(matrix).sum(axis=1)).ravel()
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return (matrix + sp.diags(signs * (row_sums + 1.0))).tocsr()


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


# The real and generated matrices the solver suites run on: name -> (factory, gradient
# tolerance vs dense autodiff, kind). The tolerance is about cond(A) * 1e-15; solutions are
# compared by `assert_solves`, from the condition number itself. The kind is what the
# operator's tags say (`matrix_operator`): "spd" positive semidefinite (and definite),
# "symmetric" symmetric (and indefinite), "general" nothing.
MATRICES = {
    "random-real": (lambda: random_sparse(60, 0.08, np.float64, seed=10), 1e-11, "general"),
    "random-complex": (
        lambda: random_sparse(60, 0.08, np.complex128, seed=11),
        1e-11,
        "general",
    ),
    "random-spd": (lambda: random_sparse(60, 0.05, np.float64, seed=12, spd=True), 1e-11, "spd"),
    "random-hpd": (
        lambda: random_sparse(60, 0.05, np.complex128, seed=13, spd=True),
        1e-11,
        "spd",
    ),
    "random-symmetric": (
        lambda: random_symmetric_indefinite(60, 0.05, seed=14),
        1e-11,
        "symmetric",
    ),
    "poisson": (lambda: poisson2d(12), 1e-11, "spd"),
    "elasticity": (lambda: elasticity2d(24, 8).tocsr(), 1e-8, "spd"),
    "494_bus": (lambda: load("494_bus.mtx"), 1e-8, "spd"),
    "bcsstk13": (lambda: load("bcsstk13.mtx"), 1e-4, "spd"),
    "west0479": (lambda: load("west0479.mtx"), 1e-3, "general"),
    "rajat19": (lambda: load("rajat19.mtx"), 1e-4, "general"),
    "young1c": (lambda: load("young1c.mtx"), 1e-11, "general"),
    "hangGlider_2": (lambda: load("hangGlider_2.mtx"), 1e-3, "general"),
}
#: The tags of each kind of matrix.
KIND_TAGS = {"spd": lx.positive_semidefinite_tag, "symmetric": lx.symmetric_tag, "general": ()}


def kind(name: str) -> str:
    return MATRICES[name][2]


def is_complex(name: str) -> bool:
    return np.iscomplexobj(matrix(name).data)


_matrix_cache: dict = {}


def matrix(name: str):
    if name not in _matrix_cache:
        _matrix_cache[name] = MATRICES[name][0]()
    return _matrix_cache[name]


_condition_cache: dict = {}


def matrix_condition(name: str) -> float:
    """`condition_number` of a matrix of `MATRICES`, computed once per test process."""
    if name not in _condition_cache:
        _condition_cache[name] = condition_number(matrix(name))
    return _condition_cache[name]


def matrix_operator(name: str) -> lxs.SparseOperator:
    return operator(matrix(name), KIND_TAGS[kind(name)])


# ------------------------------------------------------------------ the grid of solvers

#: PETSc's configurations need petsc4py: skipped without it, unless `LXS_REQUIRE_PETSC=1`
#: (set by `.ci/run`), which makes them fail instead.
PETSC_MARKS = (
    [pytest.mark.petsc]
    if importlib.util.find_spec("petsc4py") is not None
    or os.environ.get("LXS_REQUIRE_PETSC") == "1"
    else [pytest.mark.petsc, pytest.mark.skip(reason="petsc4py is not installed")]
)


#: PARDISO's configurations need MKL's runtime library (`pip install mkl`): skipped without
#: it, with the reason, unless `LXS_REQUIRE_MKL=1`, which makes them fail instead.
def _mkl_found() -> bool:
    from lineax_sparse.backends.pardiso.locate import candidates

    return bool(candidates())


PARDISO_MARKS = (
    []
    if _mkl_found() or os.environ.get("LXS_REQUIRE_MKL") == "1"
    else [pytest.mark.skip(reason="MKL (libmkl_rt) is not installed: `pip install mkl`")]
)


def table_row(solver_class: type) -> SolverRow:
    (row,) = [row for row in TABLE if row.solver is solver_class]
    return row


@dataclasses.dataclass(frozen=True)
class GridCase:
    """One configuration of the grid: a solver of the library's table as the tests
    configure it (or `Materialise` over it), the matrices it must solve, and those it is
    differentiated on (cheap and well conditioned: a real one first, a complex one if it
    takes complex matrices)."""

    name: str
    row: SolverRow
    options: tuple[tuple[str, object], ...]
    matrices: tuple[str, ...]
    gradients: tuple[str, ...]
    #: Solved through `Materialise`, from a matrix-free operator (`operator`, `solver_for`).
    materialise: bool = False
    #: The matrices of its `Materialise` case (one real, one complex if it takes them).
    materialised: tuple[str, ...] = ()

    @functools.cached_property
    def solver(self) -> lxs.AbstractHostSolver:
        """The host solver (inside `Materialise` for a materialising case), made when a test
        first asks: PETSc's needs petsc4py."""
        return self.row.solver(**dict(self.options))

    @property
    def rtol(self) -> float | None:
        """The tolerance an iterative solver is run to; None for a direct one."""
        return float(self.solver.rtol) if self.row.iterative else None

    @property
    def marks(self) -> list:
        if self.row.requires == "mkl":
            return PARDISO_MARKS
        return PETSC_MARKS if self.row.requires == "petsc4py" else []

    def param(self, *values, id: str | None = None):
        """`pytest.param(self, *values)` with this case's marks (PETSc's)."""
        return pytest.param(self, *values, id=id or self.name, marks=self.marks)

    def operator(self, op: lxs.SparseOperator) -> lx.AbstractLinearOperator:
        """`op` as this case is given it: matrix-free (products only) for `Materialise`."""
        if not self.materialise:
            return op
        return lx.FunctionLinearOperator(op.mv, op.in_structure(), op.tags)

    def solver_for(self, op: lxs.SparseOperator) -> lx.AbstractLinearSolver:
        """The solver of `op`: for `Materialise`, built with `op`'s sparsity pattern."""
        if not self.materialise:
            return self.solver
        indices = np.asarray(op.indices)
        return lxs.Materialise(self.solver, (indices[:, 0], indices[:, 1]))

    @property
    def spd_tags(self) -> tuple:
        """The tags a test gives a symmetric positive definite matrix: none when the solver
        takes any matrix the same way (SuperLU: the untagged path, whose backward pass is a
        transposed solve), else `positive_semidefinite_tag`, which chooses the path meant
        for such matrices (CHOLMOD, CG)."""
        if "general" in self.row.kinds and len(self.solver.backend_specs()) == 1:
            return ()
        return (lx.positive_semidefinite_tag,)

    def setups(self, name: str) -> int:
        """Factorizations (or hierarchies) made by a solve and its transpose: an iterative
        solver sets up `A^T` apart when the values are not symmetric."""
        return 2 if self.row.iterative and kind(name) == "general" else 1

    def check(self, matrix, x, b, *, reference, condition: float, dtype=None) -> None:
        """`x` solves `A x = b` as this solver promises, backward stable (direct) or to its
        tolerance (iterative), and is as near the `reference` solution as that allows."""
        if self.rtol is None:
            assert_solves(matrix, x, b, dtype, reference=reference, condition=condition)
        else:
            assert_converged(
                matrix, x, b, self.rtol, dtype, reference=reference, condition=condition
            )

    def close_factor(self, name: str) -> float:
        """The factor of `assert_close`'s tolerance (1e-10 in double precision) for a
        solution or derivative on matrix `name`: 1 for a direct solver; an iterative
        solve's error is up to cond(A) sqrt(n) rtol."""
        if self.rtol is None:
            return 1.0
        n = matrix(name).shape[0]
        return max(1.0, matrix_condition(name) * math.sqrt(n) * self.rtol / 1e-10)


def assert_converged(matrix, x, b, rtol: float, dtype=None, *, reference, condition: float):
    """Assert that `x` solves `A x = b` as an iterative solve to `rtol` promises, and is as
    near the `reference` solution (a backward-stable double-precision solve) as that allows.

    The solvers accept `x` when the residual they compute in double precision meets
    `|b - A x|_2 <= rtol |b|_2`. The exact residual (`_residual`) differs from theirs by the
    rounding of that evaluation, at most `(m + 1) eps` of `|A| |x| + |b|` per row (m entries
    in the longest row), and by the rounding of `x` to `dtype`: `rho` below. Then
    `|x - x*|_inf <= |A^-1|_inf |r|_inf <= kappa_inf sqrt(n) (rtol + rho) |x*|_inf`, to which
    the reference adds its own error (`kappa_inf` is `condition`)."""
    dtype = np.asarray(x).dtype if dtype is None else np.dtype(dtype)
    a = sp.csr_matrix(matrix).astype(np.complex128)
    x, b = np.asarray(x).astype(np.complex128), np.asarray(b).astype(np.complex128)
    longest = int(np.max(np.diff(a.indptr), initial=0))
    b_norm = max(np.linalg.norm(b), np.finfo(float).tiny)
    size = np.linalg.norm(abs(a) @ np.abs(x) + np.abs(b)) / b_norm
    rho = ((longest + 1) * eps(np.float64) + eps(dtype)) * size
    residual = np.linalg.norm(_residual(a, x, b)) / b_norm
    assert residual <= rtol + rho, f"relative residual {residual:.2e} above {rtol + rho:.2e}"
    reference = np.asarray(reference).astype(np.complex128)
    scale = max(np.max(np.abs(reference), initial=0.0), np.finfo(float).tiny)
    difference = np.max(np.abs(x - reference), initial=0.0) / scale
    own = BACKWARD_FACTOR * eps(np.float64) * condition  # the reference's
    bound = condition * math.sqrt(a.shape[0]) * (rtol + rho) + own
    assert difference <= bound, f"forward difference {difference:.2e} above {bound:.2e}"


#: Converged far enough to compare with dense solves (and below what rounding allows on
#: 494_bus, condition 4e6: rtol 1e-13 breaks down there).
_TIGHT = (("rtol", 1e-13),)


def _grid() -> dict[str, GridCase]:
    """Every solver of the table once as itself and once inside `Materialise` (on the
    smallest matrices of each kind it takes), plus `AutoSparse(fallback=True)`."""
    spd = tuple(name for name in MATRICES if kind(name) == "spd")
    plain = [
        GridCase(
            "superlu",
            table_row(lxs.SuperLU),
            (),
            tuple(MATRICES),
            ("random-real", "random-complex", "poisson", "rajat19"),
            materialised=("random-real", "random-complex"),
        ),
        GridCase(
            "umfpack",
            table_row(lxs.UMFPACK),
            (),
            # SuperLU's path through the bridge; the SPD matrices beyond two are CHOLMOD's
            # (tests/test_umfpack.py tests the backend on every real matrix directly).
            tuple(m for m in MATRICES if m not in ("elasticity", "494_bus", "bcsstk13")),
            ("random-real", "random-complex", "poisson", "rajat19"),
            materialised=("random-real", "random-complex"),
        ),
        GridCase(
            "pardiso",
            table_row(lxs.Pardiso),
            (),
            # Each matrix type once or more (tests/test_pardiso.py covers the rest directly).
            tuple(m for m in MATRICES if m not in ("elasticity", "494_bus", "west0479")),
            ("random-real", "random-complex", "random-symmetric", "random-hpd"),
            materialised=("random-symmetric", "random-complex"),
        ),
        GridCase(
            "cholmod",
            table_row(lxs.Cholmod),
            (),
            spd,
            ("random-spd", "random-hpd", "poisson", "elasticity"),
            materialised=("random-spd", "random-hpd"),
        ),
        # `dense_below=0`: the host path on these small matrices (the dense path, taken by
        # default below `DENSE_BELOW` unknowns, is test_small_systems.py's).
        GridCase(
            "auto",
            table_row(lxs.AutoSparse),
            (("dense_below", 0),),
            ("random-real", "random-hpd", "random-symmetric"),
            ("random-real", "random-hpd"),
            materialised=("random-spd", "random-complex"),
        ),
        GridCase(
            "auto-fallback",
            table_row(lxs.AutoSparse),
            (("fallback", True), ("dense_below", 0)),
            ("random-real", "random-hpd", "random-symmetric"),
            ("random-spd", "random-hpd"),
            materialised=("random-spd", "random-hpd"),
        ),
        GridCase(
            "amg",
            table_row(lxs.AMG),
            _TIGHT + (("max_steps", 200),),
            ("random-real", "random-hpd", "elasticity"),
            ("random-spd", "random-complex"),
            materialised=("random-real", "random-hpd"),
        ),
        GridCase(
            "petsc",
            table_row(lxs.PETSc),
            _TIGHT,
            ("random-real", "elasticity"),
            ("random-spd", "random-real"),
            materialised=("random-real", "random-spd"),
        ),
    ]
    materialised = [
        dataclasses.replace(
            case,
            name=f"materialise-{case.name}",
            matrices=case.materialised,
            gradients=case.materialised[:1],
            materialise=True,
        )
        for case in plain
    ]
    return {case.name: case for case in plain + materialised}


#: The grid: name -> case.
GRID = _grid()


def cases(*, materialise: bool = True, kinds=None, direct_only: bool = False) -> list[GridCase]:
    """The grid's cases: without the `Materialise` ones (`materialise=False`), only solvers
    that take matrices of all `kinds`, only direct solvers."""
    return [
        case
        for case in GRID.values()
        if (materialise or not case.materialise)
        and (kinds is None or set(kinds) <= set(case.row.kinds))
        and not (direct_only and case.row.iterative)
    ]


def grid(**filters) -> list:
    """`cases(**filters)` as pytest parameters."""
    return [case.param() for case in cases(**filters)]


def grid_names(**filters) -> list:
    """`cases(**filters)` as pytest parameters holding the cases' names."""
    return [pytest.param(case.name, id=case.name, marks=case.marks) for case in cases(**filters)]


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
