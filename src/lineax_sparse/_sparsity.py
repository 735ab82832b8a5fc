"""`detect_sparsity`: the Jacobian sparsity pattern of a JAX function, by asdex.

asdex (Adrian Hill's "Automatic Sparse Differentiation in JAX", the Python counterpart of
Julia's SparseConnectivityTracer) interprets the function's jaxpr over index sets: no
derivative is evaluated, and the pattern is valid for every input (global detection). It
has precise rules for what PDE codes are written with: elementwise functions, broadcasting,
slicing, `pad`, `concatenate`, `reshape`, `jnp.roll`, gathers and scatter-adds with
constant indices, `dot_general` with constant matrices, reductions, `where`, loops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def detect_sparsity(fn: Callable[..., Any], x: Any) -> Any:
    """The sparsity pattern of the Jacobian of `fn` at `x` (valid at every `x`).

    **Arguments:**

    - `fn`: a JAX function of one argument (a pytree: arrays, tuples, dicts), returning a
        pytree. Bind other arguments first: `lambda y: vector_field(t, y, args)`.
    - `x`: an example input (only its structure, shapes and dtypes are used).

    **Returns:**

    An asdex `SparsityPattern` of shape `(outputs, inputs)`, both flattened leaf by leaf in
    `jax.tree_util` order, each leaf raveled (the order [`lineax_sparse.Materialise`][]
    uses). It prints as a picture of the pattern, and `.save(path)` / `.load(path)` keep it.

    **Raises:**

    `ValueError` if `fn` uses a primitive asdex has no rule for: then pass the pattern by
    hand (`Materialise(..., sparsity=scipy_matrix)`).
    """
    try:
        import asdex
    except ImportError as error:  # pragma: no cover - a dependency of lineax-sparse
        raise ImportError("`detect_sparsity` needs asdex: `pip install asdex`.") from error
    try:
        return asdex.jacobian_sparsity(fn, x)
    except NotImplementedError as error:
        raise ValueError(
            f"`detect_sparsity` cannot follow `fn`: {error} Pass the Jacobian's sparsity "
            "pattern by hand instead (a scipy.sparse matrix, a boolean array or "
            "`(rows, cols)` index arrays), to `Materialise(solver, sparsity=...)`."
        ) from error
