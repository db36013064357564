"""Damped Newton with chord steps: the root finder of the tilted tree levels (tilted.py,
homogeneous.py)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

_solve = jax.jit(jnp.linalg.solve)  # XLA's LU: avoids BLAS thread contention with JAX


def newton(
    fun: Callable, jac: Callable, z0, tol: float, maxiter: int = 50, reuse: float = 0.25
) -> tuple[np.ndarray, int, float, bool]:
    """Damped Newton with backtracking on max|F|; the Jacobian (the O(M P^2) part) is reused
    while each step still cuts max|F| by the factor `reuse` (chord steps).

    Returns (z, iterations, max|F|, success).
    """
    z = np.asarray(z0, float)
    F = np.asarray(fun(z))
    nrm = float(np.max(np.abs(F)))
    it, J = 0, None
    while nrm > tol and it < maxiter:
        if J is None:
            J = jac(z)
        step = np.asarray(_solve(J, -F))
        t = 1.0
        while True:
            z_new = z + t * step
            F_new = np.asarray(fun(z_new))
            n_new = float(np.max(np.abs(F_new)))
            if (np.isfinite(n_new) and n_new < (1 - 1e-4 * t) * nrm) or t < 1e-3:
                break
            t *= 0.5
        it += 1
        if not np.isfinite(n_new):
            break
        if n_new > reuse * nrm:
            J = None  # slow progress: fresh Jacobian next step
        z, F, nrm = z_new, F_new, n_new
    return z, it, nrm, bool(nrm <= tol)
