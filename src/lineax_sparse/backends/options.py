"""The solvers' options and their rules, each written once: an option's `Literal` type (the
solver classes' annotations), the tuple of its values derived from it, and the function
that checks it, side by side.

The solver classes call the checks at construction, with their own name for the messages;
the backends receive the checked values in their spec and trust them. No imports beyond
the standard library, so that options are checked without loading any native library.
"""

from __future__ import annotations

import re
from typing import Any, get_args, Literal


def check_choice(solver: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """`solver(name=value)` must be one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"`{solver}({name}=...)` must be one of {allowed}, got {value!r}.")


def check_bool(solver: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"`{solver}({name}=...)` must be a bool, got {value!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------------------ SuperLU

SuperLUOrdering = Literal["auto", "COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"]
SUPERLU_ORDERINGS = get_args(SuperLUOrdering)


def check_superlu(ordering: Any, pivot_threshold: Any, symmetric_mode: Any) -> None:
    check_choice("SuperLU", "ordering", ordering, SUPERLU_ORDERINGS)
    if not (0.0 <= pivot_threshold <= 1.0):
        raise ValueError(
            f"`SuperLU(pivot_threshold=...)` must lie in [0, 1], got {pivot_threshold!r}."
        )
    check_bool("SuperLU", "symmetric_mode", symmetric_mode)


# ------------------------------------------------------------------------------ UMFPACK

UMFPACKStrategy = Literal["auto", "unsymmetric", "symmetric"]
UMFPACKOrdering = Literal["amd", "cholmod", "best", "natural"]
UMFPACK_STRATEGIES = get_args(UMFPACKStrategy)
UMFPACK_ORDERINGS = get_args(UMFPACKOrdering)


def check_umfpack(strategy: Any, ordering: Any, pivot_tolerance: Any) -> None:
    check_choice("UMFPACK", "strategy", strategy, UMFPACK_STRATEGIES)
    check_choice("UMFPACK", "ordering", ordering, UMFPACK_ORDERINGS)
    if not (
        isinstance(pivot_tolerance, (int, float))
        and not isinstance(pivot_tolerance, bool)
        and 0.0 < pivot_tolerance <= 1.0
    ):
        raise ValueError(
            "`UMFPACK(pivot_tolerance=...)` must lie in (0, 1] (1: partial pivoting), got "
            f"{pivot_tolerance!r}."
        )


# ------------------------------------------------------------------------------ CHOLMOD

CholmodMode = Literal["auto", "supernodal", "simplicial"]
CholmodFactorization = Literal["LL", "LDL"]
CholmodOrdering = Literal["auto", "amd", "nested_dissection", "natural"]
CHOLMOD_MODES = get_args(CholmodMode)
CHOLMOD_FACTORIZATIONS = get_args(CholmodFactorization)
CHOLMOD_ORDERINGS = get_args(CholmodOrdering)


def check_cholmod(mode: Any, factorization: Any, ordering: Any) -> None:
    check_choice("Cholmod", "mode", mode, CHOLMOD_MODES)
    check_choice("Cholmod", "factorization", factorization, CHOLMOD_FACTORIZATIONS)
    check_choice("Cholmod", "ordering", ordering, CHOLMOD_ORDERINGS)
    if factorization == "LDL" and mode == "supernodal":
        raise ValueError(
            "`Cholmod(factorization='LDL')` is simplicial: use `mode='simplicial'` or "
            "`mode='auto'` with it."
        )


# ------------------------------------------------------------------------------ PARDISO

#: "auto" is resolved by the solver class from the operator's tags: a backend spec holds one
#: of the others.
PardisoMatrixType = Literal[
    "auto", "spd", "symmetric_indefinite", "hermitian_indefinite", "general"
]
PARDISO_MATRIX_TYPES = get_args(PardisoMatrixType)


def check_pardiso(matrix_type: Any) -> None:
    check_choice("Pardiso", "matrix_type", matrix_type, PARDISO_MATRIX_TYPES)


# ------------------------------------------------------- tolerances (AMG and PETSc)


def check_tolerances(
    solver: str, rtol: Any, atol: Any, max_steps: Any, adjoint_rtol: Any, *, iterates: bool
) -> None:
    """Converged means `|b - A x| <= max(rtol |b|, atol)` (`adjoint_rtol`, default `rtol`,
    for transposed solves), within `max_steps`. A configuration that does not iterate (a
    direct solve through PETSc) may leave both tolerances zero."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ValueError(f"`{solver}({name}=...)` must be a number in [0, 1), got {value!r}.")
    if rtol == 0 and atol == 0 and iterates:
        raise ValueError(f"`{solver}(rtol=..., atol=...)` must not both be zero.")
    if adjoint_rtol is not None and not (
        isinstance(adjoint_rtol, (int, float)) and 0 < adjoint_rtol < 1
    ):
        raise ValueError(
            f"`{solver}(adjoint_rtol=...)` must be None or in (0, 1), got {adjoint_rtol!r}."
        )
    if not _is_int(max_steps) or max_steps < 1:
        raise ValueError(f"`{solver}(max_steps=...)` must be a positive int, got {max_steps!r}.")


# ---------------------------------------------------------------------------------- AMG

#: Methods whose cycle is symmetric (for symmetric matrices; CG can use them).
AMGSymmetricMethod = Literal["smoothed_aggregation", "ruge_stuben"]
#: Methods for non-symmetric matrices, whose cycle is not symmetric (AIR's F/C relaxation
#: and restriction, nonsymmetric SA's R != P^T): CG cannot use them.
AMGNonsymmetricMethod = Literal["air", "nonsymmetric_sa"]
#: "auto" is resolved by the solver class from the operator's tags: a backend spec holds
#: one of the others.
AMGMethod = Literal["auto", AMGSymmetricMethod, AMGNonsymmetricMethod]
AMGResolvedKrylov = Literal["cg", "gmres", "bicgstab", "none"]
AMGKrylov = Literal["auto", AMGResolvedKrylov]
AMGCycle = Literal["V", "W", "F"]
AMGSmoother = Literal["default", "gauss_seidel", "jacobi", "sor", "chebyshev"]
AMG_METHODS = get_args(AMGMethod)
AMG_SYMMETRIC_METHODS = get_args(AMGSymmetricMethod)
AMG_NONSYMMETRIC_METHODS = get_args(AMGNonsymmetricMethod)
AMG_RESOLVED_METHODS = AMG_SYMMETRIC_METHODS + AMG_NONSYMMETRIC_METHODS
AMG_KRYLOV = get_args(AMGKrylov)
AMG_RESOLVED_KRYLOV = get_args(AMGResolvedKrylov)
AMG_CYCLES = get_args(AMGCycle)
AMG_SMOOTHERS = get_args(AMGSmoother)
#: Methods pyamg implements for real matrices only (classical interpolation, AIR).
AMG_REAL_ONLY_METHODS = ("ruge_stuben", "air")
#: Methods that take near-nullspace vectors (classical AMG and AIR have no `B`).
AMG_NEAR_NULLSPACE_METHODS = ("smoothed_aggregation", "nonsymmetric_sa")


def check_amg(
    method: Any,
    krylov: Any,
    cycle: Any,
    smoother: Any,
    reuse: Any,
    warm_start: Any,
    near_nullspace: bool,
) -> None:
    """`AMG`'s options but its tolerances (`check_tolerances`); `near_nullspace`: whether
    vectors were given."""
    check_choice("AMG", "method", method, AMG_METHODS)
    check_choice("AMG", "krylov", krylov, AMG_KRYLOV)
    check_choice("AMG", "cycle", cycle, AMG_CYCLES)
    check_choice("AMG", "smoother", smoother, AMG_SMOOTHERS)
    check_bool("AMG", "warm_start", warm_start)
    if not _is_int(reuse) or reuse < 0:
        raise ValueError(f"`AMG(reuse=...)` must be a non-negative int, got {reuse!r}.")
    if reuse and krylov == "none":
        raise ValueError(
            "`AMG(reuse=...)` preconditions a Krylov method with an earlier hierarchy: "
            "choose `krylov='cg'`, `'gmres'` or `'bicgstab'` with it."
        )
    if near_nullspace and method not in ("auto",) + AMG_NEAR_NULLSPACE_METHODS:
        raise ValueError(
            f"`AMG(method={method!r})` takes no `near_nullspace`: use "
            "`method='smoothed_aggregation'` (or `'nonsymmetric_sa'`) with it."
        )
    if krylov == "cg" and method in AMG_NONSYMMETRIC_METHODS:
        raise ValueError(
            f"`AMG(method={method!r})` is for non-symmetric matrices, for which "
            "`krylov='cg'` does not converge: use `krylov='gmres'` or `'bicgstab'`."
        )


# -------------------------------------------------------------------------------- PETSc

#: Preconditioners that factorize: with `ksp_type="preonly"` they make a direct solve.
PETSC_DIRECT_PCS = ("lu", "cholesky")
#: Preconditioners that read near-nullspace vectors: GAMG; BoomerAMG with
#: `pc_hypre_boomeramg_vec_interp_variant`; ML ("auto" is GAMG).
PETSC_NULLSPACE_PCS = ("auto", "gamg", "hypre", "ml")
_PETSC_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")
_PETSC_OPTION = re.compile(r"^[a-z][a-z0-9_+]*$", re.IGNORECASE)


def petsc_direct(ksp_type: str, pc_type: str) -> bool:
    """Whether the KSP is a direct solve: a factorization applied once."""
    return ksp_type == "preonly" and pc_type in PETSC_DIRECT_PCS


def petsc_options(value: Any) -> tuple[tuple[str, str], ...]:
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
        if not isinstance(name, str) or not _PETSC_OPTION.match(name.lstrip("-")):
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


def check_petsc(ksp_type: Any, pc_type: Any, block_size: Any, near_nullspace: bool) -> None:
    """`PETSc`'s options but its tolerances and `options` (`petsc_options` converts them);
    `near_nullspace`: whether vectors were given."""
    for name, value in (("ksp_type", ksp_type), ("pc_type", pc_type)):
        if not isinstance(value, str) or not _PETSC_TYPE.match(value):
            raise ValueError(
                f"`PETSc({name}=...)` must be a PETSc type name such as "
                f'"cg" or "gamg", or "auto", got {value!r}.'
            )
    if not _is_int(block_size) or block_size < 1:
        raise ValueError(f"`PETSc(block_size=...)` must be a positive int, got {block_size!r}.")
    if ksp_type == "preonly" and pc_type not in PETSC_DIRECT_PCS:
        raise ValueError(
            "`PETSc(ksp_type='preonly')` applies the preconditioner once, which solves "
            f"only with a factorization: use `pc_type='lu'` or `'cholesky'` with it, got "
            f"{pc_type!r}."
        )
    if near_nullspace and pc_type not in PETSC_NULLSPACE_PCS:
        raise ValueError(
            "`PETSc(near_nullspace=...)` is read by GAMG, hypre's BoomerAMG (with "
            "`options={'pc_hypre_boomeramg_vec_interp_variant': 2}`) and ML: use "
            f"`pc_type` 'gamg' (or 'auto'), 'hypre' or 'ml' with it, got {pc_type!r}."
        )
