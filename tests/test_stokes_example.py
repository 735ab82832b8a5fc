"""The saddle point examples: the Taylor-Hood element matrices of examples/stokes_flow.py
against exact polynomial fields, its system's inertia, and the examples' small runs."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp


EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import stokes_flow  # noqa: E402


def _full_system(cells, alpha=None):
    """The unreduced matrix over every unknown (x, y velocities of all nodes, all pressures)."""
    mesh = stokes_flow.make_mesh(cells)
    if alpha is None:
        alpha = np.zeros(mesh.quadrature_points.shape[:2])
    ke = stokes_flow.element_matrices(np, mesh.corners, alpha)
    rows = np.repeat(mesh.dofs, 15, axis=1).ravel()
    cols = np.tile(mesh.dofs, (1, 15)).ravel()
    size = mesh.number.size
    return mesh, sp.csr_matrix((ke.ravel(), (rows, cols)), shape=(size, size))


def _p1_mass(mesh):
    """int phi_i phi_j over the linear hat functions of the vertices (independent formula)."""
    side = mesh.cells + 1
    vertices = mesh.dofs[:, 12:] - mesh.lid.size  # the pressures follow the 2 M velocities
    d = mesh.corners[:, 1] - mesh.corners[:, 0]
    e = mesh.corners[:, 2] - mesh.corners[:, 0]
    area = 0.5 * np.abs(d[:, 0] * e[:, 1] - d[:, 1] * e[:, 0])
    local = (np.ones((3, 3)) + np.eye(3)) / 12
    values = area[:, None, None] * local
    rows = np.repeat(vertices, 3, axis=1).ravel()
    cols = np.tile(vertices, (1, 3)).ravel()
    return sp.csr_matrix((values.ravel(), (rows, cols)), shape=(side**2, side**2))


def test_divergence_of_a_quadratic_field_is_exact():
    """B u = -M_p div(u) for a quadratic u, whose divergence is linear (a P1 field)."""
    mesh, full = _full_system(5)
    m = mesh.nodes.shape[0]
    x, y = mesh.nodes.T
    u = np.concatenate([x**2 + 3 * x * y - y, y**2 - 2 * x**2 + x])
    vertices = mesh.nodes.reshape(11, 11, 2)[::2, ::2].reshape(-1, 2)
    divergence = 2 * vertices[:, 0] + 3 * vertices[:, 1] + 2 * vertices[:, 1]
    b = full[2 * m :, : 2 * m]
    expected = -_p1_mass(mesh) @ divergence
    assert np.max(np.abs(b @ u - expected)) < 1e-13 * np.max(np.abs(expected))


def test_a_polynomial_stokes_solution_is_recovered_to_rounding():
    """u = curl of a cubic stream function (quadratic, divergence-free) and a linear p lie in
    the Taylor-Hood spaces: with -Laplace(u) + grad p as the (constant) force and u on the
    boundary, the discrete solution is the exact one."""
    cells = 6
    mesh, full = _full_system(cells)
    x, y = mesh.nodes.T
    # psi = x^2 y - x y^2 + y^3 / 3 + x^3 / 6: u = (psi_y, -psi_x).
    u = np.concatenate([x**2 - 2 * x * y + y**2, -(2 * x * y - y**2 + x**2 / 2)])
    laplacian = np.array([4.0, 1.0])  # Laplace(u)
    vertices = mesh.nodes.reshape(2 * cells + 1, 2 * cells + 1, 2)[::2, ::2].reshape(-1, 2)
    p = 2 * vertices[:, 0] - 3 * vertices[:, 1] + 1
    force = -laplacian + np.array([2.0, -3.0])
    # Load vector int f . v: the integrals of the quadratic basis functions, exactly.
    values, _ = stokes_flow.p2_basis(stokes_flow.QUADRATURE_POINTS)
    d = mesh.corners[:, 1] - mesh.corners[:, 0]
    e = mesh.corners[:, 2] - mesh.corners[:, 0]
    area = 0.5 * (d[:, 0] * e[:, 1] - d[:, 1] * e[:, 0])
    integrals = area[:, None] * (stokes_flow.QUADRATURE_WEIGHTS @ values)[None, :]
    load = np.zeros(mesh.number.size)
    for component in range(2):
        np.add.at(
            load, mesh.dofs[:, 6 * component : 6 * component + 6], force[component] * integrals
        )
    exact = np.concatenate([u, p])
    free = mesh.number >= 0
    rhs = load[free] - full[free][:, ~free] @ exact[~free]
    solution = sp.linalg.spsolve(full[free][:, free].tocsc(), rhs)
    assert np.max(np.abs(solution - exact[free])) < 1e-11
    # The equations hold everywhere, not only after elimination: a residual of rounding.
    assert np.max(np.abs(full @ exact - load)[free]) < 1e-12


def test_the_reduced_system_is_the_full_one_restricted():
    """stokes_system's matrix and right-hand side, built from its own layout, are the full
    matrix's free block and minus its coupling to the lid."""
    cells, theta = 5, (0.2, 0.4, 0.6)
    mesh = stokes_flow.make_mesh(cells)
    alpha = stokes_flow.obstacle(np, mesh.quadrature_points, np.asarray(theta))
    _, full = _full_system(cells, alpha)
    matrix, rhs = stokes_flow.stokes_system(cells, theta)
    free = mesh.number >= 0
    lid = np.concatenate([mesh.lid, np.zeros(mesh.number.size - mesh.lid.size)])
    assert abs(matrix - full[free][:, free]).max() < 1e-13
    assert np.max(np.abs(rhs + full[free] @ lid)) < 1e-13
    assert np.max(np.abs(rhs)) > 0.01


