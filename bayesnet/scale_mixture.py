"""Exact finite-width posterior of the LINEAR one-hidden-layer network as a Gaussian scale mixture.

Under the prior the outputs are f = sqrt(s) g with g ~ N(0, (g_w/chi) K), s ~ Gamma(N/2, rate N/2)
(docs/exact_linear.md; s = chi |w|^2 / g_w).  The posterior of s is one-dimensional,

    p(s | y) ∝ s^(N/2-1) e^(-N s/2) N(y; 0, (s g_w/chi) K + (kappa/chi) I),

and given s the outputs are a GP with kernel (s g_w/chi) K and noise kappa/chi.  We work in
x = log s, whose density carries s^(N/2): its mode is the one-loop rescaling u = g_w s*
(docs/rescaling.md).
One eigendecomposition K = U diag(lam) U^T makes every s cost O(P); a trapezoid grid in x
(spectrally accurate for this analytic, rapidly decaying integrand) centred on the mode, with
spacing set by the Laplace width and halved until two levels agree, gives all moments.

Notation: u = g_w s (effective readout gain, "u-bar"), a_k = u lam_k + kappa, r_k = u lam_k / a_k.
Pure numpy/scipy float64, part of the pure core (docs/layout.md): must not import `theory`,
NumPyro or a sampler.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq

from .datasets import Dataset
from .gp import Spectrum, linear_spectrum
from .precision import with_float64
from .spec import NetworkSpec

TAIL_LOG = -40.0  # grid ends where the density is below e^-40 ~ 4e-18 of its peak
SCAN_STEP = 0.05  # step (in log s) of the coarse scan locating the global mode


def check_linear(spec: NetworkSpec, remedy: str = "") -> None:
    """Raise a one-line ValueError unless the network is linear (the only case with exact results).

    remedy: what the caller can do instead, appended to the message.
    """
    if spec.activation != "linear":
        raise ValueError(
            f"exact results exist for linear networks only (the posterior depends on V through "
            f"V^T V only for phi = identity), got activation={spec.activation!r}"
            + (f": {remedy}" if remedy else "")
        )


@dataclasses.dataclass(frozen=True, eq=False)
class LinearProblem:
    """One (spec, data) pair in the eigenbasis of its train kernel; all arrays float64.

    Only the r non-zero modes of K_train are kept (r <= min(P, D)): the others do not depend on s.
    """

    spectrum: Spectrum  # modes of K_train = (g_v/D) X X^T: lam (r,), U (P, r), yt = U^T y (r,)
    y: np.ndarray  # (P,) training targets
    B: np.ndarray  # (P*, r) K_test,train U
    k_ss: np.ndarray  # (P*,) diag of K_test,test
    F: np.ndarray  # (P + P*, D) factor of the joint prior kernel, K_joint = F F^T
    g_w: float
    width: float
    chi: float
    kappa: float

    @property
    def lam(self) -> np.ndarray:
        """Non-zero eigenvalues of K_train, (r,)."""
        return self.spectrum.lam

    @property
    def U(self) -> np.ndarray:
        """Their eigenvectors (columns), (P, r)."""
        return self.spectrum.U

    @property
    def yt(self) -> np.ndarray:
        """Targets in the eigenbasis, U^T y, (r,)."""
        return self.spectrum.yt

    @property
    def K(self) -> np.ndarray:
        """Training kernel K^x, (P, P)."""
        return (self.U * self.lam) @ self.U.T

    @property
    def K_test_train(self) -> np.ndarray:
        """Test-train kernel K^x_{*.}, (P*, P)."""
        return self.B @ self.U.T


def prepare(spec: NetworkSpec, data: Dataset) -> LinearProblem:
    """One thin SVD of X for a linear spec and a Dataset: the eigenbasis of K_train."""
    check_linear(spec)
    F = np.sqrt(spec.g_v / data.dim) * np.vstack([data.X, data.X_test])  # (P+P*, D)
    P = data.n_train
    y = np.asarray(data.y, dtype=np.float64)
    sp = linear_spectrum(data.X, y, spec.g_v)
    B = F[P:] @ (F[:P].T @ sp.U)  # (P*, r)
    k_ss = np.sum(F[P:] ** 2, axis=1)  # (P*,)
    return LinearProblem(
        spectrum=sp,
        y=y,
        B=B,
        k_ss=k_ss,
        F=F,
        g_w=spec.g_w,
        width=float(spec.width),
        chi=spec.chi,
        kappa=spec.kappa,
    )


# ------------------------------------------------------------------ log density of x = log s


def log_ratio(prob: LinearProblem, x: np.ndarray | float, x0: float) -> np.ndarray:
    """log p(x|y) - log p(x0|y) for x = log s, shape of x; stable for x near x0 at any N."""
    d = np.atleast_1d(np.asarray(x, dtype=np.float64)) - x0  # (n,)
    u0 = prob.g_w * np.exp(x0)
    a0 = u0 * prob.lam + prob.kappa  # (r,)
    du = u0 * np.expm1(d)  # (n,)  u - u0
    dl = du[:, None] * prob.lam / a0  # (n, r)  (a - a0)/a0
    gamma = 0.5 * prob.width * (d - np.exp(x0) * np.expm1(d))
    logdet = -0.5 * np.sum(np.log1p(dl), axis=1)
    quad = 0.5 * prob.chi * np.sum(prob.yt**2 * dl / (a0 * (1.0 + dl)), axis=1)
    return gamma + logdet + quad


def dlog(prob: LinearProblem, x: np.ndarray | float) -> np.ndarray:
    """d/dx log p(x|y), x = log s; shape of x."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    u = prob.g_w * np.exp(x)[:, None]  # (n, 1)
    a = u * prob.lam + prob.kappa  # (n, P)
    r = u * prob.lam / a
    return (
        0.5 * prob.width * -np.expm1(x)
        - 0.5 * r.sum(1)
        + 0.5 * prob.chi * np.sum(prob.yt**2 * r / a, axis=1)
    )


