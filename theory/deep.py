"""Theory for networks of depth L > 1 (docs/deep.md): NNGP, Li-Sompolinsky kernel
renormalisation generalised to chi, the exact deep linear scale mixture, and the multi-scale
adaptive (tilted) saddle point with one tilt per layer.

Conventions (docs/conventions.md): first-layer weights N(0, g_v/D), hidden-to-hidden N(0, g_v/N),
readout N(0, g_w/(chi N)), noise kappa/chi.  Kernels are dimensionless, outputs in units of y.

Methods of `predict` at depth L (spec.depth):
  nngp                GP with the kernel g_w K^phi_L of the layer recursion (theory.kernels).
  rescaling_tree      linear: one scale s per layer (all equal at the saddle), effective kernel
                      u K^x with u = g_w g_v^(L-1) s^L, 1 - s = -(chi u / N) a^T K^x a.
  rescaling_one_loop  the same with the trace term: 1 - s = (u/N)[tr K^x (u K^x + kappa)^-1
                      - chi a^T K^x a] (the mode of the exact L-scale posterior).
  exact               linear: the exact posterior, a scale mixture in S = s_1 ... s_L (L iid
                      Gamma(N/2, rate N/2) scales), integrated on a grid in log S.
  tree                multi-scale adaptive saddle point: every layer's single-unit measure is
                      tilted, the tilt coming down from the readout; linear layers in closed
                      form, erf / relu / tanh layers by self-normalised importance sampling.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.optimize
import scipy.special
import xarray as xr

from bayesnet import gp
from bayesnet.activations import ACTIVATIONS, check_activation
from bayesnet.datasets import Dataset
from bayesnet.observables import kernel_alignment, kernel_scalars
from bayesnet.precision import with_float64
from bayesnet.spec import NetworkSpec

from . import adaptive, kernels, rescaling
from .schema import Row, assemble, check_chis

METHODS = ("nngp", "rescaling_tree", "rescaling_one_loop", "tree", "exact")
LINEAR_ONLY = ("rescaling_tree", "rescaling_one_loop", "exact")
TREE_ACTIVATIONS = ("linear", "erf", "relu", "tanh")

_NP_PHI = {
    "linear": lambda h: h,
    "erf": scipy.special.erf,
    "relu": lambda h: np.maximum(h, 0.0),
    "tanh": np.tanh,
}


def _phi(activation):
    """numpy phi (the jax one from bayesnet.activations for names without a numpy twin)."""
    return _NP_PHI.get(activation, lambda h: np.asarray(ACTIVATIONS[activation](h)))


def check(spec: NetworkSpec, method: str) -> None:
    """One-line ValueErrors naming `method` for what depth > 1 does not provide."""
    if method not in METHODS:
        raise ValueError(
            f"method must be one of {list(METHODS)} at depth {spec.depth}, got {method!r}"
        )
    check_activation(spec.activation)
    if method in LINEAR_ONLY and spec.activation != "linear":
        raise ValueError(
            f"method {method!r} exists for linear networks only, got activation={spec.activation!r}"
        )


# ------------------------------------------------------------------ prior kernels


class JointKernels(NamedTuple):
    """Prior kernels of every layer on the stacked train+test inputs: (L, P+P*, P+P*)."""

    K: np.ndarray
    P: int


def prior_layers(spec: NetworkSpec, data: Dataset) -> JointKernels:
    """NNGP kernels K^phi_l, l = 1..L, on [X; X_test], dimensionless."""
    Z = np.vstack([np.asarray(data.X, float), np.asarray(data.X_test, float)])  # (P+P*, D)
    lay = kernels.kernel_layers(spec.activation, Z, Z, spec.g_v, spec.depth)
    return JointKernels(np.stack([np.asarray(k[0]) for k in lay]), data.n_train)


def layer_scalars(Ks: np.ndarray, y) -> dict[str, np.ndarray]:
    """The three kernel scalars of each layer's train kernel, Ks (..., L, P, P) -> (..., L)."""
    sc = kernel_scalars(Ks, np.asarray(y))
    sc["kernel_alignment"] = kernel_alignment(Ks, np.asarray(y))
    return sc


