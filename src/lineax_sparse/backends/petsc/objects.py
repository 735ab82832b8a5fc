"""The PETSc objects of one process: matrices and KSPs by id, made and used collectively.

Everything here runs identically on every rank that takes part (one rank in-process; every
rank of `MPI_COMM_WORLD` when `lineax_sparse.petsc_serve` distributes the work), on each
rank's owner of PETSc calls (rank 0's owner thread; a worker's main thread). Each function
takes only this rank's rows, so the same code builds a sequential and a parallel AIJ matrix.
No function raises for anything the data can do: failures come back as a `Status` and a
message. Numpy and petsc4py only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..status import Status


INSTALL_HINT = (
    "`lineax_sparse.PETSc` needs petsc4py (and mpi4py to run across MPI ranks), which have "
    "no wheels on PyPI. On Debian or Ubuntu: `sudo apt-get install petsc-dev`, then, in "
    "your environment, `.ci/install-petsc` from the lineax-sparse repository (it builds "
    "petsc4py against the system PETSc: `pip install 'cython<3.1' setuptools wheel` and "
    "`PETSC_DIR=/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real PETSC_ARCH= pip install "
    "--no-build-isolation petsc4py==3.18.5 mpi4py`, matching the system PETSc's version). "
    'With conda: `conda install -c conda-forge petsc4py mpi4py`. Then `pip install -e ".[petsc]"`.'
)

_PETSc: Any = None
#: Called once, just before PETSc is initialized in this process. `PetscInitialize` is
#: collective over `MPI_COMM_WORLD`: rank 0 of a served job sets it to tell its workers,
#: which initialize only then (a worker waiting inside it spins a core, and never leaves
#: it if rank 0 makes no PETSc solve: the job then hung at exit, measured).
before_initialize: Callable[[], None] | None = None


def petsc() -> Any:
    """The `petsc4py.PETSc` module, initialized on first use (on the calling thread)."""
    global _PETSc
    if _PETSc is None:
        try:
            import petsc4py
        except ImportError as error:
            raise ImportError(INSTALL_HINT) from error
        if before_initialize is not None:
            before_initialize()
        # PETSc's own signal handler turns a crash anywhere in the process into its
        # message and an MPI abort; Python's (faulthandler) is the better witness.
        petsc4py.init([sys.argv[0] if sys.argv and sys.argv[0] else "python", "-no_signal_handler"])
        from petsc4py import PETSc

        _PETSc = PETSc
    return _PETSc


# ---------------------------------------------------------------- memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _load_mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function


_mallinfo2 = _load_mallinfo2()


def heap_in_use() -> int:
    """Bytes the C heap holds for the process (glibc's `mallinfo2`: in use in every arena
    plus mmapped blocks); 0 where it is not available.

    Freed memory is not counted, so the growth across a build is what the new objects hold
    even when they reuse memory freed by earlier ones (a resident-size difference would be
    near zero then). PETSc, hypre and MUMPS all allocate through malloc.
    """
    if _mallinfo2 is None:
        return 0
    info = _mallinfo2()
    return int(info.uordblks + info.hblkhd)


#: Below this many local entries a setup's memory is estimated instead of measured:
#: `mallinfo2` walks the heap's free lists (21 ms with 100k free chunks, measured), which
#: would dominate small setups, whose memory hardly matters to the budget.
MEASURED_ENTRIES = 100_000


def _measure_heap(entries: int) -> int | None:
    return heap_in_use() if entries >= MEASURED_ENTRIES and _mallinfo2 is not None else None


def _grown(before: int | None, rows: int, entries: int) -> int:
    """The heap's growth since `before`, or an estimate: the matrix (CSR, 12 bytes an
    entry) four times over (a multigrid hierarchy or a factor of small fill)."""
    if before is None:
        return 4 * (12 * entries + 16 * rows)
    return max(0, heap_in_use() - before)


def peak_resident() -> int:
    """The process's peak resident set size in bytes."""
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


# ---------------------------------------------------------------- objects


