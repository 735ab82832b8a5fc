"""lineax-sparse: sparse direct and multigrid solvers for lineax, in JAX.

Importing this package changes no global JAX configuration.
"""

import importlib.metadata

from ._bridge.reasons import Reason as Reason, REASONS as REASONS
from ._host.patterns import StaticPattern as StaticPattern
from ._host.pool import num_threads as num_threads, set_num_threads as set_num_threads
from ._host.registry import (
    cache_info as cache_info,
    CacheInfo as CacheInfo,
    clear_cache as clear_cache,
    set_cache_limit as set_cache_limit,
)
from ._matrixfree.adjoint import sparse_implicit_adjoint as sparse_implicit_adjoint
from ._matrixfree.sparsity import detect_sparsity as detect_sparsity
from ._operator.operator import SparseOperator as SparseOperator
from ._operator.pattern import static_pattern as static_pattern
from ._petsc_processes import (
    petsc_held_memory as petsc_held_memory,
    petsc_peak_memory as petsc_peak_memory,
    petsc_ranks as petsc_ranks,
    petsc_serve as petsc_serve,
)
from ._solve import explain as explain, linear_solve as linear_solve
from ._solver.amg import AMG as AMG
from ._solver.auto import AutoSparse as AutoSparse
from ._solver.base import (
    AbstractHostSolver as AbstractHostSolver,
    HostSolverState as HostSolverState,
)
from ._solver.cholmod import Cholmod as Cholmod
from ._solver.materialise import Materialise as Materialise, MaterialiseState as MaterialiseState
from ._solver.pardiso import Pardiso as Pardiso
from ._solver.petsc import PETSc as PETSc
from ._solver.superlu import SuperLU as SuperLU
from ._solver.umfpack import UMFPACK as UMFPACK


__version__ = importlib.metadata.version("lineax-sparse")