LAYER_VARS = {
    "kernel_target": "yhat^T K_l yhat of hidden layer l's kernel",
    "kernel_trace": "tr K_l / P of hidden layer l's kernel",
    "kernel_alignment": "kernel-target alignment of hidden layer l's kernel",
}


def _layer_extra(layer_K: np.ndarray, y) -> dict:
    """`assemble` extras layer_kernel_* with dims (layer,) from train kernels (chi, L, P, P)."""
    sc = layer_scalars(layer_K, y)
    return {f"layer_{k}": (("layer",), sc[k], LAYER_VARS[k]) for k in LAYER_VARS}


def _gp_row(Kj: np.ndarray, P: int, data: Dataset, g: float, kappa: float, chi: float, **kw):
    """Row of the GP with kernel g K (joint block Kj (P+P*, P+P*)), noise kappa, var / chi."""
    K, Kt = Kj[:P, :P], Kj[P:, :P]
    m_tr, v_tr, m_te, v_te = gp.gp_train_test(
        g * K, g * Kt, g * np.diag(Kj)[P:], np.asarray(data.y), kappa
    )
    return Row(
        np.asarray(m_tr),
        np.asarray(v_tr) / chi,
        np.asarray(m_te),
        np.asarray(v_te) / chi,
        K,
        Kt,
        **kw,
    )


def _nngp(spec, data, chis, prior: JointKernels):
    rows = [
        _gp_row(prior.K[-1], prior.P, data, spec.g_w, spec.kappa, chi, ubar=spec.g_w)
        for chi in chis
    ]
    P = prior.P
    layer_K = np.broadcast_to(prior.K[:, :P, :P], (len(chis),) + prior.K[:, :P, :P].shape)
    return rows, layer_K


# ------------------------------------------------------------------ deep linear: scales


def _u(spec: NetworkSpec, logS):
    """Effective output scale u = g_w g_v^(L-1) S (units of g_w), S = prod_l s_l = e^logS."""
    return spec.g_w * spec.g_v ** (spec.depth - 1) * np.exp(logS)


def _loglik(sp: rescaling.Spectrum, u, chi: float, kappa: float, logdet: bool = True):
    """log p(y | u) up to a constant: -(1/2) sum log(u lam + kappa) - (chi/2) sum yt^2/(u lam +
    kappa); u (n,) -> (n,)."""
    d = np.asarray(u, float)[:, None] * sp.lam + kappa  # (n, r)
    out = -0.5 * chi * np.sum(sp.yt**2 / d, axis=1)
    if logdet:
        out = out - 0.5 * np.sum(np.log(d), axis=1)
    return out


def scale_equation(logs, sp, spec: NetworkSpec, chi: float, trace: bool):
    """Residual of the per-layer scale equation at s = e^logs (all layers equal):
    1 - s - (u/N)[trace * tr K (uK + kappa)^-1 - chi a^T K a], u = g_w g_v^(L-1) s^L."""
    logs = np.atleast_1d(np.asarray(logs, float))
    u = _u(spec, spec.depth * logs)[:, None]  # (n, 1)
    d = u * sp.lam + spec.kappa  # (n, r)
    rhs = -chi * np.sum(sp.lam * sp.yt**2 / d**2, axis=1)
    if trace:
        rhs = rhs + np.sum(sp.lam / d, axis=1)
    return 1.0 - np.exp(logs) - u[:, 0] * rhs / spec.width


def solve_scale(sp, spec: NetworkSpec, chi: float, trace: bool) -> tuple[float, int]:
    """Per-layer scale s > 0 at the saddle: every root of `scale_equation` in log s is found on a
    scan and the one with the largest L-scale log posterior (tree: without the log-det) kept.
    Returns (s, number of roots)."""
    N, L = spec.width, spec.depth
    x_hi = np.log1p(chi * float(sp.yt @ sp.yt) / (4 * spec.kappa * N)) + 1.0
    xs = np.arange(x_hi - 40.0, x_hi + 0.01, 0.01)  # (n,)
    g = scale_equation(xs, sp, spec, chi, trace)
    idx = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0]
    if idx.size == 0:
        return math.nan, 0
    F = lambda t: float(scale_equation(t, sp, spec, chi, trace)[0])  # noqa: E731
    roots = np.array([scipy.optimize.brentq(F, xs[i], xs[i + 1], xtol=1e-15) for i in idx])
    obj = L * 0.5 * N * (roots - np.exp(roots)) + _loglik(
        sp, _u(spec, L * roots), chi, spec.kappa, logdet=trace
    )
    return float(np.exp(roots[int(np.argmax(obj))])), int(roots.size)


