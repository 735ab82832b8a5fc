"""`values_digest`: a 64-bit digest of every bit of an array, for the cache's statistics.

The factor cache tells a miss (a matrix factorized before, whose factorization was dropped)
from a first factorization by a digest of the matrix's values and pattern. It is never used
for correctness: entries are always compared exactly before use.
"""

from __future__ import annotations

import numpy as np


#: Per-position words of the digest, for one block of this many 64-bit words; longer arrays
#: weight each block's sum by a multiplier of its own.
_BLOCK = 1 << 16


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array: a bijective, well-mixed scramble."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


_XOR = splitmix64(np.arange(_BLOCK, dtype=np.uint64))
_WEIGHT = splitmix64(_XOR) | np.uint64(1)


def values_digest(values: np.ndarray) -> int:
    """A 64-bit digest of every bit of `values` and its position (for statistics only).

    Each word is scrambled by a position's random word, then weighted by another (odd)
    one, and summed: a permutation, a swap or a sign flip changes it, where a plain sum of
    the bits did not. 0.14 ms for 400k doubles (a bit sum: 0.05 ms; SHA-256: 1.7 ms).
    """
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(-1)
    head = raw.size - raw.size % 8
    words = raw[:head].view(np.uint64)
    tail = int.from_bytes(raw[head:].tobytes(), "little")
    total = np.uint64((tail * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    full = words.size - words.size % _BLOCK
    with np.errstate(over="ignore"):
        if full:
            blocks = words[:full].reshape(-1, _BLOCK)
            sums = np.add.reduce((blocks ^ _XOR) * _WEIGHT, axis=1, dtype=np.uint64)
            multipliers = splitmix64(np.arange(sums.size, dtype=np.uint64) + np.uint64(7))
            total += np.add.reduce(sums * (multipliers | np.uint64(1)), dtype=np.uint64)
        rest = words[full:]
        count = rest.size
        total += np.add.reduce((rest ^ _XOR[:count]) * _WEIGHT[:count], dtype=np.uint64)
    return int(total)
