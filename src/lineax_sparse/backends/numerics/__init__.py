"""The numerical checks every backend shares (host side, numpy and scipy only).

Each backend calls these instead of writing its own, so that every solver reports the same
statuses for the same matrices: `norms` and `scaling` (overflow-safe norms, exact
power-of-two scaling and equilibration), `refinement` (checked direct solves),
`condition` (condition estimates and the thresholds they decide by), `starts` (starting
guesses of iterative solves), `symmetry` (the symmetry of values), `complex_split`
(complex right-hand sides of real matrices) and `seeding` (reproducible random draws).
"""

from .complex_split import solve_split as solve_split
from .condition import (
    Condition as Condition,
    confirm as confirm,
    estimate_rcond as estimate_rcond,
    PIVOT_GATE as PIVOT_GATE,
    RCOND_LIMIT as RCOND_LIMIT,
    RCOND_SUSPECT as RCOND_SUSPECT,
    RESIDUAL_TRIGGER as RESIDUAL_TRIGGER,
    singular_result as singular_result,
    SUSPECT_RESIDUAL as SUSPECT_RESIDUAL,
)
from .norms import (
    column_maxima as column_maxima,
    column_norms as column_norms,
    column_of as column_of,
    matrix_norm as matrix_norm,
    NormBound as NormBound,
    one_norm as one_norm,
    operator_apply as operator_apply,
)
from .refinement import (
    backward_error as backward_error,
    BACKWARD_ERROR_LIMIT as BACKWARD_ERROR_LIMIT,
    checked_solve as checked_solve,
    CHUNK_BYTES as CHUNK_BYTES,
    REFINEMENT_STEPS as REFINEMENT_STEPS,
    relative_residual as relative_residual,
)
from .scaling import (
    equilibrate as equilibrate,
    exponents as exponents,
    EXTREME_EXPONENT as EXTREME_EXPONENT,
    is_extreme as is_extreme,
    scale as scale,
    scaled_columns as scaled_columns,
    symmetric_equilibration as symmetric_equilibration,
)
from .seeding import seeded_global_random as seeded_global_random
from .starts import best_start as best_start, residual_norms as residual_norms
from .symmetry import (
    exactly_symmetric as exactly_symmetric,
    is_hermitian as is_hermitian,
    SYMMETRY_FLOOR as SYMMETRY_FLOOR,
    SYMMETRY_RTOL as SYMMETRY_RTOL,
)
