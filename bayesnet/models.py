"""NumPyro models of the network posterior, and the per-draw statistics they report.

Both models are plain functions of (data, theta): `data` holds arrays X (P, D), y (P,),
X_test (P*, D), y_hat (P,) and `theta` (a `Theta` pytree) the traced scalars g_v, g_w, chi,
kappa, so that one compiled sampler serves a whole sweep over chi, kappa, g_w or data of the same
shapes.  Conventions: docs/conventions.md.
Weights are non-centred: unit normals z_V (N, D), z_w (N,) scaled in the forward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from .activations import activation_fn
from .gp import gp_given_features
from .observables import kernel_alignment, kernel_scalars


class Theta(NamedTuple):
    """The traced scaling parameters of a run (a pytree of scalars, dtype of the run)."""

    g_v: jax.Array  # input-weight prior gain: v_i ~ N(0, g_v/D I)
    g_w: jax.Array  # readout prior gain: w_i ~ N(0, g_w/(chi N))
    chi: jax.Array  # scaling: 1 standard, N mean field
    kappa: jax.Array  # noise scale: y ~ N(f, kappa/chi)


def readout_var(theta: Theta, width: int) -> jax.Array:
    """Prior variance of one readout weight, g_w/(chi N)."""
    return theta.g_w / (theta.chi * width)


def noise_var(theta: Theta) -> jax.Array:
    """Likelihood noise variance kappa/chi."""
    return theta.kappa / theta.chi


def features(z_V: jax.Array, X: jax.Array, theta: Theta, activation: str) -> jax.Array:
    """phi(X V^T) with V = sqrt(g_v/D) z_V: the hidden activations, (P, N)."""
    V = z_V * jnp.sqrt(theta.g_v / X.shape[1])  # (N, D)
    return activation_fn(activation)(X @ V.T)  # (P, N)


def kernel_stats(Phi: jax.Array, Phi_test: jax.Array, y_hat: jax.Array) -> dict[str, jax.Array]:
    """Hidden kernel K = Phi Phi^T / N: train and test-train blocks and per-draw scalars."""
    N = Phi.shape[1]
    K = Phi @ Phi.T / N  # (P, P)
    return {
        "K_train": K,
        "K_test_train": Phi_test @ Phi.T / N,  # (P*, P)
        **kernel_scalars(K, y_hat),
        "kernel_alignment": kernel_alignment(K, y_hat),
    }


@functools.cache
def full_model(width: int, activation: str) -> Callable[[dict, Theta], None]:
    """NUTS over (V, w): the model a user writes by hand.  Cached so one trace serves a sweep."""

    def model(data, theta):
        X = data["X"]
        z_V = numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([width, X.shape[1]]).to_event(2))
        z_w = numpyro.sample("z_w", dist.Normal(0.0, 1.0).expand([width]).to_event(1))
        f = features(z_V, X, theta, activation) @ (z_w * jnp.sqrt(readout_var(theta, width)))
        numpyro.sample("y", dist.Normal(f, jnp.sqrt(noise_var(theta))).to_event(1), obs=data["y"])

    return model


@functools.cache
def collapsed_model(width: int, activation: str) -> Callable[[dict, Theta], None]:
    """NUTS over V only: the readout w is integrated out analytically (Gaussian given V)."""

    def model(data, theta):
        X = data["X"]
        z_V = numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([width, X.shape[1]]).to_event(2))
        Phi = features(z_V, X, theta, activation)  # (P, N)
        ll = gp_given_features(
            Phi, Phi[:0], data["y"], readout_var(theta, width), noise_var(theta)
        )[0]
        numpyro.factor("marginal_likelihood", ll)

    return model


def full_stats(
    z: dict, data: dict, theta: Theta, width: int, activation: str
) -> dict[str, jax.Array]:
    """Per-draw outputs of the full model: f on train and test points and the hidden kernel."""
    w = z["z_w"] * jnp.sqrt(readout_var(theta, width))  # (N,)
    Phi = features(z["z_V"], data["X"], theta, activation)  # (P, N)
    Phi_t = features(z["z_V"], data["X_test"], theta, activation)  # (P*, N)
    out = {"f_train": Phi @ w, "f_test": Phi_t @ w}
    out.update(kernel_stats(Phi, Phi_t, data["y_hat"]))
    return out


def collapsed_stats(
    z: dict, data: dict, theta: Theta, width: int, activation: str
) -> dict[str, jax.Array]:
    """Per-draw outputs of the collapsed model: E[f | V], Var[f | V] and the hidden kernel."""
    Phi = features(z["z_V"], data["X"], theta, activation)  # (P, N)
    Phi_t = features(z["z_V"], data["X_test"], theta, activation)  # (P*, N)
    _, m, mt, v, vt = gp_given_features(
        Phi, Phi_t, data["y"], readout_var(theta, width), noise_var(theta)
    )
    out = {"f_train": m, "f_test": mt, "var_train": v, "var_test": vt}
    out.update(kernel_stats(Phi, Phi_t, data["y_hat"]))
    return out


MODELS = {"full": (full_model, full_stats), "collapsed": (collapsed_model, collapsed_stats)}