def _linear_rescaling(spec, data, chis, trace: bool):
    """Li-Sompolinsky scale at every chi: rows (GP with kernel u K^x) and layer kernels
    s^l g_v^(l-1) K^x (the rescaled prior)."""
    sp = rescaling.linear_spectrum(data.X, data.y, spec.g_v)
    Kx = np.asarray(kernels.input_kernel(data.X, data.X, spec.g_v))  # (P, P)
    Kxt = np.asarray(kernels.input_kernel(data.X_test, data.X, spec.g_v))  # (P*, P)
    kxt = np.asarray(kernels.input_diag(data.X_test, spec.g_v))  # (P*,)
    B = sp.project(Kxt)  # (P*, r)
    rows, layer_K = [], []
    for chi in chis:
        s, n_roots = solve_scale(sp, spec, chi, trace)
        if not np.isfinite(s):
            warnings.warn(
                f"deep rescaling: no root of the scale equation at chi={chi:.4g}", stacklevel=3
            )
            nan = np.full
            rows.append(
                Row(
                    nan(data.n_train, np.nan),
                    nan(data.n_train, np.nan),
                    nan(data.n_test, np.nan),
                    nan(data.n_test, np.nan),
                    np.full_like(Kx, np.nan),
                    np.full_like(Kxt, np.nan),
                    converged=False,
                )
            )
            layer_K.append(np.full((spec.depth,) + Kx.shape, np.nan))
            continue
        u = float(_u(spec, spec.depth * np.log(s)))
        f_tr, v_tr, f_te, v_te = rescaling.rescaled_outputs(sp, B, kxt, u, chi, spec.kappa)
        scale = [s ** (ell + 1) * spec.g_v**ell for ell in range(spec.depth)]
        res = float(abs(scale_equation(np.log(s), sp, spec, chi, trace)[0]))
        rows.append(
            Row(
                f_tr,
                v_tr,
                f_te,
                v_te,
                scale[-1] * Kx,
                scale[-1] * Kxt,
                ubar=u,
                iterations=n_roots,
                residual=res,
            )
        )
        layer_K.append(np.stack([a * Kx for a in scale]))
    return rows, np.asarray(layer_K)


# ------------------------------------------------------------------ deep linear: exact


def log_prior_logS(N: int, L: int, h: float, lo: float = -12.0, hi: float = 4.0):
    """Density of log S, S = product of L iid Gamma(N/2, rate N/2), on a grid of spacing h:
    nodes (n,) and log density (n,) (normalised), by L - 1 direct convolutions of one layer's
    (direct, not FFT: the far tails keep their relative accuracy, which the likelihood can
    raise by up to exp(chi |y|^2 / (2 kappa)))."""
    x1 = np.arange(lo, hi + h / 2, h)  # (m,)
    lp1 = 0.5 * N * (x1 - np.exp(x1))
    p1 = np.exp(lp1 - lp1.max())
    p1 /= p1.sum() * h
    p = p1
    for _ in range(L - 1):
        p = np.convolve(p, p1) * h
    x = L * lo + h * np.arange(p.size)  # (n,)
    with np.errstate(divide="ignore"):
        return x, np.log(p / (p.sum() * h))


