"""Buckling loads of a column from the inertia of its tangent stiffness (Sylvester's law).

An Euler-Bernoulli column (length 1, bending stiffness EI = 1) of cubic Hermite elements
carries the compressive load lambda. Its tangent stiffness K(lambda) = K0 - lambda KG (K0
the bending stiffness, KG the geometric stiffness, both symmetric positive definite once
the supports are imposed) is symmetric and, past the first buckling load, indefinite. By
Sylvester's law of inertia, the number of negative eigenvalues of K(lambda) is the number
of eigenvalues of the generalized problem K0 phi = mu KG phi below lambda: the number of
buckling loads below lambda. `lxs.Pardiso` factorizes K(lambda) as L D L^T and reports
that number in `solution.stats["inertia"]` (positive, negative and zero eigenvalue counts);
a `jax.vmap` over lambda makes one host call factorize a whole batch of K(lambda).

Each buckling load is located by multisection: a batch of loads inside its bracket is
factorized in one vmapped call, and the bracket shrinks to the interval where the count
steps up, `batch + 1` times narrower per call. The loads are checked against Euler's
(k^2 pi^2 EI / L^2 pinned at both ends; (2k - 1)^2 pi^2 EI / (4 L^2) for a cantilever),
which the elements approach as h^4, and against scipy's `eigsh` on the same matrices.

    python examples/buckling_inertia.py                      # 64 elements, pinned-pinned
    python examples/buckling_inertia.py --supports cantilever
    python examples/buckling_inertia.py --small              # 16 elements

It needs MKL PARDISO (the `pardiso` extra) and says so when MKL is absent. Unless
`--no-plot`, it writes `<output>.png` (the negative count against the load); the prefix is
`buckling_inertia`, or `buckling_inertia_small` with `--small`, unless `--output` is given.
"""

from __future__ import annotations

import argparse


OUTPUT = "buckling_inertia"  # default prefix of the PNG
PARDISO_MISSING = (
    "buckling_inertia.py reads the inertia from MKL PARDISO, which is not available here: "
    "install the pardiso extra: pip install -e '.[pardiso]'"
)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with --small and the default prefix applied and the values checked."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--elements", type=int, default=64, help="beam elements")
    parser.add_argument(
        "--supports",
        choices=("pinned", "cantilever"),
        default="pinned",
        help="pinned at both ends, or clamped at one and free at the other",
    )
    parser.add_argument("--loads", type=int, default=3, help="buckling loads to locate")
    parser.add_argument("--batch", type=int, default=15, help="loads per vmapped call")
    parser.add_argument(
        "--rtol", type=float, default=1e-10, help="relative width of the brackets at the end"
    )
    parser.add_argument("--small", action="store_true", help="16 elements")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--output", default=OUTPUT, help="prefix of the PNG; --small appends _small to the default"
    )
    args = parser.parse_args(argv, namespace=argparse.Namespace(output=None))
    if args.output is None:
        args.output = f"{OUTPUT}_small" if args.small else OUTPUT
    if args.small:
        args.elements = 16
    if args.elements < 2 or args.loads < 1 or args.batch < 1:
        parser.error(
            f"need --elements >= 2, --loads >= 1, --batch >= 1; got {args.elements}, "
            f"{args.loads}, {args.batch}"
        )
    if args.loads >= args.elements:
        parser.error(f"--loads {args.loads} needs more than {args.loads} --elements")
    if not 1e-15 < args.rtol < 1:
        parser.error(f"--rtol must lie in (1e-15, 1), got {args.rtol}")
    return args


if __name__ == "__main__":
    # Parsed before JAX is imported: `--help` and a mistyped option answer in 0.1 s, not 2-4 s.
    parse_arguments()

import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import lineax_sparse as lxs  # noqa: E402


jax.config.update("jax_enable_x64", True)


def bending_stiffness(length):
    """The 4 x 4 bending stiffness of a beam element (EI = 1); unknowns w1, theta1, w2, theta2."""
    h = length
    return (
        jnp.array(
            [
                [12, 6 * h, -12, 6 * h],
                [6 * h, 4 * h**2, -6 * h, 2 * h**2],
                [-12, -6 * h, 12, -6 * h],
                [6 * h, 2 * h**2, -6 * h, 4 * h**2],
            ]
        )
        / h**3
    )


