"""PETSc (petsc4py): solves, transformations and failures against dense references, the
cache, and runs across MPI ranks (`mpiexec -n 2` on loopback).

Skipped when petsc4py is not installed, unless `LXS_REQUIRE_PETSC=1` (set by `.ci/run`),
which turns the missing module into a failure.
"""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lineax_sparse as lxs

from .helpers import (
    assert_solves,
    convection_diffusion2d,
    dense_from_data,
    elasticity2d,
    load,
    operator,
    poisson2d,
    random_vector,
    rigid_body_modes2d,
    with_data,
)


if importlib.util.find_spec("petsc4py") is None:
    if os.environ.get("LXS_REQUIRE_PETSC") == "1":
        raise ImportError(
            "LXS_REQUIRE_PETSC=1 but petsc4py is not installed: run .ci/install-petsc"
        )
    pytest.skip("petsc4py is not installed (see .ci/install-petsc)", allow_module_level=True)

pytestmark = pytest.mark.petsc

PSD = lx.positive_semidefinite_tag
HERE = pathlib.Path(__file__).parent
MUMPS = {"pc_factor_mat_solver_type": "mumps"}

# Every configuration a user is likely to pick, for a symmetric positive definite and a
# non-symmetric matrix. (name, solver, accepts non-symmetric)
CONFIGURATIONS = {
    "auto": (lxs.PETSc(rtol=1e-10), True),
    "hypre": (lxs.PETSc(pc_type="hypre", options={"pc_hypre_type": "boomeramg"}, rtol=1e-10), True),
    "bcgs-ilu": (lxs.PETSc(ksp_type="bcgs", pc_type="ilu", rtol=1e-10), True),
    "mumps-lu": (lxs.PETSc(ksp_type="preonly", pc_type="lu", options=MUMPS), True),
    "mumps-cholesky": (lxs.PETSc(ksp_type="preonly", pc_type="cholesky", options=MUMPS), False),
    "petsc-lu": (lxs.PETSc(ksp_type="preonly", pc_type="lu"), True),
}


def _problem(kind: str):
    if kind == "spd":
        return operator(poisson2d(12), PSD)
    return operator(convection_diffusion2d(12, peclet=2.0))


def _cases():
    for name, (_, nonsymmetric) in CONFIGURATIONS.items():
        yield name, "spd"
        if nonsymmetric:
            yield name, "nonsymmetric"


def _tolerance(name: str, dtype) -> float:
    if jnp.dtype(dtype) == jnp.float32:
        return 2e-4
    return 1e-11 if name.startswith(("mumps", "petsc-lu")) else 1e-8


def _close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    error = np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300)
    assert error <= rtol, f"relative error {error:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name,kind", list(_cases()))
def test_solve_jit_grad_against_dense(name, kind, dtype, getkey):
    solver, _ = CONFIGURATIONS[name]
    op = _problem(kind)
    op = with_data(op, op.data.astype(dtype))
    b = random_vector(getkey(), op.size, dtype)
    dense = dense_from_data(op, op.data)
    rtol = _tolerance(name, dtype)

    x = lx.linear_solve(op, b, solver).value
    assert x.dtype == dtype
    # References in double precision from the same (single-precision) values: a float32
    # dense solve carries its own error of kappa eps32, as large as the tolerance.
    wide = lambda v: v.astype(jnp.float64)
    _close(x, jnp.linalg.solve(wide(dense), wide(b)), rtol)
    x_jit = jax.jit(lambda o, v: lx.linear_solve(o, v, solver).value)(op, b)
    _close(x_jit, x, rtol)

    # Gradients with respect to the values and the right-hand side (the adjoint is a
    # transposed solve: KSPSolveTranspose, hypre's A^T KSP, or the symmetric shortcut).
    weights = jnp.cos(jnp.arange(op.size, dtype=dtype))

    def loss(data, vector):
        return jnp.sum(weights * lx.linear_solve(with_data(op, data), vector, solver).value)

    def reference(data, vector):
        x = jnp.linalg.solve(dense_from_data(op, wide(data)), wide(vector))
        return jnp.sum(wide(weights) * x)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(op.data, b)
    expected = jax.grad(reference, argnums=(0, 1))(op.data, b)
    for got, want in zip(grads, expected, strict=True):
        _close(got, want, 10 * rtol)


