"""A JAX program solved with `lineax_sparse.PETSc`, run by tests/test_petsc.py plainly and
under `mpiexec -n 2`: it saves its solutions and gradients (`--save`) so that the runs can be
compared, or fails on purpose (`--mode raise`, `--mode exit`), ends before any solve
(`--mode idle`), or forgets `petsc_serve` (`--serve none`: on every rank; `--serve workers`:
on rank 0 only) to show that the worker ranks are released."""

import argparse
import os

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.sparse as sp

import lineax_sparse as lxs


parser = argparse.ArgumentParser()
parser.add_argument("--mode", choices=["plain", "raise", "exit", "idle"], default="plain")
parser.add_argument("--serve", choices=["every", "none", "workers"], default="every")
parser.add_argument("--save", default=None)
args = parser.parse_args()
if args.serve == "every":
    lxs.petsc_serve()  # the worker ranks serve from here and never run what follows
elif args.serve == "workers":
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() != 0:
        lxs.petsc_serve()

jax.config.update("jax_enable_x64", True)

m = 40
t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
upwind = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m))
eye = sp.eye_array(m)
laplacian = (sp.kron(eye, t) + sp.kron(t, eye)).tocsr()
convection = (laplacian + 3.0 * (sp.kron(eye, upwind) + sp.kron(upwind, eye))).tocsr()
b = jnp.asarray(np.sin(np.arange(m * m) * 0.37))
spd = lxs.SparseOperator.from_scipy(laplacian, tags=lx.positive_semidefinite_tag)
general = lxs.SparseOperator.from_scipy(convection)
mumps = {"pc_factor_mat_solver_type": "mumps"}
solvers = {
    "gamg": (spd, lxs.PETSc(rtol=1e-12)),
    "mumps": (spd, lxs.PETSc(ksp_type="preonly", pc_type="cholesky", options=mumps)),
    "hypre": (general, lxs.PETSc(pc_type="hypre", rtol=1e-12)),
    "gmres": (general, lxs.PETSc(rtol=1e-12)),
}
if args.mode == "idle":
    print("OK idle", flush=True)
    raise SystemExit(0)
results = {}
for name, (op, solver) in solvers.items():

    def loss(data, vector, op=op, solver=solver):
        bcoo = jax.experimental.sparse.BCOO((data, op.indices), shape=(op.size, op.size))
        x = lx.linear_solve(lxs.SparseOperator(bcoo, op.tags), vector, solver).value
        return jnp.sum(jnp.cos(x)), x

    (value, x), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(op.data, b)
    results[f"{name}_x"] = np.asarray(x)
    results[f"{name}_grad_data"] = np.asarray(grads[0])
    results[f"{name}_grad_b"] = np.asarray(grads[1])
    if args.mode == "raise":
        raise RuntimeError("rank 0 fails on purpose")
    if args.mode == "exit":
        os._exit(3)
# How a factorization is shared between the ranks: MUMPS's Cholesky factor of a larger
# Laplacian (n = 62,500), alone in the cache.
lxs.clear_cache()
big = 250
t = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(big, big))
eye = sp.eye_array(big)
large = lxs.SparseOperator.from_scipy(
    (sp.kron(eye, t) + sp.kron(t, eye)).tocsr(), tags=lx.positive_semidefinite_tag
)
lx.linear_solve(large, jnp.ones(big * big), solvers["mumps"][1])
results["shares"] = np.asarray(lxs.petsc_held_memory())
if args.save:
    np.savez(args.save, **results)
print(f"OK ranks={lxs.petsc_ranks()}", flush=True)
