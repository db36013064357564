"""Positively homogeneous phi (relu): the tilted single-neuron measure with its radial integral in
closed form, an importance sampler over directions, and the tree-level solve (docs/homogeneous.md).

For phi(X r v^) = r phi(X v^) the tilted measure N(v; 0, g_v/D I) exp(c (Delta^T phi(X v))^2 / 2)
factorises into a direction v^ on the unit sphere and a radius.  With s(v^) = Delta^T phi(X v^)
and u(v^) = c g_v s^2 / D, relative to the uniform measure on the sphere:
  angular density  pi(v^) = (1 - u)^(-D/2),   <r^2 | v^> = g_v / (1 - u),
so the measure is normalisable only while u* = max_v^ u(v^) < 1, and
  Q = E_unif[pi g_v phi^ phi^T / (1 - u)] / E_unif[pi],   phi^ = phi(X v^).
Estimator (control variate = the arc-cosine kernel K^phi, exact at zero tilt), directions v^_m
from a proposal q (density w.r.t. the uniform measure), omega_m = 1/(M q_m):
  Z = 1 + sum omega (pi - 1),   Q = [K + g_v sum omega (pi rho - 1) phi^ phi^T] / Z,  rho = 1/(1-u).
Proposal: a mixture of uniform directions and one-sided angular central Gaussians (ACG) around
the local maxima g_k of s^2, q_k(v^) = 2 sqrt(1 - b_k) (1 - b_k (g_k . v^)^2)^(-D/2) on g_k . v^ > 0
with b_k = u(g_k): the exact tilted angular law inside the activation cone of g_k.  Base points
are scrambled Sobol normals.  Maxima: a fixed-point ascent of |s| over activation cones
(v <- sign(s) b_A / |b_A|, b_A = X^T (Delta 1[X v > 0])), restarted from the kept maxima, the
top draws and random directions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import scipy.stats

from bayesnet import gp

from . import adaptive
from .estimator import cv_diagonal, cv_kernels
from .fluctuation import TiltedSample
from .schema import Row

EDGE = 1e-9  # a solve whose u* comes within EDGE of 1 is treated as not normalisable
START_U = 0.98  # a Newton start beyond this u* has its residual Delta scaled down to it


# ----------------------------------------------------------------------------- directions


def sobol_normals(n: int, dim: int, seed: int) -> np.ndarray:
    """n standard normal vectors (n, dim) from scrambled Sobol points (n a power of 2)."""
    m = int(math.ceil(math.log2(max(n, 2))))
    u = scipy.stats.qmc.Sobol(d=dim, scramble=True, seed=seed).random_base2(m)[:n]  # (n, dim)
    return scipy.stats.norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))


def relu_features(U: np.ndarray, X: np.ndarray) -> np.ndarray:
    """phi^ = relu(X v^) for each direction: (M, P)."""
    return np.maximum(U @ X.T, 0.0)


def _cone_ascent(G, X, delta, n_iter):
    """Fixed-point ascent over activation cones, v <- sign(s) b_A / |b_A| (finds interior
    maxima in a few steps); keeps the best direction seen per start."""
    best = G.copy()
    best_s2 = (relu_features(G, X) @ delta) ** 2  # (K,)
    for _ in range(n_iter):
        H = G @ X.T  # (K, P)
        s = np.maximum(H, 0.0) @ delta  # (K,)
        b = ((H > 0) * delta) @ X  # (K, D) gradient of s inside the cone
        nb = np.linalg.norm(b, axis=1, keepdims=True)
        G_new = np.where(nb > 0, np.sign(s)[:, None] * b / np.where(nb > 0, nb, 1.0), G)
        s2 = (relu_features(G_new, X) @ delta) ** 2
        better = s2 > best_s2
        best[better], best_s2[better] = G_new[better], s2[better]
        if np.allclose(G_new, G, atol=1e-13):
            break
        G = G_new
    return best


def _smooth_ascent(G, X, delta, taus, n_steps):
    """Projected gradient ascent of s_tau^2 on the sphere, s_tau = sum Delta tau softplus(x.v /
    tau), tau decreasing (reaches maxima on the kinks of s); per-start adaptive angular steps."""
    scale = np.sqrt(np.mean(np.sum(X * X, axis=1)))
    eta = np.full(len(G), 0.05)

    def val(V, tau):
        H = V @ X.T / scale  # (K, P)
        sp = tau * np.logaddexp(0.0, H / tau)
        return sp @ delta, scipy.special.expit(H / tau)

    for tau in taus:
        s, sig = val(G, tau)
        for _ in range(n_steps):
            g = 2.0 * s[:, None] * ((sig * delta) @ X) / scale  # (K, D)
            g = g - np.sum(g * G, axis=1, keepdims=True) * G  # tangent
            ng = np.linalg.norm(g, axis=1, keepdims=True)
            step = np.where(ng > 0, g / np.where(ng > 0, ng, 1.0), 0.0)
            V = G + eta[:, None] * step
            V /= np.linalg.norm(V, axis=1, keepdims=True)
            s_new, sig_new = val(V, tau)
            up = s_new**2 > s**2
            G = np.where(up[:, None], V, G)
            s, sig = np.where(up, s_new, s), np.where(up[:, None], sig_new, sig)
            eta = np.clip(np.where(up, 1.5 * eta, 0.5 * eta), 1e-7, 0.3)
    return G


def ascend(G: np.ndarray, X: np.ndarray, delta: np.ndarray, n_iter: int = 40) -> np.ndarray:
    """Local maxima of s^2 = (Delta^T relu(X v^))^2 on the sphere from starts G (K, D): the
    cone fixed point (interior maxima), then smoothed projected ascent (maxima on kinks); the
    better of the two per start."""
    G = G / np.linalg.norm(G, axis=1, keepdims=True)  # (K, D)
    A = _cone_ascent(G, X, delta, n_iter)
    if n_iter < 20:  # quick re-ascent (the guard inside Newton): cone steps only
        return A
    B = _smooth_ascent(A, X, delta, (1e-2, 1e-3, 1e-4, 1e-5), 25)
    sA, sB = (relu_features(A, X) @ delta) ** 2, (relu_features(B, X) @ delta) ** 2
    return np.where((sB > sA)[:, None], B, A)


def distinct(G: np.ndarray, score: np.ndarray, keep: int, cos_max: float = 0.999) -> np.ndarray:
    """Up to `keep` rows of G (K, D) with the highest score, no two closer than cos_max."""
    out = []
    for i in np.argsort(-score):
        if all(abs(G[i] @ G[j]) < cos_max for j in out):
            out.append(i)
            if len(out) == keep:
                break
    return G[np.asarray(out, int)]


def find_maxima(
    X: np.ndarray,
    delta: np.ndarray,
    kept: np.ndarray | None,
    top: np.ndarray | None,
    n_random: int,
    keep: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of s^2 restarted from the kept maxima, the top draws and n_random uniform
    directions: the `keep` best distinct ones (K, D) and their s^2 (K,)."""
    starts = [rng.standard_normal((n_random, X.shape[1]))]
    starts += [a for a in (kept, top) if a is not None and len(a)]
    G = ascend(np.concatenate(starts), X, delta)
    s2 = (relu_features(G, X) @ delta) ** 2
    G = distinct(G, s2, keep)
    return G, (relu_features(G, X) @ delta) ** 2


