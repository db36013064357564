"""The exact one-neuron (cavity) tilt for positively homogeneous phi (relu): a tree level that is
normalisable at every N and chi (docs/homogeneous.md, "The cavity saddle").

Integrating one neuron's readout exactly given the others (kernel K^ of the others,
B = g_w K^ + kappa I, M = B^-1, a = M y) tilts its input weights v = r v^ by
  (1 + b r^2)^(-1/2) exp(alpha r^2 / (2 (1 + b r^2))),
  b = (g_w/N) phi^T M phi^,  alpha = (chi g_w/N) (a^T phi^)^2,  phi^ = relu(X v^),
(matrix determinant lemma and Sherman-Morrison).  Along a ray the exponent saturates at
alpha/(2b), so the measure is normalisable for every chi.  The saddle replaces K^ by (1 - 1/N) Q
and solves Q = E_cav[phi phi^T] (Anderson-accelerated fixed point, continued in chi).
Radial part per direction: t = r^2 ~ Gamma(D/2, rate D/(2 g_v)) under the prior, integrated by a
41-node trapezoid in log t around the mode of the (log-concave) integrand.  Directions: the
proposal of theory/homogeneous.py (Sobol uniform + one-sided ACGs) around the maxima of
(a^T phi^)^2, with ACG widths from the curvature of the angular log density at each maximum.
Control variate: the arc-cosine kernel, Q = [K + sum omega (R0 T - g_v) phi^ phi^T] / Z,
Z = 1 + sum omega (R0 - 1), R0 = E_t[tilt], T = E[t | v^].
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnet import gp

from . import homogeneous as hom
from .estimator import cv_diagonal, cv_kernels
from .schema import Row

N_NODES = 61  # trapezoid nodes in log t (log R accurate to ~1e-10, checked against quad)
HALF_WIDTH = 11.0  # nodes span the mode +- HALF_WIDTH curvature widths in log t (skewed tails)


def _log_radial(x, b, alpha, D, g_v):
    """log of t^(D/2) exp(-D t/(2 g_v)) (1+bt)^(-1/2) exp(alpha t/(2(1+bt))) at x = log t."""
    t = jnp.exp(x)
    bt = b * t
    return 0.5 * D * x - 0.5 * D * t / g_v - 0.5 * jnp.log1p(bt) + 0.5 * alpha * t / (1.0 + bt)


def _mode(b, alpha, D, g_v, n_newton=30):
    """Mode of _log_radial in x per direction and its curvature (M,), by safeguarded Newton."""
    x = jnp.zeros_like(b) + jnp.log(g_v)
    d1 = jax.grad(lambda x, b, a: _log_radial(x, b, a, D, g_v))
    d1v = jax.vmap(d1)
    d2v = jax.vmap(jax.grad(d1))

    def body(_, x):
        g, h = d1v(x, b, alpha), d2v(x, b, alpha)
        step = jnp.clip(-g / jnp.minimum(h, -1e-3), -2.0, 2.0)
        return x + step

    x = jax.lax.fori_loop(0, n_newton, body, x)
    return x, jnp.minimum(d2v(x, b, alpha), -1e-6)


@functools.partial(jax.jit, static_argnames=("D", "n_moments"))
def radial(b, alpha, D, g_v, n_moments=1):
    """log R0 (M,) relative to the prior radial law, and E[t^k | v^] for k = 1..n_moments
    ((n_moments, M)) under the cavity tilt, by the trapezoid in log t."""
    x0, h = _mode(b, alpha, D, g_v)
    sd = 1.0 / jnp.sqrt(-h)  # (M,)
    grid = jnp.linspace(-HALF_WIDTH, HALF_WIDTH, N_NODES)
    x = x0[:, None] + sd[:, None] * grid[None, :]  # (M, n)
    L = _log_radial(x, b[:, None], alpha[:, None], D, g_v)  # (M, n)
    Lmax = jnp.max(L, axis=1, keepdims=True)
    e = jnp.exp(L - Lmax)  # (M, n)
    dx = sd * (grid[1] - grid[0])  # (M,)
    log_int = jnp.log(jnp.sum(e, axis=1) * dx) + Lmax[:, 0]
    log_prior = jax.scipy.special.gammaln(0.5 * D) + 0.5 * D * jnp.log(2.0 * g_v / D)
    t = jnp.exp(x)
    mom = jnp.stack(
        [jnp.sum(e * t**k, axis=1) / jnp.sum(e, axis=1) for k in range(1, 1 + n_moments)]
    )
    return log_int - log_prior, mom


@functools.partial(jax.jit, static_argnames=("D",))
def cavity_moments(phi, phi_test, log_q, K, K_tt, k_test, Q, y, g_w, kappa, chi, N, g_v, D):
    """One map of the cavity saddle: from Q (P, P) the new Q, Q_* (P*, P), diag Q_** (P*,),
    the ESS of the angular weights and the largest log weight spread."""
    P = Q.shape[0]
    B = g_w * (1.0 - 1.0 / N) * Q + kappa * jnp.eye(P)
    Minv = jnp.linalg.inv(0.5 * (B + B.T))
    a = Minv @ y  # (P,)
    b = (g_w / N) * jnp.sum((phi @ Minv) * phi, axis=1)  # (M,)
    alpha = (chi * g_w / N) * (phi @ a) ** 2  # (M,)
    logR0, mom = radial(b, alpha, D, g_v)
    T = mom[0]  # (M,)
    log_om = -log_q - jnp.log(phi.shape[0])  # (M,) log omega
    lw = log_om + logR0  # (M,) log of the unnormalised angular weights
    shift = jnp.maximum(jnp.max(lw), 0.0)  # every weight scaled by exp(-shift): no overflow
    A = jnp.exp(-shift)
    wr = jnp.exp(lw - shift)  # (M,)
    Z = A * (1.0 - jnp.sum(jnp.exp(log_om))) + jnp.sum(wr)  # control variate 1 = E_unif[1]
    w = wr * T / Z  # (M,) weights of phi^ phi^T
    w0 = A * jnp.exp(log_om) * g_v / Z
    Qn, Qt = cv_kernels(phi, phi_test, w, w0, A * K / Z, A * K_tt / Z)
    qtt = cv_diagonal(phi_test, w, w0, A * k_test / Z)
    ess = jnp.sum(wr) ** 2 / jnp.sum(wr * wr)
    return 0.5 * (Qn + Qn.T), Qt, qtt, ess


def anderson(F, x0, tol, maxiter, m=6, mix=0.5):
    """Anderson-accelerated fixed point x = F(x); returns (x, iterations, max|F(x)-x|, ok)."""
    x = np.asarray(x0, float)
    Xs, Gs = [], []
    res, good = math.inf, None
    for it in range(1, maxiter + 1):
        fx = np.asarray(F(x))
        g = fx - x
        res = float(np.max(np.abs(g)))
        if not np.isfinite(res):  # extrapolated out of the domain: back towards the last good x
            if good is None:
                return x, it, res, False
            x, Xs, Gs = 0.5 * (x + good), [], []
            continue
        good = x
        if res < tol:
            return fx, it, res, True
        Xs.append(x)
        Gs.append(g)
        if len(Xs) > m + 1:
            Xs.pop(0)
            Gs.pop(0)
        if len(Xs) > 1:
            dG = np.stack([Gs[i + 1] - Gs[i] for i in range(len(Gs) - 1)], axis=1)
            dX = np.stack([Xs[i + 1] - Xs[i] for i in range(len(Xs) - 1)], axis=1)
            gam, *_ = np.linalg.lstsq(dG, g, rcond=None)
            x = x + mix * g - (dX + mix * dG) @ gam
        else:
            x = x + mix * g
    return x, maxiter, res, False


class CavitySolution(NamedTuple):
    """Cavity tree level at one chi: Q (P, P), the proposal, ESS, iterations, residual,
    converged, reason."""

    Q: np.ndarray
    prop: hom.Proposal
    ess: float
    iterations: int
    residual: float
    converged: bool
    reason: str


def _proposal(pb: hom.Problem, Q, chi, n_dirs, seed, G_prev, rng, keep=32):
    """Directions around the maxima of (a^T phi^)^2 with ACG widths from the local curvature
    of the angular log density log R0."""
    N, g, D = pb.width, pb.g_w, pb.X.shape[1]
    B = g * (1 - 1 / N) * Q + pb.kappa * np.eye(len(pb.y))
    Minv = np.linalg.inv(B)
    a = Minv @ pb.y
    G, _ = hom.find_maxima(pb.X, a, G_prev, None, 64, keep, rng)

    def logR(U):
        ph = hom.relu_features(U, pb.X)
        b = (g / N) * np.sum((ph @ Minv) * ph, axis=1)
        al = (chi * g / N) * (ph @ a) ** 2
        return np.asarray(radial(jnp.asarray(b), jnp.asarray(al), D, pb.g_v)[0])

    l0 = logR(G)  # (K,)
    delta_ang = 0.02
    curv = np.zeros(len(G))
    for _ in range(4):  # average curvature over random tangent directions
        T = rng.standard_normal(G.shape)
        T -= np.sum(T * G, axis=1, keepdims=True) * G
        T /= np.linalg.norm(T, axis=1, keepdims=True)
        Up = np.cos(delta_ang) * G + np.sin(delta_ang) * T
        curv += -2.0 * (logR(Up) - l0) / delta_ang**2 / 4
    var = 1.0 / np.maximum(curv, 1e-3)  # angular variance per tangent dimension
    beta = np.clip(1.0 - 2.0 * var, 0.0, 1.0 - 1e-10)
    return hom.proposal(pb.X, pb.X_test, G, beta, n_dirs, seed), G


def _moments(pb: hom.Problem, prop, Q, chi):
    """cavity_moments on the proposal's directions for the kernel Q (P, P) at this chi."""
    return cavity_moments(
        *(jnp.asarray(x) for x in (prop.phi, prop.phi_test, prop.log_q)),
        *(jnp.asarray(x) for x in (pb.K, pb.K_tt, pb.k_test)),
        jnp.asarray(Q),
        jnp.asarray(pb.y),
        pb.g_w,
        pb.kappa,
        chi,
        pb.width,
        pb.g_v,
        pb.X.shape[1],
    )


