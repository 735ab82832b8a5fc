"""The choices each backend accepts, written once: each option's `Literal` type (used by the
solver classes' annotations) and the tuple of its values derived from it (used to check
them at construction and by the backends).

No imports beyond `typing`, so that the solver classes can check options without loading
any native library.
"""

from typing import get_args, Literal


SuperLUOrdering = Literal["auto", "COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL"]
SUPERLU_ORDERINGS = get_args(SuperLUOrdering)

CholmodMode = Literal["auto", "supernodal", "simplicial"]
CholmodFactorization = Literal["LL", "LDL"]
CholmodOrdering = Literal["auto", "amd", "nested_dissection", "natural"]
CHOLMOD_MODES = get_args(CholmodMode)
CHOLMOD_FACTORIZATIONS = get_args(CholmodFactorization)
CHOLMOD_ORDERINGS = get_args(CholmodOrdering)

AMGMethod = Literal["auto", "smoothed_aggregation", "ruge_stuben", "air", "nonsymmetric_sa"]
AMGKrylov = Literal["auto", "cg", "gmres", "bicgstab", "none"]
AMGCycle = Literal["V", "W", "F"]
AMGSmoother = Literal["default", "gauss_seidel", "jacobi", "sor", "chebyshev"]
AMG_METHODS = get_args(AMGMethod)
AMG_KRYLOV = get_args(AMGKrylov)
AMG_CYCLES = get_args(AMGCycle)
AMG_SMOOTHERS = get_args(AMGSmoother)
