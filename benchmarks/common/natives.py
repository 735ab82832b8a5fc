"""Native direct solvers called as a user without lineax-sparse would call them, one
interface for all: a `Native` turns a matrix into the library's own input once per
repetition, untimed (`prepare`), and `solve` times the ordering, the factorization and one
solve, returning x as a NumPy vector.

The libraries: scipy's SuperLU (`splu`, with the ordering lineax-sparse's `SuperLU()` would
choose or with COLAMD), cvxopt's UMFPACK and CHOLMOD, KLU through `klujax`, and the raw
bindings lineax-sparse's own UMFPACK and PARDISO backends call (`raw_umfpack`, `raw_pardiso`:
a reason string when the installed lineax-sparse has none). Unlike the rest of the harness
this module loads numpy: import it after `pin_blas_threads()` and after cvxopt.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


@dataclasses.dataclass(frozen=True)
class Native:
    """`prepare(matrix, b)` gives the library's inputs as a dict (untimed; a fresh copy
    each time, as some libraries overwrite their right-hand side); `solve(inputs)`
    factorizes and solves, returning x, and leaves its factor objects in `inputs["factor"]`
    so that the caller frees them outside the timed call (as ours are: our cache drops
    them when it is cleared)."""

    prepare: Callable[[sp.csc_matrix, np.ndarray], Any]
    solve: Callable[[Any], np.ndarray]


def ours_superlu_ordering(matrix: sp.csc_matrix) -> str:
    """The column ordering `lxs.SuperLU()` ("auto", pivot threshold 1) takes for `matrix`."""
    from lineax_sparse.backends.numerics import column_maxima, is_hermitian
    from lineax_sparse.backends.pattern import Pattern
    from lineax_sparse.backends.superlu.ordering import auto_ordering

    structure = sp.csc_matrix((np.ones(matrix.nnz), matrix.indices, matrix.indptr), matrix.shape)
    symmetric = (structure != structure.T).nnz == 0
    coo = matrix.tocoo()
    pattern = Pattern(matrix.shape[0], np.stack([coo.row, coo.col], axis=1).astype(np.int32))

    def hermitian() -> bool:
        return is_hermitian(pattern, pattern.csc(pattern.assemble(coo.data)).data)

    return auto_ordering(symmetric, matrix, column_maxima(matrix), 1.0, hermitian)


def superlu(ordering: str | None) -> Native:
    """`splu(A, permc_spec=ordering).solve(b)`; `None`: the ordering ours would take (chosen
    untimed: an O(nnz) test of the values)."""

    def prepare(matrix, b):
        return {"matrix": matrix, "b": b, "ordering": ordering or ours_superlu_ordering(matrix)}

    def solve(inputs):
        lu = inputs["factor"] = spla.splu(inputs["matrix"], permc_spec=inputs["ordering"])
        return lu.solve(inputs["b"])

    return Native(prepare, solve)


def _spmatrix(matrix: sp.csc_matrix):
    """A `cvxopt.spmatrix` with the entries of `matrix` (CSC, sorted indices)."""
    import cvxopt

    columns = np.repeat(np.arange(matrix.shape[1]), np.diff(matrix.indptr))
    return cvxopt.spmatrix(
        cvxopt.matrix(matrix.data),
        cvxopt.matrix(matrix.indices.astype(np.int64), tc="i"),
        cvxopt.matrix(columns.astype(np.int64), tc="i"),
        matrix.shape,
    )


def cvxopt_umfpack() -> Native:
    """cvxopt's UMFPACK: `symbolic`, `numeric`, `solve` (real or complex)."""
    import cvxopt
    from cvxopt import umfpack

    def prepare(matrix, b):
        return {"matrix": _spmatrix(matrix), "rhs": cvxopt.matrix(b.copy())}

    def solve(inputs):
        matrix, rhs = inputs["matrix"], inputs["rhs"]
        symbolic = umfpack.symbolic(matrix)
        numeric = umfpack.numeric(matrix, symbolic)
        inputs["factor"] = symbolic, numeric
        umfpack.solve(matrix, numeric, rhs)
        return np.asarray(rhs).ravel()

    return Native(prepare, solve)


