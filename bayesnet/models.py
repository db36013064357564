"""NumPyro models of the network posterior, and the per-draw statistics they report.

Both models are plain functions of (data, theta): `data` holds arrays X (P, D), y (P,),
X_test (P*, D), y_hat (P,) and `theta` the traced scalars g_v, g_w, chi, kappa, so that one
compiled sampler serves a whole sweep over chi, kappa, g_w or data of the same shapes.
Weights are non-centred: unit normals z_V (N, D), z_w (N,) scaled in the forward pass.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpyro
import numpyro.distributions as dist

from .activations import activation_fn


def readout_var(theta, width):
    """Prior variance of one readout weight, g_w/(chi N)."""
    return theta["g_w"] / (theta["chi"] * width)


def noise_var(theta):
    """Likelihood noise variance kappa/chi."""
    return theta["kappa"] / theta["chi"]


def features(z_V, X, theta, activation):
    """phi(X V^T) with V = sqrt(g_v/D) z_V: the hidden activations, (P, N)."""
    V = z_V * jnp.sqrt(theta["g_v"] / X.shape[1])  # (N, D)
    return activation_fn(activation)(X @ V.T)  # (P, N)


def gp_given_features(Phi, Phi_test, y, s, noise):
    """Readout integrated out given features: log marginal likelihood, conditional means, variances.

    f = Phi w with w ~ N(0, s I), y ~ N(f, noise I).  Works in weight space (N x N Cholesky) when
    N < P and in function space (P x P Cholesky) otherwise.  Returns
    (loglik, mean_train (P,), mean_test (P*,), var_train (P,), var_test (P*,)).
    """
    P, N = Phi.shape
    if N < P:
        A = jnp.eye(N) / s + Phi.T @ Phi / noise  # (N, N) posterior precision of w
        L = jnp.linalg.cholesky(A)
        b = jsl.solve_triangular(L, Phi.T @ y, lower=True) / noise  # (N,)
        w_bar = jsl.solve_triangular(L.T, b, lower=False)  # (N,)
        quad = (y @ y - noise * b @ b) / noise
        logdet = 2 * jnp.sum(jnp.log(jnp.diag(L))) + N * jnp.log(s) + P * jnp.log(noise)
        B = jsl.solve_triangular(L, Phi.T, lower=True)  # (N, P)
        Bt = jsl.solve_triangular(L, Phi_test.T, lower=True)  # (N, P*)
        mean, mean_t = Phi @ w_bar, Phi_test @ w_bar
        var, var_t = jnp.sum(B * B, 0), jnp.sum(Bt * Bt, 0)
    else:
        G = s * Phi @ Phi.T  # (P, P) output prior covariance
        Gt = s * Phi_test @ Phi.T  # (P*, P)
        L = jnp.linalg.cholesky(G + noise * jnp.eye(P))
        c = jsl.solve_triangular(L, y, lower=True)  # (P,)
        alpha = jsl.solve_triangular(L.T, c, lower=False)  # (P,)
        quad = c @ c
        logdet = 2 * jnp.sum(jnp.log(jnp.diag(L)))
        B = jsl.solve_triangular(L, G, lower=True)  # (P, P)
        Bt = jsl.solve_triangular(L, Gt.T, lower=True)  # (P, P*)
        mean, mean_t = G @ alpha, Gt @ alpha
        var = jnp.diag(G) - jnp.sum(B * B, 0)
        var_t = s * jnp.sum(Phi_test * Phi_test, 1) - jnp.sum(Bt * Bt, 0)
    loglik = -0.5 * (quad + logdet + P * jnp.log(2 * jnp.pi))
    return loglik, mean, mean_t, var, var_t


def kernel_stats(Phi, Phi_test, y_hat):
    """Hidden kernel K = Phi Phi^T / N: train and test-train blocks and per-draw scalars."""
    P, N = Phi.shape
    K = Phi @ Phi.T / N  # (P, P)
    K_t = Phi_test @ Phi.T / N  # (P*, P)
    target = y_hat @ K @ y_hat
    trace = jnp.trace(K) / P
    yc = y_hat - jnp.mean(y_hat)  # centred target; H yy^T H = yc yc^T
    Kc = K - jnp.mean(K, 0, keepdims=True) - jnp.mean(K, 1, keepdims=True) + jnp.mean(K)
    align = (yc @ Kc @ yc) / (jnp.sqrt(jnp.sum(Kc * Kc)) * (yc @ yc) + 1e-300)
    return {"K_train": K, "K_test_train": K_t, "kernel_target": target,
            "kernel_trace": trace, "kernel_alignment": align}


@functools.lru_cache(maxsize=None)
def full_model(width: int, activation: str):
    """NUTS over (V, w): the model a user writes by hand.  Cached so one trace serves a sweep."""

    def model(data, theta):
        X = data["X"]
        z_V = numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([width, X.shape[1]]).to_event(2))
        z_w = numpyro.sample("z_w", dist.Normal(0.0, 1.0).expand([width]).to_event(1))
        f = features(z_V, X, theta, activation) @ (z_w * jnp.sqrt(readout_var(theta, width)))
        numpyro.sample("y", dist.Normal(f, jnp.sqrt(noise_var(theta))).to_event(1), obs=data["y"])

    return model


@functools.lru_cache(maxsize=None)
def collapsed_model(width: int, activation: str):
    """NUTS over V only: the readout w is integrated out analytically (Gaussian given V)."""

    def model(data, theta):
        X = data["X"]
        z_V = numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([width, X.shape[1]]).to_event(2))
        Phi = features(z_V, X, theta, activation)  # (P, N)
        ll = gp_given_features(Phi, Phi[:0], data["y"], readout_var(theta, width),
                               noise_var(theta))[0]
        numpyro.factor("marginal_likelihood", ll)

    return model


def full_stats(z, data, theta, width, activation):
    """Per-draw outputs of the full model: f on train and test points and the hidden kernel."""
    w = z["z_w"] * jnp.sqrt(readout_var(theta, width))  # (N,)
    Phi = features(z["z_V"], data["X"], theta, activation)  # (P, N)
    Phi_t = features(z["z_V"], data["X_test"], theta, activation)  # (P*, N)
    out = {"f_train": Phi @ w, "f_test": Phi_t @ w}
    out.update(kernel_stats(Phi, Phi_t, data["y_hat"]))
    return out


def collapsed_stats(z, data, theta, width, activation):
    """Per-draw outputs of the collapsed model: E[f | V], Var[f | V] and the hidden kernel."""
    Phi = features(z["z_V"], data["X"], theta, activation)  # (P, N)
    Phi_t = features(z["z_V"], data["X_test"], theta, activation)  # (P*, N)
    _, m, mt, v, vt = gp_given_features(Phi, Phi_t, data["y"], readout_var(theta, width),
                                        noise_var(theta))
    out = {"f_train": m, "f_test": mt, "var_train": v, "var_test": vt}
    out.update(kernel_stats(Phi, Phi_t, data["y_hat"]))
    return out


MODELS = {"full": (full_model, full_stats), "collapsed": (collapsed_model, collapsed_stats)}
