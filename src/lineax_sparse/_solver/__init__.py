"""lineax solvers whose numerics run in native libraries on the host: one module each."""
