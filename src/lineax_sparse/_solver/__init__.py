"""lineax solvers whose numerics run in native libraries on the host: one module each, their
base classes, and the table of them (`table.py`)."""
