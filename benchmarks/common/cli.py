"""The command line every benchmark shares: its description, `--quick`, `--repeats`,
`--limit`, comma-separated subsets (`--problems`, `--parts`, `--solvers`) and help that
shows the defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if shown and action.option_strings and "default" not in text:
            text += " (default: %(default)s)"
        return text


def command_line(
    doc: str | None,
    quick: str | None = None,
    repeats: str | None = None,
    limit: str | None = None,
) -> argparse.ArgumentParser:
    """A benchmark's parser: the first paragraph of its docstring as the description, and
    the options most benchmarks share, each with its help unless None: `--quick` (the
    smoke-test sizes), `--repeats N` (timed repetitions) and `--limit S` (seconds after
    which a call is abandoned). Their defaults are None (`parser.set_defaults` to change)."""
    description = (doc or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, help=repeats)
    if limit is not None:
        parser.add_argument("--limit", type=float, help=limit)
    return parser


def choose(
    parser: argparse.ArgumentParser, value: str, choices: Sequence[str], flag: str
) -> list[str]:
    """The comma-separated subset `value` of `choices` given to `flag`, in its order;
    exits with the parser's usage message when it names anything else or nothing."""
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    if not chosen or not set(chosen) <= set(choices):
        parser.error(f"{flag} takes a comma-separated subset of {','.join(choices)}, got {value!r}")
    return chosen
