"""Host-side backends: numpy, scipy, cvxopt, pyamg and petsc4py only, never jax.

Each native library is one package here (`cholmod/`, `superlu/`, `amg/`, `petsc/`) that
exports its `AbstractBackend` subclass as `Backend`; `catalog.make_backend` finds it by the
package's name, so a new library needs no list to be edited. `base.py` is the interface,
`pattern.py` the host sparsity pattern, `options.py` every option's allowed values and
rules, `numerics/` the checks the backends share.
"""