def d2log(prob: LinearProblem, x: np.ndarray | float) -> np.ndarray:
    """d^2/dx^2 log p(x|y), x = log s; shape of x."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    u = prob.g_w * np.exp(x)[:, None]  # (n, 1)
    a = u * prob.lam + prob.kappa  # (n, P)
    r = u * prob.lam / a
    return (
        -0.5 * prob.width * np.exp(x)
        - 0.5 * np.sum(r * prob.kappa / a, axis=1)
        + 0.5 * prob.chi * np.sum(prob.yt**2 * r * (prob.kappa - u * prob.lam) / a**2, axis=1)
    )


def find_mode(prob: LinearProblem) -> float:
    """Global mode x* = log s* of the log-s posterior (scan for sign changes, then Brent)."""
    # ell' <= N/2 (1 - e^x) + chi |y|^2/(8 kappa): the mode lies below x_hi; a pair of roots
    # closer than SCAN_STEP (a negligible bump) would be missed.
    x_hi = np.log1p(prob.chi * np.sum(prob.y**2) / (4 * prob.kappa * prob.width)) + 1.0
    xs = np.arange(x_hi - 60.0, x_hi + SCAN_STEP, SCAN_STEP)  # (n,)
    g = dlog(prob, xs)
    idx = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0]
    if idx.size == 0:
        raise RuntimeError("no mode of the s-posterior found in the scanned range")
    roots = [
        brentq(lambda t: dlog(prob, t)[0], xs[i], xs[i + 1], xtol=1e-15, rtol=1e-15) for i in idx
    ]
    if len(roots) == 1:
        return float(roots[0])
    vals = log_ratio(prob, np.array(roots), roots[0])
    return float(roots[int(np.argmax(vals))])


# ------------------------------------------------------------------ quadrature


class Quadrature(NamedTuple):
    """Trapezoid rule in x = log s: nodes (n,), normalised weights (n,), diagnostics."""

    x: np.ndarray  # (n,) nodes in log s
    w: np.ndarray  # (n,) weights summing to 1
    logq: np.ndarray  # (n,) log density relative to the mode
    h: float  # node spacing
    mode: float  # x* = log s*
    sigma: float  # Laplace width in x
    error: float  # max change of the checked moments between spacing 2h and h
    converged: bool


def _grid(prob, mode, h):
    """Nodes mode + k h extended both ways until the density is below e^TAIL_LOG."""
    sides = []
    for sign in (-1.0, 1.0):
        k, chunk = 1, 64
        while True:
            ks = np.arange(k, k + chunk)
            lr = log_ratio(prob, mode + sign * h * ks, mode)
            below = np.nonzero(lr < TAIL_LOG)[0]
            if below.size:
                sides.append(np.arange(1, ks[below[0]] + 1) * sign)
                break
            k, chunk = k + chunk, 2 * chunk
    ks = np.concatenate([sides[0][::-1], [0.0], sides[1]])
    x = mode + h * ks
    return x, log_ratio(prob, x, mode)


def _check_stats(prob, x, w):
    """Moments whose agreement between grid levels measures the quadrature error, (m,).

    E s, E s^2/(E s)^2 and E r_k, E r_k^2, E r_k^2/s (scaled to max 1): what the outputs,
    variances and hidden kernel are made of (E 1/s itself diverges for N <= 2).
    """
    s = np.exp(x)
    u = prob.g_w * s[:, None]
    r = u * prob.lam / (u * prob.lam + prob.kappa)  # (n, r)
    Es, Es2 = w @ s, w @ s**2
    rel = [Es, Es2 / Es**2]
    k = (w / s) @ r**2  # (r,) enters the hidden kernel through E[(chi/u) m m^T]
    ab = np.concatenate([w @ r, w @ r**2, k / max(k.max(), 1e-300)])
    return np.concatenate([rel, ab])


def quadrature(prob: LinearProblem, tol: float = 1e-12, max_levels: int = 8) -> Quadrature:
    """Adaptive trapezoid grid in log s: from h = sigma/2, halved until two levels agree to tol."""
    mode = find_mode(prob)
    sigma = 1.0 / np.sqrt(-d2log(prob, mode)[0])
    h = 0.5 * sigma
    x, lq = _grid(prob, mode, h)
    w = np.exp(lq) / np.exp(lq).sum()
    prev, err = _check_stats(prob, x, w), np.inf
    for _ in range(max_levels):
        h *= 0.5
        x, lq = _grid(prob, mode, h)
        w = np.exp(lq) / np.exp(lq).sum()
        cur = _check_stats(prob, x, w)
        err = float(np.max(np.abs(cur - prev)))
        prev = cur
        if err <= tol:
            break
    return Quadrature(
        x=x, w=w, logq=lq, h=h, mode=mode, sigma=sigma, error=err, converged=bool(err <= tol)
    )


# ------------------------------------------------------------------ posterior moments


def s_moments(quad: Quadrature) -> dict[str, float]:
    """Posterior mean, std of s and mode s* of the log-s density (u_one-loop = g_w s*)."""
    s = np.exp(quad.x)
    mean = quad.w @ s
    return {
        "s_mean": float(mean),
        "s_std": float(np.sqrt(quad.w @ (s - mean) ** 2)),
        "s_mode": float(np.exp(quad.mode)),
    }


def _grid_arrays(prob, quad):
    """u (n, 1), a = u lam + kappa (n, P) on the quadrature nodes."""
    u = prob.g_w * np.exp(quad.x)[:, None]
    return u, u * prob.lam + prob.kappa


def output_moments(prob: LinearProblem, quad: Quadrature) -> dict[str, np.ndarray]:
    """E[f|y] and Var[f|y] on train (P,) and test (P*,) points.

    Var = E_s[GP variance given s] + Var_s[GP mean given s].
    """
    u, a = _grid_arrays(prob, quad)
    w = quad.w
    m_tr = (u * prob.lam / a * prob.yt) @ prob.U.T  # (n, P) GP means given s
    m_te = (u / a * prob.yt) @ prob.B.T  # (n, P*)
    mean_tr, mean_te = w @ m_tr, w @ m_te
    gpv_tr = (prob.U**2) @ (prob.kappa * (w @ (u * prob.lam / a))) / prob.chi  # (P,)
    gpv_te = ((w @ u[:, 0]) * prob.k_ss - (prob.B**2) @ (w @ (u**2 / a))) / prob.chi  # (P*,)
    var_tr = gpv_tr + w @ (m_tr - mean_tr) ** 2
    var_te = gpv_te + w @ (m_te - mean_te) ** 2
    return {"mean_train": mean_tr, "mean_test": mean_te, "var_train": var_tr, "var_test": var_te}


def hidden_kernel(prob: LinearProblem, quad: Quadrature) -> dict[str, np.ndarray]:
    """Exact posterior mean hidden kernel (1/N) sum_i <h_i h_i^T>: train (P, P), test-train (P*, P).

    K_post = K + (1/N) E_s[ (chi/u) m_s m_s^T - u K (uK + kappa)^-1 K ],  m_s = GP mean given s
    (docs/exact_linear.md).
    """
    u, a = _grid_arrays(prob, quad)
    w, lam, yt, N = quad.w, prob.lam, prob.yt, prob.width
    q_tr = lam * yt / a  # (n, r)  (uK+kappa)^-1-weighted target, eigenbasis
    q_te = yt / a  # (n, r)
    wu = (w * u[:, 0])[:, None]
    M_tr = prob.chi * (q_tr * wu).T @ q_tr  # (r, r) eigenbasis
    M_te = prob.chi * (q_te * wu).T @ q_tr  # (r, r)
    shrink = w @ (u * lam / a)  # (r,)
    K_tr = prob.U @ (np.diag(lam) + (M_tr - np.diag(shrink * lam)) / N) @ prob.U.T
    K_te = prob.B @ (np.eye(lam.size) + (M_te - np.diag(shrink)) / N) @ prob.U.T
    return {"K_train": 0.5 * (K_tr + K_tr.T), "K_test_train": K_te}


def with_chi(prob: LinearProblem, chi: float) -> LinearProblem:
    """The same eigen-representation at another chi (no new eigendecomposition)."""
    return dataclasses.replace(prob, chi=float(chi))


def posterior(
    spec: NetworkSpec, data: Dataset, tol: float = 1e-12, prob: LinearProblem | None = None
) -> dict:
    """Everything exact for one spec: s moments, outputs, hidden kernel, quadrature diagnostics.

    prob: a prepared problem for the same data, g_v, g_w, N, kappa (its chi is replaced).
    """
    prob = prepare(spec, data) if prob is None else with_chi(prob, spec.chi)
    quad = quadrature(prob, tol=tol)
    out = {**s_moments(quad), **output_moments(prob, quad), **hidden_kernel(prob, quad)}
    out.update(quad_error=quad.error, converged=quad.converged, n_nodes=int(quad.x.size))
    return out


# ------------------------------------------------------------------ exact i.i.d. draws


class OutputDraws(NamedTuple):
    """Exact posterior draws: f_train (n, P), f_test (n, P*), s (n,)."""

    f_train: np.ndarray
    f_test: np.ndarray
    s: np.ndarray


def _envelope(prob, quad):
    """Piecewise-exponential proposal on the grid cells and a bound M >= sup p/q."""
    x, lq, h = quad.x, quad.logq, quad.h
    dl = np.diff(lq)  # (n-1,)
    small = np.abs(dl) < 1e-12
    frac = np.where(small, 1.0, np.expm1(dl) / np.where(small, 1.0, dl))
    mass = h * np.exp(lq[:-1]) * frac  # (n-1,) cell masses of q
    t = np.arange(1, 16) / 16.0  # interior check points
    xc = (x[:-1, None] + h * t).ravel()
    lqc = (lq[:-1, None] + dl[:, None] * t).ravel()
    logM = float(np.max(log_ratio(prob, xc, quad.mode) - lqc)) + 1e-3
    return dl, mass / mass.sum(), max(logM, 1e-3)


def draw_s(prob: LinearProblem, quad: Quadrature, n: int, rng: np.random.Generator) -> np.ndarray:
    """n exact draws of s by rejection from a piecewise-exponential envelope of p(log s | y)."""
    dl, pc, logM = _envelope(prob, quad)
    out, worst = [], -np.inf
    while sum(o.size for o in out) < n:
        m = int(1.2 * (n - sum(o.size for o in out))) + 16
        j = rng.choice(pc.size, size=m, p=pc)
        v = rng.random(m)
        small = np.abs(dl[j]) < 1e-12
        t = np.where(small, v, np.log1p(v * np.expm1(dl[j])) / np.where(small, 1.0, dl[j]))
        xs = quad.x[j] + quad.h * t
        logr = log_ratio(prob, xs, quad.mode) - (quad.logq[j] + dl[j] * t) - logM
        worst = max(worst, float(np.max(logr)))
        out.append(xs[np.log(rng.random(m)) < logr])
    if worst > 0:
        raise RuntimeError(f"rejection envelope violated by log-ratio {worst:.3g}")
    return np.exp(np.concatenate(out)[:n])


def draw_given_s(
    prob: LinearProblem, s: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Joint GP posterior draws of (f_train, f_test) given s (Matheron's rule), (n, P), (n, P*)."""
    n, P = s.size, prob.y.size
    u = prob.g_w * s[:, None]  # (n, 1)
    a = u * prob.lam + prob.kappa  # (n, P)
    z = rng.standard_normal((n, prob.F.shape[1]))  # (n, D)
    f0 = np.sqrt(u / prob.chi) * (z @ prob.F.T)  # (n, P+P*) prior draws
    eps = np.sqrt(prob.kappa / prob.chi) * rng.standard_normal((n, P))
    rt = (prob.y - f0[:, :P] - eps) @ prob.U  # (n, P) residual, eigenbasis
    f_tr = f0[:, :P] + (rt * u * prob.lam / a) @ prob.U.T
    f_te = f0[:, P:] + (rt * u / a) @ prob.B.T
    return f_tr, f_te


@with_float64
def draw_outputs(spec: NetworkSpec, data: Dataset, n_draws: int, seed: int = 0) -> OutputDraws:
    """n_draws exact i.i.d. posterior draws of the outputs (train and test jointly) and of s."""
    prob = prepare(spec, data)
    quad = quadrature(prob)
    rng = np.random.default_rng(seed)
    s = draw_s(prob, quad, int(n_draws), rng)
    f_tr, f_te = draw_given_s(prob, s, rng)
    return OutputDraws(f_train=f_tr, f_test=f_te, s=s)
