"""2D Poisson problem with lineax-sparse: solve, verify, and differentiate through the solve.

Solves -Laplace(u) = f on the unit square with u = 0 on the boundary, using the 5-point
stencil on an N x N grid of interior points (h = 1 / (N + 1)). The source is manufactured
from the exact solution u(x, y) = sin(pi x) sin(pi y), so f = 2 pi^2 u. That u is also an
eigenvector of the discrete Laplacian, so the exact *discrete* solution is known as well: the
script reports the algebraic error of the solve (against the discrete solution, near machine
precision) and the discretization error (against the continuous one, O(h^2): it shrinks about
4x each time N doubles, and error / h^2 stays nearly constant).

It then differentiates L = 0.5 ||u - u_target||^2 with respect to the source f and to the
matrix values, and checks each gradient against a central finite difference along a random
direction.

    python examples/poisson.py            # N = 256 (n = 65536)
    python examples/poisson.py --small    # N = 32
    python examples/poisson.py --n 512
"""

from __future__ import annotations

import argparse


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=256, help="interior grid points per side")
    parser.add_argument("--small", action="store_true", help="N = 32")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls to time")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import sparse as jsparse  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)


def laplacian_2d(grid: int) -> jsparse.BCOO:
    """The 5-point -Laplacian on a `grid` x `grid` interior grid, as an n x n BCOO (n = grid^2).

    Unknown (i, j), at x = (i + 1) h and y = (j + 1) h, is number i * grid + j.
    """
    h = 1.0 / (grid + 1)
    number = np.arange(grid * grid).reshape(grid, grid)
    rows, cols, values = [number.ravel()], [number.ravel()], [np.full(grid * grid, 4.0)]
    # Each pair of neighbours along x and along y couples both ways.
    for first, second in ((number[:-1, :], number[1:, :]), (number[:, :-1], number[:, 1:])):
        rows += [first.ravel(), second.ravel()]
        cols += [second.ravel(), first.ravel()]
        values += [np.full(first.size, -1.0)] * 2
    indices = np.stack([np.concatenate(rows), np.concatenate(cols)], axis=1).astype(np.int32)
    data = jnp.asarray(np.concatenate(values) / h**2)
    return jsparse.BCOO((data, jnp.asarray(indices)), shape=(grid * grid, grid * grid))


def solve(data: jax.Array, indices: jax.Array, f: jax.Array) -> jax.Array:
    n = f.shape[0]
    operator = lxs.SparseOperator(jsparse.BCOO((data, indices), shape=(n, n)))
    return lx.linear_solve(operator, f, solver=lxs.SuperLU()).value


