"""The operator layer: `SparseOperator`, `static_pattern` and the checks of their indices."""

from . import dispatch as dispatch  # registers SparseOperator with lineax