@pytest.mark.parametrize("name", ["auto", "hypre", "mumps-lu"])
def test_jvp_and_vmap(name, getkey):
    solver, _ = CONFIGURATIONS[name]
    op = _problem("nonsymmetric")
    b = random_vector(getkey(), op.size, jnp.float64)
    direction = random_vector(getkey(), op.data.size, jnp.float64)
    dense = dense_from_data(op, op.data)

    def solve(data):
        return lx.linear_solve(with_data(op, data), b, solver).value

    def reference(data):
        return jnp.linalg.solve(dense_from_data(op, data), b)

    _, tangent = jax.jvp(solve, (op.data,), (direction,))
    _, expected = jax.jvp(reference, (op.data,), (direction,))
    _close(tangent, expected, 1e-7)

    # vmap over right-hand sides: one setup, one host call.
    bs = jnp.stack([b, 2 * b + 1, jnp.sin(b)])
    lxs.clear_cache()
    xs = jax.vmap(lambda v: lx.linear_solve(op, v, solver).value)(bs)
    _close(xs, jnp.linalg.solve(dense, bs.T).T, 1e-8)
    info = lxs.cache_info()
    assert info.factorizations == 1 and info.host_calls == 1

    # vmap over matrices of one pattern.
    datas = jnp.stack([op.data, op.data * 1.5, op.data * 0.5])
    xs = jax.vmap(lambda d: lx.linear_solve(with_data(op, d), b, solver).value)(datas)
    for x, data in zip(xs, datas, strict=True):
        _close(x, jnp.linalg.solve(dense_from_data(op, data), b), 1e-8)


def test_setup_is_reused_by_solves_and_the_backward_pass(getkey):
    op = _problem("spd")
    solver = lxs.PETSc()
    b = random_vector(getkey(), op.size, jnp.float64)
    state = solver.init(op, {})

    @jax.jit
    def loss(data, vector):
        return jnp.sum(lx.linear_solve(with_data(op, data), vector, solver).value ** 2)

    jax.grad(loss, argnums=(0, 1))(op.data, b)
    assert lxs.cache_info().factorizations == 1
    for _ in range(3):
        lx.linear_solve(op, b * 2, solver, state=state)
    info = lxs.cache_info()
    assert info.factorizations == 1 and info.hits >= 3


def test_symmetric_compliance_adjoint_is_answered_from_memory(getkey):
    # The gradient of b^T x (compliance) needs A^-T b = x for symmetric values: no solve.
    op = _problem("spd")
    solver = lxs.PETSc()
    b = random_vector(getkey(), op.size, jnp.float64)

    def compliance(data):
        return b @ lx.linear_solve(with_data(op, data), b, solver).value

    grad = jax.grad(compliance)(op.data)
    assert lxs.cache_info().reused_solutions == 1
    dense = dense_from_data(op, op.data)
    x = jnp.linalg.solve(dense, b)
    rows, cols = op.indices[:, 0], op.indices[:, 1]
    _close(grad, -x[rows] * x[cols], 1e-7)


def test_hypre_transposed_solves_use_a_ksp_of_the_transpose(getkey):
    # BoomerAMG's transpose is not applied by PETSc 3.18 (a KSPSolveTranspose "converges"
    # in 0 iterations with a residual of 1): the adjoint must come from a KSP of A^T.
    op = _problem("nonsymmetric")
    solver, _ = CONFIGURATIONS["hypre"]
    b = random_vector(getkey(), op.size, jnp.float64)
    state = solver.init(op, {})
    transposed, _ = solver.transpose(state, {})
    x = lx.linear_solve(op.transpose(), b, solver, state=transposed).value
    matrix = convection_diffusion2d(12, peclet=2.0)
    _close(x, spla.spsolve(matrix.T.tocsc(), np.asarray(b)), 1e-8)
    assert lxs.cache_info().factorizations == 2  # A's hierarchy, then A^T's


@pytest.mark.parametrize("pc_type", ["ml", "gamg", "jacobi"])
def test_non_symmetric_adjoints_use_a_ksp_of_the_transpose(pc_type, getkey):
    # ML cannot apply its transpose at all, nor SOR (GAMG's smoother for non-symmetric
    # matrices): a PETSc error that corrupts the KSP. The transposed solves never ask.
    op = _problem("nonsymmetric")
    solver = lxs.PETSc(pc_type=pc_type, rtol=1e-10)
    b = random_vector(getkey(), op.size, jnp.float64)
    grad = jax.grad(lambda v: jnp.sum(jnp.sin(lx.linear_solve(op, v, solver).value)))(b)
    dense = dense_from_data(op, op.data)
    expected = jax.grad(lambda v: jnp.sum(jnp.sin(jnp.linalg.solve(dense, v))))(b)
    _close(grad, expected, 1e-8)