def cvxopt_cholmod() -> Native:
    """cvxopt's CHOLMOD on the lower triangle (its default options): `symbolic`,
    `numeric`, `solve`. For symmetric positive definite matrices only."""
    import cvxopt
    from cvxopt import cholmod

    def prepare(matrix, b):
        return {"lower": _spmatrix(sp.tril(matrix, format="csc")), "rhs": cvxopt.matrix(b.copy())}

    def solve(inputs):
        lower, rhs = inputs["lower"], inputs["rhs"]
        factor = inputs["factor"] = cholmod.symbolic(lower)
        cholmod.numeric(lower, factor)
        cholmod.solve(factor, rhs)
        return np.asarray(rhs).ravel()

    return Native(prepare, solve)


def klu() -> Native | str:
    """KLU through `klujax.solve` (COO in, jitted: analysis, factorization and solve in
    one call); a reason when klujax is not installed."""
    try:
        import jax
        import jax.numpy as jnp
        import klujax
    except ImportError as error:
        return f"klujax not installed ({error.name}): pip install klujax"
    solve_jit = jax.jit(klujax.solve)

    def prepare(matrix, b):
        coo = matrix.tocoo()
        arrays = (coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data, b)
        return {"arrays": jax.block_until_ready([jnp.asarray(a) for a in arrays])}

    def solve(inputs):
        return np.asarray(jax.block_until_ready(solve_jit(*inputs["arrays"])))

    return Native(prepare, solve)


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class _UmfpackObjects:
    """UMFPACK's `Symbolic` and `Numeric` objects, freed when this is collected (after the
    timed call: a native factor object outlives its call, as one of ours does)."""

    def __init__(self, library, kind: str):
        self.library, self.kind = library, kind
        self.symbolic, self.numeric = ctypes.c_void_p(), ctypes.c_void_p()

    def __del__(self):
        getattr(self.library, f"umfpack_{self.kind}l_free_numeric")(ctypes.byref(self.numeric))
        getattr(self.library, f"umfpack_{self.kind}l_free_symbolic")(ctypes.byref(self.symbolic))


def raw_umfpack() -> Native | str:
    """UMFPACK 5.7 through the ctypes binding lineax-sparse's UMFPACK backend calls
    (`umfpack_{d,z}l_symbolic`, `_numeric`, `_wsolve`), UMFPACK's default `Control` (as
    cvxopt's); a reason when the installed lineax-sparse has none."""
    module = _module("lineax_sparse.backends.umfpack.library")
    library = None if module is None else module.load()
    if library is None:
        return "no UMFPACK binding in this lineax-sparse"
    control = module.defaults(library)

    def prepare(matrix, b):
        matrix = matrix.copy()
        matrix.sort_indices()
        complex_ = np.iscomplexobj(matrix.data) or np.iscomplexobj(b)
        dtype = np.complex128 if complex_ else np.float64
        arrays = (
            matrix.indptr.astype(np.int64),
            matrix.indices.astype(np.int64),
            np.ascontiguousarray(matrix.data, dtype=dtype),
            np.ascontiguousarray(b, dtype=dtype),
        )
        return {"arrays": arrays, "kind": "z" if complex_ else "d"}

    def solve(inputs):
        (indptr, indices, values, b), kind = inputs["arrays"], inputs["kind"]
        n = b.size
        info = np.zeros(module.INFO)
        objects = inputs["factor"] = _UmfpackObjects(library, kind)
        # Packed complex (UMFPACK's z arrays NULL): one NULL per value array.
        extra = [] if kind == "d" else [None]
        status = getattr(library, f"umfpack_{kind}l_symbolic")(
            n, n, indptr.ctypes.data, indices.ctypes.data, values.ctypes.data, *extra,
            ctypes.byref(objects.symbolic), control.ctypes.data, info.ctypes.data,
        )  # fmt: skip
        _umfpack_check(status, "symbolic", module)
        status = getattr(library, f"umfpack_{kind}l_numeric")(
            indptr.ctypes.data, indices.ctypes.data, values.ctypes.data, *extra,
            objects.symbolic, ctypes.byref(objects.numeric), control.ctypes.data,
            info.ctypes.data,
        )  # fmt: skip
        _umfpack_check(status, "numeric", module)
        x = np.zeros_like(b)
        work_index, work = np.zeros(n, np.int64), np.zeros(10 * n)
        status = getattr(library, f"umfpack_{kind}l_wsolve")(
            module.SYS_A, indptr.ctypes.data, indices.ctypes.data, values.ctypes.data, *extra,
            x.ctypes.data, *extra, b.ctypes.data, *extra, objects.numeric,
            control.ctypes.data, info.ctypes.data, work_index.ctypes.data, work.ctypes.data,
        )  # fmt: skip
        _umfpack_check(status, "wsolve", module)
        return x

    return Native(prepare, solve)


