from __future__ import annotations

import importlib.util
import re
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array

from .._operator.operator import SparseOperator
from ..backends.base import BackendSpec
from ..backends.petsc import mpi as petsc_mpi
from ..backends.petsc.objects import INSTALL_HINT
from .iterative import AbstractIterativeHostSolver, near_nullspace


#: Preconditioners that factorize: with `ksp_type="preonly"` they make a direct solve.
DIRECT_PCS = ("lu", "cholesky")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_OPTION = re.compile(r"^[a-z][a-z0-9_+]*$", re.IGNORECASE)
#: Preconditioners that read near-nullspace vectors: GAMG; BoomerAMG with
#: `pc_hypre_boomeramg_vec_interp_variant`; ML.
NULLSPACE_PCS = ("auto", "gamg", "hypre", "ml")
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


def _options(value: Any) -> tuple[tuple[str, str], ...]:
    """`PETSc(options=...)` as sorted `(name, value)` strings (static and hashable)."""
    if value is None:
        return ()
    if isinstance(value, tuple) and all(isinstance(item, tuple) for item in value):
        value = dict(value)
    if not isinstance(value, dict):
        raise ValueError(
            "`PETSc(options=...)` must be a dict of PETSc option names and values, e.g. "
            f'{{"pc_hypre_type": "boomeramg"}}, got {type(value).__name__}.'
        )
    items = []
    for name, setting in value.items():
        if not isinstance(name, str) or not _OPTION.match(name.lstrip("-")):
            raise ValueError(
                "`PETSc(options=...)` names must be PETSc option names such as "
                f'"pc_gamg_threshold" (a leading "-" is allowed), got {name!r}.'
            )
        if isinstance(setting, bool):
            text = "true" if setting else "false"
        elif isinstance(setting, (int, float, str)):
            text = str(setting)
        else:
            raise ValueError(
                f"`PETSc(options=...)` values must be str, int, float or bool, got "
                f"{type(setting).__name__} for {name!r}."
            )
        if name.lstrip("-").startswith("options_") or name.lstrip("-") in ("help", "log_view"):
            raise ValueError(f"`PETSc(options=...)` cannot set the global option {name!r}.")
        # PETSc's option names are case-insensitive (hypre's `P_max` is `p_max`).
        items.append((name.lstrip("-").lower(), text))
    return tuple(sorted(items))


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
    `num_steps` and `relative_residual`.

    Real matrices only (PETSc is built for one scalar type, real in the usual builds);
    float32 is solved in double precision on the host.

    `options` keys accepted by `lineax.linear_solve(..., options=...)` (not to be confused
    with the PETSc options given to the constructor):

    - `y0`: an initial guess of the shape of the right-hand side.
    - `adjoint_y0`: an initial guess for the transposed solve of the backward pass.
    """

    ksp_type: str = "auto"
    pc_type: str = "auto"
    rtol: float = 1e-8
    atol: float = 0.0
    max_steps: int = 1000
    adjoint_rtol: float | None = None
    options: tuple[tuple[str, str], ...] = eqx.field(default=None, converter=_options)
    near_nullspace: Array | None = eqx.field(
        default=None, converter=lambda value: near_nullspace(value, "PETSc")
    )
    block_size: int = 1

    def __check_init__(self):
        require_petsc4py()
        for name, value in (("ksp_type", self.ksp_type), ("pc_type", self.pc_type)):
            if not isinstance(value, str) or not _NAME.match(value):
                raise ValueError(
                    f"`PETSc({name}=...)` must be a PETSc type name such as "
                    f'"cg" or "gamg", or "auto", got {value!r}.'
                )
        for name, value in (("rtol", self.rtol), ("atol", self.atol)):
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"`PETSc({name}=...)` must be a number in [0, 1), got {value!r}.")
        if self.rtol == 0 and self.atol == 0 and not self._direct(self.ksp_type, self.pc_type):
            raise ValueError("`PETSc(rtol=..., atol=...)` must not both be zero.")
        if self.adjoint_rtol is not None and not (
            isinstance(self.adjoint_rtol, (int, float)) and 0 < self.adjoint_rtol < 1
        ):
            raise ValueError(
                f"`PETSc(adjoint_rtol=...)` must be None or in (0, 1), got {self.adjoint_rtol!r}."
            )
        for name, value in (("max_steps", self.max_steps), ("block_size", self.block_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`PETSc({name}=...)` must be a positive int, got {value!r}.")
        if self.ksp_type == "preonly" and self.pc_type not in DIRECT_PCS:
            raise ValueError(
                "`PETSc(ksp_type='preonly')` applies the preconditioner once, which solves "
                f"only with a factorization: use `pc_type='lu'` or `'cholesky'` with it, got "
                f"{self.pc_type!r}."
            )
        if self.near_nullspace is not None and self.pc_type not in NULLSPACE_PCS:
            raise ValueError(
                "`PETSc(near_nullspace=...)` is read by GAMG, hypre's BoomerAMG (with "
                "`options={'pc_hypre_boomeramg_vec_interp_variant': 2}`) and ML: use "
                f"`pc_type` 'gamg' (or 'auto'), 'hypre' or 'ml' with it, got {self.pc_type!r}."
            )

    @staticmethod
    def _direct(ksp_type: str, pc_type: str) -> bool:
        return ksp_type == "preonly" and pc_type in DIRECT_PCS

    def _aux(self, operator: SparseOperator) -> Array | None:
        return self.near_nullspace

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
        given = dict(self.options)
        options = tuple(sorted({**dict(defaults), **given}.items()))
        return "petsc", (
            ("ksp_type", ksp_type),
            ("pc_type", pc_type),
            ("rtol", float(self.rtol)),
            ("atol", float(self.atol)),
            ("max_steps", int(self.max_steps)),
            ("adjoint_rtol", float(self.rtol if self.adjoint_rtol is None else self.adjoint_rtol)),
            ("options", options),
            ("norm", norm),
            ("block_size", int(self.block_size)),
            ("direct", self._direct(ksp_type, pc_type)),
        )

    def _accepted_specs(self) -> tuple[BackendSpec, ...]:
        cases = {self._choices(p, s) for p in (False, True) for s in (False, True)}
        return tuple(self._spec(*case) for case in sorted(cases))

    def _backend_spec(self, operator: SparseOperator) -> BackendSpec:
        # At trace time, on the user's side: under `mpiexec` without `petsc_serve()`, a
        # solve would hang the job's exit or be done alone by each rank.
        petsc_mpi.check_served()
        if jnp.issubdtype(operator.data.dtype, jnp.complexfloating):
            raise ValueError(
                "`PETSc` solves real matrices (PETSc is built for one scalar type, real in "
                "the usual builds); use `lineax_sparse.SuperLU()` or `Cholmod()` for complex "
                "ones."
            )
        if self.near_nullspace is not None and self.near_nullspace.shape[0] != operator.size:
            raise ValueError(
                f"`PETSc(near_nullspace=...)` has vectors of length "
                f"{self.near_nullspace.shape[0]} for an operator of size {operator.size}."
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

    def assume_full_rank(self) -> bool:
        return True


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
