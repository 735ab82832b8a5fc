"""Algebraic multigrid through pyamg: a hierarchy per matrix, used by a Krylov method.

Options (the `AMG` solver's static fields) and how they map onto pyamg / scipy:

- `method`: `"smoothed_aggregation"` is `pyamg.smoothed_aggregation_solver(A, B)` with
  `symmetry="hermitian"` (`"symmetric"` for a complex symmetric, non-Hermitian matrix:
  then `R = P^T`); `"nonsymmetric_sa"` the same with `symmetry="nonsymmetric"`;
  `"ruge_stuben"` is `pyamg.ruge_stuben_solver(A)`; `"air"` is `pyamg.air_solver(A)`
  (approximate ideal restriction, for non-symmetric, e.g. advection-dominated, matrices).
  pyamg's default strength, aggregation / splitting and interpolation are kept. SA's
  `("symmetric", theta=0)` strength is poor on strong anisotropy (eps = 1e-3: 63 CG
  iterations on 64^2, 86 on 128^2, against 5 for `ruge_stuben`), but no other setting is a
  better default: theta = 0.25 gives 6 iterations there and 38 (from 7) on Poisson, 56
  (from 20) on elasticity, at operator complexities up to 8.5 (from 1.3); theta = 0.1 and
  "evolution" strength triple the operator complexity everywhere. Methods without complex
  support in pyamg 5.4.1: `"ruge_stuben"` (its interpolation kernels are real only:
  TypeError) and `"air"` (refuses complex); `factor` raises ValueError for them (the solver
  class refuses them at trace time).
- `krylov`: `"cg"`, `"gmres"`, `"bicgstab"` are scipy's (`scipy.sparse.linalg`) with one
  multigrid cycle as preconditioner `M`; `"none"` runs stand-alone cycles
  `x += B (b - A x)`. scipy rather than pyamg's Krylov methods (which `ml.solve(accel=...)`
  would use): scipy's take an absolute tolerance, scipy's GMRES restarts every
  `GMRES_RESTART` = 20 iterations and tests the true residual at each restart (pyamg's GMRES
  keeps `maxiter` Krylov vectors of length n and stops on the preconditioned residual: 4e-7
  true relative residual observed at tol = 1e-8), and `ml.solve` only iterates on the
  hierarchy's own matrix, while transposed solves and hierarchy reuse need another one.
  CG needs a symmetric cycle: `"air"` and `"nonsymmetric_sa"` are refused with `"cg"`.
- `rtol`, `atol`, `max_steps`: converged means `|b - op(A) x|_2 <= max(rtol |b|_2, atol)`.
  `max_steps` counts Krylov iterations (GMRES: inner iterations in all) or cycles.
- `adjoint_rtol`: `rtol` of transposed solves (`A^T`, `A^H`: the backward pass). A
  conjugate-only solve is the conjugate of a forward solve and uses `rtol`.
- `cycle`: `"V"`, `"W"`, `"F"` (pyamg's `cycle`; F-cycles are not exactly symmetric, CG
  still converged on every test matrix).
- `smoother` (pre- and post-smoother on every level): `"default"` (pyamg's choice per
  method: symmetric block Gauss-Seidel for SA, symmetric Gauss-Seidel for RS, no
  presmoother and F-then-C Jacobi after for AIR), `"gauss_seidel"` (one symmetric sweep
  before and after), `"jacobi"` (omega / rho(D^-1 A), omega = 1), `"sor"` (a forward SOR
  sweep before, a backward one after, omega = 1.2; pyamg 5.4.1's own symmetric SOR sweep
  drops omega) and `"chebyshev"` (degree 3). All but AIR's default give a symmetric cycle.
  For AIR, `"gauss_seidel"` needs the same iterations as its default at twice the cycle
  cost (convection-diffusion 128^2), so `"default"` is the better choice there.
- `near_nullspace` is not an option of the backend: the vectors are an array of the solver
  (they may change every step of a shape optimization, and may be computed under jit), so
  they travel with the matrix, are kept with each factor, counted in its `nbytes` and
  compared when the factor is looked up; `factor` receives them as `aux` (n, k) and passes
  them as pyamg's `B` (SA methods only), as they are: pyamg's `improve_candidates`
  relaxation of `B` is skipped for given vectors (it cost a third of the setup on 3D
  elasticity with rigid body modes and saved at most one iteration; measured in `_build`).
  Without them SA uses the constant vector, improved as pyamg does by default.
- `reuse`: see "Hierarchy reuse" below; 0 disables it.

Transposed and conjugated solves. `conj(A) x = b` is solved as `A conj(x) = conj(b)` and
`A^H x = b` as `A^T conj(x) = conj(b)`, so only `A` and `A^T` are ever iterated on, always
with the exact operator (`A^T` as CSR shares the CSC arrays). The preconditioner of `A^T` is
`A`'s hierarchy only when the values are symmetric (`A^T == A`, checked once per hierarchy
with `base.is_hermitian`, on the real and imaginary parts for a complex matrix); for a
Hermitian complex `A` (`A^T = conj(A)`) it is `r -> conj(B conj(r))` with `A`'s cycle `B`;
otherwise it is a hierarchy of `A^T`, built at the first transposed solve and kept in the
factor (`late_setups` counts it). Using `A`'s hierarchy for a non-symmetric `A^T` would still
converge to the right answer here (the operator is exact and the residual checked), but
slowly; it is never done.

Convergence is checked, never assumed: after every cycle (stand-alone) or Krylov run the
true residual `|b - op(A) x|` is recomputed; `OK` only if it meets the tolerance itself
(no safety factor: a Krylov run whose recursively updated residual stopped it early is
restarted from its iterate while the true residual decreases and steps remain, so drift
costs an iteration, never a false `OK`). A non-finite iterate, a stand-alone cycle whose
residual grows past `DIVERGENCE` times its start, or a Krylov restart that makes no progress
(breakdown, or a tolerance below what rounding allows: rtol = 1e-18 stops after about 100
steps at 1e-12) is `BREAKDOWN`; running out of steps is `MAX_STEPS_REACHED`. A zero
right-hand side gives zeros and `OK` without iterating. A start (a guess `y0`, or a warm
start) is used, column by column, only where it leaves a smaller residual than zero
(`checks.best_start`, computed without overflow): a guess of 1e100 took 142-300 steps
where zero took 7, and one of 1e160 or more was a breakdown at step 0. A complex
right-hand side with a real matrix is solved as real and imaginary columns. `factor`
raises `FactorError`: `SINGULAR` for an all-zero row or column, `BREAKDOWN` for a zero
diagonal entry (every smoother divides by the diagonal) or a pyamg setup that fails or
produces non-finite operators.
Overflow and invalid-value floating point warnings are silenced inside `factor` and `solve`
(the checks above handle them).

Hierarchy reuse (`reuse > 0`, needs a Krylov method). The per-pattern analysis remembers,
weakly, the hierarchy set made most recently for the pattern. `factor` then builds no
hierarchy: the factor's operator is the new matrix and its preconditioner the remembered
hierarchy (`reused_setup = True`). The first converged solve with a hierarchy (per
direction: forward, transposed) sets its baseline iteration count. A reused solve may take
at most `reuse` times the baseline; a column that has not converged by then (or that fails:
`MAX_STEPS_REACHED`, `BREAKDOWN`) marks the hierarchy stale, rebuilds it from the factor's
own matrix at once and continues from its current iterate (steps add up; `late_setups`
counts the rebuild). So a degraded hierarchy costs at most `reuse` times a fresh solve
before it is replaced, and reuse never turns a system a fresh hierarchy solves into a
failure. Weakly: a hierarchy lives exactly as long as a factor in the cache uses it, and
every factor counts the full hierarchy in `nbytes` (an upper bound when several share one),
so no hierarchy is held outside the cache's byte budget.

Memory. `nbytes` counts the factor's own matrix (CSC values and a CSR copy) and every array
reachable from its hierarchies (per level `A`, `P`, `R`, near-nullspace `B`, smoother data;
shared buffers once). It grows when `solve` builds the lazy `A^T` hierarchy or rebuilds a
failed reused one (`late_setups` > 0): re-read it after such a solve. A factor also keeps
its `Pattern` alive (needed to check the symmetry of a rebuilt hierarchy's matrix).

BLAS. `factor` and `solve` hold BLAS to one thread (threadpoolctl). pyamg's setup and the
Krylov methods make many small BLAS calls (norms, dots, Lanczos on small matrices), which
OpenBLAS's threads make much slower on a busy machine: variable-coefficient diffusion
256^2 (n = 65,536), 2 cores under load, setup 0.10-0.16 s with one thread against
2.8-4.6 s with two, solve (17 CG iterations) 0.13-0.15 s against 0.6 s.

Measured (2 cores, shared with another test run: load 1.5-3.5; medians of 3; SA + CG,
V-cycle, default smoother, rtol = 1e-8, one right-hand side):

| problem | n | setup | solve (iterations) | transposed solve | nbytes |
|---|---|---|---|---|---|
| 2D Poisson 512^2 | 262,144 | 404 ms | 235 ms (8) | 237 ms | 56 MB |
| 3D Poisson 64^3 | 262,144 | 561 ms | 432 ms (9) | 422 ms | 79 MB |
| 2D Poisson 1024^2 | 1,048,576 | 2,486 ms | 1,667 ms (10) | 1,425 ms | 223 MB |

(pyamg directly, same machine: 512^2 setup 351 ms, `ml.solve(accel="cg")` 286 ms; the
figure in DESIGN.md, 2,061 / 1,299 ms, was taken with threaded BLAS.) 1024^2: 7 levels,
operator complexity 1.34.

Hierarchy reuse, 10 variable-coefficient diffusion matrices of one pattern (512^2,
n = 262,144; log-normal face coefficients, each changed by a random 5% per step), CG to
1e-8: `reuse=0` builds 10 hierarchies: factor 4.76 s + solve 5.69 s = 10.45 s, 17 iterations
each; `reuse=2` builds 1: factor 0.46 s + solve 7.05 s = 7.52 s (28% less), iterations
17, 19, 20, 20, 21, 21, 22, 22, 22, 23 (no rebuild needed). Drifting by 50% per step instead
(96^2), `reuse=2` rebuilds every second matrix (16 -> 37 iterations when reused).

Iterations (CG unless stated, rtol 1e-8): MBB beam elasticity 180x60 (n = 22,020) 178 with
SA's constant vector, 22 with the three rigid body modes as `near_nullspace` (0.71 -> 0.20 s
setup + solve); 360x120 (n = 87,240) 352 -> 24 (6.6 -> 0.8 s). 494_bus: SA 27, RS 20;
stand-alone cycles do not reach 1e-8 in 500 (MAX_STEPS_REACHED). Upwind
convection-diffusion 128^2 with GMRES, forward / transposed, at cell Peclet numbers 0.008,
0.8 and 8: SA 8/8, 9/9, 19/19; nonsymmetric SA 8/8, 7/7, 6/6; RS 5/5, 12/13, 16/15; AIR
21/20, 9/9, 6/6 (all to 1e-8, transposed solves checked against `spsolve(A.T)`).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyamg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..blas import single_threaded_blas
from ..numerics import (
    best_start,
    exponents,
    is_extreme,
    is_hermitian,
    scale,
    seeded_global_random,
    solve_split,
)
from ..options import AMG_CYCLES, AMG_KRYLOV, AMG_METHODS, AMG_SMOOTHERS
from ..pattern import Pattern
from ..status import FactorError, SolveResult, Status
from .cycle import Cycle


# The backend gets resolved choices: the solver class turns "auto" into one of these.
METHODS = tuple(m for m in AMG_METHODS if m != "auto")
KRYLOV = tuple(k for k in AMG_KRYLOV if k != "auto")
CYCLES, SMOOTHERS = AMG_CYCLES, AMG_SMOOTHERS
#: Methods pyamg implements for real matrices only (classical interpolation / AIR).
REAL_ONLY = ("ruge_stuben", "air")
#: Methods that take near-nullspace candidates (classical AMG and AIR have no `B`).
TAKES_NEAR_NULLSPACE = ("smoothed_aggregation", "nonsymmetric_sa")
#: Methods whose cycle is not symmetric, so that CG (which needs an SPD preconditioner)
#: cannot use them: AIR's F/C relaxation and restriction, nonsymmetric SA's R != P^T.
NONSYMMETRIC_CYCLE = ("air", "nonsymmetric_sa")

#: (presmoother, postsmoother) for each `smoother`; "default" keeps pyamg's choice per method
#: (symmetric block Gauss-Seidel for SA, symmetric Gauss-Seidel for RS; for AIR none before
#: and F-then-C Jacobi after). Every other pair gives a symmetric cycle, as CG needs.
_SMOOTHERS = {
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

#: The most factorizations that skip hierarchy reuse after reused hierarchies failed.
MAX_SKIP = 16

#: Inner iterations between restarts of GMRES (scipy's default): memory is (restart+1) * n.
GMRES_RESTART = 20
#: A stand-alone cycle whose residual grows past this many times |b| (or the initial
#: residual) has diverged; it stops with `BREAKDOWN` instead of running to `max_steps`.
DIVERGENCE = 1e8


def _check_options(
    method: str,
    krylov: str,
    rtol: float,
    atol: float,
    max_steps: int,
    adjoint_rtol: float,
    cycle: str,
    smoother: str,
    reuse: int,
) -> None:
    if method not in METHODS:
        raise ValueError(f"AMG method must be one of {METHODS}, got {method!r}.")
    if krylov not in KRYLOV:
        raise ValueError(f"AMG krylov must be one of {KRYLOV}, got {krylov!r}.")
    if cycle not in CYCLES:
        raise ValueError(f"AMG cycle must be one of {CYCLES}, got {cycle!r}.")
    if smoother not in SMOOTHERS:
        raise ValueError(f"AMG smoother must be one of {SMOOTHERS}, got {smoother!r}.")
    for name, value in (("rtol", rtol), ("atol", atol), ("adjoint_rtol", adjoint_rtol)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"AMG {name} must be finite and non-negative, got {value!r}.")
    if rtol == 0 and atol == 0:
        raise ValueError("AMG needs rtol > 0 or atol > 0.")
    if adjoint_rtol == 0 and atol == 0:
        raise ValueError("AMG needs adjoint_rtol > 0 or atol > 0.")
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"AMG max_steps must be a positive integer, got {max_steps!r}.")
    if int(reuse) != reuse or reuse < 0:
        raise ValueError(f"AMG reuse must be a non-negative integer, got {reuse!r}.")
    if reuse and krylov == "none":
        raise ValueError(
            "AMG hierarchy reuse needs a Krylov method (krylov='cg', 'gmres' or 'bicgstab'): "
            "stand-alone cycles of a hierarchy built for other values need not converge."
        )
    if krylov == "cg" and method in NONSYMMETRIC_CYCLE:
        raise ValueError(
            f"AMG method {method!r} gives a non-symmetric preconditioner, which CG cannot "
            "use; choose krylov='gmres' or 'bicgstab'."
        )


def _near_nullspace(aux: np.ndarray | None, method: str, n: int, complex_: bool):
    """The solver's near-nullspace vectors (`aux`, (n, k)) as pyamg's `B`, or None.

    Raises `FactorError(NONFINITE_INPUT)` for non-finite vectors: they arrive with the
    matrix (they may be computed in the program) and are checked on the host like it.
    """
    if aux is None:
        return None
    if method not in TAKES_NEAR_NULLSPACE:  # the solver class refuses this at construction
        raise ValueError(f"AMG method {method!r} takes no near-nullspace vectors.")
    B = np.asarray(aux)
    if B.ndim != 2 or B.shape[0] != n or B.shape[1] == 0:
        raise ValueError(f"AMG near_nullspace must have shape ({n}, k), got {B.shape}.")
    if not np.all(np.isfinite(B)):
        raise FactorError(Status.NONFINITE_INPUT, "the near-nullspace vectors are not finite")
    return np.ascontiguousarray(B, dtype=np.complex128 if complex_ else np.float64)


def _conjugated(apply: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """`r -> conj(B conj(r))`: a preconditioner for `conj(A)` from one for `A`."""
    return lambda r: np.conj(apply(np.conj(r)))


class _Hierarchies:
    """A pyamg hierarchy of one matrix `S`, and (built lazily) the hierarchy of `S^T`.

    `source` is `S` as CSC (its arrays give `S^T` as CSR for free). `symmetric` means
    `S^T == S`, `hermitian` means `S^H == S` (the same for real `S`); both are checked on the
    values once, when the hierarchy is built. `baseline[direction]` is the iteration count
    of the first solve with `forward` / `transposed`; `stale` asks the next factorization of
    the pattern not to reuse this object (see the module docstring).
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
        self._solvers: dict[tuple[str, str], Callable] = {}

    def solver(
        self, direction: str, cycle: str, plain_gauss_seidel: bool
    ) -> Callable[[np.ndarray], np.ndarray]:
        key = (direction, cycle, plain_gauss_seidel)
        if key not in self._solvers:
            ml = self.forward if direction == "forward" else self.transposed
            self._solvers[key] = Cycle(ml, cycle, plain_gauss_seidel)
        return self._solvers[key]