def geometric_stiffness(length):
    """The consistent geometric stiffness of a beam element under a unit compressive load."""
    h = length
    return jnp.array(
        [
            [36, 3 * h, -36, 3 * h],
            [3 * h, 4 * h**2, -3 * h, -(h**2)],
            [-36, -3 * h, 36, -3 * h],
            [3 * h, -(h**2), -3 * h, 4 * h**2],
        ]
    ) / (30 * h)


def euler_loads(supports: str, count: int) -> np.ndarray:
    """The exact buckling loads of the column (EI = 1, length 1)."""
    k = np.arange(1, count + 1)
    if supports == "pinned":
        return (k * np.pi) ** 2
    return ((2 * k - 1) * np.pi / 2) ** 2


class Column:
    """The column's two matrices on one static pattern, assembled in JAX."""

    def __init__(self, elements: int, supports: str):
        nodes = elements + 1
        dofs = 2 * np.arange(elements)[:, None] + np.arange(4)[None, :]  # (w, theta) per node
        fixed = [0, 2 * nodes - 2] if supports == "pinned" else [0, 1]  # w at both ends | clamp
        number = np.full(2 * nodes, -1)
        free = np.setdiff1d(np.arange(2 * nodes), fixed)
        number[free] = np.arange(free.size)
        rows = np.repeat(dofs, 4, axis=1).ravel()
        cols = np.tile(dofs, (1, 4)).ravel()
        self.keep = np.flatnonzero((number[rows] >= 0) & (number[cols] >= 0))
        self.indices = np.stack([number[rows[self.keep]], number[cols[self.keep]]], axis=1)
        self.size = int(free.size)
        self.pattern = lxs.static_pattern(self.indices.astype(np.int32), self.size)
        lengths = jnp.full(elements, 1.0 / elements)
        # Element matrices vmapped over the elements, flattened into the pattern's values.
        self.k0 = jax.vmap(bending_stiffness)(lengths).reshape(-1)[self.keep]
        self.kg = jax.vmap(geometric_stiffness)(lengths).reshape(-1)[self.keep]

    def operator(self, load):
        values = self.k0 - load * self.kg
        return lxs.SparseOperator.from_pattern(self.pattern, values, tags=lx.symmetric_tag)

    def scipy_matrices(self):
        """K0 and KG as scipy matrices (duplicates summed), for the independent reference."""
        import scipy.sparse as sp

        rows, cols = self.indices.T
        shape = (self.size, self.size)
        return tuple(
            sp.csc_matrix((np.asarray(values), (rows, cols)), shape=shape)
            for values in (self.k0, self.kg)
        )


def negative_counter(column: Column, solver):
    """A jitted function from a batch of loads to the negative eigenvalue counts of K(load)."""
    rhs = jnp.ones(column.size)

    def count(load):
        # The solution itself is not needed; near a buckling load K is nearly singular,
        # so the solve's own status is not thrown.
        solution = lx.linear_solve(column.operator(load), rhs, solver=solver, throw=False)
        return solution.stats["inertia"][1]

    return jax.jit(jax.vmap(count))


