"""Scalar kernel renormalisation ubar(chi) (docs/rescaling.md).

Effective output kernel (ubar/chi) K, noise kappa/chi, with abar = (ubar K + kappa)^-1 y:
  tree level:  1/ubar = 1/g_w - (chi/N) abar^T K abar
  one loop:    1/ubar = 1/g_w + (1/N) Tr[K (ubar K + kappa)^-1] - (chi/N) abar^T K abar
Solved by Brent's method in log ubar after one eigendecomposition K = U diag(lam) U^T.
For non-linear activations K = K^phi (proportional-limit / Gaussian-equivalence approximation).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from bayesnet.gp import Spectrum, linear_spectrum, spectrum

# the eigen-representation lives in the pure core (shared with the exact linear posterior)
__all__ = [
    "Spectrum",
    "spectrum",
    "linear_spectrum",
    "ubar_equation",
    "solve_ubar",
    "rescaled_outputs",
    "fluctuation_kernel",
]


def ubar_equation(
    logu: float, sp: Spectrum, g_w: float, width: float, chi: float, kappa: float, trace: bool
) -> float:
    """Residual 1/ubar - RHS of the rescaling equation at ubar = exp(logu), units 1/g_w."""
    u = np.exp(logu)
    d = u * sp.lam + kappa  # (r,)
    rhs = 1.0 / g_w - (chi / width) * np.sum(sp.lam * sp.yt**2 / d**2)
    if trace:
        rhs += np.sum(sp.lam / d) / width
    return 1.0 / u - rhs


def solve_ubar(
    sp: Spectrum,
    g_w: float,
    width: float,
    chi: float,
    kappa: float,
    trace: bool = True,
    xtol: float = 1e-14,
    full_output: bool = False,
) -> float | tuple[float, int, float]:
    """Renormalised readout scale ubar > 0 (units of g_w), bracketing root in log ubar.

    full_output=True returns (ubar, iterations, |relative residual| = |ubar * equation|).
    """
    F = lambda lu: ubar_equation(lu, sp, g_w, width, chi, kappa, trace)
    lo, hi = np.log(g_w) - 5.0, np.log(g_w) + 5.0
    while F(lo) <= 0:  # 1/u dominates as u -> 0
        lo -= 5.0
    while F(hi) >= 0:  # 1/u -> 0 while RHS -> 1/g_w > 0
        hi += 5.0
    logu, info = scipy.optimize.brentq(
        F, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps, full_output=True
    )
    u = float(np.exp(logu))
    return (u, int(info.iterations), abs(u * F(logu))) if full_output else u


def rescaled_outputs(
    sp: Spectrum, B: np.ndarray, k_test_diag: np.ndarray, ubar: float, chi: float, kappa: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GP with kernel ubar K, noise kappa (variances / chi): (f_train, var_train, f_test, var_test).

    B = K_test_train U (P*, r); k_test_diag (P*,) prior test variances of K.
    """
    d = ubar * sp.lam + kappa  # (r,)
    f_train = sp.U @ (ubar * sp.lam * sp.yt / d)  # (P,)
    f_test = ubar * B @ (sp.yt / d)  # (P*,)
    var_train = (ubar * sp.diag - ubar**2 * (sp.U**2) @ (sp.lam**2 / d)) / chi  # (P,)
    var_test = (ubar * np.asarray(k_test_diag) - ubar**2 * (B**2) @ (1.0 / d)) / chi  # (P*,)
    return f_train, var_train, f_test, var_test


def fluctuation_kernel(
    sp: Spectrum, B: np.ndarray, ubar: float, kappa: float
) -> tuple[np.ndarray, np.ndarray]:
    """K (ubar K + kappa)^-1 K on train (P, P) and test-train (P*, P) blocks."""
    d = ubar * sp.lam + kappa  # (r,)
    train = (sp.U * (sp.lam**2 / d)) @ sp.U.T  # (P, P)
    test = (B * (sp.lam / d)) @ sp.U.T  # (P*, P)
    return train, test