class _PatternState:
    """The per-pattern analysis: the latest hierarchy set made for this pattern (weakly),
    the reuse back-off, and the last solutions per direction (for `warm_start`).

    Weakly, so that every hierarchy stays owned by the factors that use it and counted in
    their `nbytes`: once the cache has evicted all of them, the next factorization builds
    a new hierarchy instead of reusing one held outside the cache's budget. The solutions
    are held here, not by a factor: the factor of the previous values is retired before
    the next one is made. `nbytes` counts them, and the analysis is filed in the cache with
    that size, so they live within its budget and are dropped with the analysis.

    Back-off: `skip` is the number of coming factorizations that build a fresh hierarchy
    without trying the remembered one, set to `penalty` (1, 2, 4, ... up to `MAX_SKIP`)
    each time a reused hierarchy had to be rebuilt, and `penalty` halves when a reused one
    does its job. So a pattern whose values change too fast for reuse stops paying for
    reuse attempts, and one whose values settle gets reuse back.
    """

    def __init__(self):
        self.latest: weakref.ref | None = None
        self.skip = 0
        self.penalty = 0
        # transpose flag -> the last two solution blocks, oldest first
        self.warm: dict[bool, list[np.ndarray]] = {}

    def remembered(self) -> _Hierarchies | None:
        return None if self.latest is None else self.latest()

    def remember(self, hierarchies: _Hierarchies) -> None:
        self.latest = weakref.ref(hierarchies)

    def reuse_failed(self) -> None:
        self.penalty = min(max(1, 2 * self.penalty), MAX_SKIP)
        self.skip = self.penalty

    def reuse_worked(self) -> None:
        self.penalty //= 2

    def nbytes(self) -> int:
        return int(sum(x.nbytes for kept in self.warm.values() for x in kept))

    def keep(self, transpose: bool, x: np.ndarray) -> None:
        kept = self.warm.setdefault(transpose, [])
        if kept and (kept[-1].shape != x.shape or kept[-1].dtype != x.dtype):
            kept.clear()
        kept.append(x)
        del kept[:-2]


