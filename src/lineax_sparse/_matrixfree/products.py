"""Matrix-free operators as sparse matrices: values by coloured products, verified.

A lineax operator that only knows how to multiply (`FunctionLinearOperator` from
`jax.linearize`, a `JacobianLinearOperator`, sums and compositions of operators) is turned
into a sparse matrix given the sparsity pattern of its matrix (`jacobian.JacobianPattern`,
coloured once per pattern on the host):

1. one product per colour with a seed vector that sums the columns of that colour (forward
   mode, `operator.mv`) or the rows of that colour (reverse mode, `operator.T.mv`), all
   colours at once under `jax.vmap`;
2. the compressed products are gathered into the pattern's values (asdex's
   `decompress_data`): no entry of one colour shares a row (column) with another, so each
   value is read off exactly;
3. one more product in the same `vmap`, with a fixed probe vector, is compared with the
   sparse matrix's: a pattern that misses entries of the operator's matrix (a periodic
   stencil without its wrap-around, a `custom_jvp` rule that couples more than its
   function) would otherwise give a wrong matrix with no signal, so it is a runtime error
   (`eqx.error_if`: the values are traced under `jit`).

Everything here is ordinary JAX: it runs under `jit`, and derivatives flow to whatever the
operator closes over.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.experimental import sparse as jsparse
from jaxtyping import Array

from .jacobian import as_pattern, cached, is_traced, JacobianPattern
from .structure import Structure


def compressed_values(
    operator: lx.AbstractLinearOperator,
    pattern: JacobianPattern,
    inputs: Structure,
    outputs: Structure,
    verify: bool = True,
    argument: str = "sparsity",
) -> Array:
    """The operator's values at the pattern's entries (in pattern order), from one product
    per colour, verified (`verify`) by one more product with a probe vector in the same
    `vmap`: a pattern that misses entries raises a runtime error naming `argument`."""
    import asdex

    coloring = pattern.coloring()
    colours = int(coloring.num_colors)
    dtype = jnp.result_type(inputs.dtype, outputs.dtype)
    seeds = coloring.colors[None, :] == np.arange(colours)[:, None]
    if coloring.mode == "fwd":

        def product(seed):
            return outputs.flatten(operator.mv(inputs.unflatten(seed)), dtype)

    else:
        transposed = operator.transpose()

        def product(seed):
            return inputs.flatten(transposed.mv(outputs.unflatten(seed)), dtype)

    probe = _probe(seeds.shape[1]) if verify else None
    if probe is not None:
        seeds = np.concatenate([seeds, probe[None, :]])
    if seeds.shape[0] == 0:
        return jnp.zeros(0, dtype)
    products = jax.vmap(product)(jnp.asarray(seeds, dtype))
    if pattern.nnz == 0:
        data = jnp.zeros(0, dtype)
    else:
        data = asdex.decompress_data(products[:colours], coloring)
    if probe is None:
        return data
    return _verified(data, products[colours], probe, pattern, coloring.mode, argument)


#: The probe vector's seed: fixed, so that materialising is a deterministic function of the
#: operator (no global random state, the same probe under `jit`, `grad` and `vmap`).
_PROBE_SEED = 20_240_617

#: Relative tolerance of the probe check in units of the dtype's epsilon, capped at
#: sqrt(epsilon) for half precision (where 1024 epsilon is about 1). The check compares
#: two evaluations of the same derivative (the coloured products and the probe's), each
#: rounded by the function's own arithmetic: a few epsilon of the terms, far below it.
#: With probe entries in [1, 2), a missed entry trips it when it is larger than about
#: 2 x 1024 epsilon of the sum of its row's magnitudes: 5e-13 in float64, 2.4e-4 in
#: float32 (6% in float16, 18% in bfloat16).
_PROBE_ULPS = 1024


def _probe(size: int) -> np.ndarray:
    """A fixed vector with entries +-[1, 2): every entry of the matrix weighs at least its
    own size in the product (a normal vector's near-zero entries would hide a missed
    entry of their column), and random signs make cancellation of several missed entries
    in one row a coincidence of measure zero."""

    def make():
        rng = np.random.default_rng(_PROBE_SEED)
        signs = rng.choice(np.array([-1.0, 1.0]), size)
        vector = signs * rng.uniform(1.0, 2.0, size)
        vector.setflags(write=False)
        return vector

    return cached(("probe", size), make)


def _verified(
    data: Array,
    probed: Array,
    probe: np.ndarray,
    pattern: JacobianPattern,
    mode: str,
    argument: str,
) -> Array:
    """`data`, with a runtime error if the sparse matrix's product with `probe` differs from
    the operator's (`probed`) beyond rounding: `A v` row by row for column colourings,
    `A^T w` column by column for row colourings (the product the operator was asked for).

    The tolerance of each row is scaled by its own `(|A| |v|)_i`, which bounds the
    rounding of both sides (`|A v| <= |A| |v|`), never by the row's size relative to other
    rows (rows of a multiphysics Jacobian differ by orders of magnitude);
    `epsilon * max_i (|A| |v|)_i` keeps rows whose terms cancel to nothing from tripping
    on noise. Measured on the tests' problems (diffusion, Brusselator, rows scaled over 30
    orders of magnitude, a diagonal cancelling to 1e-3 of its terms; float32 to
    complex128): differences below 2e-3 of the tolerance. Non-finite values are left to
    the solver, which reports them (`RESULTS.nonfinite_input`).
    """
    assert pattern.shape is not None  # bound to the operator
    rows, cols = jnp.asarray(pattern.rows), jnp.asarray(pattern.cols)
    m, n = pattern.shape
    if mode == "fwd":
        read, write, size, where = cols, rows, m, "rows"
    else:
        read, write, size, where = rows, cols, n, "columns"
    if size == 0:
        return data
    # Rows are sorted (the pattern is row-major): XLA's sorted segment sum is about twice
    # as fast on CPU (2.4 against 4.4 ms for both sums at 8e5 entries).
    by_row = mode == "fwd"
    terms = data * jnp.asarray(probe, data.dtype)[read]
    expected = jax.ops.segment_sum(terms, write, size, indices_are_sorted=by_row)
    magnitude = jax.ops.segment_sum(jnp.abs(terms), write, size, indices_are_sorted=by_row)
    eps = float(jnp.finfo(data.dtype).eps)
    rtol = min(_PROBE_ULPS * eps, eps**0.5)
    tolerance = rtol * magnitude + eps * jnp.max(magnitude)
    wrong = jnp.abs(probed - expected) > tolerance  # NaN compares False: not a pattern error
    where_wrong = ""
    if not is_traced(wrong):  # outside a trace the rows are known now
        found = np.flatnonzero(np.asarray(wrong))
        shown = ", ".join(str(i) for i in found[:8]) + (", ..." if found.size > 8 else "")
        where_wrong = f" (in {where} {shown})"
    message = (
        f"`{argument}` misses nonzero entries of the operator's matrix: the materialised "
        f"matrix's product with a probe vector differs from the operator's beyond "
        f"rounding{where_wrong}, so the matrix, and any solve with it, would be wrong. "
        "Detect the pattern from the code with `lineax_sparse.detect_sparsity(fn, x)`, or "
        "add the missing entries (a periodic stencil couples its first and last points; a "
        "`custom_jvp` rule may couple more entries than its function). If the pattern is "
        "exact and the difference is rounding (a function that cancels large terms), "
        "`verify=False` turns this check off."
    )
    return eqx.error_if(data, jnp.any(wrong), message)


def operator_tags(operator: lx.AbstractLinearOperator) -> frozenset[object]:
    """The structure lineax knows of `operator`, as tags (they carry over)."""
    checks = (
        (lx.is_symmetric, lx.symmetric_tag),
        (lx.is_positive_semidefinite, lx.positive_semidefinite_tag),
        (lx.is_negative_semidefinite, lx.negative_semidefinite_tag),
        (lx.is_diagonal, lx.diagonal_tag),
        (lx.is_lower_triangular, lx.lower_triangular_tag),
        (lx.is_upper_triangular, lx.upper_triangular_tag),
        (lx.has_unit_diagonal, lx.unit_diagonal_tag),
    )
    tags = set()
    for predicate, tag in checks:
        try:
            if predicate(operator):
                tags.add(tag)
        except NotImplementedError:  # an operator lineax has no rule for
            pass
    return frozenset(tags)


def materialise(
    operator: lx.AbstractLinearOperator, sparsity: Any, tags: Any = None, verify: bool = True
) -> tuple[jsparse.BCOO, Any]:
    """The matrix and tags of `SparseOperator.from_operator` (see there), which wraps them."""
    if not isinstance(operator, lx.AbstractLinearOperator):
        raise ValueError(
            "`SparseOperator.from_operator(operator=...)` must be a lineax operator, got "
            f"{type(operator).__name__}."
        )
    inputs, outputs = Structure(operator.in_structure()), Structure(operator.out_structure())
    if inputs.size != outputs.size:
        raise ValueError(
            "`SparseOperator.from_operator` makes square matrices; the operator maps "
            f"{inputs.size} inputs to {outputs.size} outputs. For least squares, solve "
            "with `lineax_sparse.Materialise(...)`, which forms the normal equations."
        )
    pattern = as_pattern(sparsity).bind(outputs.size, inputs.size)
    data = compressed_values(
        operator, pattern, inputs, outputs, verify, "SparseOperator.from_operator(sparsity=...)"
    )
    tags = operator_tags(operator) if tags is None else tags
    bcoo = jsparse.BCOO((data, jnp.asarray(pattern.indices())), shape=pattern.shape)
    return bcoo, tags
