"""Second moments to one loop: output variances and the posterior mean hidden kernel.

Linear networks (docs/one_loop.md, "Second moments"): given the scale s the posterior is the GP
with kernel s g_w K (bayesnet/scale_mixture.py), so every posterior moment is an s-average,
  E[f] = E_s[m(s)],  Var f = E_s[v(s)] + Var_s[m(s)],  E[K^] = E_s[K(s)],
with m, v the GP mean and variance and K(s) the hidden kernel given s.  The one-loop (Laplace)
expansion around the mode s* of the log-density l(s), sigma^2 = -1/l''(s*), is
  E_s[g] = g + sigma^2 g''/2 + sigma^4 l''' g'/2 + O(1/N^2),   Var_s[m] = sigma^2 m'^2 + O(1/N^2),
the same expansion `fluctuation.laplace_one_loop` applies to the mean.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import adaptive, rescaling

FD_STEP = 1e-2  # central-difference step in units of sigma (truncation ~ 1e-4 sigma^2 g'''')


class SecondMoments(NamedTuple):
    """One-loop second moments: var_train (P,), var_test (P*,) in y^2; K_train (P, P),
    K_test_train (P*, P) dimensionless."""

    var_train: np.ndarray
    var_test: np.ndarray
    K_train: np.ndarray
    K_test_train: np.ndarray


def laplace_expectation(
    g, s: float, sigma2: float, l3: float, step: float = FD_STEP
) -> tuple[np.ndarray, np.ndarray]:
    """One-loop Laplace expectation of a smooth array function g(s) around the mode s of l:
    (g + sigma^2 g''/2 + sigma^4 l''' g'/2, g'(s)), derivatives by central differences with
    step h = step * sigma (round-off ~ 1e-16 / step^2 relative)."""
    h = step * math.sqrt(sigma2)
    if not s - h > 0:
        raise ValueError(f"Laplace step h={h:.3g} reaches s <= 0 at the mode s={s:.3g}")
    gm, g0, gp = (np.asarray(g(x), float) for x in (s - h, s, s + h))
    d1 = (gp - gm) / (2.0 * h)
    d2 = (gp - 2.0 * g0 + gm) / (h * h)
    return g0 + 0.5 * sigma2 * d2 + 0.5 * sigma2**2 * l3 * d1, d1


def linear_second_moments(
    sp: rescaling.Spectrum,
    B: np.ndarray,
    k_test: np.ndarray,
    K: np.ndarray,
    K_test_train: np.ndarray,
    g_w: float,
    width: float,
    chi: float,
    kappa: float,
    lp,
) -> SecondMoments:
    """Linear net: variances and mean hidden kernel to one loop in s (module docstring).

    sp, B = K_* U (P*, r), k_test (P*,): the eigenmodes of K^x; lp: the
    `fluctuation.LaplaceOneLoop` of the same spec (mode s*, sigma^2, l''').
    """
    P, Pt = K.shape[0], K_test_train.shape[0]

    def given_s(s: float) -> np.ndarray:
        """[m_train, m_test, v_train, v_test, K_train, K_test_train] given s, flattened."""
        u = g_w * s
        m_tr, v_tr, m_te, v_te = rescaling.rescaled_outputs(sp, B, k_test, u, chi, kappa)
        fl_tr, fl_te = rescaling.fluctuation_kernel(sp, B, u, kappa)
        K_tr, K_te = adaptive.linear_posterior_kernel(
            K, K_test_train, fl_tr, fl_te, m_tr, m_te, u, chi, width
        )
        return np.concatenate([m_tr, m_te, v_tr, v_te, K_tr.ravel(), K_te.ravel()])

    mean, d1 = laplace_expectation(given_s, lp.s_mode, lp.sigma2, lp.l3)
    n = P + Pt
    dm = d1[:n]  # (P + P*,) m'(s*)
    gpv = mean[n : 2 * n]  # (P + P*,) E_s[v(s)]
    var = gpv + lp.sigma2 * dm**2  # + Var_s[m(s)]
    K_tr = mean[2 * n : 2 * n + P * P].reshape(P, P)
    K_te = mean[2 * n + P * P :].reshape(Pt, P)
    return SecondMoments(var[:P], var[P:], 0.5 * (K_tr + K_tr.T), K_te)