def _unvech(x, iu, P: int) -> np.ndarray:
    """The symmetric (P, P) matrix whose upper triangle (indices iu) is x."""
    Q = np.zeros((P, P))
    Q[iu] = x
    return Q + np.triu(Q, 1).T


def solve_chi(pb: hom.Problem, chi, Q0, n_dirs, seed, tol=1e-8, maxiter=200, rounds=2, G=None):
    """Cavity saddle at one chi from Q0 (P, P); the proposal is rebuilt at the solution
    `rounds` times.  Returns (CavitySolution, maxima)."""
    rng = np.random.default_rng(seed)
    P = len(pb.y)
    iu = np.triu_indices(P)
    Q = np.asarray(Q0, float)
    ok, it, res, reason = False, 0, math.inf, ""
    for r in range(rounds):
        prop, G = _proposal(pb, Q, chi, n_dirs, seed + 31 * r, G, rng)

        def F(x, prop=prop):
            return np.asarray(_moments(pb, prop, _unvech(x, iu, P), chi)[0])[iu]

        x, it, res, ok = anderson(F, Q[iu], tol, maxiter)
        Q = _unvech(x, iu, P)
        if not ok:
            reason = f"cavity fixed point not reached: residual {res:.2g} after {it} iterations"
            break
    ess = float(_moments(pb, prop, Q, chi)[3])
    return CavitySolution(Q, prop, ess, it, res, ok, reason), G