class Proposal(NamedTuple):
    """Fixed direction draws: U (M, D) unit directions, phi (M, P) = relu(X v^), phi_test
    (M, P*), log_q (M,) log proposal density w.r.t. the uniform measure on the sphere."""

    U: np.ndarray
    phi: np.ndarray
    phi_test: np.ndarray
    log_q: np.ndarray


def acg_directions(Z: np.ndarray, g: np.ndarray, beta: float) -> np.ndarray:
    """One-sided ACG directions around g (D,) from normals Z (n, D): z = n + (1/sqrt(1-b) - 1)
    (g.n) g normalised, reflected into g . v^ > 0."""
    z = Z + (1.0 / math.sqrt(1.0 - beta) - 1.0) * (Z @ g)[:, None] * g[None, :]  # (n, D)
    v = z / np.linalg.norm(z, axis=1, keepdims=True)
    t = v @ g  # (n,)
    return v - 2.0 * np.minimum(t, 0.0)[:, None] * g[None, :]


def proposal(
    X: np.ndarray,
    X_test: np.ndarray,
    G: np.ndarray,
    u_max: np.ndarray,
    n_dirs: int,
    seed: int,
    alpha0: float = 0.5,
    beta_max: float = 1.0 - 1e-10,
) -> Proposal:
    """Uniform directions (fraction alpha0) plus one-sided ACGs around the maxima G (K, D)
    with b_k = u(g_k) (clipped to [0, beta_max]); Sobol base points, deterministic shares."""
    D = X.shape[1]
    Z = sobol_normals(n_dirs, D, seed)  # (M, D)
    K = len(G)
    n0 = n_dirs if K == 0 else int(round(alpha0 * n_dirs))
    beta = np.clip(np.asarray(u_max, float), 0.0, beta_max)  # (K,)
    parts = [Z[:n0] / np.linalg.norm(Z[:n0], axis=1, keepdims=True)]
    bounds = np.linspace(n0, n_dirs, K + 1).astype(int)
    for k in range(K):
        parts.append(acg_directions(Z[bounds[k] : bounds[k + 1]], G[k], beta[k]))
    U = np.concatenate(parts)  # (M, D)
    shares = np.diff(bounds) / n_dirs
    # deterministic mixture: the density of the whole design, shares as mixture weights
    log_q = (
        np.zeros(n_dirs) if K == 0 else _design_log_q(U, G, beta, n0 / n_dirs, shares)  # (M,)
    )
    return Proposal(U, relu_features(U, X), relu_features(U, X_test), log_q)