def _exact_moments(sp, B, kxt, spec, chi: float, h: float):
    """Exact posterior means and variances from the log S grid; returns (outputs, quad stats)."""
    x, lp = log_prior_logS(spec.width, spec.depth, h)
    keep = np.isfinite(lp) & (lp > lp.max() - 700.0)
    x, lp = x[keep], lp[keep]
    u = _u(spec, x)  # (n,)
    lw = lp + _loglik(sp, u, chi, spec.kappa)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    d = u[:, None] * sp.lam + spec.kappa  # (n, r)
    mt_tr = (u[:, None] * sp.lam * sp.yt / d) @ sp.U.T  # (n, P)
    mt_te = (u[:, None] * sp.yt / d) @ B.T  # (n, P*)
    vt_tr = (u[:, None] * sp.diag - u[:, None] ** 2 * ((sp.lam**2 / d) @ (sp.U**2).T)) / chi
    vt_te = (u[:, None] * kxt - u[:, None] ** 2 * ((1.0 / d) @ (B**2).T)) / chi
    m_tr, m_te = w @ mt_tr, w @ mt_te
    v_tr = w @ vt_tr + w @ (mt_tr - m_tr) ** 2
    v_te = w @ vt_te + w @ (mt_te - m_te) ** 2
    edge = float(w[:20].sum() + w[-20:].sum())  # posterior mass at the grid's ends
    return (m_tr, v_tr, m_te, v_te), (float(w @ np.exp(x)), edge, x.size)


def _linear_exact(spec, data, chis, tol: float = 1e-9):
    """Exact deep linear posterior at every chi (grid in log S, checked at spacing h and h/2)."""
    sp = rescaling.linear_spectrum(data.X, data.y, spec.g_v)
    Kxt = np.asarray(kernels.input_kernel(data.X_test, data.X, spec.g_v))
    kxt = np.asarray(kernels.input_diag(data.X_test, spec.g_v))
    B = sp.project(Kxt)
    h = min(0.01, math.sqrt(2.0 / spec.width) / 25.0)
    rows, extra = [], []
    P, Pt = data.n_train, data.n_test
    for chi in chis:
        fine, (S_mean, edge, n) = _exact_moments(sp, B, kxt, spec, chi, h / 2)
        coarse, _ = _exact_moments(sp, B, kxt, spec, chi, h)
        err = max(float(np.max(np.abs(a - b))) for a, b in zip(fine, coarse, strict=True))
        ok = err <= tol and edge < 1e-12
        if not ok:
            warnings.warn(
                f"deep exact: quadrature not converged at chi={chi:.4g} "
                f"(grid change {err:.2g}, edge mass {edge:.2g})",
                stacklevel=3,
            )
            fine = tuple(np.full_like(a, np.nan) for a in fine)
        rows.append(
            Row(
                fine[0],
                fine[1],
                fine[2],
                fine[3],
                np.full((P, P), np.nan),  # the exact posterior kernel is not computed
                np.full((Pt, P), np.nan),
                ubar=float(_u(spec, np.log(S_mean))) if ok else math.nan,
                converged=ok,
                iterations=n,
                residual=err,
            )
        )
        extra.append(S_mean if ok else math.nan)
    layer_K = np.full((len(chis), spec.depth, P, P), np.nan)
    return rows, layer_K, {"S_mean": ((), np.asarray(extra), "posterior mean of S = prod s_l")}


# ------------------------------------------------------------------ multi-scale tree level


class Tilts(NamedTuple):
    """Tree-level state: train outputs f (P,) and the tilts G_l (P, P) of layers 1..L-1 (the
    top layer's tilt is c Delta Delta^T, set by f)."""

    f: np.ndarray
    G: list


class LayerDraws(NamedTuple):
    """Fixed draws of the importance sampler: first layer's weights V (M, D) and features
    F1 = phi(V [X; X_test]^T) (M, P+P*), unit normals Z (L-1, M, P+P*) of every higher layer's
    joint pre-activations; antithetic pairs (z, -z)."""

    V: np.ndarray
    F1: np.ndarray
    Z: np.ndarray


def layer_draws(spec: NetworkSpec, data: Dataset, n_draws: int, seed: int) -> LayerDraws:
    """2 n_draws antithetic unit-normal draws per layer (common random numbers for all chi)."""
    rng = np.random.default_rng(seed)
    D, Pj = data.dim, data.n_train + data.n_test
    V = rng.standard_normal((n_draws, D))
    Z = rng.standard_normal((spec.depth - 1, n_draws, Pj))
    V = np.concatenate([V, -V]) * math.sqrt(spec.g_v / D)  # (M, D)
    Xj = np.vstack([np.asarray(data.X), np.asarray(data.X_test)])
    F1 = _phi(spec.activation)(V @ Xj.T)  # (M, P+P*)
    return LayerDraws(V, F1, np.concatenate([Z, -Z], axis=1))


