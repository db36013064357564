"""Fluctuation corrections around the tilted saddle point (docs/one_loop.md).

`TiltedSample` is what every correction consumes: weighted single-neuron draws of the tilted
measure at the tree-level solution, with the closed-form prior kernel for the control variate.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from .estimator import cv_kernels


class TiltedSample(NamedTuple):
    """Single-neuron draws under the tilted measure at the tree-level saddle.

    phi: (M, P) features phi(h) of the draws on train points; phi_test: (M, P*) on test points.
    w: (M,) normalised importance weights of the tilted measure (sum 1).
    K, K_test: (P, P), (P*, P) closed-form prior feature kernels K^phi (control variate).
    prior: True when the draws come from the prior, so the unweighted draw mean estimates K.
    y: (P,) targets.  g_w, kappa, chi: scalars; width: N.
    """

    phi: jnp.ndarray
    phi_test: jnp.ndarray
    w: jnp.ndarray
    K: jnp.ndarray
    K_test: jnp.ndarray
    prior: bool
    y: jnp.ndarray
    g_w: float
    kappa: float
    chi: float
    width: int


def tilted_kernels(t: TiltedSample) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Tilted kernels Q (P, P) and Q_* (P*, P), with the prior-kernel control variate.

    Q_CV = sum_m w_m phi_m phi_m^T + (K^phi - (1/M) sum_m phi_m phi_m^T) when the draws are prior
    draws; without it the importance-sampling noise (~1/sqrt(M)) biases every output.
    """
    w0 = 1.0 / t.phi.shape[0] if t.prior else None
    return cv_kernels(t.phi, t.phi_test, t.w, w0, t.K, t.K_test)