def loss(data: jax.Array, f: jax.Array, indices: jax.Array, target: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((solve(data, indices, f) - target) ** 2)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - start, out


def median_time(fn, *args, repeats: int, refactor: bool) -> float:
    """Median over `repeats` calls; `refactor` clears the cache so that each call factorizes."""
    times = []
    for _ in range(repeats):
        if refactor:
            lxs.clear_cache()
        times.append(timed(fn, *args)[0])
    return statistics.median(times)


def directional_check(loss_fn, gradients, point, direction, eps: float):
    """Compare the gradient along `direction` with a central difference of `loss_fn`.

    `point` and `direction` are (data, f) pairs; returns (gradient, difference, relative error).
    """
    exact = float(sum(jnp.vdot(g, d) for g, d in zip(gradients, direction, strict=True)))
    plus = (p + eps * d for p, d in zip(point, direction, strict=True))
    minus = (p - eps * d for p, d in zip(point, direction, strict=True))
    approximate = float((loss_fn(*plus) - loss_fn(*minus)) / (2 * eps))
    return exact, approximate, abs(approximate - exact) / abs(exact)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    grid = 32 if args.small else args.n

    h = 1.0 / (grid + 1)
    matrix = laplacian_2d(grid)
    n, nnz = matrix.shape[0], matrix.nse
    x = h * np.arange(1, grid + 1)
    x, y = (a.ravel() for a in np.meshgrid(x, x, indexing="ij"))
    u_exact = jnp.asarray(np.sin(np.pi * x) * np.sin(np.pi * y))
    f = 2 * np.pi**2 * u_exact
    discrete_eigenvalue = 8 / h**2 * np.sin(np.pi * h / 2) ** 2
    u_discrete = 2 * np.pi**2 / discrete_eigenvalue * u_exact
    target = jnp.asarray(16 * x * (1 - x) * y * (1 - y))
    print(f"grid {grid} x {grid} interior points, h = {h:.3e}: n = {n}, nnz = {nnz}")

    data, indices = matrix.data, matrix.indices
    solve_jit = jax.jit(solve)
    lxs.clear_cache()
    first_solve, u = timed(solve_jit, data, indices, f)
    warm_solve = median_time(solve_jit, data, indices, f, repeats=args.repeats, refactor=True)
    cached_solve = median_time(solve_jit, data, indices, f, repeats=args.repeats, refactor=False)

    residual = float(jnp.linalg.norm(matrix @ u - f) / jnp.linalg.norm(f))
    algebraic_error = float(jnp.max(jnp.abs(u - u_discrete)) / jnp.max(jnp.abs(u_discrete)))
    discretization_error = float(jnp.max(jnp.abs(u - u_exact)))
    print(f"relative residual ||A u - f|| / ||f||   {residual:.3e}")
    print(f"algebraic error vs discrete solution    {algebraic_error:.3e} (relative, max norm)")
    print(
        f"discretization error vs sin(pi x) sin(pi y)  {discretization_error:.3e} "
        f"(max norm; error / h^2 = {discretization_error / h**2:.4f})"
    )

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    loss_at = jax.jit(lambda data, f: loss(data, f, indices, target))
    lxs.clear_cache()
    first_grad, (value, (grad_data, grad_f)) = timed(value_and_grad, data, f, indices, target)
    warm_grad = median_time(
        value_and_grad, data, f, indices, target, repeats=args.repeats, refactor=True
    )
    print(
        f"loss 0.5 ||u - u_target||^2 = {float(value):.6e}; "
        f"|dL/df| = {float(jnp.linalg.norm(grad_f)):.3e}, "
        f"|dL/d data| = {float(jnp.linalg.norm(grad_data)):.3e}"
    )

    # Random directions scaled like their arguments, so that `eps` is a relative step. L is
    # quadratic in f, so a central difference along f is exact up to rounding and takes a
    # large step; along the matrix values its error is O(eps^2 cond(A)^2), hence a small one.
    key_f, key_data = jax.random.split(jax.random.key(0))
    direction_f = jnp.max(jnp.abs(f)) * jax.random.normal(key_f, f.shape)
    direction_data = data * jax.random.normal(key_data, data.shape)
    checks = {}
    for name, direction, eps in (
        ("f", (jnp.zeros_like(data), direction_f), 1e-4),
        ("data", (direction_data, jnp.zeros_like(f)), 1e-7),
    ):
        exact, approximate, error = directional_check(
            loss_at, (grad_data, grad_f), (data, f), direction, eps
        )
        checks[name] = error
        print(
            f"gradient check w.r.t. {name:4s}: directional derivative {exact:.10e}, "
            f"central difference {approximate:.10e}, relative error {error:.2e}"
        )
    gradient_check = max(checks.values())

    print(
        f"solve:          first call {first_solve:.3f} s (incl. compile), "
        f"median of {args.repeats} warm calls {warm_solve:.3f} s (cache cleared: refactorizes), "
        f"{cached_solve:.3f} s (cached factorization)"
    )
    print(
        f"value_and_grad: first call {first_grad:.3f} s (incl. compile), "
        f"median of {args.repeats} warm calls {warm_grad:.3f} s (cache cleared: refactorizes)"
    )
    print(f"cache (counters since the last clear_cache): {lxs.cache_info()}")
    print(
        f"poisson N={grid} n={n} nnz={nnz} relative_residual={residual:.3e} "
        f"algebraic_error={algebraic_error:.3e} discretization_error={discretization_error:.3e} "
        f"gradient_check={gradient_check:.3e} solve_s={warm_solve:.4f} "
        f"value_and_grad_s={warm_grad:.4f}"
    )


if __name__ == "__main__":
    main()
