"""Nonlinear diffusion with optimistix's Newton method and a sparse Jacobian.

Solves -div((1 + u^2) grad u) = f on the unit square, u = 0 on the boundary, on an N x N
grid of interior points (finite volumes: face conductivities are averages of the cell
values). The residual is plain JAX; optimistix's `Newton` linearises it and hands its
linear solver a matrix-free `FunctionLinearOperator`. `lxs.Materialise(lxs.SuperLU(),
pattern)` turns that into a sparse matrix by coloured Jacobian-vector products (the
pattern comes from `lxs.detect_sparsity`, once) and factorizes it with SuperLU, the symbolic
work reused at every Newton step.

The source is manufactured from u*(x, y) = sin(pi x) sin(pi y):
f = 2 pi^2 u* (1 + u*^2) - 2 pi^2 u* (cos(pi x)^2 sin(pi y)^2 + sin(pi x)^2 cos(pi y)^2),
so the error against u* is the discretization error, O(h^2).

It then differentiates L(a) = sum(u^2) h^2, where a scales the source, through the root find
with `optx.ImplicitAdjoint(linear_solver=lxs.Materialise(...))` (one transposed sparse solve),
and checks it against a central finite difference.

    python examples/nonlinear_diffusion.py              # N = 200, n = 40,000
    python examples/nonlinear_diffusion.py --small      # N = 24
    python examples/nonlinear_diffusion.py --dense      # also lineax's dense default (small N!)
"""

from __future__ import annotations

import argparse


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--grid", type=int, default=200, help="interior points per side")
    parser.add_argument("--small", action="store_true", help="grid 24 (a quick check)")
    parser.add_argument(
        "--dense", action="store_true", help="also time lineax's dense default (O(n^3))"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import time  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optimistix as optx  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)


def residual(u_flat: jax.Array, args) -> jax.Array:
    """-div((1 + u^2) grad u) - f, with u = 0 outside the grid."""
    f, grid = args[0], args[1].shape[0]
    h = 1.0 / (grid + 1)
    u = jnp.pad(u_flat.reshape(grid, grid), 1)
    conductivity = 1 + u**2
    across_x = 0.5 * (conductivity[1:, 1:-1] + conductivity[:-1, 1:-1])
    across_y = 0.5 * (conductivity[1:-1, 1:] + conductivity[1:-1, :-1])
    flux_x = across_x * (u[1:, 1:-1] - u[:-1, 1:-1])
    flux_y = across_y * (u[1:-1, 1:] - u[1:-1, :-1])
    divergence = (flux_x[1:] - flux_x[:-1]) + (flux_y[:, 1:] - flux_y[:, :-1])
    return (-divergence / h**2).ravel() - f


def manufactured(grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(u*, f) at the grid points, flattened."""
    x = np.arange(1, grid + 1) / (grid + 1)
    x, y = np.meshgrid(x, x, indexing="ij")
    sx, sy, cx, cy = np.sin(np.pi * x), np.sin(np.pi * y), np.cos(np.pi * x), np.cos(np.pi * y)
    u = sx * sy
    f = 2 * np.pi**2 * u * (1 + u**2) - 2 * np.pi**2 * u * (cx**2 * sy**2 + sx**2 * cy**2)
    return u.ravel(), f.ravel()


def newton(linear_solver, grid: int, rtol: float = 1e-10) -> optx.Newton:
    """Newton to `rtol`. optimistix also asks |residual| <= atol, and the residual of a
    converged solution is rounding, about eps * 4 / h^2 (1.4e-10 at grid = 400): atol stays
    a hundred times above that floor, so that Newton can stop at every grid size."""
    floor = 100 * np.finfo(np.float64).eps * 4 * (grid + 1) ** 2
    return optx.Newton(rtol=rtol, atol=max(rtol, floor), linear_solver=linear_solver)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    grid = 24 if args.small else args.grid
    n = grid * grid
    h = 1.0 / (grid + 1)
    u_exact, f = manufactured(grid)
    f = jnp.asarray(f)
    shape_marker = jnp.zeros((grid, 0))  # carries the grid size through `args`

    start = time.perf_counter()
    pattern = lxs.detect_sparsity(lambda u: residual(u, (f, shape_marker)), jnp.zeros(n))
    detection = time.perf_counter() - start
    linear_solver = lxs.Materialise(lxs.SuperLU(), pattern)
    print(
        f"grid {grid} x {grid}: n = {n}, Jacobian nonzeros {pattern.nnz} "
        f"(detected in {detection:.2f} s)"
    )

    @eqx.filter_jit
    def solve(scale, linear_solver):
        sol = optx.root_find(
            residual,
            newton(linear_solver, grid),
            jnp.zeros(n),
            (scale * f, shape_marker),
            adjoint=optx.ImplicitAdjoint(linear_solver=linear_solver),
        )
        return sol.value, sol.stats["num_steps"]

    start = time.perf_counter()
    u, steps = solve(1.0, linear_solver)
    u.block_until_ready()
    first = time.perf_counter() - start
    lxs.clear_cache()
    start = time.perf_counter()
    u, steps = solve(1.0, linear_solver)
    u.block_until_ready()
    elapsed = time.perf_counter() - start
    info = lxs.cache_info()
    error = float(np.max(np.abs(np.asarray(u) - u_exact)))
    final = float(jnp.max(jnp.abs(residual(u, (f, shape_marker)))))
    print(
        f"Newton: {int(steps)} iterations in {elapsed:.3f} s ({first:.2f} s with compilation); "
        f"{info.factorizations} factorizations, {info.analyses} symbolic analysis; "
        f"max |residual| {final:.2e}"
    )
    print(f"error against sin(pi x) sin(pi y): {error:.3e} (error / h^2 = {error / h**2:.4f})")

    def loss(scale):
        value, _ = solve(scale, linear_solver)
        return jnp.sum(value**2) * h**2

    start = time.perf_counter()
    gradient = float(eqx.filter_jit(jax.grad(loss))(1.0))
    gradient_time = time.perf_counter() - start
    eps = 1e-5
    central = float((loss(1.0 + eps) - loss(1.0 - eps)) / (2 * eps))
    check = abs(gradient - central) / abs(central)
    print(
        f"dL/da = {gradient:.10e} (implicit adjoint, {gradient_time:.2f} s incl. compilation); "
        f"central difference {central:.10e}: relative difference {check:.2e}"
    )
    if args.dense:
        dense = lx.AutoLinearSolver(well_posed=None)
        solve(1.0, dense)[0].block_until_ready()
        start = time.perf_counter()
        u_dense, _ = solve(1.0, dense)
        u_dense.block_until_ready()
        dense_time = time.perf_counter() - start
        print(
            f"lineax's dense default: {dense_time:.3f} s ({dense_time / elapsed:.0f}x ours), "
            f"max difference {float(jnp.max(jnp.abs(u_dense - u))):.2e}"
        )
    print(
        f"nonlinear_diffusion N={grid} n={n} iterations={int(steps)} error={error:.4e} "
        f"residual={final:.3e} time_s={elapsed:.4f} gradient={gradient:.8e} "
        f"gradient_check={check:.3e}"
    )


if __name__ == "__main__":
    main()
