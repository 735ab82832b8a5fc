"""`detect_sparsity`: the Jacobian sparsity pattern of a JAX function, by asdex.

asdex (Adrian Hill's "Automatic Sparse Differentiation in JAX", the Python counterpart of
Julia's SparseConnectivityTracer) interprets a jaxpr over index sets: no derivative is
evaluated, and the pattern is valid for every input (global detection). It has precise
rules for what PDE codes are written with: elementwise functions, broadcasting, slicing,
`pad`, `concatenate`, `reshape`, `jnp.roll`, gathers and scatter-adds with constant
indices, `dot_general` with constant matrices, reductions, `where`, loops.

What is detected is the map `Materialise` evaluates, not the function's primal
computation: the Jacobian-vector product `v -> jvp(fn, (x,), (v,))[1]` at an unknown `x`
(a `custom_jvp` rule may couple more entries than its primal), or, for functions with a
`custom_vjp` (which have no Jacobian-vector product), the transposed vector-Jacobian
product, which follows the `bwd` rule. Values the function closes over that are traced
(the parameter being differentiated, inside `jit`, `grad` or `vmap`) become opaque inputs
of that map: the pattern holds for every value they may take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jax.core import Tracer
from jax.extend.core import ClosedJaxpr, Jaxpr, jaxpr_as_fun, jaxprs_in_params


def detect_sparsity(fn: Callable[..., Any], x: Any) -> Any:
    """The sparsity pattern of the Jacobian of `fn` at `x` (valid at every `x`).

    **Arguments:**

    - `fn`: a JAX function of one argument (a pytree: arrays, tuples, dicts), returning a
        pytree. Bind other arguments first: `lambda y: vector_field(t, y, args)`. It may
        close over traced values (`lambda y: x * y` inside `jax.jit` or `jax.grad` of a
        loss of `x`): the pattern is then valid for every value they take.
    - `x`: an example input (only its structure, shapes and dtypes are used).

    **Returns:**

    An asdex `SparsityPattern` of shape `(outputs, inputs)`, both flattened leaf by leaf in
    `jax.tree_util` order, each leaf raveled (the order [`lineax_sparse.Materialise`][]
    uses). It prints as a picture of the pattern, and `.save(path)` / `.load(path)` keep it.
    It is the pattern of the derivative JAX computes: of `custom_jvp` rules and of
    `custom_vjp` backward rules where `fn` has them, as `Materialise` evaluates them.

    **Raises:**

    `ValueError` if `fn` uses a primitive asdex has no rule for: then pass the pattern by
    hand (`Materialise(..., sparsity=scipy_matrix)`).
    """
    try:
        import asdex
    except ImportError as error:  # pragma: no cover - a dependency of lineax-sparse
        raise ImportError("`detect_sparsity` needs asdex: `pip install asdex`.") from error
    function = _OpenFunction(fn, x)
    try:
        return function.pattern(asdex)
    except NotImplementedError as error:
        raise ValueError(
            f"`detect_sparsity` cannot follow `fn`: {error} Pass the Jacobian's sparsity "
            "pattern by hand instead (a scipy.sparse matrix, a boolean array or "
            "`(rows, cols)` index arrays), to `Materialise(solver, sparsity=...)`."
        ) from error


def _aval(leaf: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(leaf), jnp.result_type(leaf))


def _zeros(tree: Any) -> Any:
    """Concrete stand-ins of `tree`'s shapes (numpy: never a tracer of an enclosing trace)."""
    return jtu.tree_map(lambda aval: np.zeros(aval.shape, aval.dtype), tree)


#: The primitive of a `jax.custom_vjp` call (older jax versions name it the second).
_CUSTOM_VJP = frozenset({"custom_vjp_call", "custom_vjp_call_jaxpr"})


def _uses_custom_vjp(jaxpr: Jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _CUSTOM_VJP:
            return True
        if any(_uses_custom_vjp(sub) for sub in jaxprs_in_params(eqn.params)):
            return True
    return False


def _inexact(tree: Any) -> bool:
    return all(jnp.issubdtype(leaf.dtype, jnp.inexact) for leaf in jtu.tree_leaves(tree))


class _OpenFunction:
    """`fn` as a jaxpr whose traced closed-over values are inputs.

    asdex reads a jaxpr's constants as numpy arrays (they make gathers and scatters with
    constant indices precise), which a tracer of an enclosing `jit`, `grad` or `vmap`
    cannot be. Those constants become inputs that asdex sees as opaque (no columns, no
    known value); the concrete ones stay constants.
    """

    def __init__(self, fn: Callable[..., Any], x: Any):
        self.in_avals = jtu.tree_map(_aval, x)
        closed, self.out_avals = jax.make_jaxpr(fn, return_shape=True)(self.in_avals)
        self.jaxpr = closed.jaxpr
        self.consts = list(closed.consts)
        self.traced = [isinstance(c, Tracer) for c in self.consts]
        self.opaque_avals = [
            jax.ShapeDtypeStruct(c.aval.shape, c.aval.dtype)
            for c, traced in zip(self.consts, self.traced, strict=True)
            if traced
        ]
        self.out_tree = jtu.tree_structure(self.out_avals)

    def __call__(self, y: Any, opaque: list[Any]) -> Any:
        values = iter(opaque)
        consts = [
            next(values) if traced else const
            for const, traced in zip(self.consts, self.traced, strict=True)
        ]
        outputs = jaxpr_as_fun(ClosedJaxpr(self.jaxpr, consts))(*jtu.tree_leaves(y))
        return jtu.tree_unflatten(self.out_tree, outputs)

    def pattern(self, asdex: Any) -> Any:
        opaque = _zeros(self.opaque_avals)
        example = _zeros(self.in_avals)
        if not (_inexact(self.in_avals) and _inexact(self.out_avals)):
            # No derivative to follow (integer inputs or outputs): the primal's pattern.
            found = asdex.jacobian_sparsity(self, example, opaque, argnums=0)
            rows, cols = found.rows, found.cols
        elif _uses_custom_vjp(self.jaxpr):
            # No Jacobian-vector product exists: `Materialise` can only evaluate the
            # `bwd` rule (vector-Jacobian products, or their transpose for `jac="bwd"`),
            # so that is what is followed; its pattern is the transpose.
            def pullback(cotangent, y, opaque):
                return jax.vjp(lambda z: self(z, opaque), y)[1](cotangent)[0]

            seed = _zeros(self.out_avals)
            found = asdex.jacobian_sparsity(pullback, seed, example, opaque, argnums=0)
            rows, cols = found.cols, found.rows
        else:

            def pushforward(tangent, y, opaque):
                return jax.jvp(lambda z: self(z, opaque), (y,), (tangent,))[1]

            found = asdex.jacobian_sparsity(pushforward, example, example, opaque, argnums=0)
            rows, cols = found.rows, found.cols
        m = sum(int(np.prod(leaf.shape)) for leaf in jtu.tree_leaves(self.out_avals))
        n = sum(int(np.prod(leaf.shape)) for leaf in jtu.tree_leaves(self.in_avals))
        order = np.lexsort((cols, rows))  # row-major, as asdex's own detection emits
        return asdex.SparsityPattern.from_coo(
            np.asarray(rows)[order],
            np.asarray(cols)[order],
            (m, n),
            input_avals=(self.in_avals,),
            argnums=0,
        )