class _Factor:
    """The matrix of one factorization and the hierarchy set that preconditions it.

    `reused_setup` is True when `factor` built no hierarchy (it took the one remembered for
    the pattern); `late_setups` counts the hierarchies `solve` built afterwards for this
    factor (the lazy `A^T` hierarchy; a rebuild after a reused hierarchy failed).
    """

    def __init__(
        self,
        pattern: Pattern,
        matrix: sp.csc_matrix,
        state: _PatternState,
        candidates: np.ndarray | None,
        exponent: int,
    ):
        self.pattern = pattern
        self.matrix = matrix  # S = 2^-exponent A (see `AMGBackend._factor`)
        self.exponent = exponent
        self.candidates = candidates  # pyamg's B, or None for its default
        positions, indptr, indices = pattern.csr_structure()
        self.csr = sp.csr_matrix(
            (matrix.data[positions], indices, indptr), shape=matrix.shape, copy=False
        )
        self.hierarchies: _Hierarchies | None = None
        self.reused_setup = False
        self.late_setups = 0
        self.state = state
        self.judged = False  # whether this factor's reuse was credited to the back-off
        self._symmetric: bool | None = None

    def exactly_symmetric(self) -> bool:
        """Whether the factor's real matrix equals its transpose exactly (computed once)."""
        if self._symmetric is None:
            data = self.matrix.data
            lower, upper, unpaired = self.pattern.symmetry_pairs()
            self._symmetric = bool(
                not np.iscomplexobj(data)
                and np.all(data[unpaired] == 0)
                and np.array_equal(data[lower], data[upper])
            )
        return self._symmetric

    @property
    def is_complex(self) -> bool:
        return bool(np.iscomplexobj(self.matrix.data))

    def operator(self, transpose: bool) -> sp.csr_matrix:
        """`A` or `A^T` as CSR (the transpose shares the CSC arrays)."""
        if not transpose:
            return self.csr
        m = self.matrix
        return sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape, copy=False)


