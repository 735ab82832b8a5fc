"""Where MKL's runtime library (`libmkl_rt`) may be, found without loading it.

MKL's PyPI wheel (`pip install mkl`, the `pardiso` extra) puts it in `<prefix>/lib`; conda's
in `$CONDA_PREFIX/lib`; a system install where the dynamic linker finds it.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import sys


#: What to install when the library is missing.
INSTALL_HINT = (
    "lineax_sparse.Pardiso needs MKL's runtime library (libmkl_rt), which was not found: "
    '`pip install "lineax-sparse[pardiso]"` (or `pip install mkl`, about 320 MB).'
)


def candidates() -> list[str]:
    """Paths where `libmkl_rt` may be, most likely first (none is opened)."""
    found = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX"))):
        if prefix:
            found += sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")), reverse=True)
    name = ctypes.util.find_library("mkl_rt")
    if name:
        found.append(name)
    return found
