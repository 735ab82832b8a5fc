"""The documentation runs as written: every code block of README.md and docs/**/*.md.

Conventions (docs site layout):
- A fenced block with language `python` is executed. The python blocks of one page run in
  order in one shared namespace, in a fresh subprocess per page (so `jax_enable_x64` is
  whatever the page sets itself, off by default), from a temporary working directory.
- A block that must not run is preceded, on the line immediately above its opening fence, by
  `<!-- not run: <reason> -->` with a non-empty reason. Every block whose language is neither
  `python` nor `text` (shell commands, fragments, YAML, ...) needs that marker.
- Output shown to the reader uses language `text` and is never executed.

Also: every public name of `lineax_sparse` has an entry in the API reference (docs/api/*.md),
and `mkdocs build --strict` (broken links, missing pages, docstrings mkdocstrings cannot
render) succeeds when mkdocs is installed.
"""

import dataclasses
import importlib.util
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).parent.parent
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")], key=lambda p: str(p.relative_to(ROOT))
)
MARKER = re.compile(r"^\s*<!--\s*not run:(.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository root
    number: int  # 1-based, counting every fenced block of the page
    line: int  # 1-based line of the first line of code (after the opening fence)
    language: str
    marker: str | None  # the text of `<!-- not run: ... -->` above the fence, or None
    code: str


def blocks(page: pathlib.Path, root: pathlib.Path = ROOT) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order (indented fences included: blocks
    inside admonitions and lists are dedented by their fence's indentation)."""
    lines = page.read_text().splitlines()
    name = str(page.relative_to(root))
    found = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip().lstrip("{").strip()
        language = re.split(r"[\s{}]", info.lstrip("."), maxsplit=1)[0].lower() if info else ""
        above = MARKER.match(lines[i - 1]) if i > 0 else None
        j = i + 1
        while j < len(lines):
            closing = lines[j].strip()
            if closing.startswith(fence[0] * len(fence)) and closing.strip(fence[0]) == "":
                break
            j += 1
        code = "\n".join(
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[i + 1 : j]
        )
        found.append(Block(name, len(found) + 1, i + 2, language, above and above[1].strip(), code))
        i = j + 1
    return found


def _id(page: pathlib.Path) -> str:
    return str(page.relative_to(ROOT))


# Runs in the page's subprocess: each block is compiled with its Markdown line numbers (so a
# traceback points into the page) and executed in one namespace shared by the page's blocks.
RUNNER = r"""
import json, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for block in blocks:
    source = "\n" * (block["line"] - 1) + block["code"]
    try:
        exec(compile(source, block["page"], "exec"), namespace)
    except BaseException as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if f.filename == block["page"]]
        where = f"line {frames[-1].lineno}" if frames else f"from line {block['line']}"
        print(f"{block['page']}, python block {block['number']} ({where}): "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_python_blocks_run(page, tmp_path):
    runnable = [b for b in blocks(page) if b.language == "python" and b.marker is None]
    if not runnable:
        pytest.skip("no python blocks to run")
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    out = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([dataclasses.asdict(b) for b in runnable]),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    if out.returncode != 0:
        summary = next(
            (line for line in out.stderr.splitlines() if line.startswith(f"{_id(page)}, ")),
            f"{_id(page)}: the page's process exited with {out.returncode}",
        )
        pytest.fail(f"{summary}\n{out.stderr[-4000:]}", pytrace=False)


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_blocks_not_run_say_why(page):
    problems = []
    for b in blocks(page):
        where = f"{b.page}, block {b.number} (line {b.line - 1}, language {b.language!r})"
        if b.marker is not None and not b.marker:
            problems.append(f"{where}: `<!-- not run: -->` without a reason")
        elif b.language not in ("python", "text") and b.marker is None:
            problems.append(
                f"{where}: not executed and not marked; put `<!-- not run: <reason> -->` on "
                "the line above its opening fence, or make it a `python` block (executed) or "
                "a `text` block (output)"
            )
    assert not problems, "\n".join(problems)


def test_block_parser_finds_markers_and_indented_blocks(tmp_path):
    """The parser these tests rest on: languages, markers, indentation, line numbers."""
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n"
        "```python\nx = 1\n```\n"
        "<!-- not run: needs MPI -->\n```bash\nmpiexec -n 2 python a.py\n```\n"
        "!!! note\n    ```python\n    if x:\n        y = 2\n    ```\n"
        "````text\n```\n````\n"
        "<!-- not run: -->\n```\nplain\n```\n"
    )
    found = blocks(page, root=tmp_path)
    assert [(b.language, b.marker, b.line) for b in found] == [
        ("python", None, 3),
        ("bash", "needs MPI", 7),
        ("python", None, 11),
        ("text", None, 15),
        ("", "", 19),
    ]
    assert found[2].code == "if x:\n    y = 2"
    assert found[3].code == "```"


def _public_names() -> list[str]:
    import lineax_sparse

    names = getattr(lineax_sparse, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(lineax_sparse).items()
            if not name.startswith("_") and not inspect.ismodule(value)
        ]
    return sorted(names)


def test_every_public_name_is_in_the_api_reference():
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(
            re.findall(r"^:::\s*lineax_sparse\.(\w+)\s*$", page.read_text(), flags=re.M)
        )
    missing = [name for name in _public_names() if name not in documented]
    assert not missing, (
        f"public names without an entry in docs/api/*.md: {missing}; add "
        "`::: lineax_sparse.<name>` to the page of docs/api where it belongs"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="mkdocs / mkdocstrings-python not installed (pip install -e '.[docs]')",
)
def test_mkdocs_build_strict(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        timeout=600,
    )
    warnings = [line for line in out.stderr.splitlines() if not line.startswith("INFO")]
    assert out.returncode == 0, "\n".join(warnings)[-6000:]
