"""Multigrid hierarchies from pyamg: the method's setup, its symmetry, the near-nullspace.

`build` runs pyamg's setup for one matrix and checks what it made; `Hierarchies` holds a
matrix's hierarchy, the lazily built one of its transpose and the cycles that apply them.
Why each choice (strength, smoothers, untouched near-nullspace vectors):
`docs/backends/amg.md`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyamg
import scipy.sparse as sp

from ..numerics import is_hermitian, seeded_global_random
from ..pattern import Pattern
from ..status import FactorError, Status
from .cycle import Cycle


#: Methods pyamg implements for real matrices only (classical interpolation / AIR).
REAL_ONLY = ("ruge_stuben", "air")
#: Methods that take near-nullspace candidates (classical AMG and AIR have no `B`).
TAKES_NEAR_NULLSPACE = ("smoothed_aggregation", "nonsymmetric_sa")

#: (presmoother, postsmoother) for each `smoother`; "default" keeps pyamg's choice per method
#: (symmetric block Gauss-Seidel for SA, symmetric Gauss-Seidel for RS; for AIR none before
#: and F-then-C Jacobi after). Every other pair gives a symmetric cycle, as CG needs.
SMOOTHERS = {
    # One symmetric (forward + backward) sweep before and after.
    "gauss_seidel": (("gauss_seidel", {"sweep": "symmetric"}),) * 2,
    # Weighted Jacobi, omega = 1 / rho(D^-1 A) on every level (pyamg's `withrho`).
    "jacobi": (("jacobi", {"omega": 1.0, "withrho": True}),) * 2,
    # One forward SOR sweep before, one backward after (omega = 1.2). Not pyamg's symmetric
    # sweep: pyamg 5.4.1 drops omega there (plain symmetric Gauss-Seidel).
    "sor": (
        ("sor", {"omega": 1.2, "sweep": "forward"}),
        ("sor", {"omega": 1.2, "sweep": "backward"}),
    ),
    # Degree-3 Chebyshev polynomial on [rho/30, 1.1 rho]: no sweeps, only products.
    "chebyshev": (("chebyshev", {}),) * 2,
}


def plain_gauss_seidel(method: str, smoother: str) -> bool:
    """Whether pyamg's smoother on every level is symmetric Gauss-Seidel (one sweep each
    way): `Cycle` then runs it itself on levels with scalar entries (see `cycle.py`)."""
    return smoother == "gauss_seidel" or (smoother == "default" and method != "air")


def near_nullspace(aux: np.ndarray | None, method: str, n: int, complex_: bool):
    """The solver's near-nullspace vectors (`aux`, (n, k)) as pyamg's `B`, or None.

    Raises `FactorError(NONFINITE_INPUT)` for non-finite vectors: they arrive with the
    matrix (they may be computed in the program) and are checked on the host like it.
    """
    if aux is None:
        return None
    # The solver class refuses vectors for other methods, and vectors of another length.
    assert method in TAKES_NEAR_NULLSPACE, method
    B = np.asarray(aux)
    assert B.ndim == 2 and B.shape[0] == n and B.shape[1] > 0, B.shape
    if not np.all(np.isfinite(B)):
        raise FactorError(Status.NONFINITE_INPUT, "the near-nullspace vectors are not finite")
    return np.ascontiguousarray(B, dtype=np.complex128 if complex_ else np.float64)


def conjugated(apply: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """`r -> conj(B conj(r))`: a preconditioner for `conj(A)` from one for `A`."""
    return lambda r: np.conj(apply(np.conj(r)))


def pyamg_symmetry(symmetric: bool, hermitian: bool, complex_: bool) -> str:
    """pyamg's `symmetry`: "hermitian" takes R = P^H; a complex symmetric (non-Hermitian)
    matrix wants R = P^T ("symmetric"). For real matrices the two are the same."""
    if complex_ and symmetric and not hermitian:
        return "symmetric"
    return "hermitian"


def build(
    method: str, smoother: str, matrix: sp.csr_matrix, symmetry: str, B: np.ndarray | None
) -> Any:
    """A pyamg hierarchy of `matrix` (CSR); raises `FactorError` if it fails."""
    kwargs: dict[str, Any] = {}
    if smoother != "default":
        kwargs["presmoother"], kwargs["postsmoother"] = SMOOTHERS[smoother]
    if B is not None:
        # Given near-nullspace vectors are used as given: pyamg would first relax them
        # (4 symmetric Gauss-Seidel sweeps each), which for rigid body modes costs a
        # third of the setup and saves at most an iteration (3D hexahedral elasticity,
        # n = 90k: setup 1.48 -> 1.01 s, CG 22 -> 23 iterations, 2.73 -> 2.35 s).
        kwargs["improve_candidates"] = None
    try:
        with seeded_global_random():
            if method == "smoothed_aggregation":
                ml = pyamg.smoothed_aggregation_solver(matrix, B=B, symmetry=symmetry, **kwargs)
            elif method == "nonsymmetric_sa":
                ml = pyamg.smoothed_aggregation_solver(
                    matrix, B=B, symmetry="nonsymmetric", **kwargs
                )
            elif method == "ruge_stuben":
                ml = pyamg.ruge_stuben_solver(matrix, **kwargs)
            else:
                ml = pyamg.air_solver(matrix, **kwargs)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError, Warning) as error:
        # (`Warning`: pyamg's warnings, when a filter turns them into errors.)
        raise FactorError(Status.BREAKDOWN, f"pyamg setup failed: {error}") from None
    for level in ml.levels:
        for name in ("A", "P", "R"):
            operator = getattr(level, name, None)
            if operator is not None and not np.all(np.isfinite(operator.data)):
                raise FactorError(Status.BREAKDOWN, f"pyamg setup produced a non-finite {name}")
    return ml


class Hierarchies:
    """A pyamg hierarchy of one matrix `S`, and (built lazily) the hierarchy of `S^T`.

    `source` is `S` as CSC (its arrays give `S^T` as CSR for free). `symmetric` means
    `S^T == S`, `hermitian` means `S^H == S` (the same for real `S`); both are checked on the
    values once, when the hierarchy is built. `baseline[direction]` is the iteration count
    of the first solve with `forward` / `transposed`; `stale` asks the next factorization of
    the pattern not to reuse this object (see `reuse.py`).
    """

    def __init__(self, forward: Any, source: sp.csc_matrix, symmetric: bool, hermitian: bool):
        self.forward = forward
        self.transposed: Any = None
        self.source = source
        self.symmetric = symmetric
        self.hermitian = hermitian
        self.is_complex = bool(np.iscomplexobj(source.data))
        self.baseline: dict[str, int] = {}
        self.stale = False
        self._solvers: dict[tuple[str, str, bool], Callable] = {}

    def solver(
        self, direction: str, cycle: str, plain_gauss_seidel: bool
    ) -> Callable[[np.ndarray], np.ndarray]:
        key = (direction, cycle, plain_gauss_seidel)
        if key not in self._solvers:
            ml = self.forward if direction == "forward" else self.transposed
            self._solvers[key] = Cycle(ml, cycle, plain_gauss_seidel)
        return self._solvers[key]

    def build_transposed(self, method: str, smoother: str, B: np.ndarray | None) -> None:
        """Build the hierarchy of `S^T` (CSR from `S`'s CSC arrays); raises `FactorError`."""
        source = self.source
        transposed = sp.csr_matrix(
            (source.data, source.indices, source.indptr), shape=source.shape, copy=False
        )
        symmetry = pyamg_symmetry(False, False, self.is_complex)
        self.transposed = build(method, smoother, transposed, symmetry, B)


def new_hierarchies(
    method: str,
    smoother: str,
    pattern: Pattern,
    matrix: sp.csc_matrix,
    csr: sp.csr_matrix,
    B: np.ndarray | None,
) -> Hierarchies:
    """The hierarchy of `matrix` (given also as `csr`), its symmetry read from the values;
    raises `FactorError`."""
    values = matrix.data
    complex_ = bool(np.iscomplexobj(values))
    hermitian = is_hermitian(pattern, values)
    if complex_:  # symmetric (a_ij == a_ji): both parts are real symmetric
        symmetric = is_hermitian(pattern, values.real) and is_hermitian(pattern, values.imag)
    else:
        symmetric = hermitian
    symmetry = pyamg_symmetry(symmetric, hermitian, complex_)
    forward = build(method, smoother, csr, symmetry, B)
    return Hierarchies(forward, matrix, symmetric, hermitian)
