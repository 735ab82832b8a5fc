"""`sparse_implicit_adjoint`: sparse backward passes through diffrax's implicit solvers.

diffrax's implicit Runge-Kutta methods (Kvaerno5, ImplicitEuler, KenCarp, ...) solve each
stage with `optimistix.root_find(...)` and do not pass it an `adjoint`: reverse-mode
differentiation through them uses optimistix's default `ImplicitAdjoint()`, whose linear
solver is lineax's `AutoLinearSolver`, which materialises every stage's Jacobian as a dense
matrix and LU-factorizes it. However sparse the forward pass (`VeryChord(linear_solver=
lxs.Materialise(...))`), `jax.grad` through `diffeqsolve` then costs O(n^3) per stage and
O(n^2) memory: at n = 32,768 it asked for 56 GB.

Neither diffrax nor optimistix has a setting for it, so this context manager changes the
default for the code traced inside it: while it is active, `optimistix.root_find` is a
wrapper that passes `adjoint=optimistix.ImplicitAdjoint(linear_solver=...)` with the given
solver whenever the caller passes no adjoint of its own. The stages' Jacobians
`I - h gamma J` have the forward pass's pattern, so the same `Materialise` serves.

Entering the block clears JAX's caches (`jax.clear_caches()`): a computation traced
earlier (a forward `diffeqsolve`, say) has the dense default baked into its trace, and jit
would otherwise reuse it for the gradient. So the first call inside the block recompiles.
The original `root_find` is always put back. Not thread-safe: do not trace other root
finds in other threads while the block is active.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import jax
import lineax as lx


_lock = threading.Lock()


@contextlib.contextmanager
def sparse_implicit_adjoint(linear_solver: lx.AbstractLinearSolver) -> Iterator[None]:
    """Make reverse-mode derivatives through `optimistix.root_find` use `linear_solver`.

    For diffrax's implicit solvers, whose stage root finds take optimistix's dense default:

    ```python
    linear_solver = lxs.Materialise(lxs.SuperLU(), pattern)
    root_finder = diffrax.VeryChord(rtol=1e-6, atol=1e-6, linear_solver=linear_solver)
    solver = diffrax.Kvaerno5(root_finder=root_finder)
    with lxs.sparse_implicit_adjoint(linear_solver):
        gradient = jax.jit(jax.grad(loss))(params)  # traced (and run) inside the block
    ```

    **Arguments:**

    - `linear_solver`: the linear solver of the implicit function theorem's solves (the
        transposed stage Jacobians), typically the same `Materialise` as the forward pass.

    Affects `optimistix.root_find` calls traced inside the block that pass no `adjoint`
    themselves. Entering it clears JAX's caches (what was traced before has the dense
    default in it), so its first computations recompile. Not thread-safe.
    """
    import optimistix

    if not isinstance(linear_solver, lx.AbstractLinearSolver):
        raise ValueError(
            "`sparse_implicit_adjoint(linear_solver=...)` must be a lineax solver, got "
            f"{type(linear_solver).__name__}."
        )
    adjoint = optimistix.ImplicitAdjoint(linear_solver=linear_solver)
    with _lock:
        original = optimistix.root_find  # (an enclosing block's wrapper, when nested)

        @functools.wraps(original)
        def root_find(*args, **kwargs):
            kwargs.setdefault("adjoint", adjoint)
            return original(*args, **kwargs)

        optimistix.root_find = root_find
        jax.clear_caches()
    try:
        yield
    finally:
        with _lock:
            optimistix.root_find = original
