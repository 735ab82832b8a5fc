"""`PETSc`: PETSc's Krylov methods, preconditioners and direct solvers (petsc4py), in this
process or across MPI ranks; "auto" choices resolved from the operator's tags."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, ArrayLike

from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.options import check_petsc, petsc_direct, petsc_options
from ..backends.petsc import mpi as petsc_mpi
from ..backends.petsc.objects import INSTALL_HINT
from .iterative import AbstractIterativeHostSolver, as_near_nullspace


#: GAMG's settings for operators not tagged positive semidefinite: aggregates from the
#: symmetrized graph (PETSc needs it for non-symmetric matrices) and SOR smoothing (GAMG's
#: default Chebyshev smoother assumes a positive definite matrix). Measured on upwind
#: convection-diffusion 64^2 (cell Peclet 0.3, 3, 30), GMRES to rtol 1e-8: 8, 7, 6
#: iterations; with the Chebyshev smoother 13, and no convergence in 500 at 3 and 30
#: (BoomerAMG: 5, 9, 6; ILU: 60, 21, 8).
_GAMG_GENERAL = (
    ("mg_levels_ksp_type", "richardson"),
    ("mg_levels_pc_type", "sor"),
    ("pc_gamg_sym_graph", "true"),
)


def require_petsc4py() -> None:
    """Raise the install instructions, without importing petsc4py (nor initializing MPI)."""
    if importlib.util.find_spec("petsc4py") is None:
        raise ImportError(INSTALL_HINT)


class PETSc(AbstractIterativeHostSolver):
    """Krylov methods, multigrid and direct solvers of PETSc (petsc4py), in this process or
    across MPI ranks.

    One KSP (a Krylov method with its preconditioner: a GAMG or hypre BoomerAMG hierarchy,
    an LU or Cholesky factorization by PETSc or MUMPS) is set up per matrix on the host,
    kept in the cache under a handle and used by every solve, transposed solve (the
    backward pass) and vmapped batch. Run under `mpiexec -n P` with
    `lineax_sparse.petsc_serve()` at the top of the program, the matrix is distributed by
    rows over the P ranks and every setup and solve is collective: the hierarchy or
    factorization is split across the ranks' memory.

    Convergence is checked on the host against the true residual, never taken from
    PETSc's own test: `RESULTS.max_steps_reached` when `max_steps` run out,
    `RESULTS.breakdown` for a divergence or a PETSc error, `RESULTS.singular` for a failed
    factorization or an indefinite matrix under CG. Direct solves are checked by their
    backward error and refined, as `Cholmod`'s and `SuperLU`'s. `Solution.stats` holds
    `num_steps`, `relative_residual` and `reason` (see `lineax_sparse.explain`).

    Real matrices only (PETSc is built for one scalar type, real in the usual builds);
    float32 is solved in double precision on the host.

    `options` keys accepted by `lineax.linear_solve(..., options=...)` (not to be confused
    with the PETSc options given to the constructor):

    - `y0`: an initial guess of the shape of the right-hand side.
    - `adjoint_y0`: an initial guess for the transposed solve of the backward pass.
    """

    # The defaults again in `__init__` (a test checks that they agree): these make the repr
    # show only what differs from them.
    ksp_type: str = "auto"
    pc_type: str = "auto"
    rtol: float = 1e-8
    atol: float = 0.0
    max_steps: int = 1000
    adjoint_rtol: float | None = None
    options: tuple[tuple[str, str], ...] = ()
    near_nullspace: Array | None = None
    block_size: int = 1

    # Written out (as optimistix's solvers do) so that type checkers read the positional
    # order: to them the abstract variables of the base classes would come first.
    def __init__(
        self,
        ksp_type: str = "auto",
        pc_type: str = "auto",
        rtol: float = 1e-8,
        atol: float = 0.0,
        max_steps: int = 1000,
        adjoint_rtol: float | None = None,
        options: Mapping[str, str | int | float | bool] | tuple[tuple[str, str], ...] | None = None,
        near_nullspace: ArrayLike | None = None,
        block_size: int = 1,
    ):
        self.ksp_type = ksp_type
        self.pc_type = pc_type
        self.rtol = rtol
        self.atol = atol
        self.max_steps = max_steps
        self.adjoint_rtol = adjoint_rtol
        self.options = petsc_options(options)
        self.near_nullspace = as_near_nullspace(near_nullspace, "PETSc")
        self.block_size = block_size

    def __check_init__(self):
        require_petsc4py()
        check_petsc(self.ksp_type, self.pc_type, self.block_size, self.near_nullspace is not None)

    def _iterates(self) -> bool:
        return not petsc_direct(self.ksp_type, self.pc_type)

    def _choices(self, positive: bool, symmetric: bool) -> tuple[str, str, str, tuple]:
        """`(ksp_type, pc_type, norm, defaults)`: "auto" resolved from the tags.

        Positive semidefinite: CG + GAMG. Otherwise GMRES + GAMG, with GAMG set for
        matrices that are not positive definite (`_GAMG_GENERAL`). CG tests the
        unpreconditioned residual, GMRES is preconditioned on the right (its residual is the
        true one).
        """
        ksp_type, pc_type = self.ksp_type, self.pc_type
        if ksp_type == "auto":
            ksp_type = "cg" if positive else "gmres"
        if pc_type == "auto":
            pc_type = "gamg"
        # Tested on the true residual where the method allows it, so that PETSc stops
        # where the host's check will pass (options may still choose otherwise).
        norm = ""
        if ksp_type == "cg":
            norm = "unpreconditioned"
        elif ksp_type in ("gmres", "fgmres"):
            norm = "right"
        defaults = ()
        if pc_type == "gamg" and not positive:
            defaults = _GAMG_GENERAL
        return ksp_type, pc_type, norm, defaults

    def _spec(self, ksp_type: str, pc_type: str, norm: str, defaults: tuple) -> BackendSpec:
        options = tuple(sorted({**dict(defaults), **dict(self.options)}.items()))
        return "petsc", (
            ("ksp_type", ksp_type),
            ("pc_type", pc_type),
            *self._tolerances(),
            ("options", options),
            ("norm", norm),
            ("block_size", int(self.block_size)),
            ("direct", petsc_direct(ksp_type, pc_type)),
        )

    def backend_specs(self) -> dict[BackendSpec, bool]:
        cases = {self._choices(p, s) for p in (False, True) for s in (False, True)}
        return {self._spec(*case): False for case in sorted(cases)}

    def backend_spec(self, operator: SparseOperator) -> BackendSpec:
        # At trace time, on the user's side: under `mpiexec` without `petsc_serve()`, a
        # solve would hang the job's exit or be done alone by each rank.
        petsc_mpi.check_served()
        if jnp.issubdtype(operator.data.dtype, jnp.complexfloating):
            raise ValueError(
                "`PETSc` solves real matrices (PETSc is built for one scalar type, real in "
                "the usual builds); use `lineax_sparse.SuperLU()` or `Cholmod()` for complex "
                "ones."
            )
        if operator.size % self.block_size:
            raise ValueError(
                f"`PETSc(block_size={self.block_size})` must divide the operator's size "
                f"{operator.size}."
            )
        positive = lx.is_positive_semidefinite(operator)
        choices = self._choices(positive, lx.is_symmetric(operator))
        if choices[0] == "cg" and not (positive or lx.is_symmetric(operator)):
            raise ValueError(
                "`PETSc(ksp_type='cg')` needs a symmetric positive definite operator: tag it "
                "`lineax.positive_semidefinite_tag`, or choose `ksp_type='gmres'`."
            )
        return self._spec(*choices)


PETSc.__init__.__doc__ = """**Arguments:**

