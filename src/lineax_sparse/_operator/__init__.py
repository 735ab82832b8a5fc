"""The operator layer: `SparseOperator`, `static_pattern` and the checks of their indices."""
