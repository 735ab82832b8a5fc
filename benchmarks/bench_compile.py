"""Compile cost of a static pattern: compile time, program size and memory against nnz.

A jitted `value_and_grad` through `x = lx.linear_solve(K, b, lxs.Cholmod())` with respect
to K's values (or what they are assembled from), on a static pattern:

- 2D Poisson on a grid, entries row by row as a stencil code writes them (not CSC order:
  the host gathers them into place), n = 1e4, 1e5 and 1e6; the loss `sum(x**2)`;
- the 3D cantilever of examples/elasticity_3d_petsc.py (8-node hexahedra, K assembled in
  JAX straight into its coalesced pattern), 86 x 43 x 43 elements: 499,488 dofs, 38.9M
  stored entries; the compliance `f @ x` with respect to the element moduli.

The operator reaches the program in one of two ways:

- argument: built outside (`from_pattern`) and passed to the jitted function, its indices
  an argument too (the cantilever: a template operator whose values are replaced inside);
- inside: built in the jitted function by `from_pattern(pattern, values)` from the
  pattern it closes over, as the examples do.

Each configuration runs in a fresh process (`run_child`): the times of lowering and of
compiling (`jax.jit(f).lower(*args).compile()`), the size of the lowered StableHLO text and
of the optimized HLO text (which elides large constants), the largest constant written out
in the lowered text, and the peak resident memory gained while lowering and compiling
(VmHWM reset first). `--run` also times each program's first call (a factorization and
two solves) and reports the process's peak resident memory.

`--src DIR` runs every configuration a second time with another checkout's `src` first on
the path (a `git worktree` of an older commit, say), the two trees in turns, so that the
table compares them at the same load.

    python benchmarks/bench_compile.py                       # Poisson 1e4..1e6, cantilever
    python benchmarks/bench_compile.py --quick               # Poisson 1e3 and 1e4, seconds
    python benchmarks/bench_compile.py --src /tmp/old/src    # the same, beside another tree
    python benchmarks/bench_compile.py --problems cantilever --cantilever 48 24 24 --run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from common import (
    choose,
    command_line,
    examples_on_path,
    format_bytes,
    format_seconds,
    markdown_table,
    PeakMemory,
    pin_blas_threads,
    Report,
    run_child,
    send_result,
)


pin_blas_threads()

POISSON = {"1e4": 100, "1e5": 316, "1e6": 1000}  # grid side: n = side²
QUICK = {"1e3": 32, "1e4": 100}
CANTILEVER = (86, 43, 43)  # 499,488 free dofs


def _poisson(side: int):
    import numpy as np
    import scipy.sparse as sp

    h = 1.0 / (side + 1)
    second = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side))
    eye = sp.identity(side)
    coo = sp.csr_matrix((sp.kron(eye, second) + sp.kron(second, eye)) / h**2).tocoo()
    return coo.data, np.stack([coo.row, coo.col], axis=1).astype(np.int32), coo.shape[0]


def _poisson_program(side: int, mode: str):
    """`(function, arguments, n, nse)` of the Poisson `value_and_grad` step."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import lineax as lx

    import lineax_sparse as lxs

    data, indices, n = _poisson(side)
    pattern = lxs.static_pattern(indices, n)
    tags = lx.positive_semidefinite_tag
    values, b = jnp.asarray(data), jnp.ones(n)

    def loss(op, b):
        x = lx.linear_solve(op, b, solver=lxs.Cholmod()).value
        return jnp.sum(x * x)

    if mode == "argument":
        template = lxs.SparseOperator.from_pattern(pattern, values, tags)

        def step(op, b):
            with_values = lambda v: eqx.tree_at(lambda o: o.data, op, v)  # noqa: E731
            return jax.value_and_grad(lambda v: loss(with_values(v), b))(op.data)

        return step, (template, b), n, indices.shape[0], pattern
    step = jax.value_and_grad(
        lambda v, b: loss(lxs.SparseOperator.from_pattern(pattern, v, tags), b)
    )
    return step, (values, b), n, indices.shape[0], pattern


def _cantilever_program(shape, mode: str):
    """`(function, arguments, n, nse, pattern)` of the cantilever's compliance step."""
    import equinox as eqx
    import jax
    import lineax as lx

    import lineax_sparse as lxs

    examples_on_path()
    import elasticity_3d_petsc as example

    problem, _ = example.cantilever(*shape)
    young = example.moduli(problem)
    solver = lxs.Cholmod()

    def compliance_of(operator, load):  # (`load` an argument: a closed-over one is constant)
        return load @ lx.linear_solve(operator, load, solver=solver).value

    if mode == "argument":
        template = problem.stiffness(young)  # built outside: its indices are an argument

        def step(problem, template, young):
            def compliance(young):
                values = problem.stiffness(young).data  # its own indices are left unused
                operator = eqx.tree_at(lambda o: o.data, template, values)
                return compliance_of(operator, problem.load)

            return jax.value_and_grad(compliance)(young)

        arguments = (problem, template, young)
    else:

        def step(problem, young):
            return jax.value_and_grad(lambda y: problem.compliance(y, solver))(young)

        arguments = (problem, young)
    return eqx.filter_jit(step), arguments, problem.size, problem.pattern.nse, problem.pattern


