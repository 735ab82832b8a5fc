"""Direct solvers natively and through lineax-sparse: factorization + one solve, as ratios.

Every cell is one full factorization and one solve of a fresh matrix (the values scaled by
a factor 1 + 1e-3 k never used before, and lineax-sparse's cache cleared before each of our
calls: ordering, analysis, factorization, checks and the solve are all timed, as they are
in a native call). The solvers of a system take turns within each repetition (every other
turn in reverse order), after one untimed warm-up call that includes compilation; medians.
One BLAS thread everywhere (`OPENBLAS_NUM_THREADS=1`, MKL and OpenMP held to one thread).

Columns, native: scipy's `splu` with the ordering our `SuperLU()` takes and with COLAMD;
cvxopt's UMFPACK (`symbolic` + `numeric` + `solve`) and the raw UMFPACK and PARDISO bindings
our backends call; cvxopt's CHOLMOD (symmetric positive definite rows only); KLU through
`klujax`. Ours: the jitted `lx.linear_solve(operator, b, solver)` with `SuperLU()`,
`UMFPACK()`, `Pardiso()`, `Cholmod()` (SPD rows) and `AutoSparse()`, the operator tagged as
the system is (SPD: positive semidefinite and symmetric; symmetric indefinite and complex
symmetric: symmetric; general: nothing). Every answer is checked: its relative residual
|b - A x| / |b| is printed, and a time whose residual exceeds 1e-6 is marked and left out
of the ratios. A solver that does not apply shows "—"; one whose package is absent says so.

Rows (`--parts`): the real matrices of tests/data (`data`), the Taylor-Hood Stokes saddle
point of examples/stokes_flow.py at n = 50,177 and 201,602 (`stokes-50k`, `stokes-200k`),
3D hexahedral elasticity with one face clamped, 27³ elements, n = 63,504 (`elasticity`), a
complex symmetric Helmholtz operator on a 256² grid (`helmholtz`), 2D Poisson on 512²
(`poisson`), and general systems of growing size, convection-diffusion and Stokes left
untagged (`sizes`: where `AutoSparse` moves from SuperLU to UMFPACK). SuperLU (native and
ours) is skipped above `--superlu-max` unknowns and KLU
above `--klu-max`; by default SuperLU only on the 2e5 Stokes row (about 80 s per call)
and KLU only on the 3D elasticity row (KLU has no supernodes: one call there ran for
minutes without finishing). A solver whose warm-up call exceeds `--limit` seconds is not
repeated (its cell shows that one call, compilation included for the jitted ones).

    python benchmarks/bench_direct.py                       # every row (SuperLU not at 2e5)
    python benchmarks/bench_direct.py --parts stokes-200k --superlu-max 0 --repeats 3
    python benchmarks/bench_direct.py --quick               # small sizes, under a minute
    python benchmarks/bench_direct.py --parts data --solvers klu,superlu,auto   # a subset
    python benchmarks/bench_direct.py --parts sizes --solvers superlu,umfpack,auto
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any


# PARDISO's threads (MKL, OpenMP) and lineax-sparse's (our Pardiso runs on that many).
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LINEAX_SPARSE_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from common import (  # noqa: E402
    choose,
    command_line,
    error_text,
    examples_on_path,
    Failure,
    format_seconds,
    load_text,
    markdown_table,
    pin_blas_threads,
    Report,
    Step,
    time_interleaved,
    Timing,
)


pin_blas_threads()  # before numpy loads OpenBLAS
examples_on_path()

import cvxopt  # noqa: E402, F401  (first: it and lineax-sparse share CHOLMOD's shared object)
import jax  # noqa: E402


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from common import natives  # noqa: E402
from common.report import ROOT  # noqa: E402
from problems import poisson_2d  # noqa: E402


PARTS = ("data", "stokes-50k", "stokes-200k", "elasticity", "helmholtz", "poisson", "sizes")
#: The `sizes` rows: where an untagged system is better factorized by UMFPACK than SuperLU
#: (`AutoSparse`'s `UMFPACK_FROM`): convection-diffusion m² and Stokes N² left untagged.
CONVECTION_SIZES = (24, 40, 64, 100, 160, 256)
STOKES_SIZES = (6, 10, 16, 24, 40)
DATA = ("494_bus", "bcsstk13", "west0479", "rajat19", "young1c", "hangGlider_2")
KINDS = ("spd", "symmetric", "general")
TAGS = {"spd": (lx.positive_semidefinite_tag, lx.symmetric_tag), "symmetric": lx.symmetric_tag}
RESIDUAL_LIMIT = 1e-6


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    matrix: sp.csc_matrix | None  # None: unavailable, `note` says why
    kind: str  # one of KINDS
    note: str = ""
    part: str = ""  # the `--parts` name it belongs to


# --- Systems.


def data_system(name: str) -> System:
    matrix = sp.csc_matrix(scipy.io.mmread(ROOT / "tests" / "data" / f"{name}.mtx"))
    symmetric = abs(matrix - matrix.T).max() == 0
    kind = "spd" if name in ("494_bus", "bcsstk13") else "symmetric" if symmetric else "general"
    return System(name, matrix, kind)


def stokes_system(cells: int) -> System:
    name = f"Stokes P2-P1 {cells}²"
    try:
        from stokes_flow import stokes_system as build
    except ImportError as error:
        return System(name, None, "symmetric", f"unavailable ({error_text(error, 80)})")
    matrix, _ = build(cells)
    matrix = sp.csc_matrix(matrix)
    notes = [f"{np.count_nonzero(matrix.data == 0):,} stored zeros kept"]
    asymmetry = abs(matrix - matrix.T).max()
    if asymmetry > 0:  # rounding in the assembly: Pardiso's L D L^T refuses "not symmetric"
        notes.append(f"|A - A^T| ≤ {asymmetry:.1e} as built, symmetrized: (A + A^T) / 2")
        coo = matrix.tocoo()  # the sum of COO duplicates keeps the stored zeros
        rows, cols = np.concatenate([coo.row, coo.col]), np.concatenate([coo.col, coo.row])
        halves = np.concatenate([coo.data, coo.data]) / 2
        matrix = sp.csc_matrix((halves, (rows, cols)), shape=matrix.shape)
    return System(f"{name} (n = {matrix.shape[0]:,})", matrix, "symmetric", "; ".join(notes))


def elasticity_system(cells: int) -> System:
    """Trilinear hexahedra on a `cells`³ cube (E = 1, nu = 0.3), the face x = 0 clamped:
    n = 3 cells (cells + 1)² (63,504 at 27)."""
    from top3d_native import Cantilever, element_stiffness

    mesh = Cantilever.build(cells, cells, cells)
    values = np.tile(element_stiffness().reshape(-1), cells**3)
    keep = (mesh.rows >= 0) & (mesh.cols >= 0)
    coo = sp.coo_matrix((values[keep], (mesh.rows[keep], mesh.cols[keep])), shape=(mesh.n,) * 2)
    return System(f"elasticity 3D hex {cells}³", sp.csc_matrix(coo), "spd")


def helmholtz_system(grid: int) -> System:
    """-Δ_h - k² (1 + i σ) on a `grid`² interior grid of the unit square: ten points per
    wavelength, σ = 0.01 inside and rising quadratically to 1 in an absorbing layer a
    tenth of the side wide. Complex symmetric (A = A^T), not Hermitian."""
    h = 1.0 / (grid + 1)
    k = 2 * np.pi / (10 * h)
    x = np.arange(1, grid + 1) * h
    depth = np.maximum(0.0, 0.1 - np.minimum(x, 1 - x)) / 0.1
    sigma = 0.01 + np.maximum.outer(depth, depth).reshape(-1) ** 2
    shift = sp.diags_array(k**2 * (1 + 1j * sigma))
    return System(f"Helmholtz {grid}²", sp.csc_matrix(poisson_2d(grid) - shift), "symmetric")


def convection_diffusion_system(grid: int) -> System:
    """Upwind convection-diffusion, wind (1, 1), Péclet 0.8 per cell, on a `grid`² grid:
    a symmetric pattern with non-symmetric values."""
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(grid, grid))
    upwind = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(grid, grid))
    eye = sp.eye_array(grid)
    matrix = sp.kron(eye, t) + sp.kron(t, eye) + 0.8 * (sp.kron(eye, upwind) + sp.kron(upwind, eye))
    return System(
        f"convection-diffusion {grid}² (n = {grid * grid:,})", sp.csc_matrix(matrix), "general"
    )


def size_systems(quick: bool) -> list[System]:
    """General systems of growing size, the saddle points untagged (as without MKL)."""
    rows = [convection_diffusion_system(m) for m in CONVECTION_SIZES[: 3 if quick else None]]
    for cells in STOKES_SIZES[: 2 if quick else None]:
        stokes = stokes_system(cells)
        rows.append(dataclasses.replace(stokes, name=stokes.name + ", untagged", kind="general"))
    return rows


def systems(part: str, quick: bool) -> list[System]:
    if part == "sizes":
        return size_systems(quick)
    if part == "data":
        return [data_system(name) for name in DATA]
    if part == "stokes-50k":
        return [stokes_system(12 if quick else 75)]
    if part == "stokes-200k":
        return [stokes_system(20 if quick else 150)]
    if part == "elasticity":
        return [elasticity_system(8 if quick else 27)]
    if part == "helmholtz":
        return [helmholtz_system(64 if quick else 256)]
    return [System(f"Poisson {128 if quick else 512}²", poisson_2d(128 if quick else 512), "spd")]


# --- Columns: each a way to factorize and solve one system.


@dataclasses.dataclass(frozen=True)
class Column:
    """`prepare(scale)` builds the inputs of one call for the matrix scaled by `scale`
    (untimed); `solve(inputs)` is timed and returns x as a NumPy vector."""

    prepare: Callable[[float], Any]
    solve: Callable[[Any], np.ndarray]


#: Header -> (native?, the solver of ours or how to build the native).
NATIVE = ("splu (ours' ordering)", "splu COLAMD", "UMFPACK cvxopt", "UMFPACK raw", "PARDISO raw")
NATIVE += ("CHOLMOD cvxopt", "KLU klujax")
OURS = ("SuperLU", "UMFPACK", "Pardiso", "Cholmod", "AutoSparse")
DASH = "—"


def ours_solver(name: str) -> Any:
    """Our solver of that name, or why it cannot be had."""
    solver = getattr(lxs, name, None)
    return solver() if solver is not None else f"lxs.{name} not in this lineax-sparse"


def native(name: str, kind: str) -> natives.Native | str:
    if name.startswith("splu"):
        return natives.superlu("COLAMD" if "COLAMD" in name else None)
    if name == "UMFPACK cvxopt":
        return natives.cvxopt_umfpack()
    if name == "UMFPACK raw":
        return natives.raw_umfpack()
    if name == "PARDISO raw":
        return natives.raw_pardiso(kind)
    if name == "CHOLMOD cvxopt":
        return natives.cvxopt_cholmod()
    return natives.klu()


def scaled(matrix: sp.csc_matrix, scale: float) -> sp.csc_matrix:
    return sp.csc_matrix((matrix.data * scale, matrix.indices, matrix.indptr), matrix.shape)


def native_column(library: natives.Native, matrix: sp.csc_matrix, b: np.ndarray) -> Column:
    return Column(lambda scale: library.prepare(scaled(matrix, scale), b), library.solve)


def ours_column(solver: Any, operator: lxs.SparseOperator, b: jax.Array) -> Column:
    @jax.jit
    def run(operator, b):
        solution = lx.linear_solve(operator, b, solver, throw=False)
        return solution.value, solution.result, solution.stats.get("reason")

    def prepare(scale: float):
        copy = eqx.tree_at(lambda op: op.data, operator, operator.data * scale)
        # `release()` cleared the cache: nothing of an earlier call is reused, as natively.
        return jax.block_until_ready(copy)

    def solve(copy):
        value, result, reason = run(copy, b)
        if result != lx.RESULTS.successful:
            code = int(np.asarray(reason).reshape(-1)[0]) if reason is not None else -1
            found = lxs.REASONS.get(code)
            raise RuntimeError(f"{found.name if found else 'reason ' + str(code)} (lineax result)")
        return np.asarray(value)

    return Column(prepare, solve)


#: `--solvers` names -> column.
SOLVERS = dict(
    zip(
        ("splu", "splu-colamd", "umfpack-cvxopt", "umfpack-raw", "pardiso-raw", "cholmod-cvxopt")
        + ("klu", "superlu", "umfpack", "pardiso", "cholmod", "auto"),
        NATIVE + OURS,
        strict=True,
    )
)


def _limit(given: int | None, slow_row: bool) -> int:
    """The `--superlu-max` / `--klu-max` for a row: as given, else 1 on a slow row (at its
    full size: `--quick` skips nothing by default)."""
    return given if given is not None else 1 if slow_row else 0


def _skipped(flag: str, given: int | None) -> str:
    if given is None:
        return f"skipped: too slow on this row ({flag} 0 runs it)"
    return f"skipped (n > {flag} {given:,})"


def make_columns(system: System, b: np.ndarray, args) -> dict[str, Column | str]:
    """Every column for `system`: a `Column`, or the text of its cell (why it is absent)."""
    matrix, kind = system.matrix, system.kind
    n = matrix.shape[0]
    operator = lxs.SparseOperator.from_scipy(matrix, tags=TAGS.get(kind, ()))
    b_jax = jax.numpy.asarray(b)
    columns: dict[str, Column | str] = {}
    limits = {  # the largest n each runs on (0: any); by default, rows where it is too slow
        "SuperLU": _limit(args.superlu_max, system.part == "stokes-200k" and not args.quick),
        "KLU": _limit(args.klu_max, system.part == "elasticity" and not args.quick),
    }
    for name in NATIVE + OURS:
        if name not in args.columns:
            columns[name] = "not asked"
        elif "holmod" in name.lower() and kind != "spd":
            columns[name] = DASH
        elif ("splu" in name or name == "SuperLU") and 0 < limits["SuperLU"] < n:
            columns[name] = _skipped("--superlu-max", args.superlu_max)
        elif name == "KLU klujax" and 0 < limits["KLU"] < n:
            columns[name] = _skipped("--klu-max", args.klu_max)
        else:
            made = ours_solver(name) if name in OURS else native(name, kind)
            if isinstance(made, str):
                columns[name] = made
            elif name in OURS:
                columns[name] = ours_column(made, operator, b_jax)
            else:
                columns[name] = native_column(made, matrix, b)
    return columns


# --- Timing in turns, each answer checked.


#: The inputs of the calls made (with the factors they hold), dropped before the next
#: step's set-up: nothing of a call stays in memory during the next, and freeing it is
#: untimed for every solver alike (ours too: the cache is cleared there).
SPENT: list[Any] = []


def release() -> None:
    SPENT.clear()
    lxs.clear_cache()


class Tracked:
    """A column as a `Step`: fresh values for every call, failures and slow warm-ups
    recorded (the column then sits out the later turns), the last answer kept."""

    def __init__(self, column: Column, scales, limit: float):
        self.column, self.scales, self.limit = column, scales, limit
        self.failure: str | None = None
        self.calls = 0
        self.slow = False
        self.last: tuple[float, np.ndarray] | None = None
        self.inputs = None

    @property
    def active(self) -> bool:
        return self.failure is None and not self.slow

    def setup(self) -> None:
        release()
        if self.active:
            self.scale = next(self.scales)
            self.inputs = self.column.prepare(self.scale)

    def call(self) -> Any:
        if not self.active:
            return None
        start = time.perf_counter()
        try:
            x = self.column.solve(self.inputs)
        except Exception as error:  # noqa: BLE001 - a failure is a table cell
            self.failure = f"failed: {error_text(error, 100)}"
            return None
        finally:
            SPENT.append(self.inputs)  # freed, untimed, before the next step
            self.inputs = None
        self.calls += 1
        self.last = (self.scale, x)
        if self.calls == 1 and time.perf_counter() - start > self.limit:
            self.slow = True
        return x

    def result(self, timing: Timing) -> Timing | Failure:
        if self.failure is not None:
            return Failure(self.failure)
        return Timing.once(timing.first) if self.slow else timing


def relative_residual(matrix: sp.csc_matrix, b: np.ndarray, last) -> float:
    if last is None:
        return float("nan")
    scale, x = last
    return float(np.linalg.norm(b - scale * (matrix @ x)) / np.linalg.norm(b))


def run_system(system: System, args, repeats: int) -> dict[str, Any]:
    """{column: Timing | Failure | text} and {column: relative residual} of `system`."""
    matrix = system.matrix
    rng = np.random.default_rng(0)
    b = rng.standard_normal(matrix.shape[0])
    if np.iscomplexobj(matrix.data):
        b = b + 1j * rng.standard_normal(matrix.shape[0])
    columns = make_columns(system, b, args)
    counter = iter(range(1, 10**9))
    scales = iter(lambda: 1 + 1e-3 * next(counter), None)  # shared: never the same twice
    tracked = {
        name: Tracked(column, scales, args.limit)
        for name, column in columns.items()
        if isinstance(column, Column)
    }
    steps = {name: Step(t.call, t.setup) for name, t in tracked.items()}
    timings = time_interleaved(steps, repeats, alternate=True)
    release()
    cells: dict[str, Any] = {}
    residuals: dict[str, float] = {}
    for name, column in columns.items():
        if name not in tracked:
            cells[name] = column
            continue
        cells[name] = tracked[name].result(timings[name])
        residuals[name] = relative_residual(matrix, b, tracked[name].last)
    slow = {name for name, t in tracked.items() if t.slow}
    return {"cells": cells, "residuals": residuals, "slow": slow, "limit": args.limit} | {
        "load": load_text()
    }


# --- The report.

#: (label, numerator, denominator): ours against each native, and between routes.
RATIOS = (
    ("SuperLU / splu (its ordering)", "SuperLU", "splu (ours' ordering)"),
    ("UMFPACK / cvxopt", "UMFPACK", "UMFPACK cvxopt"),
    ("UMFPACK / raw", "UMFPACK", "UMFPACK raw"),
    ("Pardiso / raw", "Pardiso", "PARDISO raw"),
    ("Cholmod / cvxopt", "Cholmod", "CHOLMOD cvxopt"),
    ("AutoSparse / SuperLU", "AutoSparse", "SuperLU"),
    ("AutoSparse / KLU", "AutoSparse", "KLU klujax"),
    ("SuperLU / Pardiso", "SuperLU", "Pardiso"),
    ("splu COLAMD / its ordering", "splu COLAMD", "splu (ours' ordering)"),
)
#: (parts it applies to or None for all, label, numerator, denominator, bound, at most?)
CHECKS = (
    (None, "AutoSparse / SuperLU ≤ 1.10", "AutoSparse", "SuperLU", 1.10, True),
    (("stokes-200k",), "Pardiso / raw PARDISO ≤ 1.15", "Pardiso", "PARDISO raw", 1.15, True),
    (("stokes-200k",), "UMFPACK / cvxopt UMFPACK ≤ 1.15", "UMFPACK", "UMFPACK cvxopt", 1.15, True),
    (("stokes-200k",), "SuperLU / Pardiso ≥ 10", "SuperLU", "Pardiso", 10.0, False),
)


def valid(row: dict[str, Any], name: str) -> Timing | None:
    """The column's timing when it is one and its answer is right."""
    cell = row["cells"].get(name)
    ok = row["residuals"].get(name, np.nan) <= RESIDUAL_LIMIT
    return cell if isinstance(cell, Timing) and ok else None