def _design_log_q(U, G, beta, a0, shares):
    """log of a0 + sum_k shares_k q_k(v^) for every direction (M,)."""
    D = U.shape[1]
    t = U @ G.T  # (M, K)
    with np.errstate(divide="ignore"):
        lk = np.where(
            t > 0,
            math.log(2.0) + 0.5 * np.log1p(-beta)[None] - 0.5 * D * np.log1p(-beta * t * t),
            -np.inf,
        )
    parts = np.concatenate(
        [np.full((U.shape[0], 1), math.log(a0)), np.log(shares)[None] + lk], axis=1
    )
    return scipy.special.logsumexp(parts, axis=1)


# ----------------------------------------------------------------------------- the estimator


def _angular(phi, log_q, delta, c, g_v, D):
    """u (M,), rho = 1/(1-u), omega pi (M,) (unnormalised tilted weights), omega (M,)."""
    s = phi @ delta  # (M,)
    u = (c * g_v / D) * s * s  # (M,)
    rho = 1.0 / (1.0 - u)
    omega = jnp.exp(-log_q) / phi.shape[0]  # (M,) weights of the uniform measure
    w_pi = omega * jnp.exp(0.5 * D * jnp.log(rho))  # (M,) omega pi
    return u, rho, w_pi, omega


@functools.partial(jax.jit, static_argnames=("D",))
def moments(phi, phi_test, log_q, K, K_tt, k_test, delta, c, g_v, D):
    """Q (P, P), Q_* (P*, P), diag Q_** (P*,), Z, the ESS of the weights omega pi, and the
    largest u over the draws; phi (M, P) are relu(X v^) of unit directions."""
    u, rho, w_pi, omega = _angular(phi, log_q, delta, c, g_v, D)
    Z = 1.0 + jnp.sum(w_pi - omega)
    sphi, sphi_t = jnp.sqrt(g_v) * phi, jnp.sqrt(g_v) * phi_test
    w, w0 = w_pi * rho / Z, omega / Z  # (M,)
    Q, Q_t = cv_kernels(sphi, sphi_t, w, w0, K / Z, K_tt / Z)
    q_tt = cv_diagonal(sphi_t, w, w0, k_test / Z)
    ess = jnp.sum(w_pi) ** 2 / jnp.sum(w_pi * w_pi)
    return Q, Q_t, q_tt, Z, ess, jnp.max(u)