def _chol(C: np.ndarray) -> np.ndarray:
    """Cholesky factor with a relative jitter of 1e-12 of the mean diagonal."""
    return np.linalg.cholesky(C + 1e-12 * np.mean(np.diag(C)) * np.eye(C.shape[0]))


def _tilted_linear(C: np.ndarray, G: np.ndarray, P: int, g_v: float):
    """Gaussian layer under the tilt exp(h^T G h / 2) (train block): joint covariance, tilt
    passed down g_v (I - G C)^-1 G, and the normalisability 1 - min eig((I - G C)) margin."""
    Ct = C[:P, :P]
    A = np.eye(P) - G @ Ct  # (P, P)
    ev = np.linalg.eigvals(A).real.min()
    AinvG = np.linalg.solve(A, G)  # (I - G C)^-1 G (P, P)
    Kj = C + C[:, :P] @ AinvG @ C[:P, :]  # (P+P*, P+P*)
    return Kj, g_v * AinvG, float(ev)


def _tilted_sampled(F, Zt, Kprior, G, P, g_v, Lt):
    """Importance-sampled layer under exp(phi(h)^T G phi(h) / 2) (train block), F = phi(h) of
    the draws (M, P+P*): joint kernel <phi phi^T> with the prior kernel as control variate, tilt
    passed down, ESS."""
    Ft = F[:, :P]
    logw = 0.5 * np.sum((Ft @ G) * Ft, axis=1)  # (M,)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    wt = w - 1.0 / w.size
    Kj = Kprior + (F * wt[:, None]).T @ F  # (P+P*, P+P*)
    down = None
    if Zt is not None:
        A = (Zt * wt[:, None]).T @ Zt  # (P, P): <z z^T> - I
        Li = np.linalg.inv(Lt)  # (P, P)
        down = g_v * Li.T @ A @ Li
        down = 0.5 * (down + down.T)
    return Kj, down, float(1.0 / np.sum(w * w))


def _forward(spec, data, state: Tilts, prior: JointKernels, draws: LayerDraws, c: float):
    """One pass: every layer's joint kernel under the current tilts, the tilts passed down, the
    smallest ESS (or normalisability margin for linear layers)."""
    P, L, act = prior.P, spec.depth, spec.activation
    y = np.asarray(data.y)
    delta = y - state.f
    G = list(state.G) + [c * np.outer(delta, delta)]  # tilts of layers 1..L
    phi = _phi(act)
    Xj = np.vstack([np.asarray(data.X), np.asarray(data.X_test)])
    Ks, downs, health = [], [None], []
    C = np.asarray(kernels.input_kernel(Xj, Xj, spec.g_v))  # (P+P*, P+P*)
    for ell in range(L):
        if ell:
            C = spec.g_v * Ks[-1]
        if act == "linear":
            Kj, down, h = _tilted_linear(C, G[ell], P, spec.g_v)
        else:
            if ell == 0:
                F, Zt, Lt, Kprior = draws.F1, None, None, prior.K[0]
            else:
                Lc = _chol(C)
                F = phi(draws.Z[ell - 1] @ Lc.T)  # (M, P+P*)
                Zt, Lt = draws.Z[ell - 1][:, :P], Lc[:P, :P]
                d = np.diag(C)
                Kprior = np.asarray(kernels.kernel_from_input(act, C, d, d))
            Kj, down, h = _tilted_sampled(F, Zt, Kprior, G[ell], P, spec.g_v, Lt)
        Ks.append(Kj)
        if ell:
            downs.append(down)
        health.append(h)
    return Ks, downs[1:], min(health)


def _tree_step(spec, data, state, prior, draws, c):
    """The map (f, G) -> (f', G'), the layer kernels and the health of the estimate."""
    Ks, downs, health = _forward(spec, data, state, prior, draws, c)
    P = prior.P
    K = Ks[-1][:P, :P]
    g, kap = spec.g_w, spec.kappa
    f_new = g * K @ np.linalg.solve(g * K + kap * np.eye(P), np.asarray(data.y))
    return Tilts(f_new, downs), Ks, health


