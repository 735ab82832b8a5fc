"""`make_handle`: the handle of a matrix, a digest of its values computed in the computation.

The handle only routes a solve to the registry's entry (see `_host.cache`): a 64-bit digest
(two int32, so that it works with `jax_enable_x64` off) of a strided sample of what crosses
to the host: the matrix's values, and its indices or its static pattern's key. Two matrices
with equal handles are told apart on the host by an exact comparison, so a collision costs
a comparison, never a wrong answer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Int

from .._host.patterns import GOLDEN, mix32, PatternKey


#: Entries of each array sampled by `make_handle`; arrays up to this long are digested whole.
HANDLE_SAMPLE = 4096
_SEEDS = (0x3C6EF372, 0xA54FF53A)  # one per half of the handle


_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _words(array: Array) -> Array:
    """The bits of `array` as a flat uint32 vector (complex: real and imaginary parts)."""
    if jnp.iscomplexobj(array):
        array = jnp.stack([array.real, array.imag], axis=-1)
    itemsize = array.dtype.itemsize
    if itemsize >= 4:  # 64-bit: 2 words per entry
        return jax.lax.bitcast_convert_type(array, jnp.uint32).reshape(-1)
    # 8- and 16-bit types (float16, bfloat16, int8, ...): one word per entry.
    return jax.lax.bitcast_convert_type(array, _UNSIGNED[itemsize]).astype(jnp.uint32).reshape(-1)


def _sample(array: Array) -> Array:
    """At most `HANDLE_SAMPLE` evenly strided entries of the leading axis, and the last.

    A strided slice, not a gather: no array of positions enters the compiled program.
    """
    length = array.shape[0]
    if length <= HANDLE_SAMPLE:
        return array
    step = length // HANDLE_SAMPLE
    strided = jax.lax.slice_in_dim(array, 0, step * (HANDLE_SAMPLE - 1) + 1, stride=step)
    return jnp.concatenate([strided, array[length - 1 :]])


def make_handle(
    values: Inexact[Array, " nse"],
    indices: Int[Array, "nse 2"] | None,
    aux: Array | None = None,
    pattern: PatternKey | None = None,
) -> Int[Array, "2"]:
    """The handle of a matrix: a digest of its values and indices (and of the solver's
    auxiliary arrays `aux`, if any), as two int32. With a static pattern, `indices` is
    None and the digest of the pattern's indices (its key's) stands for them.

    Made in the computation (a gather of a few thousand entries and a few integer operations,
    no host call), so that it costs nothing next to a factorization. It only routes: two
    matrices with equal handles are told apart on the host by an exact comparison, so a
    collision costs a comparison, never a wrong answer.
    """
    values, indices, aux = jax.lax.stop_gradient((values, indices, aux))
    parts = [_words(_sample(values))]
    if indices is not None:
        parts.append(_words(_sample(indices)))
        salt = indices.shape[0]
    else:
        salt = pattern.digest[0] if pattern is not None else 0
    if aux is not None:
        parts.append(_words(_sample(aux.reshape(-1))))
    words = jnp.concatenate(parts)
    position = jax.lax.iota(jnp.uint32, words.shape[0]) * jnp.uint32(GOLDEN)
    sizes = jnp.uint32((values.shape[0] * 0x01000193 + salt) & 0xFFFFFFFF)
    halves = [
        jnp.sum(mix32(words ^ mix32(position + jnp.uint32(seed))), dtype=jnp.uint32) ^ sizes
        for seed in _SEEDS
    ]
    return jax.lax.bitcast_convert_type(jnp.stack(halves), jnp.int32)
