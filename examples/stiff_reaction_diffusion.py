"""A stiff 2D reaction-diffusion system with diffrax's Kvaerno5 and a sparse Jacobian.

The Brusselator on the periodic unit square (Hairer and Wanner's BRUSS-2D):

    du/dt = A + u^2 v - (B + 1) u + alpha lap(u)
    dv/dt = B u - u^2 v + alpha lap(v)

on an N x N grid (n = 2 N^2 unknowns; the state is the pytree `(u, v)` of two 2-D arrays),
with u(0) = 22 y (1 - y)^1.5 and v(0) = 27 x (1 - x)^1.5. Kvaerno5 is implicit: at each
step diffrax's `VeryChord` root finder solves with `I - h gamma J`, J the Jacobian of the
vector field. `lxs.Materialise(lxs.SuperLU(), pattern)` materialises it by coloured
Jacobian-vector products (the pattern from `lxs.detect_sparsity`, once) and factorizes it
once per step with SuperLU; every Newton iteration of every stage reuses that factorization.

It then differentiates L(A, B) = mean(u(t1)^2) through the whole integration (diffrax's
default `RecursiveCheckpointAdjoint`) and checks dL/dA against a central finite difference.
diffrax's stage root finds differentiate with optimistix's dense default solver, so the
gradient is taken inside `lxs.sparse_implicit_adjoint(...)`, which makes them sparse too
(without it, n = 32,768 asks for 56 GB). A picture of u(t1) is written.

    python examples/stiff_reaction_diffusion.py            # N = 128, n = 32,768, to t = 0.02
    python examples/stiff_reaction_diffusion.py --t1 1     # the whole pattern forming (minutes)
    python examples/stiff_reaction_diffusion.py --small    # N = 16
"""

from __future__ import annotations

import argparse


OUTPUT = "stiff_reaction_diffusion"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--grid", type=int, default=128, help="grid points per side")
    parser.add_argument(
        "--t1", type=float, default=0.02, help="final time (1.0 shows the whole pattern forming)"
    )
    parser.add_argument("--tolerance", type=float, default=1e-6, help="rtol = atol")
    parser.add_argument("--small", action="store_true", help="grid 16 (a quick check)")
    parser.add_argument("--no-plot", action="store_true", help="write no picture")
    parser.add_argument(
        "--output",
        default=OUTPUT,
        help="picture file prefix; --small appends _small to the default",
    )
    # The namespace's None survives parsing unless --output is given: only then is the
    # prefix the user's (--help shows the default).
    args = parser.parse_args(argv, namespace=argparse.Namespace(output=None))
    if args.output is None:
        args.output = f"{OUTPUT}_small" if args.small else OUTPUT
    if args.grid < 3 or args.t1 <= 0 or args.tolerance <= 0:
        parser.error("need --grid >= 3, --t1 > 0 and --tolerance > 0")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import time  # noqa: E402

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)

ALPHA = 0.002


def vector_field(t, y, args):
    u, v = y
    a, b = args
    grid = u.shape[0]

    def laplacian(w):
        neighbours = jnp.roll(w, 1, 0) + jnp.roll(w, -1, 0) + jnp.roll(w, 1, 1) + jnp.roll(w, -1, 1)
        return (neighbours - 4 * w) * grid**2

    du = a + u**2 * v - (b + 1) * u + ALPHA * laplacian(u)
    dv = b * u - u**2 * v + ALPHA * laplacian(v)
    return du, dv


def initial_state(grid: int):
    x = np.arange(grid) / grid
    x, y = np.meshgrid(x, x, indexing="ij")
    return jnp.asarray(22 * y * (1 - y) ** 1.5), jnp.asarray(27 * x * (1 - x) ** 1.5)


def integrate(params, y0, linear_solver, t1: float, tolerance: float, throw: bool = True):
    """Kvaerno5 with PI step control; `linear_solver` solves the stage systems."""
    root_finder = diffrax.VeryChord(rtol=tolerance, atol=tolerance, linear_solver=linear_solver)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Kvaerno5(root_finder=root_finder),
        0.0,
        t1,
        1e-3,
        y0,
        args=params,
        # PI control (diffrax's advice for stiff problems): fewer rejected steps than I alone.
        stepsize_controller=diffrax.PIDController(
            rtol=tolerance, atol=tolerance, pcoeff=0.3, icoeff=0.3
        ),
        max_steps=100_000,
        throw=throw,
    )


def write_picture(u: np.ndarray, t1: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4.2))
    image = axis.imshow(u.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
    figure.colorbar(image, ax=axis, label="concentration u")
    axis.set_xlabel("x (periodic)")
    axis.set_ylabel("y (periodic)")
    axis.set_title(f"Brusselator: u at t = {t1:g} ({u.shape[0]} x {u.shape[1]} grid)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    grid = 16 if args.small else args.grid
    params = (1.0, 3.4)
    y0 = initial_state(grid)

    start = time.perf_counter()
    pattern = lxs.detect_sparsity(lambda y: vector_field(0.0, y, params), y0)
    detection = time.perf_counter() - start
    linear_solver = lxs.Materialise(lxs.SuperLU(), pattern)
    print(
        f"grid {grid} x {grid}: n = {2 * grid * grid}, Jacobian nonzeros {pattern.nnz} "
        f"(detected in {detection:.2f} s)"
    )

    @eqx.filter_jit
    def final_state(params):
        sol = integrate(params, y0, linear_solver, args.t1, args.tolerance)
        return jax.tree_util.tree_map(lambda leaf: leaf[-1], sol.ys), sol.stats

    start = time.perf_counter()
    state, stats = final_state(params)
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    lxs.clear_cache()
    start = time.perf_counter()
    state, stats = final_state(params)
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - start
    info = lxs.cache_info()
    steps, rejected = int(stats["num_steps"]), int(stats["num_rejected_steps"])
    print(
        f"Kvaerno5 to t = {args.t1:g}: {steps} steps ({rejected} rejected) in {elapsed:.2f} s "
        f"({first:.2f} s with compilation); {info.factorizations} factorizations, "
        f"{info.host_calls} sparse solves, {info.analyses} symbolic analysis"
    )

    def loss(params):
        u, _ = final_state(params)[0]
        return jnp.mean(u**2)

    # diffrax's stage root finds take optimistix's dense implicit adjoint by default: the
    # block makes their backward pass use the same sparse solver as the forward pass.
    with lxs.sparse_implicit_adjoint(linear_solver):
        start = time.perf_counter()
        gradient = eqx.filter_jit(jax.grad(loss))(params)
        jax.block_until_ready(gradient)
        gradient_time = time.perf_counter() - start
    eps = 1e-6
    central = float(
        (loss((params[0] + eps, params[1])) - loss((params[0] - eps, params[1]))) / (2 * eps)
    )
    check = abs(float(gradient[0]) - central) / abs(central)
    print(
        f"dL/dA = {float(gradient[0]):.8e}, dL/dB = {float(gradient[1]):.8e} "
        f"in {gradient_time:.2f} s with compilation; central difference in A {central:.8e}: "
        f"relative difference {check:.2e}"
    )
    u = np.asarray(state[0])
    if not args.no_plot:
        write_picture(u, args.t1, f"{args.output}.png")
        print(f"wrote {args.output}.png")
    print(
        f"stiff_reaction_diffusion N={grid} n={2 * grid * grid} steps={steps} "
        f"rejected={rejected} time_s={elapsed:.3f} u_mean={u.mean():.10f} "
        f"gradient_A={float(gradient[0]):.8e} gradient_check={check:.3e}"
    )


if __name__ == "__main__":
    main()