def outputs(pb: hom.Problem, sol: CavitySolution, chi) -> Row:
    """predict's row of the cavity tree level: the GP with kernel g_w Q (train f = g_w Q a)."""
    g = pb.g_w
    Q, Qt, qtt, _ = _moments(pb, sol.prop, sol.Q, chi)
    m_tr, v_tr, m_te, v_te = gp.gp_train_test(g * Q, g * Qt, g * qtt, jnp.asarray(pb.y), pb.kappa)
    return Row(
        f_train=np.asarray(m_tr),
        var_train=np.asarray(v_tr) / chi,
        f_test=np.asarray(m_te),
        var_test=np.asarray(v_te) / chi,
        K_train=np.asarray(Q),
        K_test_train=np.asarray(Qt),
        converged=sol.converged,
        iterations=sol.iterations,
        residual=sol.residual,
    )


def anneal(pb: hom.Problem, chis, n_draws=65536, seed=0, tol=1e-8, maxiter=200, max_ratio=2.0):
    """Cavity tree level over a chi ladder from the prior kernel; returns (row, solution) per
    requested chi (sorted).  Rows that did not converge are NaN with converged=False."""
    from . import adaptive

    ladder, index = adaptive.chi_ladder(chis, pb.width, max_ratio)
    wanted = {int(i) for i in index}
    Q, G, out = np.asarray(pb.K, float), None, {}
    for k, chi in enumerate(ladder):
        sol, G = solve_chi(pb, chi, Q, n_draws, seed + k, tol, maxiter, G=G)
        if sol.converged:
            Q = sol.Q
        if k in wanted:
            row = outputs(pb, sol, chi)
            if not sol.converged:
                row = hom.nan_row(row)._replace(converged=False)
            out[k] = (row, sol)
    return [out[int(i)] for i in index]