def ratio(row: dict[str, Any], numerator: str, denominator: str) -> float | None:
    """The ratio of two valid medians; None when one is missing, or when one side is a
    single slow call (with its compilation) and the other a median of repetitions."""
    top, bottom = valid(row, numerator), valid(row, denominator)
    if top is None or bottom is None:
        return None
    if (numerator in row["slow"]) != (denominator in row["slow"]):
        return None
    return top.median / bottom.median


def time_cell(row: dict[str, Any], name: str) -> str:
    cell = row["cells"][name]
    if isinstance(cell, str):
        return cell
    if isinstance(cell, Failure):
        return cell.reason
    slow = name in row["slow"]
    text = format_seconds(cell.median) + (f" (1 call, > {row['limit']:g} s)" if slow else "")
    residual = row["residuals"][name]
    if not residual <= RESIDUAL_LIMIT:
        text += f" **wrong: residual {residual:.1e}**"
    return text


def system_table(system: System, row: dict[str, Any]) -> str:
    """One system: every column's median, its residual, the rest of the row's cells."""
    lines = []
    for name in NATIVE + OURS:
        residual = row["residuals"].get(name)
        shown = "" if residual is None else f"{residual:.1e}"
        lines.append([("ours " if name in OURS else "native ") + name, time_cell(row, name), shown])
    table = markdown_table(["solver", "factor + solve (median)", "relative residual"], lines)
    n, nnz = system.matrix.shape[0], system.matrix.nnz
    dtype = "complex" if np.iscomplexobj(system.matrix.data) else "real"
    caption = f"**{system.name}**: n = {n:,}, nnz = {nnz:,}, {dtype} {system.kind}"
    caption += f" ({system.note})" if system.note else ""
    return f"{caption}\n\n{table}"


