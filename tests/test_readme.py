"""The README's Usage example runs as written (copy, paste, run)."""

import pathlib
import re
import subprocess
import sys


README = pathlib.Path(__file__).parent.parent / "README.md"


def test_usage_example_runs_as_written():
    text = README.read_text()
    usage = text[text.index("## Usage") : text.index("## Solvers")]
    code = re.search(r"```python\n(.*?)```", usage, re.DOTALL).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("loss ") and "host_calls=" in out.stdout


def test_the_solvers_table_lists_exactly_the_solver_table():
    """The README's Solvers table has one row per row of the solver table
    (`_solver/table.py`), and names no other solver."""
    from lineax_sparse._solver.table import SOLVERS

    text = README.read_text()
    section = text[text.index("## Solvers\n") :]
    table = section[: section.index("\n\n", section.index("|---"))]
    named = re.findall(r"^\| `lxs\.(\w+)\(", table, flags=re.MULTILINE)
    assert sorted(named) == sorted(row.name for row in SOLVERS)
