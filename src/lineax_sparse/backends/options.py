"""The choices each backend accepts: one list per option, shared by the solver classes (which
check them at construction) and the backends (which map them onto the native libraries).

No imports, so that the solver classes can check options without loading any native library.
"""

SUPERLU_ORDERINGS = ("COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL")

CHOLMOD_MODES = ("auto", "supernodal", "simplicial")
CHOLMOD_FACTORIZATIONS = ("LL", "LDL")
CHOLMOD_ORDERINGS = ("amd", "natural")

AMG_METHODS = ("smoothed_aggregation", "ruge_stuben", "air", "nonsymmetric_sa")
AMG_KRYLOV = ("cg", "gmres", "bicgstab", "none")
AMG_CYCLES = ("V", "W", "F")
AMG_SMOOTHERS = ("default", "gauss_seidel", "jacobi", "sor", "chebyshev")
