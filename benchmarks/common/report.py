"""Reports: the environment line (machine, load average, BLAS threads, versions, commit),
cells and Markdown tables of the measurements, and `Report`, which prints every table with
the load average and writes the whole to benchmarks/results/."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .startup import ROOT
from .timing import Failure, Result, Timing


RESULTS_DIR = ROOT / "benchmarks" / "results"


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} over 1 / 5 / 15 min"


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *arguments], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def source_version() -> str:
    """The git commit of the working tree, with `+dirty` if it has uncommitted changes."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment() -> str:
    """One line for a report's title: the machine, its load average, the BLAS threads, the
    library versions (with which of cvxopt, sparsax and PETSc was imported first, deciding
    CHOLMOD's BLAS) and the source's git commit."""
    import jax
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
    versions = [
        f"jax {jax.__version__}",
        f"jaxlib {jaxlib.__version__}",
        f"lineax {lineax.__version__}",
        f"lineax-sparse {lineax_sparse.__version__}",
        f"numpy {numpy.__version__}",
        f"scipy {scipy.__version__}",
    ]
    optional = ("cvxopt", "sparsax", "petsc4py", "pyamg")
    versions += [
        f"{name} {getattr(sys.modules[name], '__version__', '?')}"
        for name in optional
        if name in sys.modules
    ]
    cholmod_users = [name for name in sys.modules if name in ("cvxopt", "sparsax", "petsc4py")]
    order = ""
    if len(cholmod_users) > 1:  # sys.modules keeps the order of the imports
        order = f" ({cholmod_users[0]} imported first: its BLAS serves CHOLMOD)"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {load_text()}"
        f"{', ' if threads else ''}{', '.join(threads)}; Python {platform.python_version()}, "
        f"{', '.join(versions)}{order}; source {source_version()}"
    )


def format_seconds(seconds: float | None) -> str:
    """Three significant digits in s, ms or µs; "–" for None."""
    if seconds is None:
        return "–"
    if seconds >= 1.0:
        value, unit = seconds, "s"
    elif seconds >= 1e-3:
        value, unit = seconds * 1e3, "ms"
    else:
        value, unit = seconds * 1e6, "µs"
    return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"


def format_result(result: Result | str | None) -> str:
    """A table cell: the median of a `Timing`, the reason of a `Failure`, text as it is."""
    if result is None:
        return "–"
    if isinstance(result, str):
        return result
    if isinstance(result, Failure):
        return result.reason
    return format_seconds(result.median)


def format_ratio(numerator: Any, denominator: Any) -> str:
    if not isinstance(numerator, Timing) or not isinstance(denominator, Timing):
        return "–"
    return f"{numerator.median / denominator.median:.2f}"


def format_target(numerator: Any, denominator: Any, limit: float) -> str:
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


def results_table(
    columns: Sequence[str],
    results: Sequence[dict[str, Any]],
    facts: Sequence[Sequence[str]] = (),
    rows: Sequence[tuple[str, str]] = (),
    targets: Sequence[tuple[str, str, str, float | Sequence[float]]] = (),
    ratios: Sequence[tuple[str, str, str]] = (),
) -> str:
    """A table with a column per problem (`columns`, `results[i]` its measurements by key).

    `facts`: rows given as text (label first); `rows`: `(label, key)`, the measurement by
    `format_result`; `targets`: `(label, numerator, denominator, limit)`, a ratio of two
    medians against a limit (one for all columns or one per column); `ratios`: `(label,
    numerator, denominator)`, a ratio for context.
    """
    table = [list(fact) for fact in facts]
    table += [[label] + [format_result(r.get(key)) for r in results] for label, key in rows]
    for label, num, den, limit in targets:
        bounds = [limit] * len(results) if isinstance(limit, float | int) else list(limit)
        pairs = zip(results, bounds, strict=True)
        table.append([label, *[format_target(r.get(num), r.get(den), b) for r, b in pairs]])
    table += [
        [label] + [format_ratio(r.get(num), r.get(den)) for r in results]
        for label, num, den in ratios
    ]
    return markdown_table(["measurement (median)", *columns], table)


def write_result(name: str, text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(text + "\n")
    return path


class Report:
    """A benchmark's output: a title line with `environment()`, then tables, each followed
    by the load average when it was done, and notes. `publish` prints what was not printed
    yet and writes the whole to benchmarks/results/ (git-ignored)."""

    def __init__(self, title: str, quick: bool = False, echo: bool = False) -> None:
        self.parts = [f"{title}{' (--quick)' if quick else ''}: {environment()}"]
        self.printed = 0
        if echo:  # the environment at the start, before a long run
            self._print()

    def add(self, text: str, echo: bool = False) -> None:
        self.parts.append(text)
        if echo:
            self._print()

    def table(self, table: str, caption: str = "", echo: bool = False) -> None:
        """`table` (Markdown), after `caption`, followed by the load average now."""
        text = f"{table}\n\n({load_text()})"
        self.add(f"{caption}\n\n{text}" if caption else text, echo)

    @property
    def text(self) -> str:
        return "\n\n".join(self.parts)

    def _print(self) -> None:
        if self.printed < len(self.parts):
            print("\n" + "\n\n".join(self.parts[self.printed :]), flush=True)
            self.printed = len(self.parts)

    def publish(self, name: str | None) -> str:
        """Print the rest of the report and write it to results/`name` (unless None)."""
        self._print()
        if name is not None:
            print(f"\nwritten to {write_result(name, self.text)}")
        return self.text