- `ksp_type`: PETSc's Krylov method (`KSPType`): `"auto"` (default: `"cg"` for an operator
    tagged positive semidefinite, `"gmres"` otherwise), or any PETSc name: `"cg"`,
    `"gmres"`, `"bcgs"`, `"fgmres"`, `"minres"`, ..., `"preonly"` with a factorization.
- `pc_type`: PETSc's preconditioner (`PCType`): `"auto"` (default: `"gamg"`, PETSc's
    smoothed-aggregation algebraic multigrid), `"hypre"` (BoomerAMG, with
    `options={"pc_hypre_type": "boomeramg"}`), `"ml"`, `"lu"` / `"cholesky"` (with
    `ksp_type="preonly"` a direct solve; `options={"pc_factor_mat_solver_type": "mumps"}`
    for MUMPS, which also runs across ranks), `"jacobi"`, `"ilu"`, `"bjacobi"`, ...
- `rtol`, `atol`: converged when `|b - A x| <= max(rtol |b|, atol)` (checked on the host).
- `max_steps`: the most Krylov iterations per solve.
- `adjoint_rtol`: the relative tolerance of transposed solves (the backward pass);
    defaults to `rtol`.
- `options`: PETSc options-database names (without the leading `-`) and values, applied
    to this solver's KSP only: `{"pc_gamg_threshold": 0.02}`,
    `{"pc_hypre_boomeramg_strong_threshold": 0.5}`, `{"mat_mumps_icntl_14": 50}`. They are
    read after `ksp_type` and `pc_type`, so `{"ksp_type": ...}` overrides those. A
    misspelled name is ignored, as by PETSc itself.
- `near_nullspace`: optional `(n, k)` array of near-nullspace vectors: the rigid body
    modes of an elasticity problem (3 in 2D, 6 in 3D), read by GAMG, by ML, and by
    BoomerAMG when `options` set `pc_hypre_boomeramg_vec_interp_variant`.
- `block_size`: unknowns per mesh node (2 or 3 for elasticity), which GAMG aggregates
    together; it must divide the operator's size.
"""