def summary(systems: list[System], rows: list[dict[str, Any]]) -> tuple[str, str, list[str]]:
    """The times table, the ratios table and the check lines of every system."""
    names = [system.name for system in systems]
    absent: dict[str, str] = {}  # column -> why it is absent, said once below the table

    def cell(row: dict[str, Any], column: str) -> str:
        text = time_cell(row, column)
        if isinstance(row["cells"][column], str) and text != DASH:
            absent.setdefault(column, text)
            return "n/a"
        return text

    times = [
        [name, *[cell(row, c) for c in NATIVE + OURS]]
        for name, row in zip(names, rows, strict=True)
    ]
    times_table = markdown_table(["system", *NATIVE, *[f"ours {c}" for c in OURS]], times)
    ratio_rows = []
    for name, row in zip(names, rows, strict=True):
        values = [ratio(row, num, den) for _, num, den in RATIOS]
        cells = [DASH if value is None else f"{value:.2f}" for value in values]
        ratio_rows.append([name, *cells, row["load"].split(" over")[0]])
    ratios_table = markdown_table(
        ["system", *[label for label, _, _ in RATIOS], "load"], ratio_rows
    )
    checks = []
    for system, row in zip(systems, rows, strict=True):
        for parts, label, num, den, bound, at_most in CHECKS:
            if parts is not None and row["part"] not in parts:
                continue
            value = ratio(row, num, den)
            if value is None:
                missing = [c for c in (num, den) if valid(row, c) is None]
                why = [row["cells"][c] for c in missing if isinstance(row["cells"][c], str)]
                verdict = "not measured" + (f" ({missing[0]}: {why[0]})" if why else "")
            else:
                met = value <= bound if at_most else value >= bound
                verdict = f"{value:.2f}: {'met' if met else '**missed**'}"
            checks.append(f"- {system.name}: {label}: {verdict}")
    if absent:
        times_table += "\n\n" + "\n".join(f"- n/a in {c}: {why}" for c, why in absent.items())
    return times_table, ratios_table, checks