class _Local:
    """This rank's share of one factor: the matrix, its KSP, and (lazily) those of A^T."""

    __slots__ = ("matrix", "ksp", "transposed_matrix", "transposed_ksp", "config", "nbytes")

    def __init__(self, matrix, ksp, config, nbytes):
        self.matrix, self.ksp, self.config, self.nbytes = matrix, ksp, config, nbytes
        self.transposed_matrix = self.transposed_ksp = None

    def destroy(self) -> None:
        for item in (self.ksp, self.matrix, self.transposed_ksp, self.transposed_matrix):
            if item is not None:
                item.destroy()
        self.ksp = self.matrix = self.transposed_ksp = self.transposed_matrix = None


#: A build's configuration, the same on every rank:
#: `(ksp_type, pc_type, options, norm, block_size)` with `options` a tuple of
#: `(name, value)` strings and `norm` "unpreconditioned", "right" or "" (PETSc's default).
Config = tuple[str, str, tuple[tuple[str, str], ...], str, int]


class Objects:
    """The PETSc objects of this process, by the ids rank 0 gives them."""

    def __init__(self) -> None:
        self.local: dict[int, _Local] = {}

    def _comm(self, distributed: bool):
        PETSc = petsc()
        return PETSc.COMM_WORLD if distributed else PETSc.COMM_SELF

    def _make(self, distributed, prefix, n, indptr, indices, values, nullspace, config):
        """The assembled matrix of this rank's rows and its set-up KSP; raises PETSc.Error."""
        PETSc = petsc()
        comm = self._comm(distributed)
        ksp_type, pc_type, options, norm, block_size = config
        database = PETSc.Options()
        matrix = ksp = None
        try:
            rows = indptr.size - 1
            matrix = PETSc.Mat().create(comm=comm)
            matrix.setSizes(((rows, n), (rows, n)), bsize=block_size)
            matrix.setType(PETSc.Mat.Type.AIJ)
            matrix.setPreallocationCSR(
                (
                    np.asarray(indptr, dtype=PETSc.IntType),
                    np.asarray(indices, dtype=PETSc.IntType),
                    np.asarray(values, dtype=PETSc.ScalarType),
                )
            )
            matrix.assemble()
            if nullspace is not None:
                vectors = []
                for column in range(nullspace.shape[1]):
                    vector = matrix.createVecRight()
                    vector.setArray(nullspace[:, column])
                    vectors.append(vector)
                space = PETSc.NullSpace().create(constant=False, vectors=vectors, comm=comm)
                matrix.setNearNullSpace(space)
                space.destroy()
                for vector in vectors:
                    vector.destroy()
            ksp = PETSc.KSP().create(comm=comm)
            ksp.setOptionsPrefix(prefix)
            ksp.setOperators(matrix)
            ksp.setType(ksp_type)
            ksp.getPC().setType(pc_type)
            if norm == "unpreconditioned":
                ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
            elif norm == "right":
                ksp.setPCSide(PETSc.PC.Side.RIGHT)
            for name, value in options:
                database.setValue(prefix + name, value)
            try:
                ksp.setFromOptions()
                ksp.setUp()
            finally:
                # The database is global: a prefix's options live only while they are read
                # (MUMPS reads its own at setup), so the database never grows.
                for name, _ in options:
                    database.delValue(prefix + name)
        except PETSc.Error:
            # Not destroyed: after an error PETSc's objects may be inconsistent, and their
            # destruction can fail in turn (BoomerAMG's `vec_interp_variant` without nodal
            # coarsening: an error at setup, another in KSPDestroy) or crash (see `solve`).
            # A reference more makes every later destroy a decrement: the memory of a
            # failed setup is leaked, never freed twice.
            _keep_forever(ksp, matrix)
            raise
        return matrix, ksp

    def build(
        self,
        distributed: bool,
        ident: int,
        n: int,
        indptr: np.ndarray,
        indices: np.ndarray,
        values: np.ndarray,
        nullspace: np.ndarray | None,
        config: Config,
    ) -> tuple[int, str, int]:
        """Make the matrix (this rank's consecutive rows, in CSR with global column indices)
        and its set-up KSP under `ident`.

        Returns `(status, message, bytes)`: the bytes this rank's heap grew by.
        """
        PETSc = petsc()
        before = _measure_heap(indices.size)
        try:
            matrix, ksp = self._make(
                distributed, f"lxs{ident}_", n, indptr, indices, values, nullspace, config
            )
        except PETSc.Error as error:
            return int(Status.BREAKDOWN), _message(error), 0
        nbytes = _grown(before, indptr.size - 1, indices.size)
        self.local[ident] = _Local(matrix, ksp, config, nbytes)
        return int(Status.OK), "", nbytes

    def build_transposed(self, distributed, ident, n, indptr, indices, values, nullspace):
        """A KSP of `A^T` (given as this rank's rows of `A^T`) beside `ident`'s, for
        preconditioners that cannot apply their transpose (hypre, ML)."""
        PETSc = petsc()
        local = self.local[ident]
        before = _measure_heap(indices.size)
        try:
            matrix, ksp = self._make(
                distributed, f"lxs{ident}t_", n, indptr, indices, values, nullspace, local.config
            )
        except PETSc.Error as error:
            return int(Status.BREAKDOWN), _message(error), 0
        nbytes = _grown(before, indptr.size - 1, indices.size)
        local.transposed_matrix, local.transposed_ksp = matrix, ksp
        local.nbytes += nbytes
        return int(Status.OK), "", nbytes

    def solve(
        self,
        ident: int,
        mode: str,
        b: np.ndarray,
        x0: np.ndarray | None,
        rtol: float,
        atol: float,
        max_steps: int,
    ) -> tuple[np.ndarray, int, int, str]:
        """Solve for this rank's rows `b`; `mode`: "forward" (`KSPSolve`), "transpose"
        (`KSPSolveTranspose`) or "transposed" (`KSPSolve` with the KSP of `A^T`).

        Returns `(x, reason, iterations, message)`: PETSc's `KSPConvergedReason`, or 0 and
        a message when PETSc raised an error.
        """
        PETSc = petsc()
        local = self.local[ident]
        ksp = local.transposed_ksp if mode == "transposed" else local.ksp
        matrix = local.transposed_matrix if mode == "transposed" else local.matrix
        x = matrix.createVecRight()
        rhs = matrix.createVecLeft()
        try:
            rhs.setArray(b)
            if x0 is not None:
                x.setArray(x0)
            ksp.setInitialGuessNonzero(x0 is not None)
            ksp.setTolerances(rtol=rtol, atol=atol, max_it=max(1, max_steps))
            if mode == "transpose":
                ksp.solveTranspose(rhs, x)
            else:
                ksp.solve(rhs, x)
            return x.getArray().copy(), int(ksp.getConvergedReason()), ksp.getIterationNumber(), ""
        except PETSc.Error as error:
            # The KSP may be corrupted (a preconditioner that raised inside a solve left
            # freed vectors behind in PETSc 3.18; destroying it crashed): one more
            # reference to each object makes every later destroy a mere decrement, so it
            # is never freed. Rank 0 never solves with it again.
            _keep_forever(local.ksp, local.matrix, local.transposed_ksp, local.transposed_matrix)
            return np.full(b.shape, np.nan), 0, 0, _message(error)
        finally:
            x.destroy()
            rhs.destroy()

    def free(self, idents) -> None:
        for ident in idents:
            local = self.local.pop(ident, None)
            if local is not None:
                local.destroy()

    def held(self) -> int:
        """Bytes this rank's live objects grew the heap by when they were set up."""
        return sum(local.nbytes for local in self.local.values())

    def free_all(self) -> None:
        self.free(list(self.local))


def _keep_forever(*items) -> None:
    for item in items:
        if item is not None:
            item.incRef()


def _message(error) -> str:
    return f"PETSc error {getattr(error, 'ierr', '?')}: {error}"