def measure(config: dict) -> dict:
    """One configuration, in this (fresh) process."""
    import cvxopt  # noqa: F401  (before anything that could load CHOLMOD)
    import equinox as eqx
    import jax

    jax.config.update("jax_enable_x64", True)
    import lineax_sparse

    if config["problem"] == "poisson":
        step, arguments, n, nse, pattern = _poisson_program(config["size"], config["mode"])
        jitted = jax.jit(step)
    else:
        step, arguments, n, nse, pattern = _cantilever_program(config["size"], config["mode"])
        jitted = step
    # Dispatch is asynchronous: the arguments' own computation must not count as ours.
    jax.block_until_ready(eqx.filter(arguments, eqx.is_array))
    with PeakMemory() as memory:
        start = time.perf_counter()
        lowered = jitted.lower(*arguments)
        lowered_at = time.perf_counter()
        text = lowered.as_text()
        compiled = lowered.compile()
        compiled_at = time.perf_counter()
    constants = [len(m) // 2 for m in re.findall(r'dense<"0x([0-9A-Fa-f]*)"', text)]
    result = {
        "n": n,
        "nse": nse,
        "nnz": pattern.nnz,
        "lower": lowered_at - start,
        "compile": compiled_at - lowered_at,
        "lowered_bytes": len(text),
        # (`eqx.filter_jit`'s compiled program wraps JAX's)
        "optimized_bytes": len(getattr(compiled, "compiled", compiled).as_text()),
        "largest_constant": max(constants, default=0),
        "compile_rss": memory.increase(),
        "peak_rss": memory.final,  # the process's, absolute
        "library": os.path.dirname(lineax_sparse.__file__),
    }
    if config.get("run"):
        with PeakMemory() as memory:
            start = time.perf_counter()
            jax.block_until_ready(compiled(*arguments))
            result["first_call"] = time.perf_counter() - start
        result["call_rss"] = memory.increase()
        result["peak_rss"] = max(result["peak_rss"], memory.final)
    return result


def _size(value: float) -> str:
    """Bytes in kB below 1 MB (`format_bytes` rounds those to 0 MB)."""
    return f"{value / 1e3:.0f} kB" if abs(value) < 1e6 else format_bytes(value)


def spawn(config: dict, src: str | None, timeout: float) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return run_child([__file__, "--child", json.dumps(config)], timeout, env=env)


def row(label: str, tree: str, mode: str, result: dict) -> list[str]:
    if "error" in result:
        return [label, tree, mode, "", "", result["error"], "", "", "", ""]
    cells = [
        label,
        tree,
        mode,
        f"{result['n']:,}",
        f"{result['nse']:,}",
        format_seconds(result["lower"] + result["compile"]),
        _size(result["lowered_bytes"]),
        _size(result["optimized_bytes"]),
        _size(result["largest_constant"]),
        _size(max(result["compile_rss"], 0)),  # (VmHWM is reset to the RSS of the moment)
    ]
    if "first_call" in result:
        cells.append(f"{format_seconds(result['first_call'])}, +{_size(result['call_rss'])}")
        cells.append(format_bytes(result["peak_rss"]))
    return cells


def main() -> None:
    parser = command_line(__doc__, quick="Poisson 1e3 and 1e4 only", limit="seconds per child")
    parser.set_defaults(limit=1800.0)
    parser.add_argument("--src", default=None, help="another checkout's src, run in turns")
    parser.add_argument("--run", action="store_true", help="also time each first call")
    parser.add_argument("--problems", default="poisson,cantilever", help="problems to run")
    parser.add_argument(
        "--cantilever",
        type=int,
        nargs=3,
        default=CANTILEVER,
        metavar=("NELX", "NELY", "NELZ"),
        help="the cantilever's elements",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        send_result(measure(json.loads(args.child)))
        return
    problems = choose(parser, args.problems, ("poisson", "cantilever"), "--problems")
    trees = [("this", None)] + ([("other", args.src)] if args.src else [])
    configs = []
    if "poisson" in problems:
        configs += [
            (f"Poisson {name}", {"problem": "poisson", "size": side, "run": args.run})
            for name, side in (QUICK if args.quick else POISSON).items()
        ]
    if not args.quick and "cantilever" in problems:
        shape = list(args.cantilever)
        label = "cantilever " + " x ".join(map(str, shape))
        configs.append((label, {"problem": "cantilever", "size": shape, "run": args.run}))
    report = Report("Compile cost of a static pattern", args.quick, echo=True)
    rows = []
    for label, config in configs:
        for mode in ("argument", "inside"):
            order = trees if len(rows) % 2 == 0 else trees[::-1]  # in turns
            for tree, src in order:
                result = spawn({**config, "mode": mode}, src, args.limit)
                rows.append(row(label, tree, mode, result))
                print(" | ".join(rows[-1]), flush=True)
    header = [
        "problem",
        "tree",
        "operator",
        "n",
        "nse",
        "lower + compile",
        "lowered HLO",
        "optimized HLO",
        "largest constant",
        "peak RSS gained",
    ]
    if args.run:
        header += ["first call, RSS gained", "process peak RSS"]
    source = f"; other tree: {args.src}" if args.src else ""
    report.table(markdown_table(header, rows), f"Each row a fresh process{source}.")
    report.publish(None if args.quick else "compile.md")


if __name__ == "__main__":
    sys.exit(main())