def gp_algebra(
    Q: jnp.ndarray, g_w: float, kappa: float, y: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """M = (g_w Q + kappa I)^-1 (P, P) and a = M y (P,): the tree level is the GP with kernel Q."""
    B = g_w * Q + kappa * jnp.eye(Q.shape[0])  # (P, P)
    M = jnp.linalg.inv(0.5 * (B + B.T))  # (P, P), symmetric positive definite
    return 0.5 * (M + M.T), M @ y


def first_order_shift(t: TiltedSample) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """First-order fluctuation shift around the tilted saddle (docs/one_loop.md, 'first order').

    Returns (f_TL train (P,), f_TL test (P*,), shift train (P,), shift test (P*,)), where the
    tree-level outputs are g_w Q a, g_w Q_* a with the control-variate kernels of
    `tilted_kernels`, and the shifts are (T1 + T2)/N evaluated with the weighted draws:
      u1 = E_t[phi (phi^T M phi)(phi^T a)],  u2 = E_t[phi (phi^T a)(phi^T M phi - tr MQ)],
      T1_* = -g_w^2 (u1_* - Q_* M Q a) + g_w^3 Q_* M (u1 - Q M Q a),
      T2_* = -g_w^2/2 (u2_* - g_w Q_* M u2).
    Cost O(M P^2 + M P P*).
    """
    return _first_order_shift(
        t.phi, t.phi_test, t.w, t.K, t.K_test, t.y, t.g_w, t.kappa, t.width, prior=bool(t.prior)
    )


@functools.partial(jax.jit, static_argnames=("prior",))
def _first_order_shift(phi, phi_test, w, K, K_test, y, g, kap, N, prior):
    """Jitted body of first_order_shift (one compilation per shape)."""
    t = TiltedSample(phi, phi_test, w, K, K_test, prior, y, g, kap, 1.0, N)
    Q, Q_test = tilted_kernels(t)  # (P, P), (P*, P)
    M, a = gp_algebra(Q, g, kap, t.y)
    s_a = t.phi @ a  # (M,)
    s_M = jnp.sum((t.phi @ M) * t.phi, axis=1)  # (M,)  phi^T M phi per draw
    trMQ = jnp.sum(M * Q)
    c1 = t.w * s_a * s_M  # (M,)
    c2 = t.w * s_a * (s_M - trMQ)  # (M,)
    u1, u2 = c1 @ t.phi, c2 @ t.phi  # (P,)
    u1t, u2t = c1 @ t.phi_test, c2 @ t.phi_test  # (P*,)
    Qa = Q @ a  # (P,)
    QMQa = Q @ (M @ Qa)  # (P,)
    r1 = u1 - QMQa  # (P,)
    # train: (I - g_w Q M) = kappa M turns T1 + T2 into one solve (exact identity)
    shift_train = -(kap * g * g / N) * (M @ (r1 + 0.5 * u2))  # (P,)
    QtM = Q_test @ M  # (P*, P)
    T1 = -g * g * (u1t - QtM @ Qa) + g**3 * (QtM @ r1)  # (P*,)
    T2 = -0.5 * g * g * (u2t - g * (QtM @ u2))  # (P*,)
    return g * Qa, g * (Q_test @ a), shift_train, (T1 + T2) / N


def first_order_correction(t: TiltedSample) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Posterior mean outputs to first order in 1/N around the tilted saddle: (f_train (P,),
    f_test (P*,)), units of y (docs/one_loop.md)."""
    f_tr, f_te, d_tr, d_te = first_order_shift(t)
    return f_tr + d_tr, f_te + d_te


def linear_first_order_shift(
    Q: jnp.ndarray, Q_test: jnp.ndarray, y: jnp.ndarray, g_w: float, kappa: float, width: float
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Closed form (Wick) of the first-order shift for linear phi: (train (P,), test (P*,)).

    The tilted measure is Gaussian with covariance Q (train) and Q_* (test-train), so
      shift_* = -(kappa g_w^2 / N) Q_* M [tr(MQ) a + 2 M Q a],  M = (g_w Q + kappa)^-1, a = M y,
    and on train points (Q_* = Q) -(kappa g_w^2/N) M [tr(MQ) Q a + 2 Q M Q a].
    """
    M, a = gp_algebra(Q, g_w, kappa, y)
    v = jnp.sum(M * Q) * a + 2.0 * M @ (Q @ a)  # (P,)
    pre = -kappa * g_w * g_w / width
    return pre * (Q @ (M @ v)), pre * (Q_test @ (M @ v))


class LaplaceOneLoop(NamedTuple):
    """Laplace one-loop of the linear network in its scale s (docs/one_loop.md).

    f_train (P,), f_test (P*,): m(s*) + sigma^2 m''/2 + sigma^4 l''' m'/2 (units of y);
    f_mode_train, f_mode_test: m(s*), the saddle alone; s_mode: s*; sigma2: -1/l''(s*);
    l3: l'''(s*).
    """

    f_train: np.ndarray
    f_test: np.ndarray
    f_mode_train: np.ndarray
    f_mode_test: np.ndarray
    s_mode: float
    sigma2: float
    l3: float


def _ell_derivs(
    s: float, lam: np.ndarray, yt: np.ndarray, g_w: float, width: float, chi: float, kappa: float
) -> tuple[float, float, float]:
    """l'(s), l''(s), l'''(s) of l(s) = (N/2-1) log s - N s/2 - chi/2 y^T B^-1 y - 1/2 log det B,
    B = s g_w K + kappa I, in the eigenbasis of K (lam, yt = U^T y)."""
    d = s * g_w * lam + kappa  # (P,)
    x = g_w * lam / d  # (P,)
    n1 = 0.5 * width - 1.0
    l1 = n1 / s - 0.5 * width + 0.5 * chi * np.sum(yt**2 * x / d) - 0.5 * np.sum(x)
    l2 = -n1 / s**2 - chi * np.sum(yt**2 * x**2 / d) + 0.5 * np.sum(x**2)
    l3 = 2.0 * n1 / s**3 + 3.0 * chi * np.sum(yt**2 * x**3 / d) - np.sum(x**3)
    return float(l1), float(l2), float(l3)


def laplace_one_loop(
    lam: np.ndarray,
    U: np.ndarray,
    B_test: np.ndarray,
    y: np.ndarray,
    g_w: float,
    width: float,
    chi: float,
    kappa: float,
) -> LaplaceOneLoop:
    """Laplace (one-loop) expansion of the exact linear posterior mean in the scale s.

    lam (r,), U (P, r): eigenmodes of K^x; B_test = K_test_train U (P*, r); y (P,).  The mode s*
    of l(s) is the global maximum (scan in log s, then Brent); the mean is
      f = m(s*) + sigma^2 m''(s*)/2 + sigma^4 l'''(s*) m'(s*)/2,  sigma^2 = -1/l''(s*),
    with m(s) = s g_w K (s g_w K + kappa)^-1 y; error O(1/N^2) at every chi.
    """
    if width <= 2:
        raise ValueError(f"width must be > 2 for the Laplace one-loop in s, got {width}")
    yt = U.T @ y  # (r,)
    dl = lambda x: _ell_derivs(math.exp(x), lam, yt, g_w, width, chi, kappa)[0]  # noqa: E731
    x_hi = math.log1p(chi * float(y @ y) / (4 * kappa * width)) + 2.0
    xs = np.arange(x_hi - 60.0, x_hi + 0.05, 0.05)  # (n,) coarse scan in log s
    g = np.array([dl(x) for x in xs])
    idx = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0]
    if idx.size == 0:
        raise RuntimeError("no mode of l(s) found in the scanned range")
    roots = [scipy.optimize.brentq(dl, xs[i], xs[i + 1], xtol=1e-15, rtol=1e-15) for i in idx]
    s = math.exp(max(roots, key=lambda x: _ell(math.exp(x), lam, yt, g_w, width, chi, kappa)))
    _, l2, l3 = _ell_derivs(s, lam, yt, g_w, width, chi, kappa)
    sigma2 = -1.0 / l2
    d = s * g_w * lam + kappa  # (r,)
    # train factor r(s) = s g_w lam / d and test factor q(s) = s g_w / d, with s-derivatives
    r0, r1 = s * g_w * lam / d, g_w * lam * kappa / d**2
    r2 = -2 * g_w**2 * lam**2 * kappa / d**3
    q0, q1, q2 = s * g_w / d, g_w * kappa / d**2, -2 * g_w**2 * lam * kappa / d**3
    coef = lambda c0, c1, c2: c0 + 0.5 * sigma2 * c2 + 0.5 * sigma2**2 * l3 * c1  # noqa: E731
    f_tr = U @ (coef(r0, r1, r2) * yt)  # (P,)
    f_te = B_test @ (coef(q0, q1, q2) * yt)  # (P*,)
    return LaplaceOneLoop(f_tr, f_te, U @ (r0 * yt), B_test @ (q0 * yt), s, sigma2, l3)


def _ell(
    s: float, lam: np.ndarray, yt: np.ndarray, g_w: float, width: float, chi: float, kappa: float
) -> float:
    """l(s) up to a constant (see _ell_derivs)."""
    d = s * g_w * lam + kappa
    return float(
        (0.5 * width - 1.0) * math.log(s)
        - 0.5 * width * s
        - 0.5 * chi * np.sum(yt**2 / d)
        - 0.5 * np.sum(np.log(d))
    )
