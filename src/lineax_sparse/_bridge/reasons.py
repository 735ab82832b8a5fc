"""Why a solve failed, in words: the table of `Solution.stats["reason"]` codes, `explain`,
and the messages `lineax_sparse.linear_solve` raises with `throw=True`.

lineax has a handful of results (`singular` covers "not symmetric", "not positive definite"
and "singular to working precision" alike, with one generic message); the host knows
which it was. Its `Status` code crosses to JAX beside the lineax result, as
`stats["reason"]`, and this module turns it into a sentence with a remedy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array

from ..backends.status import Status


class Reason(NamedTuple):
    """What a `stats["reason"]` code means: its `name`, what `happened` and what to do."""

    name: str
    happened: str
    remedy: str


#: `Solution.stats["reason"]` codes of the lineax-sparse solvers (int32, one per system,
#: batched like the solution; 0 on success), each with what happened and what to do.
REASONS: dict[int, Reason] = {
    Status.OK: Reason("ok", "the system was solved", ""),
    Status.SINGULAR: Reason(
        "singular",
        "the matrix is singular, or singular to working precision (a zero pivot, or a "
        "condition number so large that no solution with a small backward error exists)",
        "check the matrix for a missing constraint (an empty row or column, a boundary "
        "condition left out, a floating body), regularize it (add a small multiple of the "
        "identity), or solve in float64",
    ),
    Status.NONFINITE_INPUT: Reason(
        "nonfinite_input",
        "the matrix values or the right-hand side contain NaN or inf",
        "find where the NaN or inf comes from (`jnp.isfinite` on the operator's data and "
        'the vector, or `jax.config.update("jax_debug_nans", True)`)',
    ),
    Status.MAX_STEPS_REACHED: Reason(
        "max_steps_reached",
        "the iterative solver ran out of steps before reaching the requested tolerance",
        "raise `max_steps`, loosen `rtol`/`atol`, or use a direct solver "
        "(`lineax_sparse.AutoSparse()`)",
    ),
    Status.BREAKDOWN: Reason(
        "breakdown",
        "the solver broke down (a diverging or non-finite iteration, a Krylov breakdown, a "
        "solution that overflows, or an error inside the native library)",
        "use a direct solver (`lineax_sparse.AutoSparse()`), check that the matrix suits the "
        "method (multigrid wants a symmetric positive definite, elliptic matrix), and read "
        "the traceback of any `HostFailureWarning`",
    ),
    Status.INVALID_INDEX: Reason(
        "invalid_index",
        "the sparsity pattern is wrong: an index is outside 0..n-1, or the indices are not "
        "those of the operator's static pattern",
        "check that the BCOO indices are in range for the shape (n, n), and that values "
        "given to `SparseOperator.from_pattern` follow the pattern's order",
    ),
    Status.NOT_POSITIVE_DEFINITE: Reason(
        "not_positive_definite",
        "the matrix is tagged positive (semi)definite but is not (the Cholesky "
        "factorization met a non-positive pivot, or conjugate gradients a negative "
        "curvature)",
        "use `lineax_sparse.SuperLU()` or `lineax_sparse.AutoSparse(fallback=True)`, or "
        "remove `lineax.positive_semidefinite_tag` if the matrix is indefinite",
    ),
    Status.NOT_SYMMETRIC: Reason(
        "not_symmetric",
        "the solver needs a symmetric (Hermitian) matrix, but the matrix's values are not",
        "use `lineax_sparse.SuperLU()` or `lineax_sparse.AutoSparse(fallback=True)`, or fix "
        "the tags (`lineax.symmetric_tag` and `lineax.positive_semidefinite_tag` promise "
        "symmetric values) or the matrix",
    ),
    Status.STAGNATED: Reason(
        "stagnated",
        "the iteration stopped making progress above the requested tolerance",
        "use a stronger preconditioner or a direct solver (`lineax_sparse.AutoSparse()`), "
        "or loosen `rtol`/`atol` if that accuracy is enough",
    ),
}

# For solutions without a `reason` (lineax's own solvers): what each lineax result says.
_RESULT_CODES = [
    (lx.RESULTS.singular, Status.SINGULAR),
    (lx.RESULTS.nonfinite_input, Status.NONFINITE_INPUT),
    (lx.RESULTS.max_steps_reached, Status.MAX_STEPS_REACHED),
    (lx.RESULTS.breakdown, Status.BREAKDOWN),
]
_BY_RESULT = [(outcome, REASONS[code]) for outcome, code in _RESULT_CODES]


def sentence(reason: Reason) -> str:
    """One sentence: what happened, then what to do."""
    text = reason.happened[0].upper() + reason.happened[1:]
    return f"{text} (reason {reason.name}): {reason.remedy}." if reason.remedy else text + "."


def error_messages() -> list[str]:
    """The messages `linear_solve(throw=True)` raises, indexed by `error_index`."""
    return ["lineax-sparse: the linear solve failed."] + [
        "lineax-sparse: the linear solve failed. " + sentence(REASONS[code])
        if code in REASONS
        else f"lineax-sparse: the linear solve failed (reason code {code})."
        for code in range(1, max(REASONS) + 1)
    ]


def error_index(reason: Array, result: lx.RESULTS) -> Array:
    """The index into `error_messages()` of a failed solve: its `reason`, or, when the
    solver reported none (lineax itself turned a non-finite output into a failure), the
    reason its lineax result reads as."""
    index = jnp.clip(reason, 0, max(REASONS)).astype(jnp.int32)
    for outcome, code in _RESULT_CODES:
        index = jnp.where((index == Status.OK) & (result == outcome), code, index)
    return index


def explain(solution: lx.Solution) -> str:
    """What happened in a linear solve, and what to do: one sentence per failed system.

    **Arguments:**

    - `solution`: a `lineax.Solution` returned by `lineax.linear_solve` or
        `lineax_sparse.linear_solve` (usually with `throw=False`), batched or not. Call this
        outside `jax.jit` (return the solution from the jitted function): it reads the
        concrete codes.

    **Returns:** a string, "The system was solved." when every system succeeded, otherwise
    one line per failed system (prefixed with its batch index when batched), e.g. "The
    solver needs a symmetric (Hermitian) matrix, but the matrix's values are not (reason
    not_symmetric): use `lineax_sparse.SuperLU()` or ...".

    The lineax-sparse solvers record a finer code than `solution.result` in
    `solution.stats["reason"]` (int32, batched like the solution):

    | code | name | what happened |
    |---|---|---|
    | 0 | ok | solved |
    | 1 | singular | singular, or singular to working precision |
    | 2 | nonfinite_input | NaN or inf in the matrix values or the right-hand side |
    | 3 | max_steps_reached | an iterative solver ran out of steps |
    | 4 | breakdown | a diverging or non-finite iteration, or a native library error |
    | 5 | invalid_index | an index out of range, or indices not the static pattern's |
    | 6 | not_positive_definite | tagged positive (semi)definite, but it is not |
    | 7 | not_symmetric | a symmetric solver was given non-symmetric values |
    | 8 | stagnated | an iteration stopped progressing above the tolerance |

    The table is `lineax_sparse.REASONS` (code -> name, what happened, remedy). For a
    solution of another lineax solver (no `reason` statistic), the lineax result is
    explained.
    """
    if not isinstance(solution, lx.Solution):
        raise TypeError(
            f"`explain(solution)` takes the `lineax.Solution` that `linear_solve` returns, "
            f"got {type(solution).__name__}."
        )
    reason = solution.stats.get("reason") if isinstance(solution.stats, dict) else None
    result = solution.result._value
    if isinstance(result, jax.core.Tracer) or isinstance(reason, jax.core.Tracer):
        raise TypeError(
            "`explain(solution)` needs concrete values: call it outside `jax.jit` (return "
            "the solution from the jitted function and explain it there)."
        )
    result = np.asarray(result)
    codes = np.zeros(result.shape, np.int64) if reason is None else np.asarray(reason)
    codes = np.broadcast_to(codes, np.broadcast_shapes(codes.shape, result.shape))
    result = np.broadcast_to(result, codes.shape)
    lines = []
    for index in np.ndindex(codes.shape):
        code, outcome = int(codes[index]), int(result[index])
        if code == Status.OK and outcome == int(lx.RESULTS.successful._value):
            continue
        if code in REASONS and code != Status.OK:
            text = sentence(REASONS[code])
        else:
            found = next((r for k, r in _BY_RESULT if int(k._value) == outcome), None)
            text = sentence(found) if found else f"The solve failed (lineax result {outcome})."
        lines.append(f"system {index}: {text}" if codes.shape else text)
    if not lines:
        return "Every system was solved." if codes.shape else "The system was solved."
    return "\n".join(lines)
