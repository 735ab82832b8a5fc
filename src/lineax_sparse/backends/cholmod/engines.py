"""The two ways the backend calls CHOLMOD, behind one interface: `NATIVE` (ctypes,
`native.py`: the GIL is released, one `cholmod_common` per thread, one symbolic analysis per
pattern copied into each factor, block solves) and `CVXOPT` (cvxopt's `cholmod` module: the
GIL held, cvxopt's global `cholmod_common` and options, one `symbolic` per factor object,
one CHOLMOD solve per column), used when the ctypes path is not available
(`native.available()`). Both run the same CHOLMOD on the same lower triangle with the same
options, so their factors are the same bit for bit.

`engine_of(obj)` says which engine made a factor object (a `NativeFactor` or a cvxopt
capsule); the backend asks it for everything done with that object.
"""

from __future__ import annotations

import abc
from typing import Any

import cvxopt
import numpy as np
from cvxopt import cholmod

from . import native
from .capsule import capsule_address, factor_bytes, head_bytes
from .settings import global_options


class AbstractEngine(abc.ABC):
    """What the backend does with a CHOLMOD factor object, one way or the other."""

    name: str

    @staticmethod
    @abc.abstractmethod
    def fresh(analysis, typecode: str, values: np.ndarray, options: dict) -> Any:
        """A new factor object of the pattern, ready for `numeric`."""

    @staticmethod
    @abc.abstractmethod
    def numeric(obj, analysis, typecode: str, values: np.ndarray, options: dict) -> None:
        """Factorize the lower triangle `values` into `obj`, raising as cvxopt's `numeric`
        does (`ArithmeticError(column)`: not positive definite; `ValueError`: failed)."""

    @staticmethod
    @abc.abstractmethod
    def solve(obj, typecode: str, block: np.ndarray, options: dict, system: int = 0):
        """CHOLMOD's solve of `system` (cvxopt's `sys` codes) for an (n, k) block."""

    @staticmethod
    @abc.abstractmethod
    def pivots(obj, typecode: str, n: int, options: dict) -> np.ndarray:
        """The pivots `D_j` (real) in the factor's order: `L_jj^2` for `L L'`."""

    @staticmethod
    @abc.abstractmethod
    def permutation(obj, typecode: str, n: int, options: dict) -> np.ndarray:
        """The factor's row permutation `P` (CHOLMOD's ordering, postordered)."""

    @staticmethod
    @abc.abstractmethod
    def nbytes(obj, n: int, typecode: str) -> int | None:
        """Bytes held by the numeric factor `obj`, or None if its struct does not validate."""


class CvxoptEngine(AbstractEngine):
    """CHOLMOD through cvxopt's `cholmod` module."""

    name = "cvxopt"

    @staticmethod
    def fresh(analysis, typecode: str, values: np.ndarray, options: dict) -> Any:
        template = analysis.template(typecode, values)
        with global_options(cholmod.options, options):
            return cholmod.symbolic(template, p=analysis.ordering)

    @staticmethod
    def numeric(obj, analysis, typecode: str, values: np.ndarray, options: dict) -> None:
        template = analysis.template(typecode, values)
        with global_options(cholmod.options, options):
            cholmod.numeric(template, obj)

    @staticmethod
    def solve(obj, typecode: str, block: np.ndarray, options: dict, system: int = 0):
        work = cvxopt.matrix(block, tc=typecode)  # a copy: `solve` overwrites it
        with global_options(cholmod.options, options):
            cholmod.solve(obj, work, sys=system)
        return np.asarray(work)  # a view of `work`'s buffer, column-major

    @classmethod
    def pivots(cls, obj, typecode: str, n: int, options: dict) -> np.ndarray:
        try:
            with global_options(cholmod.options, options):
                diagonal = cholmod.diag(obj)  # supernodal L L' only
        except ValueError:
            pass
        else:
            return np.abs(np.asarray(diagonal).ravel()) ** 2
        inverse = cls.solve(obj, typecode, np.ones((n, 1)), options, native.SOLVE_D)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / inverse.real.ravel()

    @classmethod
    def permutation(cls, obj, typecode: str, n: int, options: dict) -> np.ndarray:
        order = np.arange(n, dtype=np.float64)[:, None]
        x = cls.solve(obj, typecode, order, options, native.SOLVE_P)  # x = P b
        return x.real.ravel().astype(np.int64)

    @staticmethod
    def nbytes(obj, n: int, typecode: str) -> int | None:
        return factor_bytes(obj, n, typecode)


class NativeEngine(AbstractEngine):
    """CHOLMOD called through ctypes (`native.py`)."""

    name = "native"

    @staticmethod
    def fresh(analysis, typecode: str, values: np.ndarray, options: dict) -> Any:
        del typecode, values, options  # the symbolic factor serves every dtype
        return native.copy(capsule_address(analysis.symbolic), analysis.n)

    @staticmethod
    def numeric(obj, analysis, typecode: str, values: np.ndarray, options: dict) -> None:
        values = np.ascontiguousarray(values, dtype=native.DTYPES[typecode])
        native.factorize(obj, analysis.indptr, analysis.rows, values, typecode, options)

    @staticmethod
    def solve(obj, typecode: str, block: np.ndarray, options: dict, system: int = 0):
        return native.solve(obj, block, typecode, options, system)

    @staticmethod
    def pivots(obj, typecode: str, n: int, options: dict) -> np.ndarray:
        del n, options
        return native.pivots(obj, typecode)

    @staticmethod
    def permutation(obj, typecode: str, n: int, options: dict) -> np.ndarray:
        del typecode, n, options
        return native.permutation(obj)

    @staticmethod
    def nbytes(obj, n: int, typecode: str) -> int | None:
        del n
        head = native.validated_head(obj, typecode)
        return None if head is None else head_bytes(head, typecode)


NATIVE, CVXOPT = NativeEngine(), CvxoptEngine()


def engine_of(obj: Any) -> AbstractEngine:
    """The engine that made the factor object `obj`."""
    return NATIVE if isinstance(obj, native.NativeFactor) else CVXOPT


def default_engine() -> AbstractEngine:
    """`NATIVE` when this process can use it, else `CVXOPT`."""
    return NATIVE if native.available() else CVXOPT
