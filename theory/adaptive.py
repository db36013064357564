"""Multi-scale adaptive saddle point (tree level) and its annealing across chi.

shared/theory.md sec 4.2, 5.1, 5.2, 5.4, 6, 8.  Units: K dimensionless kernels of the hidden
layer, f outputs (units of y), c = g_w chi / (N kappa^2) the tilt strength (1/y^2).

Linear network: the tilted single-neuron measure is Gaussian, the adapted kernel is rank-one
(Sherman-Morrison) and the tree level reduces to the scalar rescaling (rescaling.py).
Non-linear network: f = (g_w/kappa) Q(f) (y - f), Q = <phi phi^T> under the tilt, computed by
self-normalised importance sampling over fixed draws (tilted.py); solved by damped Newton with
autodiff Jacobians and annealed over chi (Algorithm 1).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize



def tilt_coefficient(g_w: float, chi: float, width: float, kappa: float) -> float:
    """Tilt strength c = g_w chi / (N kappa^2) of exp(c (Delta^T phi)^2 / 2), units 1/y^2."""
    return g_w * chi / (width * kappa ** 2)


def normalisability(K, delta, c: float) -> float:
    """c Delta^T K Delta; the linear tilted measure is normalisable iff this is < 1."""
    delta = jnp.asarray(delta)
    return float(c * delta @ jnp.asarray(K) @ delta)


def adapted_kernel(K, delta, c: float):
    """Tree-level hidden kernel of the linear net, K + c K D D^T K / (1 - c D^T K D), (P, P)."""
    Kd = K @ delta  # (P,)
    return K + c * jnp.outer(Kd, Kd) / (1.0 - c * delta @ Kd)  # (P, P)


def adapted_ubar(K, delta, g_w: float, c: float):
    """Scale of the rescaled kernel equivalent to the rank-one adaptation, g_w/(1 - c D^T K D)."""
    return g_w / (1.0 - c * delta @ K @ delta)


def _linear_tree_residual(f, K, y, g_w, kappa, c):
    """Residual f - (g_w/kappa) Sigma_h(f) (y - f) of the P x P linear tree equation, (P,)."""
    delta = y - f  # (P,)
    return f - (g_w / kappa) * adapted_kernel(K, delta, c) @ delta


_lin_res = jax.jit(_linear_tree_residual)
_lin_jac = jax.jit(jax.jacfwd(_linear_tree_residual))


@dataclasses.dataclass
class Solution:
    """One solve at one chi: predictor f (P,), diagnostics."""

    chi: float
    f: np.ndarray
    converged: bool
    iterations: int
    residual: float
    normalisability: float
    extra: dict = dataclasses.field(default_factory=dict)


def solve_linear_tree_matrix(K, y, g_w, width, chi, kappa, f0, tol=1e-12) -> Solution:
    """Solve the P x P linear tree equation from f0 with MINPACK hybr and a JAX Jacobian.

    converged is False if hybr fails or if the root is on the non-normalisable side
    (c Delta^T K Delta >= 1, a spurious root, typical of a cold start at large chi).
    """
    K, y = jnp.asarray(K), jnp.asarray(y)
    c = tilt_coefficient(g_w, chi, width, kappa)
    sol = scipy.optimize.root(lambda f: np.asarray(_lin_res(f, K, y, g_w, kappa, c)),
                              np.asarray(f0), jac=lambda f: np.asarray(_lin_jac(f, K, y, g_w, kappa, c)),
                              method="hybr", options={"xtol": tol})
    res = float(np.max(np.abs(sol.fun)))
    norm = normalisability(K, y - sol.x, c)
    ok = bool(sol.success) and res < 1e-8 and norm < 1.0
    return Solution(chi, sol.x, ok, int(sol.nfev), res, norm)


def anneal_linear_tree_matrix(K, y, g_w, width, chis, kappa, f_start) -> list:
    """Algorithm 1 for the linear P x P tree equation: each solution starts the next chi."""
    out, f = [], np.asarray(f_start)
    for chi in chis:
        s = solve_linear_tree_matrix(K, y, g_w, width, chi, kappa, f)
        out.append(s)
        f = s.f
    return out


def linear_posterior_kernel(K_train, K_test_train, fluct_train, fluct_test, f_train, f_test,
                            ubar, chi, width):
    """Posterior mean hidden kernel of the linear net (sec 5.4), train (P, P), test-train (P*, P).

    K_post = K + (chi/(N ubar)) f f^T - (ubar/N) K (ubar K + kappa)^-1 K; fluct_* hold the last
    K (ubar K + kappa)^-1 K blocks (pass zeros for the tree level, sec 5.1).
    """
    a = chi / (width * ubar)
    train = K_train + a * np.outer(f_train, f_train) - (ubar / width) * fluct_train  # (P, P)
    test = K_test_train + a * np.outer(f_test, f_train) - (ubar / width) * fluct_test  # (P*, P)
    return train, test


def chi_ladder(chis, width: float, max_ratio: float = 2.0, start_ratio: float = 0.05):
    """Annealing ladder (Algorithm 1): the sorted chis plus log-spaced steps of ratio <= max_ratio,
    starting at min(chis[0], start_ratio * N) where the NNGP start is accurate (weak tilt).

    Returns (ladder (L,), index (len(chis),)) with ladder[index] == chis.
    """
    chis = np.sort(np.asarray(chis, float))
    ladder = [min(chis[0], start_ratio * width)]
    for target in chis:
        prev = ladder[-1]
        if target > prev:
            n = max(1, int(np.ceil(np.log(target / prev) / np.log(max_ratio) - 1e-9)))
            steps = prev * (target / prev) ** (np.arange(1, n + 1) / n)
            steps[-1] = target
            ladder.extend(steps.tolist())
    ladder = np.asarray(ladder)
    return ladder, np.searchsorted(ladder, chis)