def _umfpack_check(status: int, call: str, module) -> None:
    if status != module.OK:  # a singular matrix (status 1) is a failure here too
        raise RuntimeError(f"umfpack {call}: {module.error_text(status)}")


#: PARDISO's matrix types: (kind, complex) -> mtype.
PARDISO_TYPES = {
    ("spd", False): 2,
    ("symmetric", False): -2,
    ("general", False): 11,
    ("spd", True): 6,  # complex symmetric (no Hermitian rows here)
    ("symmetric", True): 6,
    ("general", True): 13,
}


class _PardisoHandle:
    """PARDISO's internal memory of one factorization, released (phase -1) when this is
    collected."""

    def __init__(self, module, mtype: int, n: int, iparm: np.ndarray):
        self.module, self.mtype, self.n, self.iparm = module, mtype, n, iparm
        self.pt = module.new_handle()

    def __del__(self):
        try:
            self.module.call(self.pt, self.mtype, -1, self.n, None, None, None, self.iparm)
        except Exception:  # noqa: BLE001, S110 - at interpreter exit: the process frees it
            pass


def raw_pardiso(kind: str) -> Native | str:
    """MKL PARDISO through the binding lineax-sparse's PARDISO backend calls, with the
    settings that backend makes (`pardisoinit` defaults, METIS, refinement only after
    perturbed pivots, reproducible mode, zero-based indices, scaling and matching for
    symmetric indefinite types): the upper triangle (CSR) for symmetric `kind`s ("spd",
    "symmetric"), phase 13 (analysis, factorization, solve), one MKL thread; a reason when
    the installed lineax-sparse has none or MKL is missing."""
    try:
        module = importlib.import_module("lineax_sparse.backends.pardiso.library")
    except ImportError as error:
        return f"no PARDISO ({error_text(error)})"

    def prepare(matrix, b):
        complex_ = np.iscomplexobj(matrix.data) or np.iscomplexobj(b)
        mtype = PARDISO_TYPES[kind, complex_]
        if kind == "general":
            stored = matrix.tocsr()
        else:  # the upper triangle, every diagonal entry stored (zeros too), as PARDISO asks
            upper = sp.triu(matrix, format="coo")
            diagonal = np.arange(matrix.shape[0])
            rows = np.concatenate([upper.row, diagonal])
            columns = np.concatenate([upper.col, diagonal])
            values = np.concatenate([upper.data, np.zeros(diagonal.size, matrix.dtype)])
            stored = sp.csr_matrix((values, (rows, columns)), shape=matrix.shape)
        stored.sort_indices()
        dtype = np.complex128 if complex_ else np.float64
        iparm = np.zeros(64, np.int32)
        module.LIBRARY.pardisoinit(module.new_handle().ctypes.data, ctypes.byref(
            ctypes.c_int32(mtype)), iparm.ctypes.data)  # fmt: skip
        iparm[0] = 1  # the settings below, as our backend makes them
        iparm[1] = 2  # METIS nested dissection
        iparm[7] = 0  # refinement only after perturbed pivots (pardisoinit: always 2 steps)
        iparm[33] = 1  # reproducible on any number of threads
        iparm[34] = 1  # zero-based indices
        if mtype in (-2, 6):  # symmetric indefinite: scaling and weighted matching, as MKL
            iparm[10] = iparm[12] = 1  # advises (without, hangGlider_2's residual is 3e124)
        arrays = (
            np.ascontiguousarray(stored.data, dtype=dtype),
            stored.indptr.astype(np.int32),
            stored.indices.astype(np.int32),
            np.asfortranarray(b, dtype=dtype),
        )
        return {"arrays": arrays, "mtype": mtype, "iparm": iparm}

    def solve(inputs):
        (values, indptr, indices, b), mtype = inputs["arrays"], inputs["mtype"]
        n = b.size
        handle = inputs["factor"] = _PardisoHandle(module, mtype, n, inputs["iparm"])
        x = np.zeros_like(b)
        with module.local_threads(1):
            error = module.call(handle.pt, mtype, 13, n, values, indptr, indices,
                                handle.iparm, b, x)  # fmt: skip
        if error != 0:
            raise RuntimeError(f"pardiso phase 13: error {error}")
        return x

    return Native(prepare, solve)


def error_text(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:80]
