"""`status_to_result`: how host outcomes (`Status`) read to a lineax user (`lineax.RESULTS`).

The host never raises for a data-dependent failure; it returns a `Status` per system, and
the solvers report it as lineax does, so that `throw=True` raises lineax's readable error
and `throw=False` returns the code. Several host codes share one lineax result (lineax
has no "not symmetric"): the code itself travels beside it, as `Solution.stats["reason"]`
(`reasons.REASONS` says what each means and what to do).
"""

from __future__ import annotations

import lineax as lx
from jaxtyping import Array, Int

from ..backends.status import Status


#: One source of truth for how host outcomes read to a lineax user (`OK` is `successful`).
STATUS_TO_RESULT = {
    Status.SINGULAR: lx.RESULTS.singular,
    Status.NONFINITE_INPUT: lx.RESULTS.nonfinite_input,
    Status.MAX_STEPS_REACHED: lx.RESULTS.max_steps_reached,
    Status.BREAKDOWN: lx.RESULTS.breakdown,
    # lineax has no "invalid input" result; an out-of-range index is upstream bad input.
    Status.INVALID_INDEX: lx.RESULTS.nonfinite_input,
    # lineax's `singular` message names "declared a property it does not satisfy".
    Status.NOT_POSITIVE_DEFINITE: lx.RESULTS.singular,
    Status.NOT_SYMMETRIC: lx.RESULTS.singular,
    Status.STAGNATED: lx.RESULTS.breakdown,
}


def status_to_result(status: Int[Array, ""]) -> lx.RESULTS:
    """The `lineax.RESULTS` of a host `Status` code (traced, any batch shape)."""
    result = lx.RESULTS.successful
    for code, mapped in STATUS_TO_RESULT.items():
        result = lx.RESULTS.where(status == code, mapped, result)
    return result
