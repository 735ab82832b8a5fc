"""A real matrix from the SuiteSparse collection: solve with SuperLU and differentiate.

Loads a Matrix Market file (default: rajat19, a circuit-simulation matrix, n = 1157,
non-symmetric), solves A x = b with `lineax_sparse.SuperLU` under `jax.jit`, and takes the
gradient of the scalar loss L(A, b) = 0.5 |x - x_target|^2 with respect to the matrix
values *and* the right-hand side with `jax.grad`. Each gradient is checked against a
central finite difference along a random direction, and the solution against scipy's
`spsolve` called directly.

    python examples/real_matrix.py                       # rajat19
    python examples/real_matrix.py --matrix young1c      # complex (acoustics), n = 841
    python examples/real_matrix.py --matrix path/to/any.mtx
    python examples/real_matrix.py --small               # west0479, n = 479

The matrices ship with the project in tests/data (copies from the SuiteSparse collection).
"""

from __future__ import annotations

import argparse


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--matrix", default="rajat19", help="a .mtx path, or the name of one in tests/data"
    )
    parser.add_argument("--small", action="store_true", help="west0479")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import pathlib  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
from jax.experimental import sparse as jsparse  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)

DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"


def load(name: str) -> sp.coo_matrix:
    path = pathlib.Path(name)
    if not path.exists():
        path = DATA / (name if name.endswith(".mtx") else f"{name}.mtx")
    if not path.exists():
        raise SystemExit(
            f"no matrix {name!r}: give a .mtx path or one of "
            f"{sorted(p.stem for p in DATA.glob('*.mtx'))}"
        )
    return sp.coo_matrix(scipy.io.mmread(path))


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    name = "west0479" if args.small else args.matrix
    matrix = load(name)
    n = matrix.shape[0]
    operator = lxs.SparseOperator.from_scipy(matrix)
    dtype = operator.data.dtype
    rng = np.random.default_rng(0)

    def random(shape):
        value = rng.standard_normal(shape)
        if np.issubdtype(dtype, np.complexfloating):
            value = value + 1j * rng.standard_normal(shape)
        return jnp.asarray(value.astype(dtype))

    b, target = random(n), random(n)

    def solve(data, b):
        matrix = jsparse.BCOO((data, operator.indices), shape=(n, n))
        return lx.linear_solve(lxs.SparseOperator(matrix), b, solver=lxs.SuperLU()).value

    def loss(data, b):
        return 0.5 * jnp.sum(jnp.abs(solve(data, b) - target) ** 2)

    x = jax.jit(solve)(operator.data, b)
    reference = spla.spsolve(matrix.tocsc(), np.asarray(b))
    agreement = float(np.linalg.norm(np.asarray(x) - reference) / np.linalg.norm(reference))
    residual = float(np.linalg.norm(matrix @ np.asarray(x) - np.asarray(b)) / np.linalg.norm(b))

    grad_data, grad_b = jax.jit(jax.grad(loss, argnums=(0, 1)))(operator.data, b)
    # Central finite differences along a random direction, over a range of steps: these
    # matrices have condition numbers up to 1e11, so a step small enough for the Taylor
    # expansion and large enough for rounding depends on the matrix. The best agreement
    # over the range is reported; a wrong gradient agrees at no step.
    loss_jit = jax.jit(loss)
    print(
        f"{name}: n={n}, nnz={matrix.nnz}, dtype={dtype}; relative residual {residual:.2e}, "
        f"relative difference to scipy spsolve {agreement:.2e}"
    )
    errors = {}
    for label, gradient, point, which in (
        ("values", grad_data, operator.data, 0),
        ("rhs", grad_b, b, 1),
    ):
        direction = random(point.shape)
        # For a complex input JAX returns g = dL/dRe - i dL/dIm, so the derivative along
        # d is Re(sum(g d)) (for real inputs simply g . d).
        directional = float(jnp.real(jnp.sum(gradient * direction)))
        scale = float(jnp.linalg.norm(point)) / float(jnp.linalg.norm(direction))
        best = (np.inf, np.nan, np.nan)
        for exponent in range(3, 13):
            step = scale * 10.0**-exponent
            args_plus, args_minus = [operator.data, b], [operator.data, b]
            args_plus[which] = point + step * direction
            args_minus[which] = point - step * direction
            finite = float((loss_jit(*args_plus) - loss_jit(*args_minus)) / (2 * step))
            error = abs(directional - finite) / abs(directional)
            best = min(best, (error, finite, 10.0**-exponent))
        errors[label] = best[0]
        print(
            f"  d L / d {label} along a random direction: {directional:.10g}; central "
            f"difference {best[1]:.10g} at relative step {best[2]:.0e} (error {best[0]:.1e})"
        )

    print(
        f"real_matrix matrix={name} n={n} nnz={matrix.nnz} relative_residual={residual:.3e} "
        f"vs_spsolve={agreement:.3e} gradient_values_fd={errors['values']:.3e} "
        f"gradient_rhs_fd={errors['rhs']:.3e}"
    )


if __name__ == "__main__":
    main()
