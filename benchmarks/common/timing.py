"""Timing in turns: the steps compared take turns within each repetition, after one
untimed warm-up call, so that a load drifting over the run weighs on all of them alike;
their medians and ratios are what the benchmarks report."""

from __future__ import annotations

import dataclasses
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of one warm-up call and of each timed repetition."""

    first: float
    times: tuple[float, ...]

    @classmethod
    def of(cls, calls: Sequence[float]) -> Timing:
        """The warm-up call first, then the repetitions."""
        return cls(calls[0], tuple(calls[1:]))

    @classmethod
    def once(cls, seconds: float) -> Timing:
        """One call as a row of its own (a first call with its compilation)."""
        return cls(seconds, (seconds,))

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A measurement that could not be made; `reason` goes into the table cell."""

    reason: str


Result = Timing | Failure


def block(tree: Any) -> Any:
    """Wait for the arrays of `tree` when jax is loaded (a step's output is then jax's)."""
    jax = sys.modules.get("jax")
    return tree if jax is None else jax.block_until_ready(tree)


@dataclasses.dataclass(frozen=True)
class Step:
    """A function to time, and what to run untimed before each call (e.g. clear a cache)."""

    fn: Callable[[], Any]
    setup: Callable[[], Any] | None = None


def turn_order(names: Sequence[T], turn: int) -> list[T]:
    """`names` in the order they run in turn `turn` (from 0): reversed in every other turn,
    so that no position in a turn is favoured (for whole runs taking turns over rounds)."""
    return list(names)[::-1] if turn % 2 else list(names)


def time_interleaved(
    steps: dict[str, Step], repeats: int, alternate: bool = False
) -> dict[str, Timing]:
    """Time each step once as warm-up and then `repeats` times, blocking on its outputs.

    The steps take turns within each repetition, so that a load drifting over the run
    weighs on all of them alike and their ratios stay meaningful. With `alternate` every
    other turn runs in reverse order, so that no position in a turn is favoured; without
    it the order is kept, for steps that rely on the one before (a cold call leaving a
    cached analysis for the next).
    """
    times: dict[str, list[float]] = {name: [] for name in steps}
    for turn in range(repeats + 1):
        for name, step in turn_order(list(steps.items()), turn if alternate else 0):
            if step.setup is not None:
                step.setup()
            start = time.perf_counter()
            block(step.fn())
            times[name].append(time.perf_counter() - start)
    return {name: Timing.of(value) for name, value in times.items()}


def time_call(
    fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None
) -> Timing:
    """Time `fn()` once as warm-up, then `repeats` times; `setup()` runs untimed before each."""
    return time_interleaved({"": Step(fn, setup)}, repeats)[""]


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
        return {name: Timing.of(value) for name, value in self._times.items()}


def threads_at_once(calls: Sequence[Callable[[], Any]], count: int) -> Callable[[], None]:
    """A step that runs each call `count` times, one thread per call, all at once."""

    def run() -> None:
        workers = [
            threading.Thread(target=lambda c=call: [c() for _ in range(count)]) for call in calls
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    return run
