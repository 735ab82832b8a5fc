"""The factorization statistics each backend reports in `Solution.stats`, known without
importing the backend: the JAX side declares a solve's outputs at trace time, when no native
library may be loaded yet.

One entry per backend package that reports any (name -> shape of an int32 array); the
backend class's `factor_statistics` is this entry (a test checks each class against it).
"""

from __future__ import annotations

from typing import Any


#: Backend package name -> {statistic: shape}.
DECLARED: dict[str, dict[str, tuple[int, ...]]] = {
    # Positive, negative and zero eigenvalues of a symmetric (Hermitian) factorization, and
    # the pivots PARDISO perturbed instead of failing.
    "pardiso": {"inertia": (3,), "perturbed_pivots": ()},
}


def statistics_shapes(spec: tuple[str, Any]) -> dict[str, tuple[int, ...]]:
    """The statistics a backend made from `spec` reports (a fallback spec: those of both of
    its backends, either of which may factorize a matrix)."""
    name, options = spec
    if name == "fallback":
        inner = dict(options)
        return {**statistics_shapes(inner["secondary"]), **statistics_shapes(inner["primary"])}
    return dict(DECLARED.get(name, {}))
