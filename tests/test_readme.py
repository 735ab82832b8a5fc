"""The README's Usage example runs as written (copy, paste, run), and the solver tables of
the README and of the guide to choosing a solver list exactly the solvers of the solver
table (`_solver/table.py`)."""

import pathlib
import re
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).parent.parent
README = ROOT / "README.md"
CHOOSING = ROOT / "docs" / "guides" / "choosing-a-solver.md"


def test_usage_example_runs_as_written():
    text = README.read_text()
    start = text.index("## Usage\n")
    usage = text[start : text.index("\n## ", start + 1)]
    code = re.search(r"```python\n(.*?)```", usage, re.DOTALL).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("loss ") and "host_calls=" in out.stdout


def _solver_table(text: str) -> str:
    """The table whose header is `| solver | matrices | library |`."""
    start = text.index("| solver | matrices | library |")
    return text[start : text.index("\n\n", start)]


@pytest.mark.parametrize("page", [README, CHOOSING], ids=lambda page: page.name)
def test_the_solvers_table_lists_exactly_the_solver_table(page):
    """The page's solvers table has one row per row of the solver table, in the form
    "| `lxs.Name(...)` | ...", and names no other solver."""
    from lineax_sparse._solver.table import SOLVERS

    table = _solver_table(page.read_text())
    named = re.findall(r"^\| `lxs\.(\w+)\(", table, flags=re.MULTILINE)
    assert sorted(named) == sorted(row.name for row in SOLVERS)
    assert len(table.splitlines()) == 2 + len(SOLVERS)  # header, rule, one line per solver


def test_the_readme_is_a_front_page():
    """About 200 lines; user-facing words only."""
    text = README.read_text()
    assert len(text.splitlines()) <= 230
    for word in ("(missed)", "target", "round three", "invariants 4"):
        assert word not in text
