"""Resident memory of this process and its peak within a block (Linux's /proc/self;
getrusage elsewhere)."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def process_memory(field: str = "VmRSS") -> int | None:
    """A `VmRSS` (resident) or `VmHWM` (peak resident) line of /proc/self/status, in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1e9:.2f} GB" if abs(value) >= 1e9 else f"{value / 1e6:.0f} MB"


class PeakMemory:
    """Peak resident memory of this process within a block.

    On entry the peak (`VmHWM`) is reset to the current RSS by writing 5 to
    /proc/self/clear_refs (Linux >= 4.0); where that fails, `peak()` is the process's
    peak so far (getrusage) and `text()` says so.
    """

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.start = process_memory("VmRSS")
        return self

    def __exit__(self, *exc_info) -> None:
        self.final = self.peak()

    def peak(self) -> int:
        peak = process_memory("VmHWM") if self.reset else None
        if peak is None:  # the process's peak so far (kB on Linux)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak

    def increase(self) -> int:
        """The peak so far above the RSS at entry."""
        return self.peak() - (self.start or 0)

    def text(self) -> str:
        above = "" if self.start is None else f" (+{format_bytes(self.final - self.start)})"
        return format_bytes(self.final) + above + ("" if self.reset else ", process peak")