def test_near_nullspace_and_block_size_speed_up_gamg_on_elasticity(getkey):
    matrix = elasticity2d(48, 16).tocsr()
    op = operator(matrix, PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    modes = rigid_body_modes2d(48, 16)
    plain = lx.linear_solve(op, b, lxs.PETSc(), throw=False)
    guided = lx.linear_solve(op, b, lxs.PETSc(near_nullspace=modes, block_size=2), throw=False)
    assert guided.result == lx.RESULTS.successful
    expected = spla.spsolve(matrix.tocsc(), np.asarray(b))
    _close(guided.value, expected, 1e-6)
    assert int(guided.stats["num_steps"]) < int(plain.stats["num_steps"])


def test_initial_guess_saves_steps(getkey):
    op = _problem("spd")
    b = random_vector(getkey(), op.size, jnp.float64)
    solver = lxs.PETSc()
    cold = lx.linear_solve(op, b, solver)
    warm = lx.linear_solve(op, b, solver, options={"y0": cold.value * (1 + 1e-6)})
    assert int(warm.stats["num_steps"]) < int(cold.stats["num_steps"])
    _close(warm.value, cold.value, 1e-7)


@pytest.mark.parametrize("guess", [1e100, 1e160, 1e300, -1e300, "mixed"])
@pytest.mark.parametrize("name,kind", [("auto", "spd"), ("auto", "nonsymmetric"), ("hypre", "spd")])
def test_a_guess_far_worse_than_zero_starts_from_zero(name, kind, guess, getkey):
    # Such a guess was a breakdown at step 0 (PETSc's residual norm overflowed or the
    # iteration stalled): a start is now used only where it leaves less residual than zero.
    solver, _ = CONFIGURATIONS[name]
    op = _problem(kind)
    b = random_vector(getkey(), op.size, jnp.float64)
    if guess == "mixed":
        y0 = np.array([1e300, -1.0, 1e-300, -1e150, 3.0, 1e-200])[np.arange(op.size) % 6]
    else:
        y0 = np.full(op.size, guess)
    zero = lx.linear_solve(op, b, solver, throw=False)
    far = lx.linear_solve(op, b, solver, options={"y0": jnp.asarray(y0)}, throw=False)
    assert far.result == lx.RESULTS.successful
    assert int(far.stats["num_steps"]) <= int(zero.stats["num_steps"])
    _close(far.value, jnp.linalg.solve(dense_from_data(op, op.data), b), 1e-8)


@pytest.mark.parametrize("name", ["west0479.mtx", "rajat19.mtx"])
def test_real_matrices_from_suitesparse_with_mumps(name):
    # west0479: non-symmetric, badly scaled; rajat19: a circuit, condition number ~1e9.
    matrix = load(name)
    op = operator(matrix)
    b = jnp.asarray(np.cos(np.arange(matrix.shape[0])))
    x = np.asarray(lx.linear_solve(op, b, CONFIGURATIONS["mumps-lu"][0]).value)
    reference = spla.spsolve(matrix.tocsc(), np.asarray(b))
    # Condition numbers 9e10 and 5e11: a fixed 1e-6 against another solver's answer asked
    # for more than backward stability promises (west0479: kappa eps = 1e-4).
    assert_solves(matrix, x, b, reference=reference)


# ---------------------------------------------------------------- failures


def test_failures_are_results_never_exceptions(getkey):
    spd = _problem("spd")
    b = random_vector(getkey(), spd.size, jnp.float64)

    few = lx.linear_solve(spd, b, lxs.PETSc(max_steps=2), throw=False)
    assert few.result == lx.RESULTS.max_steps_reached
    assert int(few.stats["num_steps"]) == 2

    data = spd.data.at[3].set(jnp.nan)
    bad = lx.linear_solve(with_data(spd, data), b, lxs.PETSc(), throw=False)
    assert bad.result == lx.RESULTS.nonfinite_input
    assert bool(jnp.all(jnp.isnan(bad.value)))

    # A singular matrix (one row zeroed, its entries kept as stored zeros) under LU.
    laplacian = poisson2d(6).tocsr()
    laplacian.data[laplacian.indptr[5] : laplacian.indptr[6]] = 0
    singular = operator(laplacian)
    for solver in (CONFIGURATIONS["mumps-lu"][0], CONFIGURATIONS["petsc-lu"][0]):
        outcome = lx.linear_solve(singular, b[: singular.size], solver, throw=False)
        assert outcome.result == lx.RESULTS.singular
        assert bool(jnp.all(jnp.isnan(outcome.value)))

    # Tagged positive definite but indefinite (a shifted Laplacian): CG may converge, stop
    # or break down, but never returns a wrong answer as a success.
    shifted = poisson2d(12) - 4.0 * sp.eye_array(144)
    outcome = lx.linear_solve(operator(shifted.tocsr(), PSD), b, lxs.PETSc(), throw=False)
    if outcome.result == lx.RESULTS.successful:
        x = np.asarray(outcome.value)
        assert np.linalg.norm(shifted @ x - np.asarray(b)) <= 1e-7 * np.linalg.norm(b)
    else:
        assert bool(jnp.all(jnp.isnan(outcome.value)))


def test_zero_and_nonfinite_right_hand_sides(getkey):
    op = _problem("nonsymmetric")
    solver = lxs.PETSc()
    zero = lx.linear_solve(op, jnp.zeros(op.size), solver)
    assert bool(jnp.all(zero.value == 0))
    b = random_vector(getkey(), op.size, jnp.float64).at[0].set(jnp.inf)
    outcome = lx.linear_solve(op, b, solver, throw=False)
    assert outcome.result == lx.RESULTS.nonfinite_input


def test_extreme_scales_are_solved(getkey):
    op = _problem("spd")
    b = random_vector(getkey(), op.size, jnp.float64)
    x = lx.linear_solve(op, b, lxs.PETSc()).value
    for factor in (1e-300, 1e300):
        scaled = lx.linear_solve(with_data(op, op.data * factor), b * factor, lxs.PETSc())
        _close(scaled.value, x, 1e-7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"ksp_type": "Not A Type"}, "ksp_type"),
        ({"options": {"pc hypre": 1}}, "options"),
        ({"options": {"pc_gamg_threshold": [1]}}, "options"),
        ({"options": ["pc_type"]}, "options"),
        ({"options": {"options_left": True}}, "global option"),
        ({"ksp_type": "preonly", "pc_type": "gamg"}, "preonly"),
        ({"rtol": 0.0, "atol": 0.0}, "rtol"),
        ({"max_steps": 0}, "max_steps"),
        ({"block_size": 0}, "block_size"),
        ({"pc_type": "jacobi", "near_nullspace": np.ones((4, 1))}, "GAMG"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lxs.PETSc(**kwargs)


def test_operators_it_cannot_take_are_refused_at_trace_time(getkey):
    b = random_vector(getkey(), 144, jnp.float64)
    with pytest.raises(ValueError, match="ksp_type='cg'"):
        lx.linear_solve(_problem("nonsymmetric"), b, lxs.PETSc(ksp_type="cg"))
    complex_op = operator(poisson2d(12).astype(np.complex128), PSD)
    with pytest.raises(ValueError, match="real matrices"):
        lx.linear_solve(complex_op, b.astype(jnp.complex128), lxs.PETSc())
    with pytest.raises(ValueError, match="block_size"):
        lx.linear_solve(_problem("spd"), b, lxs.PETSc(block_size=5))
    with pytest.raises(ValueError, match="near_nullspace"):
        lx.linear_solve(_problem("spd"), b, lxs.PETSc(near_nullspace=np.ones((10, 1))))


def test_missing_petsc4py_gives_install_instructions(monkeypatch):
    import importlib.util as util

    real = util.find_spec
    monkeypatch.setattr(
        util, "find_spec", lambda name, *a: None if name == "petsc4py" else real(name, *a)
    )
    with pytest.raises(ImportError, match="install-petsc"):
        lxs.PETSc()


def test_user_values_and_options_are_not_mutated(getkey):
    op = _problem("spd")
    data = np.asarray(op.data).copy()
    options = {"pc_gamg_threshold": 0.01}
    b = random_vector(getkey(), op.size, jnp.float64)
    lx.linear_solve(op, b, lxs.PETSc(options=options))
    assert options == {"pc_gamg_threshold": 0.01}
    np.testing.assert_array_equal(np.asarray(op.data), data)


def test_options_reach_only_their_ksp_and_leave_the_database(getkey):
    from petsc4py import PETSc

    op = _problem("nonsymmetric")
    b = random_vector(getkey(), op.size, jnp.float64)
    restarted = lxs.PETSc(ksp_type="gmres", pc_type="jacobi", options={"ksp_gmres_restart": 2})
    plain = lxs.PETSc(ksp_type="gmres", pc_type="jacobi")
    short = lx.linear_solve(op, b, restarted)
    long = lx.linear_solve(op, b, plain)
    assert int(short.stats["num_steps"]) > int(long.stats["num_steps"])
    assert not [key for key in PETSc.Options().getAll() if key.startswith("lxs")]


# ---------------------------------------------------------------- memory


def test_objects_are_bounded_by_the_cache_and_freed(getkey):
    from lineax_sparse.backends.petsc import mpi as petsc_mpi

    op = _problem("spd")
    b = random_vector(getkey(), op.size, jnp.float64)
    solve = jax.jit(lambda data: lx.linear_solve(with_data(op, data), b, lxs.PETSc()).value)
    for step in range(30):
        solve(op.data * (1 + step))
    objects = petsc_mpi.channel().objects.local
    assert len(objects) <= 2  # one per pattern kept (the old one freed before the next)
    info = lxs.cache_info()
    assert info.factorizations == 30 and info.nbytes <= info.limit
    lxs.clear_cache()
    solve(op.data * 100)  # the next call flushes what the clear released
    assert len(objects) == 1


def test_nbytes_grows_with_the_hierarchy(getkey):
    small, large = operator(poisson2d(16), PSD), operator(poisson2d(64), PSD)
    for op in (small, large):
        lx.linear_solve(op, jnp.ones(op.size), lxs.PETSc())
    from lineax_sparse._host.registry import registry

    sizes = sorted(registry.size_of(key) for key in list(registry._entries) if key[0] == "factor")
    assert len(sizes) == 2 and sizes[1] > 8 * sizes[0] > 0


# ---------------------------------------------------------------- processes


def test_a_petsc_error_in_a_solve_never_crashes_the_process():
    # KSPSolveTranspose through SOR raises in PETSc 3.18 and leaves the KSP corrupted:
    # destroying it segfaulted. The objects layer keeps such a KSP alive forever instead.
    script = """
import numpy as np, scipy.sparse as sp
from lineax_sparse.backends.petsc.objects import Objects
m = 20
t = sp.diags_array([-1.0, 2.5, -0.5], offsets=[-1, 0, 1], shape=(m, m))
A = (sp.kron(sp.eye_array(m), t) + sp.kron(t, sp.eye_array(m))).tocsr()
objects = Objects()
config = ("gmres", "gamg", (("mg_levels_pc_type", "sor"),), "right", 1)
assert objects.build(False, 1, m * m, A.indptr, A.indices, A.data, None, config)[0] == 0
x, reason, steps, message = objects.solve(1, "transpose", np.ones(m * m), None, 1e-8, 0, 50)
assert message and np.all(np.isnan(x)), message
objects.free_all()
print("survived")
"""
    done = _run([sys.executable, "-c", script])
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-2000:]


