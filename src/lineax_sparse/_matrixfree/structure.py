"""`Structure`: a pytree of a given structure as one flat vector, and back.

Pytrees are flattened leaf by leaf in `jax.tree_util` order, each leaf raveled in C order
(the order `jax.flatten_util.ravel_pytree` and asdex use), so that entry `i` of a
materialised matrix's column is entry `i` of the flattened output.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array


class Structure:
    """Flattens a pytree of a given structure into one vector and back, consistently."""

    def __init__(self, structure: Any):
        leaves, self.treedef = jtu.tree_flatten(structure)
        self.shapes = tuple(tuple(leaf.shape) for leaf in leaves)
        self.dtypes = tuple(jnp.dtype(leaf.dtype) for leaf in leaves)
        self.sizes = tuple(int(np.prod(shape, dtype=np.int64)) for shape in self.shapes)
        self.size = int(sum(self.sizes))
        self.dtype = jnp.result_type(*self.dtypes) if leaves else jnp.dtype(jnp.float32)
        self._key = (self.treedef, self.shapes, self.dtypes)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Structure) and self._key == other._key

    def flatten(self, tree: Any, dtype=None) -> Array:
        leaves = self.treedef.flatten_up_to(tree)
        dtype = self.dtype if dtype is None else dtype
        if not leaves:
            return jnp.zeros(0, dtype)
        return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])

    def unflatten(self, vector: Array) -> Any:
        pieces, start = [], 0
        for shape, dtype, size in zip(self.shapes, self.dtypes, self.sizes, strict=True):
            piece = vector[start : start + size].reshape(shape)
            if not jnp.issubdtype(dtype, jnp.complexfloating):
                piece = piece.real
            pieces.append(piece.astype(dtype))
            start += size
        return jtu.tree_unflatten(self.treedef, pieces)

    def with_dtype(self, dtype) -> Structure:
        """The same structure as one flat vector of `dtype` (what an inner solver sees)."""
        return Structure(jax.ShapeDtypeStruct((self.size,), dtype))