def main() -> None:
    parser = command_line(
        __doc__,
        quick="small versions of every system, 3 repetitions",
        repeats="timed calls per solver (default 20 below 10,000 unknowns, 5 above; quick 3)",
        limit="seconds: a solver whose warm-up call takes longer is not repeated",
    )
    parser.set_defaults(limit=120.0)
    parser.add_argument("--parts", default=",".join(PARTS), help="rows to run")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help="columns to run")
    parser.add_argument(
        "--superlu-max",
        type=int,
        help="skip SuperLU (native and ours) above this many unknowns; 0: never skip "
        "(default: skipped on the stokes-200k row only)",
    )
    parser.add_argument(
        "--klu-max",
        type=int,
        help="skip KLU above this many unknowns; 0: never skip "
        "(default: skipped on the elasticity row only)",
    )
    args = parser.parse_args()
    parts = choose(parser, args.parts, PARTS, "--parts")
    args.columns = [SOLVERS[name] for name in choose(parser, args.solvers, SOLVERS, "--solvers")]
    report = Report("Direct solvers benchmark", args.quick, echo=True)
    report.add(
        "cvxopt is imported first: it and lineax-sparse share CHOLMOD's shared object (from "
        "cvxopt's wheel), and the first import decides its BLAS. One thread: "
        f"OPENBLAS/OMP/MKL_NUM_THREADS = {os.environ.get('OPENBLAS_NUM_THREADS')}/"
        f"{os.environ.get('OMP_NUM_THREADS')}/{os.environ.get('MKL_NUM_THREADS')}, "
        f"lxs.num_threads() = {lxs.num_threads()}.",
        echo=True,
    )
    done_systems, rows = [], []
    for part in parts:
        for system in systems(part, args.quick):
            if system.matrix is None:
                report.add(f"**{system.name}**: {system.note}", echo=True)
                continue
            n = system.matrix.shape[0]
            repeats = args.repeats or (3 if args.quick else 20 if n < 10_000 else 5)
            print(f"running {system.name}, {repeats} repetitions ...", flush=True)
            system = dataclasses.replace(system, part=part)
            row = run_system(system, args, repeats) | {"part": part}
            done_systems.append(system)
            rows.append(row)
            report.table(system_table(system, row), echo=True)
    if rows:
        times_table, ratios_table, checks = summary(done_systems, rows)
        report.table(times_table, "Factorization + one solve, medians:")
        report.table(ratios_table, "Ratios of medians (wrong answers left out):")
        report.add("Checks:\n\n" + "\n".join(checks))
    report.add(
        f"Each call factorizes a fresh matrix (values scaled by a new 1 + 1e-3 k; our cache "
        f"cleared before each of ours). A residual |b - A x| / |b| above {RESIDUAL_LIMIT:g} "
        "marks the answer wrong, and its time is left out of the ratios. "
        + ("With --quick the sizes are far below those the checks are for." if args.quick else "")
    )
    whole = parts == list(PARTS) and not args.quick
    report.publish("direct.md" if whole else f"direct_{'_'.join(parts)}{'_quick' * args.quick}.md")


if __name__ == "__main__":
    main()