@functools.partial(jax.jit, static_argnames=("D",))
def residual(f, phi, log_q, K, y, g_w, kappa, c, g_v, D):
    """Tree equation f - (g_w/kappa) Q(f) (y - f) on fixed directions, (P,)."""
    delta = y - f  # (P,)
    u, rho, w_pi, omega = _angular(phi, log_q, delta, c, g_v, D)
    Z = 1.0 + jnp.sum(w_pi - omega)
    Qd = K @ delta + g_v * ((w_pi * rho - omega) * (phi @ delta)) @ phi  # (P,)
    return f - (g_w / kappa) * Qd / Z


jacobian = jax.jit(jax.jacfwd(residual), static_argnames=("D",))


def radial_nodes(D: int, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for x ~ Gamma(D/2, 1): nodes, weights (n,) (exact to degree 2n-1 in x)."""
    x, w = scipy.special.roots_genlaguerre(n, 0.5 * D - 1.0)
    return x, w / w.sum()


def tilted_sample(
    prop: Proposal, y, f, K, K_test, g_v, g_w, kappa, chi, width, c, n_radial: int = 2
) -> TiltedSample:
    """Weighted draws of the tilted measure at train predictor f (P,): each direction carries
    n_radial radii from the Gauss rule of r^2 | v^ ~ (2 g_v/(D(1-u))) Gamma(D/2) (exact
    moments up to phi^(4 n_radial - 2)); weights omega pi x rule weight, normalised."""
    D = prop.U.shape[1]
    delta = jnp.asarray(y) - jnp.asarray(f)
    _, rho, w_pi, _ = _angular(jnp.asarray(prop.phi), jnp.asarray(prop.log_q), delta, c, g_v, D)
    x, lam = radial_nodes(D, n_radial)
    r = jnp.sqrt((2.0 * g_v / D) * rho[:, None] * jnp.asarray(x)[None, :])  # (M, n)
    phi = (r[:, :, None] * jnp.asarray(prop.phi)[:, None, :]).reshape(-1, prop.phi.shape[1])
    phi_t = (r[:, :, None] * jnp.asarray(prop.phi_test)[:, None, :]).reshape(
        -1, prop.phi_test.shape[1]
    )
    w = (w_pi[:, None] * jnp.asarray(lam)[None, :]).reshape(-1)
    return TiltedSample(
        phi=phi,
        phi_test=phi_t,
        w=w / jnp.sum(w),
        K=jnp.asarray(K),
        K_test=jnp.asarray(K_test),
        prior=False,
        y=jnp.asarray(y),
        g_w=float(g_w),
        kappa=float(kappa),
        chi=float(chi),
        width=int(width),
    )


# ----------------------------------------------------------------------------- the solve


class Problem(NamedTuple):
    """Static data of one relu solve (float64): inputs, targets, prior kernels, gains."""

    X: np.ndarray
    X_test: np.ndarray
    y: np.ndarray
    K: np.ndarray
    K_tt: np.ndarray
    k_test: np.ndarray
    g_w: float
    g_v: float
    kappa: float
    width: float

    def tilt(self, chi: float) -> float:
        """Tilt coefficient c at this chi."""
        return adaptive.tilt_coefficient(self.g_w, chi, self.width, self.kappa)

    def u_of(self, s2, chi: float):
        """u = c g_v s^2 / D."""
        return self.tilt(chi) * self.g_v * np.asarray(s2) / self.X.shape[1]


class Solution(NamedTuple):
    """The tree level at one chi: f (P,), the proposal, u* (max over found maxima and draws),
    the ESS of the weights, Newton iterations / residual, converged, a reason when not."""

    f: np.ndarray
    prop: Proposal
    u_star: float
    ess: float
    iterations: int
    residual: float
    converged: bool
    reason: str
    rounds: int


def u_star(pb: Problem, chi: float, delta, G, rng, prop: Proposal | None, n_random=64, keep=32):
    """u* at Delta (P,): maxima of s^2 from the kept ones G, the top draws and random starts;
    returns (u*, maxima (K, D), their u (K,))."""
    top = None
    if prop is not None:
        s2 = (prop.phi @ delta) ** 2
        top = prop.U[np.argsort(-s2)[:64]]
    Gn, s2 = find_maxima(pb.X, np.asarray(delta), G, top, n_random, keep, rng)
    u = pb.u_of(s2, chi)
    return float(np.max(u)), Gn, u


def solve_chi(
    pb: Problem,
    chi: float,
    f0: np.ndarray,
    G0: np.ndarray | None,
    n_dirs: int,
    seed: int,
    tol: float,
    maxiter: int,
    max_rounds: int = 4,
    alpha0: float = 0.5,
) -> tuple[Solution, np.ndarray]:
    """Newton solve of the tree equation at one chi with the u* guard; the proposal is rebuilt
    around the maxima at the current solution until they stop moving (max_rounds).  Returns the
    solution and the kept maxima."""
    from .solver import newton

    rng = np.random.default_rng(seed)
    D = pb.X.shape[1]
    c = pb.tilt(chi)
    y = jnp.asarray(pb.y)
    K = jnp.asarray(pb.K)
    f = np.asarray(f0, float)
    us, G, uk = u_star(pb, chi, pb.y - f, G0, rng, None)
    if us >= START_U:  # u is quadratic in Delta: shrink the start's residual inside the region
        shrink = math.sqrt(START_U / us)
        f = pb.y - shrink * (pb.y - f)
        us, uk = us * shrink**2, uk * shrink**2
    it = res = 0
    ok, reason, prop = False, "", None
    for rnd in range(max_rounds):
        if us >= 1.0 - EDGE:
            reason = f"u*={us:.3g} >= 1 at the start: the tilted measure is not normalisable"
            break
        prop = proposal(pb.X, pb.X_test, G, uk, n_dirs, seed + 7919 * rnd, alpha0)
        phi, lq = jnp.asarray(prop.phi), jnp.asarray(prop.log_q)
        G_guard = G

        def fun(z, phi=phi, lq=lq, G_guard=G_guard, phi_np=prop.phi):
            d = pb.y - z
            u_d = pb.u_of(np.max((phi_np @ d) ** 2), chi)
            s2 = (relu_features(ascend(G_guard, pb.X, d, 8), pb.X) @ d) ** 2
            if max(u_d, float(np.max(pb.u_of(s2, chi)))) >= 1.0 - EDGE:
                return np.full_like(z, np.nan)  # outside the region: rejected step
            return np.asarray(
                residual(jnp.asarray(z), phi, lq, K, y, pb.g_w, pb.kappa, c, pb.g_v, D)
            )

        def jac(z, phi=phi, lq=lq):
            return np.asarray(
                jacobian(jnp.asarray(z), phi, lq, K, y, pb.g_w, pb.kappa, c, pb.g_v, D)
            )

        f_new, it, res, ok = newton(fun, jac, f, tol, maxiter)
        us_new, G_new, uk_new = u_star(pb, chi, pb.y - f_new, G, rng, prop)
        if not ok:
            reason = (
                f"no normalisable fixed point found: Newton stopped at residual {res:.2g} "
                f"with u*={us_new:.3g}"
            )
        moved = abs(us_new - us) > 0.25 * max(1.0 - us_new, 1e-3)
        f, us, G, uk = f_new, us_new, G_new, uk_new
        if ok and not moved:
            break
        if not ok:
            break
    if ok and us >= 1.0 - EDGE:
        ok, reason = False, f"u*={us:.3g} >= 1 at the solution: not normalisable"
    if ok and prop is not None:
        # the last proposal must have seen the maxima at the solution
        prop = proposal(pb.X, pb.X_test, G, uk, n_dirs, seed + 7919 * max_rounds, alpha0)
    if prop is None:
        prop = proposal(pb.X, pb.X_test, G, np.clip(uk, 0, 1 - 1e-10), n_dirs, seed, alpha0)
    ess = math.nan
    if us < 1.0 - EDGE:
        out = moments(
            jnp.asarray(prop.phi),
            jnp.asarray(prop.phi_test),
            jnp.asarray(prop.log_q),
            K,
            jnp.asarray(pb.K_tt),
            jnp.asarray(pb.k_test),
            jnp.asarray(pb.y - f),
            c,
            pb.g_v,
            D,
        )
        ess = float(out[4])
    return Solution(f, prop, us, ess, it, float(res), ok, reason, rnd + 1), G


def outputs(pb: Problem, sol: Solution, chi: float) -> Row:
    """predict's row of the tree level at a solution: outputs, GP variances with kernel g_w Q,
    the kernel Q, ubar, convergence (normalisability: c Delta^T K Delta as for every tilt)."""
    g, D = pb.g_w, pb.X.shape[1]
    delta = pb.y - sol.f  # (P,)
    c = pb.tilt(chi)
    Q, Q_tt, q_tt, _, _, _ = moments(
        jnp.asarray(sol.prop.phi),
        jnp.asarray(sol.prop.phi_test),
        jnp.asarray(sol.prop.log_q),
        jnp.asarray(pb.K),
        jnp.asarray(pb.K_tt),
        jnp.asarray(pb.k_test),
        jnp.asarray(delta),
        c,
        pb.g_v,
        D,
    )
    f_test = (g / pb.kappa) * np.asarray(Q_tt) @ delta  # (P*,)
    _, v_tr = gp.gp_posterior(g * Q, g * Q, g * jnp.diag(Q), jnp.asarray(pb.y), pb.kappa)
    _, v_te = gp.gp_posterior(g * Q, g * Q_tt, g * q_tt, jnp.asarray(pb.y), pb.kappa)
    KD = float(delta @ pb.K @ delta)
    return Row(
        f_train=np.asarray(sol.f),
        var_train=np.asarray(v_tr) / chi,
        f_test=np.asarray(f_test),
        var_test=np.asarray(v_te) / chi,
        K_train=np.asarray(Q),
        K_test_train=np.asarray(Q_tt),
        ubar=g * float(delta @ np.asarray(Q) @ delta) / KD,
        converged=sol.converged,
        iterations=sol.iterations,
        residual=sol.residual,
        normalisability=c * KD,
    )


def nan_row(row: Row) -> Row:
    """The row with every number NaN (a solve that did not converge returns no numbers)."""
    nan = lambda a: np.full_like(np.asarray(a, float), np.nan)  # noqa: E731
    return row._replace(
        f_train=nan(row.f_train),
        var_train=nan(row.var_train),
        f_test=nan(row.f_test),
        var_test=nan(row.var_test),
        K_train=nan(row.K_train),
        K_test_train=nan(row.K_test_train),
        ubar=math.nan,
    )


def _continued(pb, chi0, chi, f, G, n_dirs, seed, tol, maxiter, max_rounds, max_halvings):
    """Solve at chi from the solution f at chi0 (None: the NNGP start); when that fails, reach
    chi through intermediate chis (geometric midpoints, at most max_halvings levels)."""
    sol, G1 = solve_chi(pb, chi, f, G, n_dirs, seed, tol, maxiter, max_rounds)
    if sol.converged or chi0 is None or max_halvings == 0:
        return sol, G1
    mid = math.sqrt(chi0 * chi)
    s_mid, G_mid = _continued(
        pb, chi0, mid, f, G, n_dirs, seed + 101, tol, maxiter, max_rounds, max_halvings - 1
    )
    if not s_mid.converged:
        if not s_mid.reason.startswith("continuation"):
            s_mid = s_mid._replace(reason=f"continuation failed at chi={mid:.4g}: {s_mid.reason}")
        return s_mid, G
    return _continued(
        pb,
        mid,
        chi,
        s_mid.f,
        G_mid,
        n_dirs,
        seed + 202,
        tol,
        maxiter,
        max_rounds,
        max_halvings - 1,
    )


def anneal(
    pb: Problem,
    chis,
    n_draws: int = 65536,
    seed: int = 0,
    tol: float = 1e-10,
    maxiter: int = 50,
    max_ratio: float = 2.0,
    max_rounds: int = 4,
    max_halvings: int = 6,
    at_solution: Callable[[TiltedSample], object] | None = None,
) -> list[tuple[Row, Solution, object]]:
    """The relu tree level over a chi ladder (NNGP start, each solution starts the next chi).
    Once a chi fails, every larger chi of the ladder is reported not converged (no numbers).
    Returns (row, solution, at_solution result) per requested chi (sorted)."""
    f = np.asarray(
        gp.gp_posterior(
            pb.g_w * jnp.asarray(pb.K),
            pb.g_w * jnp.asarray(pb.K),
            pb.g_w * jnp.diag(jnp.asarray(pb.K)),
            jnp.asarray(pb.y),
            pb.kappa,
        )[0]
    )
    # start where the NNGP residual gives u* <= 1/2 (u grows linearly in chi at fixed Delta)
    u1, G, _ = u_star(pb, 1.0, pb.y - f, None, np.random.default_rng(seed), None)
    start = min(0.05 * pb.width, 0.5 / max(u1, 1e-12))
    ladder, index = adaptive.chi_ladder(chis, pb.width, max_ratio, start / pb.width)
    wanted = {int(i): k for k, i in enumerate(index)}
    out, failed, chi_done = {}, None, None
    for k, chi in enumerate(ladder):
        if failed is None:
            sol, G = _continued(
                pb, chi_done, chi, f, G, n_draws, seed + k, tol, maxiter, max_rounds, max_halvings
            )
            if sol.converged:
                f, chi_done = sol.f, chi
            else:
                failed = (chi, sol)
        else:
            prev = failed[1]
            sol = prev._replace(
                converged=False,
                reason=f"not attempted: the ladder failed at chi={failed[0]:.4g} ({prev.reason})",
            )
        if k in wanted:
            row = outputs(pb, sol, chi) if sol.u_star < 1.0 - EDGE else None
            extra = None
            if sol.converged:
                if at_solution is not None:
                    extra = at_solution(
                        tilted_sample(
                            sol.prop,
                            pb.y,
                            sol.f,
                            pb.K,
                            pb.K_tt,
                            pb.g_v,
                            pb.g_w,
                            pb.kappa,
                            chi,
                            pb.width,
                            pb.tilt(chi),
                        )
                    )
            else:
                row = nan_row(row if row is not None else _empty_row(pb))._replace(
                    converged=False, iterations=sol.iterations, residual=sol.residual
                )
            out[k] = (row, sol, extra)
    return [out[int(i)] for i in index]


def _empty_row(pb: Problem) -> Row:
    """A row of the right shapes (values replaced by NaN by nan_row)."""
    P, Pt = len(pb.y), pb.X_test.shape[0]
    z = np.zeros
    return Row(z(P), z(P), z(Pt), z(Pt), z((P, P)), z((Pt, P)))


def problem(spec, data, kern) -> Problem:
    """The relu Problem of a NetworkSpec, a Dataset and its prior kernels (PriorKernels)."""
    return Problem(
        np.asarray(data.X, float),
        np.asarray(data.X_test, float),
        np.asarray(data.y, float),
        np.asarray(kern.K, float),
        np.asarray(kern.K_test_train, float),
        np.asarray(kern.k_test, float),
        float(spec.g_w),
        float(spec.g_v),
        float(spec.kappa),
        float(spec.width),
    )