def _two_point_rule(m1, m2, m3):
    """2-node rule (nodes (M, 2), weights (M, 2)) reproducing E[t], E[t^2], E[t^3] per row."""
    var = jnp.maximum(m2 - m1 * m1, 1e-300)
    c1 = (m1 * m2 - m3) / var  # p2(t) = t^2 + c1 t + c0 orthogonal to 1 and t
    c0 = -m2 - c1 * m1
    disc = jnp.sqrt(jnp.maximum(c1 * c1 - 4.0 * c0, 0.0))
    t1, t2 = 0.5 * (-c1 - disc), 0.5 * (-c1 + disc)
    lam1 = (t2 - m1) / jnp.where(t2 - t1 > 0, t2 - t1, 1.0)
    return jnp.stack([t1, t2], axis=1), jnp.stack([lam1, 1.0 - lam1], axis=1)


def tilted_sample(pb: hom.Problem, sol: CavitySolution, chi):
    """The cavity measure at the solution as a TiltedSample: each direction carries the 2-node
    radial rule of its cavity radial law (exact E[t^k], k <= 3), weights omega R0 x rule weight
    (no control variate).  For experiments: no correction is derived on this measure."""
    from .fluctuation import TiltedSample

    D, N, g = pb.X.shape[1], pb.width, pb.g_w
    B = g * (1 - 1 / N) * sol.Q + pb.kappa * np.eye(len(pb.y))
    Minv = np.linalg.inv(B)
    a = Minv @ pb.y
    ph = sol.prop.phi
    b = (g / N) * np.sum((ph @ Minv) * ph, axis=1)
    al = (chi * g / N) * (ph @ a) ** 2
    logR0, mom = radial(jnp.asarray(b), jnp.asarray(al), D, pb.g_v, n_moments=3)
    t, lam = _two_point_rule(mom[0], mom[1], mom[2])  # (M, 2)
    lw = -jnp.asarray(sol.prop.log_q) + logR0
    w = jnp.exp(lw - jnp.max(lw))[:, None] * lam  # (M, 2)
    r = jnp.sqrt(t)
    phi = (r[:, :, None] * jnp.asarray(ph)[:, None, :]).reshape(-1, ph.shape[1])
    pt = jnp.asarray(sol.prop.phi_test)
    phi_t = (r[:, :, None] * pt[:, None, :]).reshape(-1, pt.shape[1])
    w = w.reshape(-1)
    return TiltedSample(
        phi=phi,
        phi_test=phi_t,
        w=w / jnp.sum(w),
        K=jnp.asarray(pb.K),
        K_test=jnp.asarray(pb.K_tt),
        prior=False,
        y=jnp.asarray(pb.y),
        g_w=float(g),
        kappa=float(pb.kappa),
        chi=float(chi),
        width=int(N),
    )