@pytest.mark.parametrize("cells, size", [(75, 50_177), (150, 201_602)])
def test_sizes(cells, size):
    assert (
        stokes_flow.make_mesh(cells).size == size == 2 * (2 * cells - 1) ** 2 + (cells + 1) ** 2 - 1
    )


def test_the_system_is_symmetric_with_the_saddle_points_inertia():
    cells = 4
    matrix, _ = stokes_flow.stokes_system(cells)
    dense = matrix.toarray()
    assert np.array_equal(dense, dense.T)  # to the bit: PARDISO reads one triangle
    assert (matrix != matrix.T).nnz == 0 and not np.any(matrix.data == 0)
    eigenvalues = np.linalg.eigvalsh(dense)
    velocities = 2 * (2 * cells - 1) ** 2
    pressures = (cells + 1) ** 2 - 1
    assert np.count_nonzero(eigenvalues > 1e-8) == velocities
    assert np.count_nonzero(eigenvalues < -1e-8) == pressures
    assert matrix.shape == (velocities + pressures,) * 2


def test_stokes_system_imports_no_jax():
    program = (
        f"import sys; sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "from stokes_flow import stokes_system\n"
        "matrix, rhs = stokes_system(3)\n"
        "print(matrix.shape, rhs.shape, 'jax' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    assert out.stdout.decode().split() == ["(65,", "65)", "(65,)", "False"]


def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_stokes_flow_small(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "stokes_flow.py"), "--small", "--repeats", "1"],
        capture_output=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    stdout = out.stdout.decode()
    fields = _fields(stdout.strip().splitlines()[-1])
    assert int(fields["n"]) == 2 * 23**2 + 13**2 - 1
    assert float(fields["residual_max"]) < 1e-10  # against NumPy's assembly of the system
    assert float(fields["J_spread"]) < 1e-10  # every solver, one dissipation
    assert float(fields["gradient_check"]) < 1e-6  # jax.grad against central differences
    assert "superlu" in fields["solvers"].split(",")
    assert (tmp_path / "stokes_flow_small.png").stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["stokes_flow_small.png"]


# --- examples/buckling_inertia.py: the beam's element matrices, and the run (needs PARDISO).


