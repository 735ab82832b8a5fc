"""lineax's singledispatch functions for `SparseOperator`: structural questions answered from
its tags as `lineax.MatrixLinearOperator` does, and `materialise`/`linearise` as itself
(densifying would defeat it). Registered when `lineax_sparse._operator` is imported."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import lineax as lx

from .operator import SparseOperator


def _is_real(operator: SparseOperator) -> bool:
    return not jnp.issubdtype(operator.data.dtype, jnp.complexfloating)


@lx.linearise.register(SparseOperator)
@lx.materialise.register(SparseOperator)
def _(operator):
    # Already linear and already materialised as sparse arrays; densifying would defeat it.
    return operator


@lx.diagonal.register(SparseOperator)
def _(operator):
    rows, cols, data = operator._entries()
    on_diagonal = jnp.where(rows == cols, rows, operator.size)
    out = jnp.zeros(operator.size, operator.data.dtype)
    return out.at[on_diagonal].add(data, mode="drop")


@lx.tridiagonal.register(SparseOperator)
def _(operator):
    n = operator.size
    rows, cols, data = operator._entries()
    bands = []
    for offset, length in ((0, n), (-1, n - 1), (1, n - 1)):
        target = jnp.where(cols - rows == offset, jnp.minimum(rows, cols), n)
        band = jnp.zeros(length, operator.data.dtype)
        bands.append(band.at[target].add(data, mode="drop"))
    main, lower, upper = bands
    return main, lower, upper


@lx.conj.register(SparseOperator)
def _(operator):
    return eqx.tree_at(lambda op: op.data, operator, operator.data.conj())


@lx.is_symmetric.register(SparseOperator)
def _(operator):
    if lx.symmetric_tag in operator.tags or lx.diagonal_tag in operator.tags:
        return True
    definite = (lx.positive_semidefinite_tag, lx.negative_semidefinite_tag)
    return any(tag in operator.tags for tag in definite) and _is_real(operator)


@lx.is_diagonal.register(SparseOperator)
def _(operator):
    return lx.diagonal_tag in operator.tags or operator.size == 1


@lx.is_tridiagonal.register(SparseOperator)
def _(operator):
    return lx.tridiagonal_tag in operator.tags or lx.diagonal_tag in operator.tags


@lx.has_unit_diagonal.register(SparseOperator)
def _(operator):
    return lx.unit_diagonal_tag in operator.tags


@lx.is_lower_triangular.register(SparseOperator)
def _(operator):
    return lx.lower_triangular_tag in operator.tags or lx.diagonal_tag in operator.tags


@lx.is_upper_triangular.register(SparseOperator)
def _(operator):
    return lx.upper_triangular_tag in operator.tags or lx.diagonal_tag in operator.tags


@lx.is_positive_semidefinite.register(SparseOperator)
def _(operator):
    return lx.positive_semidefinite_tag in operator.tags


@lx.is_negative_semidefinite.register(SparseOperator)
def _(operator):
    return lx.negative_semidefinite_tag in operator.tags