class Counter:
    """Counts the host calls: each is one vmapped batch of factorizations."""

    def __init__(self, column: Column, solver):
        self.function = negative_counter(column, solver)
        self.calls = 0

    def __call__(self, loads: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.asarray(self.function(jnp.asarray(loads, dtype=jnp.float64)))


def multisection(counter, low, high, batch: int, rtol: float):
    """The k-th buckling load for k = 1..len(low), from brackets with
    count(low_k) < k <= count(high_k): each call factorizes `batch` loads per bracket."""
    low, high = np.array(low, dtype=float), np.array(high, dtype=float)
    k = np.arange(1, low.size + 1)[:, None]
    fractions = np.arange(1, batch + 1) / (batch + 1)
    while np.any(high - low > rtol * high):
        points = low[:, None] + (high - low)[:, None] * fractions
        below = counter(points.ravel()).reshape(points.shape) < k
        low = np.where(below.any(axis=1), np.where(below, points, -np.inf).max(axis=1), low)
        high = np.where((~below).any(axis=1), np.where(below, np.inf, points).min(axis=1), high)
    return 0.5 * (low + high)


def first_loads(column: Column, solver, loads: int, batch: int, rtol: float):
    """(the first `loads` buckling loads, the number of host calls)."""
    counter = Counter(column, solver)
    # One call of loads * batch powers of two (up to 2^44 for the defaults) for a load
    # above the `loads`-th buckling load, the same batch size as the multisection's calls.
    high = 1.0
    while True:
        powers = high * 2.0 ** np.arange(loads * batch)
        above = np.flatnonzero(counter(powers) >= loads)
        if above.size:
            high = powers[above[0]]
            break
        high = 2 * powers[-1]
    found = multisection(counter, np.zeros(loads), np.full(loads, high), batch, rtol)
    return found, counter.calls


def pardiso_or_exit():
    solver_class = getattr(lxs, "Pardiso", None)
    if solver_class is None:
        sys.exit(PARDISO_MISSING)
    probe = Column(2, "pinned")
    try:
        solver = solver_class()
        negative_counter(probe, solver)(jnp.zeros(1)).block_until_ready()
    except ImportError as error:
        sys.exit(f"{PARDISO_MISSING}\n({error})")
    return solver


def main(argv: list[str] | None = None) -> None:
    import scipy.sparse.linalg as spla

    args = parse_arguments(argv)
    solver = pardiso_or_exit()
    column = Column(args.elements, args.supports)
    exact = euler_loads(args.supports, args.loads)
    print(
        f"{args.supports} column, {args.elements} Euler-Bernoulli elements: n = {column.size}; "
        f"Euler's loads / pi^2: {np.round(exact / np.pi**2, 6)}"
    )
    start = time.perf_counter()
    found, calls = first_loads(column, solver, args.loads, args.batch, args.rtol)
    seconds = time.perf_counter() - start
    # For the picture: one more call, its points apart from the located loads.
    grid = np.linspace(0, 1.2 * found[-1], 239)
    counts = Counter(column, solver)(grid)
    k0, kg = column.scipy_matrices()
    # One eigenvalue more than located: the picture's counts are checked up to past the last.
    more = min(args.loads + 1, column.size - 1)
    reference = np.sort(spla.eigsh(k0, k=more, M=kg, sigma=0, which="LM")[0])
    mismatches = int(np.count_nonzero(counts != np.searchsorted(reference, grid)))
    reference = reference[: args.loads]
    print(f"{'k':>2s} {'inertia (multisection)':>24s} {'eigsh':>20s} {'Euler':>20s}")
    for k in range(args.loads):
        print(f"{k + 1:2d} {found[k]:24.12f} {reference[k]:20.12f} {exact[k]:20.12f}")
    vs_eigsh = float(np.max(np.abs(found - reference) / reference))
    vs_euler = float(np.max(np.abs(found - exact) / exact))
    print(
        f"{calls} host calls (each a vmapped batch of factorizations), {seconds:.2f} s; "
        f"largest relative difference: {vs_eigsh:.2e} from eigsh, {vs_euler:.2e} from Euler"
    )
    print("refinement: the first load against Euler's, by inertia (error ~ h^4)")
    previous = None
    for elements in (4, 8, 16, 32):
        first = first_loads(Column(elements, args.supports), solver, 1, args.batch, args.rtol)
        error = abs(first[0][0] - exact[0]) / exact[0]
        ratio = "" if previous is None else f"  error ratio {previous / error:5.1f}"
        print(f"  {elements:3d} elements: {first[0][0]:.12f}, relative error {error:.3e}{ratio}")
        previous = error
    if not args.no_plot:
        plot(grid, counts, found, reference, exact, args)
        print(f"wrote {args.output}.png")
    print(
        f"buckling elements={args.elements} n={column.size} supports={args.supports} "
        f"first_load={found[0]:.12g} vs_eigsh={vs_eigsh:.2e} vs_euler={vs_euler:.2e} "
        f"calls={calls} scan_mismatches={mismatches}"
    )


def plot(grid, counts, found, reference, exact, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = np.pi**2
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.step(
        grid / unit,
        counts,
        where="post",
        color="tab:blue",
        label=f"negative count by PARDISO ({grid.size} loads, one vmapped call)",
    )
    for k, load in enumerate(exact):
        axes.axvline(
            load / unit,
            color="gray",
            linestyle="--",
            linewidth=1,
            label="Euler's loads" if k == 0 else None,
        )
    axes.plot(
        found / unit,
        np.arange(1, found.size + 1),
        "o",
        color="tab:red",
        label="located by inertia (multisection)",
    )
    axes.plot(
        reference / unit,
        np.arange(1, found.size + 1),
        "x",
        color="black",
        markersize=9,
        label="scipy eigsh",
    )
    axes.set_xlabel("compressive load λ / (π² EI / L²)")
    axes.set_ylabel("negative eigenvalues of K0 - λ KG")
    axes.set_yticks(np.arange(0, counts.max() + 1))
    axes.set_title(
        f"{args.supports} column, {args.elements} elements: inertia of the tangent stiffness"
    )
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(f"{args.output}.png", dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
