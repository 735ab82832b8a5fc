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
