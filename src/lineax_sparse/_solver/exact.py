"""Exact scaling by powers of two in XLA, subnormal numbers included.

XLA on CPU flushes subnormal numbers to zero in arithmetic, inputs and results alike, so
`jnp.frexp` and `jnp.ldexp` lose them: `jnp.frexp(1e-310)` reads the exponent of zero and
`jnp.ldexp(5e-324, 1074)` returns 5e-324. The dense path of `AutoSparse` (`dense.py`)
scales matrices and right-hand sides as the host does (`backends.numerics.scaling`), so it
reads and writes the bits instead:

- `decompose(x)`: `(m, e)` with `x = m 2^e`, `|m|` in `[0.5, 1)` a normal double (zero,
  infinities and NaN pass through with `e = 0`), for any IEEE floating dtype;
- `compose(y, k, dtype)`: `y 2^k` rounded once, to nearest even, into `dtype`: subnormal
  results keep their bits, results beyond the largest finite value are infinite;
- `power_of_two(k)`: `2^k` as a double, 0 below the normal range and inf above it.

Everything between them (factorizations, products) runs on values in `[2^-1022, 1]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


_UNSIGNED = {16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}
#: The bits of a double below its exponent field, and that field's bias.
_MANTISSA, _BIAS = 52, 1023


def _layout(dtype) -> tuple[int, int, int, int]:
    """`(width, mantissa bits, exponent bits, bias)` of a real IEEE floating dtype."""
    info = jnp.finfo(dtype)
    nexp = int(info.nexp)
    return 8 * jnp.dtype(dtype).itemsize, int(info.nmant), nexp, (1 << (nexp - 1)) - 1


def power_of_two(k: Int[Array, "..."]) -> Float[Array, "..."]:
    """`2.0 ** k` exactly, as a double: 0 for `k < -1022`, inf for `k > 1023`."""
    k = jnp.asarray(k, jnp.int64)
    bits = jnp.clip(k + _BIAS, 0, 2 * _BIAS + 1) << _MANTISSA
    return jax.lax.bitcast_convert_type(bits, jnp.float64)


def decompose(x: Array) -> tuple[Float[Array, "..."], Int[Array, "..."]]:
    """`(m, e)` with `x = m 2^e` and `|m|` in `[0.5, 1)`, read from the bits of a real
    floating `x` (subnormal numbers included); zero, infinities and NaN give `(x, 0)`."""
    width, nmant, nexp, bias = _layout(x.dtype)
    bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[width]).astype(jnp.int64)
    field = (bits >> nmant) & ((1 << nexp) - 1)
    fraction = bits & ((1 << nmant) - 1)
    normal = (field > 0) & (field < (1 << nexp) - 1)
    subnormal = (field == 0) & (fraction > 0)
    # normal: (2^nmant + fraction) 2^(field - bias - nmant); subnormal: fraction
    # 2^(1 - bias - nmant), whose significand has `length` bits.
    length = 64 - jax.lax.clz(fraction)
    significand = jnp.where(normal, fraction | (1 << nmant), fraction)
    digits = jnp.where(normal, nmant + 1, length)
    m = significand.astype(jnp.float64) * power_of_two(-digits)  # exact: < 2^53, scaled
    e = jnp.where(normal, field - bias + 1, length + 1 - bias - nmant)
    m = jnp.where((bits >> (width - 1)) & 1 == 1, -m, m)
    regular = normal | subnormal
    return jnp.where(regular, m, x.astype(jnp.float64)), jnp.where(regular, e, 0).astype(jnp.int32)


def compose(y: Float[Array, "..."], k: Int[Array, "..."], dtype) -> Array:
    """`y 2^k` in the real floating `dtype`, rounded once to nearest even: subnormal
    results keep their bits, results too large for `dtype` are infinite; zero, infinities
    and NaN of the double `y` pass through."""
    m, e = decompose(y)
    width, nmant, nexp, bias = _layout(dtype)
    precision = nmant + 1
    exponent = e.astype(jnp.int64) + jnp.asarray(k, jnp.int64)  # value = m 2^exponent
    significand = jnp.round(jnp.abs(m) * 2.0**53).astype(jnp.int64)  # < 2^53, exact
    # Bits dropped: those beyond `precision`, more below the normal range.
    smallest = 2 - bias  # frexp exponent of the smallest normal number
    drop = 53 - precision + jnp.maximum(0, smallest - exponent)
    drop = jnp.clip(drop, 0, 60)  # a shift of 54 or more leaves 0 either way
    kept = significand >> drop
    rest = significand - (kept << drop)
    half = jnp.where(drop > 0, jnp.int64(1) << jnp.maximum(drop - 1, 0), 0)
    up = (drop > 0) & ((rest > half) | ((rest == half) & (kept & 1 == 1)))
    kept = kept + up.astype(jnp.int64)
    normal = exponent >= smallest
    carry = normal & (kept == (1 << precision))  # rounded up to the next power of two
    kept = jnp.where(carry, kept >> 1, kept)
    exponent = exponent + carry.astype(jnp.int64)
    field = exponent + bias - 1
    overflow = normal & (field >= (1 << nexp) - 1)
    # A subnormal result is its significand alone (one that rounded up to 2^nmant reads as
    # the smallest normal number, which it is).
    magnitude = jnp.where(normal, (field << nmant) | (kept - (1 << nmant)), kept)
    infinity = ((1 << nexp) - 1) << nmant
    magnitude = jnp.where(overflow, infinity, magnitude)
    sign = jnp.where(m < 0, jnp.int64(1) << (width - 1), 0)  # negative for width 64
    bits = sign | magnitude
    if width < 64:
        bits = bits.astype(_UNSIGNED[width])
    out = jax.lax.bitcast_convert_type(bits, dtype)
    special = (m == 0) | ~jnp.isfinite(m)
    return jnp.where(special, y.astype(dtype), out)
