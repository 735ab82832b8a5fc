"""Shared helpers for the lineax-sparse benchmarks: timing, isolation and Markdown tables.

Every benchmark reports the median over `repeats` timed calls after one untimed warm-up call
(which includes tracing and compilation for jitted functions).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import platform
import queue
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import scipy.sparse as sp


RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of one warm-up call and of each timed repetition."""

    first: float
    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A measurement that could not be made; `reason` goes into the table cell."""

    reason: str


Result = Timing | Failure


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


@dataclasses.dataclass(frozen=True)
class Step:
    """A function to time, and what to run untimed before each call (e.g. clear a cache)."""

    fn: Callable[[], Any]
    setup: Callable[[], Any] | None = None


def time_interleaved(steps: dict[str, Step], repeats: int) -> dict[str, Timing]:
    """Time each step once as warm-up and then `repeats` times, blocking on its outputs.

    The steps take turns within each repetition, so that a load drifting over the run (other
    processes on the machine) weighs on all of them alike and their ratios stay meaningful.
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats + 1):
        for name, step in steps.items():
            if step.setup is not None:
                step.setup()
            start = time.perf_counter()
            block(step.fn())
            times[name].append(time.perf_counter() - start)
    return {name: Timing(value[0], tuple(value[1:])) for name, value in times.items()}


class Phases:
    """Durations of named phases measured inside timed steps (e.g. factor and solve).

    A step calls `record(name, seconds)` once per call; as with `time_interleaved`, the first
    recorded value of each phase belongs to the warm-up call and is left out of the median.
    """

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}

    def record(self, name: str, seconds: float) -> None:
        self._times.setdefault(name, []).append(seconds)

    def timings(self) -> dict[str, Timing]:
        return {name: Timing(value[0], tuple(value[1:])) for name, value in self._times.items()}


def time_call(
    fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None
) -> Timing:
    """Time `fn()` once as warm-up, then `repeats` times; `setup()` runs untimed before each."""
    return time_interleaved({"": Step(fn, setup)}, repeats)[""]


def _error_text(error: BaseException) -> str:
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0]}"


def _isolated_child(channel, make_steps, args, repeats):
    try:
        steps = make_steps(*args)
    except BaseException as error:
        channel.put(("setup-error", None, _error_text(error)))
        return
    channel.put(("ready", None, None))
    for name, step in steps.items():
        try:
            for _ in range(repeats + 1):
                start = time.perf_counter()
                block(step())
                channel.put(("time", name, time.perf_counter() - start))
        except Exception as error:  # the parent records it in the table
            channel.put(("error", name, _error_text(error)))
    channel.put(("done", None, None))


def _receive(channel, child, timeout: float):
    """The child's next message, or None after `timeout` s or once the child has died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return channel.get(timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
        except queue.Empty:
            if not child.is_alive() or time.monotonic() >= deadline:
                return None


def time_isolated(
    make_steps: Callable[..., dict[str, Callable[[], Any]]],
    args: tuple,
    repeats: int,
    limit: float,
    startup_limit: float = 300.0,
) -> dict[str, Result]:
    """Time steps in a fresh process, abandoning them once one call exceeds `limit` seconds.

    `make_steps(*args)` runs in the child (it and `args` must be picklable) and returns
    `{name: step}`; each step is timed like `time_call`. A call stuck in native code cannot
    be interrupted in-process, so the child is terminated instead, and every step not
    measured by then is reported as a `Failure`. A step that raises is reported as a
    `Failure` and the next step runs.
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    child = context.Process(
        target=_isolated_child, args=(channel, make_steps, args, repeats), daemon=True
    )
    child.start()
    results: dict[str, Result] = {}
    times: dict[str, list[float]] = {}
    try:
        message = _receive(channel, child, startup_limit)
        while message is not None:
            kind, name, value = message
            if kind == "done":
                return results
            if kind == "setup-error":
                return {"*": Failure(f"failed: {value}")}
            if kind == "error":
                results[name] = Failure(f"failed: {value}")
            elif kind == "time":
                times.setdefault(name, []).append(value)
                if len(times[name]) == repeats + 1:
                    results[name] = Timing(times[name][0], tuple(times[name][1:]))
            message = _receive(channel, child, limit)
        if child.is_alive():
            results["*"] = Failure(f"> {limit:.0f} s, abandoned")
        else:
            results["*"] = Failure(f"crashed (exit code {child.exitcode})")
        return results
    finally:
        if child.is_alive():
            child.terminate()
        child.join()


def isolated_result(results: dict[str, Result], name: str) -> Result:
    """The result of step `name` from `time_isolated`, or why it has none."""
    return results.get(name, results.get("*", Failure("not run")))


def format_seconds(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def format_result(result: Result | None) -> str:
    if result is None:
        return "–"
    if isinstance(result, Failure):
        return result.reason
    return format_seconds(result.median)


def format_ratio(numerator: Result | None, denominator: Result | None, target: str = "") -> str:
    if not isinstance(numerator, Timing) or not isinstance(denominator, Timing):
        return "–"
    text = f"{numerator.median / denominator.median:.2f}"
    return f"{text} ({target})" if target else text


def format_target(numerator: Result | None, denominator: Result | None, limit: float) -> str:
    """The ratio of two medians against an upper `limit`, saying whether it is met."""
    if not isinstance(numerator, Timing) or not isinstance(denominator, Timing):
        return "–"
    ratio = numerator.median / denominator.median
    verdict = "met" if ratio <= limit else "**missed**"
    return f"{ratio:.2f} (≤ {limit:g}: {verdict})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def poisson_2d(grid: int) -> sp.csc_matrix:
    """5-point Laplacian on a `grid` x `grid` interior grid of the unit square, scaled by 1/h^2."""
    h = 1.0 / (grid + 1)
    second_difference = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(grid, grid))
    identity = sp.identity(grid)
    laplacian = sp.kron(identity, second_difference) + sp.kron(second_difference, identity)
    return sp.csc_matrix(laplacian / h**2)


def environment() -> str:
    """One line describing the machine, its load and the library versions, for the report."""
    import jaxlib
    import lineax
    import numpy
    import scipy

    import lineax_sparse

    threads = [
        f"{name}={os.environ[name]}"
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        if name in os.environ
    ]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}{', ' if threads else ''}{', '.join(threads)}; "
        f"Python {platform.python_version()}, jax {jax.__version__}, "
        f"jaxlib {jaxlib.__version__}, lineax {lineax.__version__}, "
        f"lineax-sparse {lineax_sparse.__version__}, numpy {numpy.__version__}, "
        f"scipy {scipy.__version__}"
    )


def source_version() -> str:
    """The git commit of the working tree, with `+dirty` if it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if status else "")


def write_result(name: str, text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(text + "\n")
    return path
