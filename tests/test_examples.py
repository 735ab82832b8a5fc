"""The examples run from the command line, and the numbers they print are right."""

import pathlib
import re
import subprocess
import sys


EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def _process(script: str, *args: str, cwd=None) -> subprocess.CompletedProcess[bytes]:
    """Run an example; its output stays bytes, in which carriage returns survive."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        timeout=600,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:].decode(errors="replace")
    return out


def _run(script: str, *args: str, cwd=None) -> str:
    return _process(script, *args, cwd=cwd).stdout.decode()


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


# --- Topology optimization: the example against an independent NumPy + cvxopt implementation
# (benchmarks/top88_cvxopt.py: scipy assembly, CHOLMOD called directly, hand-derived
# sensitivities) run to convergence here.

sys.path.insert(0, str(EXAMPLES.parent / "benchmarks"))
sys.path.insert(0, str(EXAMPLES))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _final(stdout: str) -> tuple[float, int]:
    last = stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"final compliance (\S+) after (\d+) iterations", last)
    assert match, last
    return float(match.group(1)), int(match.group(2))


def _baseline(nelx, nely, volfrac, rmin, density_filter) -> tuple[float, int]:
    from top88_cvxopt import Top88

    run = Top88(nelx, nely, volfrac, 3.0, rmin, density_filter, "tuned")
    for iteration in range(1, 1001):
        c, change = run.step()
        if change <= 0.01:
            return c, iteration
    raise AssertionError("the baseline did not converge")


@pytest.mark.parametrize(
    "solver, filter_name",
    [
        ("cholmod", "sensitivity"),
        ("cholmod", "density"),
        ("amg", "sensitivity"),
        ("superlu", "density"),
    ],
)
def test_topology_optimization_small_matches_numpy_cvxopt(solver, filter_name):
    stdout = _run(
        "topology_optimization.py",
        "--small",
        "--no-plot",
        "--solver",
        solver,
        "--filter",
        filter_name,
    )
    compliance, iterations = _final(stdout)
    expected, expected_iterations = _baseline(30, 10, 0.5, 1.2, filter_name == "density")
    assert iterations == expected_iterations
    assert abs(compliance - expected) <= 1e-4 * expected  # printed with 4 decimals
    fields = _fields(stdout.strip().splitlines()[-2 if "wrote" not in stdout else -3])
    assert abs(float(fields["compliance"]) - expected) <= 1e-6 * expected
    assert abs(float(fields["volume"]) - 0.5) < 1e-3


def test_topology_optimization_writes_its_pictures(tmp_path):
    prefix = tmp_path / "mbb"
    stdout = _run(
        "topology_optimization.py", "--small", "--max-iterations", "3", "--output", str(prefix)
    )
    assert (tmp_path / "mbb.png").stat().st_size > 1000
    assert (tmp_path / "mbb_convergence.png").stat().st_size > 1000
    assert _final(stdout)[1] == 3


@pytest.mark.parametrize(
    "script, args, pictures",
    [
        (
            "topology_optimization.py",
            ["--max-iterations", "3"],
            ["topology_optimization_small.png", "topology_optimization_small_convergence.png"],
        ),
        (
            "topology_optimization_3d.py",
            ["--max-iterations", "1", "--solver", "cholmod"],
            ["topology_optimization_3d_small.png"],
        ),
    ],
)
def test_small_runs_keep_the_full_runs_pictures_and_pipes_free_of_progress_bars(
    tmp_path, script, args, pictures
):
    full_size = [name.replace("_small", "") for name in pictures]
    for name in full_size:
        (tmp_path / name).write_bytes(b"the full run's picture")
    out = _process(script, "--small", *args, cwd=tmp_path)
    for name in full_size:
        assert (tmp_path / name).read_bytes() == b"the full run's picture"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(full_size + pictures)
    assert all((tmp_path / name).stat().st_size > 1000 for name in pictures)
    assert f"wrote {' and '.join(pictures)}\n" in out.stdout.decode()
    # stderr is a pipe here: no progress bar, whose every update is a carriage return.
    assert b"\r" not in out.stderr


def test_progress_bar_only_in_a_terminal(monkeypatch):
    import io

    import topology_optimization

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(topology_optimization._progress_bar(3, True), topology_optimization._NoBar)
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = topology_optimization._progress_bar(3, True)
    bar.update(1)
    bar.close()
    assert "\r" in sys.stderr.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("filter_name, expected", [("sensitivity", 216.81), ("density", 233.71)])
def test_topology_optimization_reproduces_the_88_line_code(filter_name, expected):
    stdout = _run("topology_optimization.py", "--no-plot", "--filter", filter_name)
    compliance, _ = _final(stdout)
    assert abs(compliance - expected) <= 1e-3 * expected


def test_hexahedron_stiffness_is_exact_for_linear_fields():
    from topology_optimization_3d import CORNERS, element_stiffness, NU

    ke = element_stiffness()
    assert np.allclose(ke, ke.T, atol=1e-14)
    # A linear displacement u = G x: trilinear elements represent it exactly, so the element
    # energy is the continuum energy 1/2 eps : C : eps of the unit cube.
    rng = np.random.default_rng(0)
    lam, mu = NU / ((1 + NU) * (1 - 2 * NU)), 1 / (2 * (1 + NU))
    for _ in range(5):
        g = rng.standard_normal((3, 3))
        u = (CORNERS @ g.T).reshape(-1)
        strain = 0.5 * (g + g.T)
        energy = 0.5 * (lam * np.trace(strain) ** 2 + 2 * mu * np.sum(strain * strain))
        assert np.isclose(0.5 * u @ ke @ u, energy, rtol=1e-12)
    # Exactly six zero-energy modes: the rigid body motions.
    eigenvalues = np.linalg.eigvalsh(ke)
    assert np.sum(eigenvalues < 1e-12) == 6 and eigenvalues[6] > 1e-3


@pytest.mark.parametrize("solver", ["amg", "cholmod"])
def test_topology_optimization_3d_small(solver):
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from topology_optimization_3d import cantilever_problem

    stdout = _run(
        "topology_optimization_3d.py",
        "--small",
        "--no-progress",
        "--max-iterations",
        "1",
        "--solver",
        solver,
        "--rtol",
        "1e-10",
        "--no-plot",
    )
    compliance, iterations = _final(stdout)
    assert iterations == 1
    # The first iteration's compliance, at the uniform density 0.3, by scipy's direct solver.
    problem, _ = cantilever_problem(12, 6, 6, 1.5)
    young = 1e-9 + 0.3**3 * (1 - 1e-9)
    nel = 12 * 6 * 6
    values = np.tile(np.asarray(problem.ke) * young, nel)[np.asarray(problem.keep)]
    rows, cols = np.asarray(problem.indices).T
    k = sp.csc_matrix((values, (rows, cols)), shape=(problem.size, problem.size))
    load = np.asarray(problem.load)
    expected = load @ spla.spsolve(k, load)
    assert abs(compliance - expected) <= 1e-4 * expected


def test_batched_solves_small(tmp_path):
    stdout = _run("batched_solves.py", "--small", "--output", str(tmp_path / "batched"))
    fields = _fields(stdout.strip().splitlines()[-1])
    assert (tmp_path / "batched.png").stat().st_size > 10_000  # the time-per-item plot
    assert "batch   8: loop" in stdout and float(fields["vmap_vs_loop_largest"]) > 0
    assert int(fields["sweep_host_calls"]) == 1  # one call factorizes all and solves
    assert int(fields["sweep_factorizations"]) == 8 and int(fields["sweep_analyses"]) == 1
    assert float(fields["sweep_vs_loop"]) < 1e-12
    assert float(fields["E_times_c_spread"]) < 1e-10  # rounding: about 1e4 eps
    assert int(fields["grad_host_calls"]) == 2  # factorize and solve, adjoint solve
    assert int(fields["grad_factorizations"]) == 4
    assert float(fields["grad_vs_formula"]) < 1e-10
    assert float(fields["grad_vs_fd"]) < 1e-5


@pytest.mark.parametrize("matrix", ["--small", "young1c"])
def test_real_matrix(matrix):
    args = ["--small"] if matrix == "--small" else ["--matrix", matrix]
    stdout = _run("real_matrix.py", *args)
    lines = stdout.strip().splitlines()
    # The header (matrix, residual) comes before the gradient lines it introduces.
    header = next(i for i, line in enumerate(lines) if "relative residual" in line)
    gradients = [i for i, line in enumerate(lines) if line.startswith("  d L / d")]
    assert len(gradients) == 2 and header < min(gradients)
    fields = _fields(lines[-1])
    assert float(fields["relative_residual"]) < 1e-9
    assert float(fields["vs_spsolve"]) < 1e-8
    assert float(fields["gradient_values_fd"]) < 1e-5
    assert float(fields["gradient_rhs_fd"]) < 1e-5


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_help_shows_every_default(script):
    help_text = _run(script, "--help")
    # An option's entry: its line "  --name ..." and the more indented lines continuing it.
    entries = re.findall(r"^  (-.*(?:\n   +\S.*)*)", help_text, flags=re.MULTILINE)
    options = [" ".join(entry.split()) for entry in entries if not entry.startswith("-h")]
    assert "--small" in " ".join(options)
    for option in options:
        assert option.count("(default: ") == 1, option


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_help_answers_before_jax_is_imported(script):
    """`--help` parses the command line before the imports that take seconds."""
    program = (
        "import runpy, sys\n"
        f"sys.argv = [{str(EXAMPLES / script)!r}, '--help']\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "try:\n"
        f"    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'jax', 'lineax_sparse', 'matplotlib', 'scipy'} & set(sys.modules)\n"
        "print('imported', sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert out.stdout.decode().strip().splitlines()[-1] == "imported []"


@pytest.mark.parametrize(
    "name",
    [
        f"{prefix}{suffix}.png"
        for prefix in (
            "topology_optimization",
            "topology_optimization_3d",
            "batched_solves",
            "stiff_reaction_diffusion",
            "stokes_flow",
            "buckling_inertia",
        )
        for suffix in ("", "_small", "_convergence", "_small_convergence")
    ],
)
def test_example_pictures_are_ignored_by_git(name):
    """What the examples write into the working directory never shows as untracked."""
    root = EXAMPLES.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "check-ignore", "-q", name], cwd=root, capture_output=True)
    assert out.returncode == 0, f"{name} is not in .gitignore"


def test_nonlinear_diffusion_small():
    stdout = _run("nonlinear_diffusion.py", "--small")
    fields = _fields(stdout.strip().splitlines()[-1])
    assert int(fields["n"]) == 24 * 24 and int(fields["iterations"]) <= 10
    assert float(fields["residual"]) < 1e-9
    # Second order: about 0.6 h^2 against the manufactured solution (h = 1/25).
    assert 0.4 / 25**2 < float(fields["error"]) < 0.8 / 25**2
    assert float(fields["gradient_check"]) < 1e-6


@pytest.mark.slow  # 21 s; the diffrax path stays covered by test_clients and test_small_systems
def test_stiff_reaction_diffusion_small(tmp_path):
    stdout = _run("stiff_reaction_diffusion.py", "--small", cwd=tmp_path)
    fields = _fields(stdout.strip().splitlines()[-1])
    assert int(fields["n"]) == 2 * 16 * 16 and int(fields["steps"]) > 5
    assert float(fields["gradient_check"]) < 1e-5
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["stiff_reaction_diffusion_small.png"]
    assert (tmp_path / "stiff_reaction_diffusion_small.png").stat().st_size > 10_000
    assert "wrote stiff_reaction_diffusion_small.png\n" in stdout