def _pack(state: Tilts) -> np.ndarray:
    """(f, G_1..G_{L-1}) as one vector: f and the upper triangles of the symmetric tilts."""
    P = state.f.size
    iu = np.triu_indices(P)
    return np.concatenate([state.f] + [G[iu] for G in state.G])


def _unpack(z: np.ndarray, P: int, n_tilts: int) -> Tilts:
    """Inverse of `_pack`."""
    iu = np.triu_indices(P)
    m = iu[0].size
    Gs = []
    for k in range(n_tilts):
        G = np.zeros((P, P))
        G[iu] = z[P + k * m : P + (k + 1) * m]
        Gs.append(G + np.triu(G, 1).T)
    return Tilts(z[:P], Gs)


def _fd_jacobian(F, z, Fz):
    """Forward-difference Jacobian of F at z (n, n), steps 1e-6 (1 + |z_i|)."""
    J = np.empty((z.size, z.size))
    for i in range(z.size):
        h = 1e-6 * (1.0 + abs(z[i]))
        e = z.copy()
        e[i] += h
        J[:, i] = (F(e) - Fz) / h
    return J


def _solve_tree(spec, data, chi, state, prior, draws, tol, maxiter, J=None):
    """Root of (f, G) -> T(f, G) - (f, G) at one chi from `state`: damped Newton on the packed
    vector with a forward-difference Jacobian, reused (chord steps, also from the previous chi)
    while each step cuts the residual by 4; the map is smooth because the draws are fixed.
    Returns (state, layer kernels, health, map evaluations, max |residual|, converged, J)."""
    c = adaptive.tilt_coefficient(spec.g_w, chi, spec.width, spec.kappa)
    P, n_t = state.f.size, len(state.G)
    evals = [0]

    def F(z):
        evals[0] += 1
        return _pack(_tree_step(spec, data, _unpack(z, P, n_t), prior, draws, c)[0]) - z

    z = _pack(state)
    Fz = F(z)
    nrm = float(np.max(np.abs(Fz)))
    fresh = False
    while np.isfinite(nrm) and nrm > tol and evals[0] < maxiter:
        if J is None:
            J, fresh = _fd_jacobian(F, z, Fz), True
        try:
            step = np.linalg.solve(J, -Fz)
        except np.linalg.LinAlgError:
            step = np.full_like(z, np.nan)
        t, ok = 1.0, False
        while t >= 1e-3 and np.all(np.isfinite(step)):
            z_new = z + t * step
            F_new = F(z_new)
            n_new = float(np.max(np.abs(F_new)))
            if np.isfinite(n_new) and n_new < (1 - 1e-4 * t) * nrm:
                ok = True
                break
            t *= 0.5
        if not ok:
            if fresh:
                break  # a fresh Jacobian gives no descent: give up
            J = None
            continue
        if n_new > 0.25 * nrm:
            J = None  # slow progress: fresh Jacobian next step
        z, Fz, nrm, fresh = z_new, F_new, n_new, False
    state = _unpack(z, P, n_t)
    new, Ks, health = _tree_step(spec, data, state, prior, draws, c)
    change = float(np.max(np.abs(_pack(new) - z)))
    ok = bool(np.isfinite(change) and change < tol)
    return new, Ks, health, evals[0], change, ok, J


