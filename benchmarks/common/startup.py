"""What a benchmark process settles before it imports the libraries it times.

OpenBLAS reads its thread count once, when numpy loads it; cvxopt, sparsax and PETSc load
one CHOLMOD shared object, and the first import decides its BLAS; the examples a benchmark
runs live in the repository's examples/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]  # the repository


def pin_blas_threads() -> None:
    """Hold OpenBLAS to one thread in this process and its children: call before numpy."""
    if "numpy" in sys.modules:
        raise RuntimeError("pin_blas_threads() must run before numpy is imported")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"


_blas_controller = None


def one_blas_thread():
    """Every BLAS library held to one thread (threadpoolctl) until the returned limiter
    exits or `restore_original_limits()`. The libraries are looked up once (~6 ms): a limit
    costs microseconds after that, inside a timed call too."""
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def import_sparsax():
    """The sparsax module, or None when it is not installed (its rows then stay empty)."""
    if "cvxopt" not in sys.modules:
        raise RuntimeError(
            "import cvxopt before sparsax: both load one CHOLMOD shared object, and the "
            "first import decides its BLAS"
        )
    try:
        import sparsax
    except ImportError:
        return None
    return sparsax


def examples_on_path() -> None:
    """Put the repository's examples/ first on `sys.path`, for the benchmarks that run them."""
    examples = str(ROOT / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
