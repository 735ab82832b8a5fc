"""The numerical checks every backend shares (host side, numpy and scipy only).

Scaling and norms, checked direct solves with refinement, condition estimates, residuals
and starting guesses, and the symmetry of values: each backend calls these instead of
writing its own, so that every solver reports the same statuses for the same matrices.
"""

from .checks import (
    backward_error as backward_error,
    BACKWARD_ERROR_LIMIT as BACKWARD_ERROR_LIMIT,
    best_start as best_start,
    checked_solve as checked_solve,
    CHUNK_BYTES as CHUNK_BYTES,
    column_maxima as column_maxima,
    column_norms as column_norms,
    column_of as column_of,
    Condition as Condition,
    confirm as confirm,
    equilibrate as equilibrate,
    estimate_rcond as estimate_rcond,
    exponents as exponents,
    EXTREME_EXPONENT as EXTREME_EXPONENT,
    is_extreme as is_extreme,
    matrix_norm as matrix_norm,
    NormBound as NormBound,
    one_norm as one_norm,
    operator_apply as operator_apply,
    PIVOT_GATE as PIVOT_GATE,
    RCOND_LIMIT as RCOND_LIMIT,
    RCOND_SUSPECT as RCOND_SUSPECT,
    REFINEMENT_STEPS as REFINEMENT_STEPS,
    relative_residual as relative_residual,
    residual_norms as residual_norms,
    RESIDUAL_TRIGGER as RESIDUAL_TRIGGER,
    scale as scale,
    scaled_columns as scaled_columns,
    seeded_global_random as seeded_global_random,
    singular_result as singular_result,
    solve_split as solve_split,
    SUSPECT_RESIDUAL as SUSPECT_RESIDUAL,
    symmetric_equilibration as symmetric_equilibration,
)
from .symmetry import (
    exactly_symmetric as exactly_symmetric,
    is_hermitian as is_hermitian,
    SYMMETRY_FLOOR as SYMMETRY_FLOOR,
    SYMMETRY_RTOL as SYMMETRY_RTOL,
)