def _tree(
    spec,
    data,
    chis,
    prior,
    n_draws=2**15,
    seed=0,
    tol=1e-8,
    maxiter=2000,
    max_ratio=1.25,
    ess_min=200.0,
):
    """Multi-scale tree level annealed over chi from the NNGP (adaptive.chi_ladder)."""
    P = prior.P
    draws = layer_draws(spec, data, n_draws, seed) if spec.activation != "linear" else None
    row0 = _gp_row(prior.K[-1], P, data, spec.g_w, spec.kappa, 1.0)
    state = Tilts(row0.f_train, [np.zeros((P, P)) for _ in range(spec.depth - 1)])
    ladder, index = adaptive.chi_ladder(chis, spec.width, max_ratio=max_ratio)
    linear = spec.activation == "linear"

    jac = [None]  # the last Jacobian, reused from one chi to the next

    def advance(state, chi_from, chi_to, splits):
        """Solve at chi_to from the solution at chi_from, halving the step (in log chi) on
        failure up to `splits` times."""
        res = _solve_tree(spec, data, chi_to, state, prior, draws, tol, maxiter, jac[0])
        jac[0] = res[6]
        if res[5] or splits == 0:
            return res
        jac[0] = None
        mid = math.sqrt(chi_from * chi_to)
        half = advance(state, chi_from, mid, splits - 1)
        return advance(half[0], mid, chi_to, splits - 1) if half[5] else half

    out, prev = {}, ladder[0]
    for k, chi in enumerate(ladder):
        state, Ks, health, it, change, ok, _ = advance(state, prev, chi, 4)
        prev = chi
        healthy = health > 0 if linear else health >= ess_min
        if not (ok and healthy):
            why = (
                f"no convergence (residual {change:.2g})"
                if not ok
                else ("tilt not normalisable" if linear else f"ESS {health:.3g} < {ess_min:g}")
            )
            warnings.warn(f"deep tree level: {why} at chi={chi:.4g}", stacklevel=3)
            break
        if k in set(index.tolist()):
            out[k] = (Ks, health, it, change)
    rows, layer_K = [], []
    for j, chi in zip(index, chis, strict=True):
        if j not in out:
            nanK = np.full((spec.depth, P, P), np.nan)
            rows.append(
                Row(
                    np.full(P, np.nan),
                    np.full(P, np.nan),
                    np.full(data.n_test, np.nan),
                    np.full(data.n_test, np.nan),
                    nanK[0],
                    np.full((data.n_test, P), np.nan),
                    converged=False,
                )
            )
            layer_K.append(nanK)
            continue
        Ks, health, it, change = out[j]
        c = adaptive.tilt_coefficient(spec.g_w, chi, spec.width, spec.kappa)
        rows.append(
            _gp_row(
                Ks[-1],
                P,
                data,
                spec.g_w,
                spec.kappa,
                chi,
                ubar=math.nan,
                iterations=it,
                residual=change,
                normalisability=health if spec.activation == "linear" else math.nan,
            )
        )
        del c
        layer_K.append(np.stack([K[:P, :P] for K in Ks]))
    return rows, np.asarray(layer_K)


# ------------------------------------------------------------------ entry point


@with_float64
def predict(
    spec: NetworkSpec, data: Dataset, chis=None, method: str = "nngp", order=None, **options
) -> xr.Dataset:
    """Theory predictions for a network of depth spec.depth >= 1 at every chi (sorted), as the
    Dataset of theory.schema plus layer_kernel_target/trace/alignment over (chi, layer).

    options of `tree`: n_draws (per layer, doubled by antithetic pairs; default 2^15), seed,
    tol (fixed-point residual, default 1e-8), maxiter (map evaluations per chi), max_ratio
    (annealing ladder),
    ess_min (default 200).  order is accepted for the signature of theory.predict and ignored.
    """
    check(spec, method)
    chis = check_chis(chis, spec.chi)
    extra = {}
    if method == "nngp":
        rows, layer_K = _nngp(spec, data, chis, prior_layers(spec, data))
    elif method in ("rescaling_tree", "rescaling_one_loop"):
        rows, layer_K = _linear_rescaling(spec, data, chis, method == "rescaling_one_loop")
    elif method == "exact":
        rows, layer_K, extra = _linear_exact(spec, data, chis)
    else:
        known = ("n_draws", "seed", "tol", "maxiter", "max_ratio", "ess_min")
        opts = {k: v for k, v in options.items() if k in known}
        rows, layer_K = _tree(spec, data, chis, prior_layers(spec, data), **opts)
    extra.update(_layer_extra(np.asarray(layer_K), data.y))
    ds = assemble(rows, chis, spec, data, method, extra=extra)
    ds = ds.assign_coords(layer=np.arange(1, spec.depth + 1))
    ds.attrs["depth"] = spec.depth
    return ds