def _pardiso_missing() -> str | None:
    """Why lxs.Pardiso cannot run here, or None when it can."""
    import jax.numpy as jnp
    import lineax as lx

    import lineax_sparse as lxs

    if not hasattr(lxs, "Pardiso"):
        return "this lineax-sparse has no Pardiso"
    probe = lxs.SparseOperator.from_scipy(
        sp.csc_matrix(np.array([[1.0, 2.0], [2.0, 1.0]])), tags=lx.symmetric_tag
    )
    try:
        lx.linear_solve(probe, jnp.ones(2), solver=lxs.Pardiso())
    except ImportError as error:
        return f"MKL PARDISO is not available: {error}"
    return None


def test_beam_element_matrices_are_exact_for_cubics():
    """For a cubic w on an element of length h, with (w, w') at its ends as unknowns:
    u^T K0 u = int (w'')^2 and u^T KG u = int (w')^2 (both integrands are exact)."""
    import buckling_inertia

    rng = np.random.default_rng(0)
    for h in (0.3, 1.0, 2.5):
        k0 = np.asarray(buckling_inertia.bending_stiffness(h))
        kg = np.asarray(buckling_inertia.geometric_stiffness(h))
        assert np.array_equal(k0, k0.T) and np.array_equal(kg, kg.T)
        for _ in range(3):
            c = rng.standard_normal(4)  # w = c0 + c1 x + c2 x^2 + c3 x^3
            w = np.polynomial.Polynomial(c)
            u = np.array([w(0), w.deriv()(0), w(h), w.deriv()(h)])
            bending = (w.deriv(2) ** 2).integ()
            stretch = (w.deriv() ** 2).integ()
            assert np.isclose(u @ k0 @ u, bending(h) - bending(0), rtol=1e-12)
            assert np.isclose(u @ kg @ u, stretch(h) - stretch(0), rtol=1e-12)


@pytest.mark.parametrize("supports", ["pinned", "cantilever"])
def test_buckling_inertia_small(tmp_path, supports):
    reason = _pardiso_missing()
    if reason is not None:
        pytest.skip(reason)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "buckling_inertia.py"), "--small", "--supports", supports],
        capture_output=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    stdout = out.stdout.decode()
    fields = _fields(stdout.strip().splitlines()[-1])
    assert int(fields["n"]) == 32
    assert float(fields["vs_eigsh"]) < 1e-9  # the inertia's loads are scipy's eigenvalues
    assert float(fields["vs_euler"]) < 3e-4  # 16 elements: 1.6e-4 (pinned, third load)
    euler = np.pi**2 if supports == "pinned" else np.pi**2 / 4
    assert abs(float(fields["first_load"]) - euler) < 3e-6 * euler  # 2.1e-6, 1.3e-7
    assert int(fields["scan_mismatches"]) == 0  # every count of the picture is eigsh's
    ratios = [float(r) for r in re.findall(r"error ratio\s+(\S+)", stdout)]
    assert len(ratios) == 3 and all(14 < r < 17 for r in ratios)  # h^4 convergence
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["buckling_inertia_small.png"]


def _run_without_mkl(tmp_path, script, *args):
    """Run an example in a process where MKL's runtime library is not found."""
    program = (
        "import runpy, sys\n"
        "import lineax_sparse._solver.pardiso as pardiso\n"
        "pardiso.candidates = lambda: []  # as when MKL's wheel is not installed\n"
        f"sys.argv = [{str(EXAMPLES / script)!r}, *{list(args)!r}]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, timeout=300, cwd=tmp_path
    )


def test_buckling_inertia_without_mkl_says_what_to_install(tmp_path):
    """Without MKL the example stops with the install command, no traceback."""
    out = _run_without_mkl(tmp_path, "buckling_inertia.py", "--small")
    assert out.returncode == 1
    stderr = out.stderr.decode()
    assert "pip install -e '.[pardiso]'" in stderr and "Traceback" not in stderr


def test_stokes_flow_without_mkl_skips_the_pardiso_column(tmp_path):
    out = _run_without_mkl(
        tmp_path, "stokes_flow.py", "--cells", "4", "--repeats", "1", "--no-plot"
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    stdout = out.stdout.decode()
    assert "skipping pardiso" in stdout and "pip install -e '.[pardiso]'" in stdout
    assert _fields(stdout.strip().splitlines()[-1])["solvers"] == "umfpack,superlu"
