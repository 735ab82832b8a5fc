"""`host_call`: a pure host callback that hands XLA's buffers to the host as numpy arrays.

`jax.pure_callback` first copies every argument into a new JAX array on the CPU device
(`jax.device_put`) and hands those to the callback, which converts them back to numpy.
For the solve callback (a handle, the matrix's values and indices, the right-hand side)
that copy was measured at 0.2 ms of a 1.2 ms jitted solve at n = 2,025, and a stiff ODE
solve makes thousands of them. `host_call` is the same primitive without the copy: its
lowering emits XLA's Python callback directly (`jax._src.callback.emit_python_callback`,
what `pure_callback` lowers to), so the callback receives numpy views of XLA's buffers.

Those views are valid only during the call: the host side must copy whatever it keeps
(`_host.cache` does: values, indices and auxiliary arrays are copied into the entries and
patterns it files).

Semantics are `pure_callback`'s with `vmap_method="expand_dims"`: no side effects (XLA may
drop or repeat the call), and under `vmap` a batched argument gets its batch axis in front
while an unbatched one gets a leading axis of size 1; one call takes the whole batch.

The primitive uses JAX internals that moved between versions; where they are missing
(another JAX), `host_call` is `jax.pure_callback` itself: same results, the copy paid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


try:  # JAX's internals (present in jax 0.7 .. 0.10)
    from jax._src import dispatch as _dispatch
    from jax._src.callback import emit_python_callback as _emit_python_callback
    from jax._src.interpreters import batching as _batching, mlir as _mlir
    from jax.extend.core import Primitive as _Primitive

    _AVAILABLE = True
except ImportError:  # pragma: no cover - another JAX
    _AVAILABLE = False


def host_call(
    callback: Callable[..., Sequence[np.ndarray]],
    result_shape_dtypes: Sequence[jax.ShapeDtypeStruct],
    *args,
) -> list[jax.Array]:
    """`callback(*args)` on the host, as `jax.pure_callback(..., vmap_method="expand_dims")`.

    `callback` receives numpy arrays (read-only views of XLA's buffers, valid during the
    call) and returns a sequence of arrays of exactly `result_shape_dtypes`.
    """
    if not _AVAILABLE:  # pragma: no cover
        return list(
            jax.pure_callback(
                lambda *a: tuple(callback(*a)),
                tuple(result_shape_dtypes),
                *args,
                vmap_method="expand_dims",
            )
        )
    avals = tuple(
        jax.core.ShapedArray(tuple(s.shape), np.dtype(s.dtype)) for s in result_shape_dtypes
    )
    return _host_call_p.bind(*args, callback=_Callback(callback), result_avals=avals)


class _Callback:
    """The host function as a primitive parameter (compared by identity, as JAX does)."""

    __slots__ = ("fn", "__weakref__")

    def __init__(self, fn: Callable[..., Sequence[np.ndarray]]):
        self.fn = fn

    def __call__(self, *args):
        return tuple(self.fn(*args))


if _AVAILABLE:
    _host_call_p = _Primitive("lineax_sparse_host_call")
    _host_call_p.multiple_results = True

    def _impl(*args, callback, result_avals):
        return _dispatch.apply_primitive(
            _host_call_p, *args, callback=callback, result_avals=result_avals
        )

    def _abstract_eval(*avals, callback, result_avals):
        del avals, callback
        return result_avals

    def _lowering(ctx, *args, callback, result_avals):
        del result_avals
        result, _, _ = _emit_python_callback(
            ctx,
            callback,
            None,
            list(args),
            ctx.avals_in,
            ctx.avals_out,
            has_side_effect=False,
            returns_token=False,
        )
        return result

    def _batch(args, dims, *, callback, result_avals):
        # An argument that is not batched has `None` for its dimension.
        size = next(arg.shape[dim] for arg, dim in zip(args, dims, strict=True) if dim is not None)
        moved = [
            jnp.expand_dims(arg, 0) if dim is None else jnp.moveaxis(arg, dim, 0)
            for arg, dim in zip(args, dims, strict=True)
        ]
        batched_avals = tuple(
            jax.core.ShapedArray((size,) + aval.shape, aval.dtype) for aval in result_avals
        )
        outs = _host_call_p.bind(*moved, callback=callback, result_avals=batched_avals)
        return outs, [0] * len(outs)

    _host_call_p.def_impl(_impl)
    _host_call_p.def_abstract_eval(_abstract_eval)
    _mlir.register_lowering(_host_call_p, _lowering, cacheable=False)
    _batching.primitive_batchers[_host_call_p] = _batch
