"""The examples run from the command line, and the numbers they print are right."""

import pathlib
import re
import subprocess
import sys


EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def _run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_poisson_small():
    stdout = _run("poisson.py", "--small")
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("poisson ")
    fields = _fields(last)
    assert int(fields["N"]) == 32 and int(fields["n"]) == 32 * 32
    assert float(fields["relative_residual"]) < 1e-10
    assert float(fields["gradient_check"]) < 1e-6
    assert float(fields["algebraic_error"]) < 1e-10
    # Second order: the error against sin(pi x) sin(pi y) is about 0.82 h^2 (h = 1/33).
    assert 5e-4 < float(fields["discretization_error"]) < 1e-3