class AMGBackend:
    requires_symmetric = False

    def __init__(
        self,
        *,
        method: str,
        krylov: str,
        rtol: float,
        atol: float,
        max_steps: int,
        adjoint_rtol: float,
        cycle: str,
        smoother: str,
        reuse: int,
        warm_start: bool = False,
    ):
        _check_options(method, krylov, rtol, atol, max_steps, adjoint_rtol, cycle, smoother, reuse)
        self.method = method
        self.krylov = krylov
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = int(max_steps)
        self.adjoint_rtol = float(adjoint_rtol)
        self.cycle = cycle
        self.smoother = smoother
        self.reuse = int(reuse)
        self.warm_start = bool(warm_start)
        # pyamg's smoother on every level is symmetric Gauss-Seidel (one sweep each way):
        # `Cycle` then runs it itself on levels with scalar entries (see `_cycle.py`).
        self._plain_gauss_seidel = smoother == "gauss_seidel" or (
            smoother == "default" and method != "air"
        )
        # Factors of one pattern kept from earlier calls (`_native.FACTORS_PER_PATTERN`): a
        # hierarchy is large, and freeing the old one before the next setup lets that setup
        # reuse its memory instead of page-faulting fresh memory in. With `reuse` the
        # previous one must stay: it is the hierarchy to reuse.
        self.factors_per_pattern = 2 if self.reuse else 1

    # ------------------------------------------------------------------ setup

    def _build(self, matrix: sp.csr_matrix, symmetry: str, B: np.ndarray | None) -> Any:
        """A pyamg hierarchy of `matrix` (CSR); raises `FactorError` if it fails."""
        kwargs: dict[str, Any] = {}
        if self.smoother != "default":
            kwargs["presmoother"], kwargs["postsmoother"] = _SMOOTHERS[self.smoother]
        if B is not None:
            # Given near-nullspace vectors are used as given: pyamg would first relax them
            # (4 symmetric Gauss-Seidel sweeps each), which for rigid body modes costs a
            # third of the setup and saves at most an iteration (3D hexahedral elasticity,
            # n = 90k: setup 1.48 -> 1.01 s, CG 22 -> 23 iterations, 2.73 -> 2.35 s).
            kwargs["improve_candidates"] = None
        try:
            with seeded_global_random():
                if self.method == "smoothed_aggregation":
                    ml = pyamg.smoothed_aggregation_solver(matrix, B=B, symmetry=symmetry, **kwargs)
                elif self.method == "nonsymmetric_sa":
                    ml = pyamg.smoothed_aggregation_solver(
                        matrix, B=B, symmetry="nonsymmetric", **kwargs
                    )
                elif self.method == "ruge_stuben":
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

    @staticmethod
    def _symmetry(symmetric: bool, hermitian: bool, complex_: bool) -> str:
        # pyamg's "hermitian" takes R = P^H; a complex symmetric (non-Hermitian) matrix wants
        # R = P^T ("symmetric"). For real matrices the two are the same.
        if complex_ and symmetric and not hermitian:
            return "symmetric"
        return "hermitian"

    def _new_hierarchies(self, factor: _Factor) -> _Hierarchies:
        """Build the hierarchy of the factor's own matrix (raises `FactorError`)."""
        matrix = factor.matrix
        values = matrix.data
        complex_ = bool(np.iscomplexobj(values))
        pattern = factor.pattern
        hermitian = is_hermitian(pattern, values)
        if complex_:  # symmetric (a_ij == a_ji): both parts are real symmetric
            symmetric = is_hermitian(pattern, values.real) and is_hermitian(pattern, values.imag)
        else:
            symmetric = hermitian
        symmetry = self._symmetry(symmetric, hermitian, complex_)
        forward = self._build(factor.csr, symmetry, factor.candidates)
        return _Hierarchies(forward, matrix, symmetric, hermitian)

    def analyse(self, pattern: Pattern) -> _PatternState:
        # Nothing AMG does depends on the pattern alone: strength, aggregation and
        # interpolation all read the values. The state remembers the latest hierarchy.
        del pattern
        return _PatternState()

    def factor(
        self, pattern: Pattern, analysis: _PatternState, matrix: sp.csc_matrix, aux: Any
    ) -> _Factor:
        # Overflow and NaN are detected by the checks (setup, true residual), not warned.
        with single_threaded_blas(), np.errstate(all="ignore"):
            return self._factor(pattern, analysis, matrix, aux)

    def answers_for(self, factor: _Factor, asked: tuple, known: tuple) -> bool:
        """Whether a solve with the flags `known` also answers one with the flags `asked`
        (same right-hand side, compared by the caller): for exactly symmetric real values
        `op(A) = A` under every flag, and the known solution meets the asked tolerance
        when that is no tighter. The adjoint of a compliance is then free, as for CHOLMOD.
        """
        if factor.is_complex or factor.pattern.n == 0:
            return False

        def tolerance(flags):
            return self.adjoint_rtol if flags[0] else self.rtol

        return tolerance(asked) >= tolerance(known) and factor.exactly_symmetric()

    def analysis_nbytes(self, analysis: _PatternState) -> int:
        """Bytes the analysis holds beyond its pattern (the warm-start solutions)."""
        return analysis.nbytes()

    def setups(self, factor: _Factor) -> int:
        return (0 if factor.reused_setup else 1) + factor.late_setups

    def _factor(self, pattern, analysis: _PatternState, matrix: sp.csc_matrix, aux) -> _Factor:
        complex_ = bool(np.iscomplexobj(matrix.data))
        if self.method in REAL_ONLY and complex_:
            # Structural: the solver class refuses this combination at trace time.
            raise ValueError(f"pyamg's {self.method!r} AMG supports real matrices only.")
        B = _near_nullspace(aux, self.method, pattern.n, complex_)
        _check_matrix(pattern, matrix)
        # Values near the overflow or underflow threshold (a subnormal matrix) are scaled
        # by a power of two, exactly: S = 2^-e A. Setup, cycles and norms then work in a
        # safe range, and solves scale back (`_solve`).
        exponent = 0
        largest = float(np.max(np.abs(matrix.data), initial=0.0))
        if is_extreme(largest):
            exponent = int(exponents(np.array([largest]))[0])
            matrix = sp.csc_matrix(
                (scale(matrix.data, -exponent), matrix.indices, matrix.indptr), shape=matrix.shape
            )
        factor = _Factor(pattern, matrix, analysis, B, exponent)
        if pattern.n == 0:
            return factor
        if self.reuse and analysis.skip > 0:  # reuse failed lately: build afresh
            analysis.skip -= 1
        elif self.reuse:
            remembered = analysis.remembered()
            if (
                remembered is not None
                and not remembered.stale
                and remembered.is_complex == factor.is_complex
            ):
                factor.hierarchies = remembered
                factor.reused_setup = True
                return factor
        factor.hierarchies = self._new_hierarchies(factor)
        if self.reuse:
            analysis.remember(factor.hierarchies)
        return factor

    # ------------------------------------------------------------------ solve

    def solve(
        self,
        factor: _Factor,
        rhs: np.ndarray,
        transpose: bool,
        conjugate: bool,
        guess: np.ndarray | None,
    ) -> SolveResult:
        with single_threaded_blas(), np.errstate(all="ignore"):
            return self._solve(factor, rhs, transpose, conjugate, guess)

    def _solve(self, factor, rhs, transpose, conjugate, guess) -> SolveResult:
        n, k = rhs.shape
        if not factor.is_complex and np.iscomplexobj(rhs):
            return solve_split(
                lambda block, start: self._solve(factor, block, transpose, conjugate, start),
                rhs,
                guess,
            )
        dtype = np.complex128 if factor.is_complex else np.float64
        # conj(A) x = b  <=>  A conj(x) = conj(b);  A^H x = b  <=>  A^T conj(x) = conj(b).
        work = np.array(rhs, dtype=dtype)
        if conjugate:
            work = np.conj(work)
        if guess is not None:
            guess = np.array(guess, dtype=dtype)
            candidates = [np.conj(guess) if conjugate else guess]
        elif self.warm_start:
            candidates = self._warm_candidates(factor, transpose, work)
        else:
            candidates = []
        # A x = b with A = 2^e S and b = 2^f b' (|b'| in [0.5, 1) per column): S x' = b',
        # x = 2^(f - e) x', and |b - A x| <= atol  <=>  |b' - S x'| <= 2^-f atol. Every
        # norm of the iteration then stays far from overflow and underflow.
        shift = exponents(np.max(np.abs(work), axis=0, initial=0.0))
        work = scale(work, -shift[None, :])
        # A guess or warm start is used only where it leaves a smaller residual than zero.
        operator = factor.operator(transpose)
        start = best_start(
            lambda block: operator @ block,
            work,
            [scale(candidate, factor.exponent - shift[None, :]) for candidate in candidates],
        )
        atol = np.ldexp(self.atol, -shift)
        x = np.zeros((n, k), dtype=dtype)
        status = np.zeros(k, dtype=np.int32)
        steps = np.zeros(k, dtype=np.int32)
        residual = np.zeros(k, dtype=np.float64)
        columns = np.flatnonzero(np.any(work != 0, axis=0))  # b = 0: x = 0, OK
        if n and columns.size:
            rtol = self.adjoint_rtol if transpose else self.rtol
            result = (x, status, steps, residual)
            self._solve_columns(factor, transpose, rtol, atol, work, start, columns, result)
        x = scale(x, shift[None, :] - factor.exponent)
        # A solution too large to represent is no success.
        status[(status == Status.OK) & ~np.all(np.isfinite(x), axis=0)] = Status.BREAKDOWN
        if self.warm_start and n and np.all(status == Status.OK):
            factor.state.keep(transpose, x.copy())
        if conjugate:
            x = np.conj(x)
        return SolveResult(x, status, steps, residual)

    def _warm_candidates(self, factor, transpose, work) -> list[np.ndarray]:
        """The starts `warm_start` offers a solve without a guess, per column: the last
        solution of this direction and, given two, its linear extrapolation `2 x_1 - x_0`
        (`best_start` keeps whichever leaves the smaller residual, or zero). The solutions
        are kept in the iteration's coordinates (after the conjugation of a conjugated
        solve); a block of another width is no start, except a single column, which starts
        every column."""
        n, k = work.shape
        candidates = []
        for x in factor.state.warm.get(transpose, []):
            if x.shape[0] != n or x.dtype != work.dtype or x.shape[1] not in (1, k):
                return []
            candidates.append(np.broadcast_to(x, (n, k)))
        if len(candidates) == 2:
            return [candidates[1], 2 * candidates[1] - candidates[0]]
        return candidates

    def _preconditioner(self, factor: _Factor, transpose: bool):
        """`(direction, r -> B r)` with `B` approximating `op(A)^-1`, op(A) = A or A^T.

        The hierarchy was built for `S` (= A, or an earlier matrix of the pattern when
        reused). `S^T` is preconditioned by `S`'s hierarchy only when `S^T == S`, or, for a
        Hermitian `S` (`S^T = conj(S)`), by `r -> conj(B conj(r))`; otherwise by the
        hierarchy of `S^T`, built here on the first transposed solve and kept.
        """
        hierarchies = factor.hierarchies
        plain = self._plain_gauss_seidel
        if not transpose or hierarchies.symmetric:
            return "forward", hierarchies.solver("forward", self.cycle, plain)
        if hierarchies.hermitian:
            return "forward", _conjugated(hierarchies.solver("forward", self.cycle, plain))
        if hierarchies.transposed is None:
            source = hierarchies.source
            transposed = sp.csr_matrix(
                (source.data, source.indices, source.indptr), shape=source.shape, copy=False
            )
            symmetry = self._symmetry(False, False, hierarchies.is_complex)
            hierarchies.transposed = self._build(transposed, symmetry, factor.candidates)
            factor.late_setups += 1
        return "transposed", hierarchies.solver("transposed", self.cycle, plain)

    def _solve_columns(self, factor, transpose, rtol, atol, work, start, columns, result):
        x, status, steps, residual = result
        operator = factor.operator(transpose)

        def run(precondition, which, origin, budget) -> None:
            # `budget`: the total steps a column may reach; None: `max_steps` more.
            for j in which:
                remaining = self.max_steps if budget is None else budget - int(steps[j])
                x[:, j], used, status[j], residual[j] = self._iterate(
                    operator, precondition, work[:, j], origin[:, j], rtol, atol[j], remaining
                )
                steps[j] += used

        hierarchies = factor.hierarchies
        try:
            direction, precondition = self._preconditioner(factor, transpose)
        except FactorError:
            status[columns], residual[columns] = Status.BREAKDOWN, np.nan
            return
        baseline = hierarchies.baseline.get(direction)
        reused = hierarchies.source is not factor.matrix
        # A reused hierarchy gets `reuse` times its baseline; past that it has degraded, and
        # a rebuilt one finishes the solve (cheaper than letting the old one crawl on).
        budget = self.max_steps
        if reused and baseline is not None:
            budget = min(self.max_steps, max(self.reuse * baseline, 1))
        run(precondition, columns, start, budget)
        if baseline is None:
            _record_baseline(hierarchies, direction, steps[columns], status[columns])
        failed = columns[status[columns] != Status.OK]
        if reused and failed.size == 0 and not factor.judged:
            factor.judged = True
            factor.state.reuse_worked()
        if not reused or failed.size == 0:
            return
        factor.judged = True
        factor.state.reuse_failed()
        # A reused hierarchy must never turn a solvable system into a failure, nor make it
        # much slower: rebuild it from this factor's own matrix (it becomes the pattern's
        # remembered hierarchy) and continue the unfinished columns from where they stopped.
        hierarchies.stale = True
        try:
            factor.hierarchies = self._new_hierarchies(factor)
            factor.late_setups += 1
            if factor.state.remembered() in (hierarchies, None):
                factor.state.remember(factor.hierarchies)
            direction, precondition = self._preconditioner(factor, transpose)
        except FactorError:
            return
        continued = np.where(np.isfinite(x), x, start)
        run(precondition, failed, continued, None)
        # No baseline from these continued solves: they start near the solution and would
        # set one too low for the hierarchy's later reuse (the next solve from zero sets it).

    def _iterate(self, operator, precondition, b, x0, rtol, atol, budget=None):
        """Solve `operator x = b` from `x0`: `(x, steps, status, relative residual)`.

        Converged means the true residual `|b - A x|_2 <= max(rtol |b|_2, atol)`, recomputed
        after every cycle (stand-alone) or every Krylov round. A Krylov method that stops
        early without meeting it (its recursively updated residual drifts from the true one,
        or it breaks down) is restarted from its iterate while the true residual decreases
        and steps remain; a round that makes no progress ends in `BREAKDOWN`. At most
        `budget` steps (default `max_steps`) are taken.
        """
        max_steps = self.max_steps if budget is None else int(budget)
        norm_b = float(np.linalg.norm(b))  # b is scaled to |b|_inf in [0.5, 1) (`_solve`)
        target = max(rtol * norm_b, atol)
        x = np.array(x0)
        r = b - operator @ x
        norm_r = float(np.linalg.norm(r))
        steps = 0
        if self.krylov == "none":
            ceiling = DIVERGENCE * max(norm_r, norm_b)
            while norm_r > target and steps < max_steps:
                x += precondition(r)
                steps += 1
                r = b - operator @ x
                norm_r = float(np.linalg.norm(r))
                if not norm_r <= ceiling:  # diverging, or not finite
                    return x, steps, Status.BREAKDOWN, norm_r / norm_b
            status = Status.OK if norm_r <= target else Status.MAX_STEPS_REACHED
            return x, steps, status, norm_r / norm_b
        while True:
            if not math.isfinite(norm_r):
                return x, steps, Status.BREAKDOWN, norm_r / norm_b
            if norm_r <= target:
                return x, steps, Status.OK, norm_r / norm_b
            if steps >= max_steps:
                return x, steps, Status.MAX_STEPS_REACHED, norm_r / norm_b
            x, used = self._krylov_round(operator, precondition, b, x, target, max_steps - steps)
            steps += used
            r = b - operator @ x
            previous, norm_r = norm_r, float(np.linalg.norm(r))
            if norm_r > target and steps < max_steps and not norm_r < previous:
                return x, steps, Status.BREAKDOWN, norm_r / norm_b

    def _krylov_round(self, operator, precondition, b, x, target, budget):
        """One run of the Krylov method from `x` (at most `budget` iterations).

        scipy's methods are used, not pyamg's (through `ml.solve(accel=...)`): they take an
        absolute tolerance, scipy's GMRES restarts (pyamg's keeps `maxiter` Krylov vectors of
        length n) and tests the true residual at each restart, where pyamg's stops on the
        preconditioned one (observed: 4e-7 true relative residual at tol=1e-8).
        """
        n = b.shape[0]
        calls = [0]

        def psolve(r):
            calls[0] += 1
            return precondition(r)

        M = spla.LinearOperator((n, n), matvec=psolve, dtype=b.dtype)
        if self.krylov == "cg":
            x, _ = spla.cg(operator, b, x0=x, rtol=0.0, atol=target, maxiter=budget, M=M)
            return x, calls[0]  # one preconditioner application per iteration
        if self.krylov == "bicgstab":
            x, _ = spla.bicgstab(operator, b, x0=x, rtol=0.0, atol=target, maxiter=budget, M=M)
            return x, (calls[0] + 1) // 2  # two per iteration (one at a half-step exit)
        inner = [0]

        def count(_):
            inner[0] += 1

        x, _ = spla.gmres(
            operator,
            b,
            x0=x,
            rtol=0.0,
            atol=target,
            restart=min(GMRES_RESTART, budget),
            maxiter=budget,  # with the "legacy" callback: inner iterations in all
            M=M,
            callback=count,
            callback_type="legacy",
        )
        return x, inner[0]

    # ------------------------------------------------------------------ memory

    def nbytes(self, factor: _Factor) -> int:
        arrays = [factor.matrix.data, factor.csr.data, factor.csr.indices, factor.csr.indptr]
        if factor.candidates is not None:
            arrays.append(factor.candidates)
        hierarchies = factor.hierarchies
        if hierarchies is not None:
            for ml in (hierarchies.forward, hierarchies.transposed):
                if ml is not None:
                    arrays.extend(_hierarchy_arrays(ml))
        seen: dict[tuple[int, int], int] = {}
        for array in arrays:
            if array.size:
                seen[(array.__array_interface__["data"][0], array.nbytes)] = array.nbytes
        return int(sum(seen.values()))


