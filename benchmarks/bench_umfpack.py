"""UMFPACK through lineax-sparse against UMFPACK called natively, one BLAS thread.

Per matrix, in turns within one process (medians): `lx.linear_solve(op, b,
lxs.UMFPACK())` on a fresh matrix each repetition (values scaled by 1 + 1e-3 i, so no
cached factor is hit; the pattern's symbolic analysis is), against the same UMFPACK
library called through ctypes without our checks (symbolic + numeric + solve, and
numeric + solve reusing one symbolic analysis, UMFPACK's default refinement) and against
`cvxopt.umfpack.linsolve` (symbolic + numeric + solve). Matrices: upwind
convection-diffusion on a 512^2 grid and a MAC Stokes saddle point.

    python benchmarks/bench_umfpack.py [--quick] [--repeats N]
"""

from common import command_line, pin_blas_threads, Step
from common.timing import time_interleaved


pin_blas_threads()

import cvxopt  # noqa: E402, I001  (first: it decides the BLAS of the SuiteSparse it loads)
import cvxopt.umfpack  # noqa: E402
import ctypes  # noqa: E402
import os  # noqa: E402

import jax  # noqa: E402
import jax.experimental.sparse as jsparse  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import lineax_sparse as lxs  # noqa: E402
from bench_superlu import stokes_2d  # noqa: E402
from lineax_sparse.backends.umfpack import library  # noqa: E402


jax.config.update("jax_enable_x64", True)


@jax.jit
def ours(operator, b):
    return lx.linear_solve(operator, b, solver=lxs.UMFPACK()).value


def convection_diffusion(m: int) -> sp.csc_matrix:
    t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
    upwind = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m))
    eye = sp.eye_array(m)
    return sp.csc_matrix(
        sp.kron(eye, t) + sp.kron(t, eye) + 0.8 * (sp.kron(eye, upwind) + sp.kron(upwind, eye))
    )


def native_steps(lib, matrix: sp.csc_matrix, b: np.ndarray):
    """UMFPACK's own calls: (symbolic + numeric + solve, numeric + solve)."""
    n = matrix.shape[0]
    ap, ai = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)
    ax = np.ascontiguousarray(matrix.data)
    control, info = library.defaults(lib), np.zeros(library.INFO)
    x, wi, w = np.empty(n), np.empty(n, np.int64), np.empty(5 * n)

    def symbolic():
        handle = ctypes.c_void_p()
        lib.umfpack_dl_symbolic(
            n, n, ap.ctypes.data, ai.ctypes.data, ax.ctypes.data, ctypes.byref(handle),
            control.ctypes.data, info.ctypes.data,
        )  # fmt: skip
        return handle

    def numeric_solve(handle):
        numeric = ctypes.c_void_p()
        lib.umfpack_dl_numeric(
            ap.ctypes.data, ai.ctypes.data, ax.ctypes.data, handle, ctypes.byref(numeric),
            control.ctypes.data, info.ctypes.data,
        )  # fmt: skip
        lib.umfpack_dl_wsolve(
            0, ap.ctypes.data, ai.ctypes.data, ax.ctypes.data, x.ctypes.data, b.ctypes.data,
            numeric, control.ctypes.data, info.ctypes.data, wi.ctypes.data, w.ctypes.data,
        )  # fmt: skip
        lib.umfpack_dl_free_numeric(ctypes.byref(numeric))
        return x

    def full():
        handle = symbolic()
        numeric_solve(handle)
        lib.umfpack_dl_free_symbolic(ctypes.byref(handle))

    kept = symbolic()
    return full, lambda: numeric_solve(kept)


def main() -> None:
    parser = command_line(__doc__, quick="128^2 and Stokes 40^2", repeats="repetitions (7)")
    args = parser.parse_args()
    repeats = args.repeats or 7
    sizes = (128, 40) if args.quick else (512, 150)
    lib = library.load()
    problems = {
        f"convection-diffusion {sizes[0]}^2": convection_diffusion(sizes[0]),
        f"Stokes MAC {sizes[1]}^2": stokes_2d(sizes[1]),
    }
    for name, matrix in problems.items():
        matrix.sort_indices()
        n = matrix.shape[0]
        b = np.random.default_rng(0).standard_normal(n)
        op = lxs.SparseOperator.from_scipy(matrix)
        operators = iter(
            jax.block_until_ready(
                [
                    lxs.SparseOperator(
                        jsparse.BCOO((op.data * (1 + 1e-3 * i), op.indices), shape=(n, n))
                    )
                    for i in range(repeats + 1)
                ]
            )
        )
        native_full, native_numeric = native_steps(lib, matrix, b)
        spmatrix = cvxopt.spmatrix(
            matrix.tocoo().data.tolist(),
            matrix.tocoo().row.tolist(),
            matrix.tocoo().col.tolist(),
            matrix.shape,
        )

        def cvxopt_call(spmatrix=spmatrix, b=b):
            x = cvxopt.matrix(b)
            cvxopt.umfpack.linsolve(spmatrix, x)

        timings = time_interleaved(
            {
                "ours": Step(lambda ops=operators, b=b: ours(next(ops), b).block_until_ready()),
                "native": Step(native_full),
                "native, symbolic kept": Step(native_numeric),
                "cvxopt.umfpack": Step(cvxopt_call),
            },
            repeats,
            alternate=True,
        )
        base = timings["ours"].median
        print(f"{name} (n = {n:,}), medians of {repeats}, load {os.getloadavg()}")
        for step, timing in timings.items():
            print(f"  {step:24s} {timing.median:8.3f} s   ours / this {base / timing.median:.2f}")


if __name__ == "__main__":
    main()
