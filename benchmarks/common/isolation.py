"""Child processes: a call that may hang in native code, crash the interpreter or need a
fresh process (its own imports, its own peak memory, `mpiexec`) runs in one, and the
parent records its result or why it has none."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .timing import block, Failure, Result, Timing


# Where a child started by `run_child` writes its JSON result (`send_result`).
RESULT_VARIABLE = "LINEAX_SPARSE_BENCHMARK_RESULT"


def error_text(error: BaseException, width: int = 160) -> str:
    """`Type: first line` of an exception, a jaxpr in it cut off, for a table cell."""
    line = (str(error).strip().splitlines() or [""])[0]
    if "let " in line:  # a jaxpr in the message: keep the words before it
        line = line.split("let ")[0].rstrip(" '") + " <jaxpr> ..."
    return f"{type(error).__name__}: {line}"[:width]


def _isolated_child(channel, make_steps, args, repeats):
    try:
        steps = make_steps(*args)
    except BaseException as error:
        channel.put(("setup-error", None, error_text(error)))
        return
    channel.put(("ready", None, None))
    for name, step in steps.items():
        try:
            for _ in range(repeats + 1):
                start = time.perf_counter()
                block(step())
                channel.put(("time", name, time.perf_counter() - start))
        except Exception as error:  # the parent records it in the table
            channel.put(("error", name, error_text(error)))
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
    measured by then is reported as a `Failure` (read them with `isolated_result`). A step
    that raises is reported as a `Failure` and the next step runs.
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
                    results[name] = Timing.of(times[name])
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


def run_child(
    arguments: Sequence[str],
    timeout: float | None,
    prefix: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run `python *arguments` (after `prefix`, e.g. `mpiexec -n 2`) in a fresh process.

    Returns the JSON object the child passed to `send_result`, or `{"error": why}` when it
    ran over `timeout` seconds (it is killed; None: no limit), crashed or sent nothing; the
    tail of its standard error is echoed then. `env` replaces the environment (default:
    this one's).
    """
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "result.json"
        child_env = {**(os.environ if env is None else env), RESULT_VARIABLE: str(path)}
        command = [*prefix, sys.executable, *arguments]
        try:
            done = subprocess.run(
                command, env=child_env, cwd=cwd, timeout=timeout, capture_output=True, text=True
            )
        except subprocess.TimeoutExpired:
            return {"error": f"> {timeout:.0f} s, abandoned"}
        result = json.loads(path.read_text()) if path.exists() else None
        if result is None or "error" in result:
            sys.stderr.write(done.stderr[-3000:])
        if result is not None:
            return result
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"crashed (exit code {done.returncode}): {tail[:120]}"}


def send_result(result: dict[str, Any], path: str | None = None) -> None:
    """The child's side of `run_child`: hand `result` to the parent (nothing without one)."""
    path = path or os.environ.get(RESULT_VARIABLE)
    if path:
        Path(path).write_text(json.dumps(result))
