"""The host-side outcome vocabulary every backend shares (never imports jax).

`Status` is the one list of outcome codes a host computation can report (the JAX side maps
them onto `lineax.RESULTS` in `lineax_sparse._bridge.status`); `SolveResult` is the outcome
of a block solve, column by column; `FactorError` is how a backend reports a data-dependent
failure of a factorization.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import numpy as np


class Status(enum.IntEnum):
    """Outcome of one host computation. `OK` must stay 0.

    These codes are also the machine-readable reason of a solve that users read in
    `Solution.stats["reason"]` (explained by `lineax_sparse.explain`): their values never
    change once published.
    """

    OK = 0
    SINGULAR = 1
    NONFINITE_INPUT = 2
    MAX_STEPS_REACHED = 3
    BREAKDOWN = 4
    INVALID_INDEX = 5
    NOT_POSITIVE_DEFINITE = 6
    NOT_SYMMETRIC = 7
    # An iteration that stopped making progress above the requested tolerance.
    STAGNATED = 8


class SolveResult(NamedTuple):
    """Per-column outcome of `AbstractBackend.solve` for a right-hand side block `(n, k)`."""

    solution: np.ndarray  # (n, k)
    status: np.ndarray  # (k,) int32 `Status` codes
    num_steps: np.ndarray  # (k,) int32: iterations, or refinement steps of a direct solve
    relative_residual: np.ndarray  # (k,) float64: |b - op(A) x|_2 / |b|_2


class FactorError(Exception):
    """Raised by `AbstractBackend.factor` for a data-dependent failure (never escapes the host)."""

    def __init__(self, status: Status, message: str = ""):
        super().__init__(message or status.name)
        self.status = status