def _run(args, timeout=240, extra_env=None):
    # This process initialized MPI as a singleton (PETSc did, in the tests above), which
    # puts Open MPI's and PMIx's variables in its environment: a child `mpiexec` that
    # inherits them takes itself for a rank of this job and fails without a word.
    prefixes = ("OMPI_", "PMIX_", "OPAL_", "PRTE_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.update(extra_env or {})
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
        env=env,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # A hung job fails the test. SIGTERM first: `mpiexec` then ends its ranks, which
        # the SIGKILL of `subprocess.run` left running (each in its own process group).
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        raise
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def test_interpreter_exit_releases_petsc_objects_cleanly():
    program = HERE / "petsc_program.py"
    done = _run([sys.executable, str(program), "--mode", "plain"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK ranks=1" in done.stdout


def _mpiexec(ranks: int) -> list[str]:
    launcher = shutil.which("mpiexec")
    if launcher is None:
        if os.environ.get("LXS_REQUIRE_PETSC") == "1":
            raise RuntimeError("LXS_REQUIRE_PETSC=1 but mpiexec is not on PATH")
        pytest.skip("mpiexec is not installed")
    command = [launcher, "-n", str(ranks), "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return command


@pytest.mark.slow  # 16 s; MPI stays covered by test_elasticity_example_on_two_ranks
def test_two_ranks_give_the_answers_of_one(tmp_path):
    program = str(HERE / "petsc_program.py")
    one = _run([sys.executable, program, "--mode", "plain", "--save", str(tmp_path / "one.npz")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(
        _mpiexec(2)
        + [sys.executable, program, "--mode", "plain", "--save", str(tmp_path / "two.npz")]
    )
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-3000:]
    assert "OK ranks=2" in two.stdout
    first, second = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(first.files) == sorted(second.files)
    for name in first.files:
        if name != "shares":
            scale = np.max(np.abs(first[name]))
            assert np.max(np.abs(first[name] - second[name])) <= 1e-8 * scale, name
    # The factorization lives on both ranks, each holding part of it (measured: 64% of the
    # one-rank total each at n = 25,600; per-rank overheads of a few MB stay).
    (alone,), shares = first["shares"], second["shares"]
    assert shares.shape == (2,) and np.all(shares > 0)
    assert np.max(shares) < 0.8 * alone, (alone, shares)


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_workers_are_released_when_rank_zero_fails(mode):
    program = str(HERE / "petsc_program.py")
    done = _run(_mpiexec(2) + [sys.executable, program, "--mode", mode], timeout=120)
    assert done.returncode != 0
    assert "OK" not in done.stdout


def test_served_workers_are_released_when_rank_zero_never_solves():
    # The workers used to enter `PetscInitialize` (collective) at once and wait there for
    # a rank 0 that never made a PETSc solve: the job hung at exit.
    program = str(HERE / "petsc_program.py")
    done = _run(_mpiexec(2) + [sys.executable, program, "--mode", "idle"], timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "OK idle" in done.stdout


@pytest.mark.parametrize("serve", ["none", "workers"])
def test_solving_under_mpiexec_without_petsc_serve_is_refused_and_the_job_ends(serve):
    # "workers": rank 0 solved alone, printed its answer and then waited forever in
    # `MPI_Finalize` for the workers that served it. "none": every rank solved alone,
    # twice the work for one answer.
    program = str(HERE / "petsc_program.py")
    done = _run(_mpiexec(2) + [sys.executable, program, "--serve", serve], timeout=120)
    assert done.returncode != 0
    assert "OK" not in done.stdout
    assert "did not call `lineax_sparse.petsc_serve()`" in done.stderr, done.stderr[-3000:]


def test_without_petsc_serve_the_error_comes_at_trace_time_before_mpi():
    # Refused from the launcher's environment, before PETSc or MPI is initialized: a rank
    # 0 whose workers serve would otherwise wait for them in `PetscInitialize`.
    script = """
import sys, jax, jax.numpy as jnp, lineax as lx, scipy.sparse as sp, lineax_sparse as lxs
op = lxs.SparseOperator.from_scipy(sp.eye_array(4).tocsr(), tags=lx.positive_semidefinite_tag)
try:
    jax.jit(lambda b: lx.linear_solve(op, b, lxs.PETSc()).value).trace(jnp.ones(4))
except RuntimeError as error:
    print("refused" if "petsc_serve()" in str(error) else error)
print(sorted(m for m in ("petsc4py.PETSc", "mpi4py.MPI") if m in sys.modules))
"""
    done = _run([sys.executable, "-c", script], extra_env={"OMPI_COMM_WORLD_SIZE": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["refused", "[]"], done.stdout


def test_importing_the_package_loads_neither_petsc_nor_mpi():
    script = (
        "import sys, lineax_sparse as lxs; lxs.PETSc(); "
        "print(sorted(m for m in ('petsc4py.PETSc', 'mpi4py.MPI') if m in sys.modules))"
    )
    done = _run([sys.executable, "-c", script])
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


# ---------------------------------------------------------------- the example

EXAMPLE = HERE.parent / "examples" / "elasticity_3d_petsc.py"


def _fields(stdout: str) -> dict[str, str]:
    import re

    return dict(re.findall(r"(\w+)=(\S+)", stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("pc", ["gamg", "hypre", "mumps"])
def test_elasticity_example_small(pc):
    done = _run([sys.executable, str(EXAMPLE), "--small", "--pc", pc])
    assert done.returncode == 0, done.stderr[-3000:]
    fields = _fields(done.stdout)
    assert int(fields["dofs"]) == 1764 and fields["ranks"] == "1"
    assert float(fields["true_residual"]) < 1e-8
    assert float(fields["gradient_check"]) < 1e-6
    assert float(fields["closed_form_check"]) < 1e-7


def test_elasticity_example_on_two_ranks():
    one = _fields(_run([sys.executable, str(EXAMPLE), "--small"]).stdout)
    done = _run(_mpiexec(2) + [sys.executable, str(EXAMPLE), "--small"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    two = _fields(done.stdout)
    assert two["ranks"] == "2"
    assert float(two["true_residual"]) < 1e-8 and float(two["gradient_check"]) < 1e-6
    # The same compliance to the solver's tolerance (GAMG's hierarchy differs by rank).
    assert abs(float(two["compliance"]) / float(one["compliance"]) - 1) < 1e-7


def test_serving_without_mpi_is_a_no_op():
    script = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "import lineax_sparse as lxs\n"
        "print(lxs.petsc_serve(), lxs.petsc_ranks())"
    )
    done = _run([sys.executable, "-c", script])
    assert done.returncode == 0 and done.stdout.split() == ["0", "1"], done.stderr[-2000:]


def test_option_names_are_case_insensitive_and_nullspace_reaches_boomeramg(getkey):
    matrix = elasticity2d(48, 16).tocsr()
    op = operator(matrix, PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    modes = rigid_body_modes2d(48, 16)
    base = {"pc_hypre_type": "boomeramg", "pc_hypre_boomeramg_P_max": 4}
    plain = lx.linear_solve(op, b, lxs.PETSc(pc_type="hypre", options=base, block_size=2))
    guided = lx.linear_solve(
        op,
        b,
        lxs.PETSc(
            pc_type="hypre",
            options={
                **base,
                "pc_hypre_boomeramg_vec_interp_variant": 2,
                "pc_hypre_boomeramg_nodal_coarsen": 6,
            },
            near_nullspace=modes,
            block_size=2,
        ),
    )
    expected = spla.spsolve(matrix.tocsc(), np.asarray(b))
    for solution in (plain, guided):
        _close(solution.value, expected, 1e-6)
    assert lxs.PETSc(options={"PC_GAMG_Threshold": 0.1}).options == (("pc_gamg_threshold", "0.1"),)
    assert int(guided.stats["num_steps"]) != int(plain.stats["num_steps"])  # vectors used


def test_a_failed_setup_is_a_breakdown_and_the_process_lives_on(getkey):
    # BoomerAMG's interpolation from vectors needs nodal coarsening: without it the setup
    # raises inside PETSc, and so does destroying the half-made KSP.
    op = operator(elasticity2d(12, 4).tocsr(), PSD)
    b = random_vector(getkey(), op.size, jnp.float64)
    solver = lxs.PETSc(
        pc_type="hypre",
        options={"pc_hypre_boomeramg_vec_interp_variant": 2},
        near_nullspace=rigid_body_modes2d(12, 4),
        block_size=2,
    )
    for _ in range(2):
        outcome = lx.linear_solve(op, b, solver, throw=False)
        assert outcome.result == lx.RESULTS.breakdown
        assert bool(jnp.all(jnp.isnan(outcome.value)))
    assert lx.linear_solve(op, b, lxs.PETSc()).result == lx.RESULTS.successful


def test_a_solve_petsc_stops_early_on_its_own_norm_goes_on_to_the_tolerance():
    # CG tested on the preconditioned residual (chosen through the options) stops at 75
    # iterations on this badly scaled matrix, its true residual above 1e-8: the host's
    # check continues from that iterate with a tighter tolerance (measured: 34 more).
    laplacian = poisson2d(30)
    scaling = sp.diags_array(np.logspace(0, 3, 900))
    matrix = (scaling @ laplacian @ scaling).tocsr()
    b = jnp.asarray(np.cos(np.arange(900.0)))
    solver = lxs.PETSc(pc_type="jacobi", options={"ksp_norm_type": "preconditioned"})
    outcome = lx.linear_solve(operator(matrix, PSD), b, solver, throw=False)
    assert outcome.result == lx.RESULTS.successful
    x = np.asarray(outcome.value)
    assert np.linalg.norm(matrix @ x - np.asarray(b)) <= 1e-8 * np.linalg.norm(b)
    assert float(outcome.stats["relative_residual"]) <= 1e-8