def _arrays_of(value: Any) -> Iterator[np.ndarray]:
    if sp.issparse(value):
        for name in ("data", "indices", "indptr"):
            array = getattr(value, name, None)
            if isinstance(array, np.ndarray):
                yield array
    elif isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, functools.partial):  # smoothers keep e.g. inverted diagonals
        for item in value.keywords.values():
            yield from _arrays_of(item)


def _hierarchy_arrays(ml: Any) -> Iterator[np.ndarray]:
    for level in ml.levels:
        for value in vars(level).values():
            yield from _arrays_of(value)
    for value in vars(ml.coarse_solver).values() if hasattr(ml, "coarse_solver") else ():
        yield from _arrays_of(value)


def _check_matrix(pattern: Pattern, matrix: sp.csc_matrix) -> None:
    """AMG smoothers divide by the diagonal: refuse a zero diagonal entry up front."""
    n = matrix.shape[0]
    if n == 0:
        return
    diagonal = pattern.diagonal(matrix.data)
    if np.all(diagonal != 0):
        return
    nonzero = matrix.data != 0
    rows = np.bincount(matrix.indices[nonzero], minlength=n)
    cols = np.bincount(np.repeat(np.arange(n), np.diff(matrix.indptr))[nonzero], minlength=n)
    if np.any(rows == 0) or np.any(cols == 0):
        raise FactorError(Status.SINGULAR, "the matrix has a zero row or column")
    raise FactorError(Status.BREAKDOWN, "AMG needs a nonzero diagonal (its smoothers divide by it)")


def _record_baseline(hierarchies: _Hierarchies, direction: str, steps, status) -> None:
    """The first converged solve with a hierarchy sets its baseline iteration count."""
    if direction in hierarchies.baseline:
        return
    converged = steps[(status == Status.OK) & (steps > 0)]
    if converged.size:
        hierarchies.baseline[direction] = int(converged.max())
