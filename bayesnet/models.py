"""NumPyro models of the network posterior, and the per-draw statistics they report.

Both models are plain functions of (data, theta): `data` holds arrays X (P, D), y (P,),
X_test (P*, D), y_hat (P,) and `theta` (a `Theta` pytree) the traced scalars g_v, g_w, chi,
kappa, so that one compiled sampler serves a whole sweep over chi, kappa, g_w or data of the same
shapes.  Conventions: docs/conventions.md.
Weights are non-centred: unit normals z_V (N, D), z_U (L-1, N, N) for the hidden-to-hidden
weights of a network of depth L > 1 (absent at L = 1), z_w (N,), scaled in the forward pass.
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


def layer_features(
    z: dict, X: jax.Array, theta: Theta, activation: str, depth: int
) -> list[jax.Array]:
    """Activations of every hidden layer, [(P, N)] * depth.

    Layer 1: phi(X V^T), V = sqrt(g_v/D) z_V; layer l > 1: phi(Phi_{l-1} U_l^T) with
    U_l = sqrt(g_v/N) z_U[l-2] (N, N).
    """
    Phi = features(z["z_V"], X, theta, activation)  # (P, N)
    out = [Phi]
    for layer in range(depth - 1):
        U = z["z_U"][layer] * jnp.sqrt(theta.g_v / Phi.shape[1])  # (N, N)
        Phi = activation_fn(activation)(Phi @ U.T)  # (P, N)
        out.append(Phi)
    return out


def layer_kernel_stats(Phis: list[jax.Array], y_hat: jax.Array) -> dict[str, jax.Array]:
    """The three kernel scalars of every hidden layer's kernel Phi_l Phi_l^T / N, each (L,)."""
    Ks = jnp.stack([P @ P.T / P.shape[1] for P in Phis])  # (L, P, P)
    sc = kernel_scalars(Ks, y_hat)
    return {
        "layer_kernel_target": sc["kernel_target"],
        "layer_kernel_trace": sc["kernel_trace"],
        "layer_kernel_alignment": kernel_alignment(Ks, y_hat),
    }


def _sample_inner(width: int, depth: int, D: int) -> dict:
    """Unit-normal weights of every hidden layer: z_V (N, D) and, for depth > 1, z_U."""
    z = {"z_V": numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([width, D]).to_event(2))}
    if depth > 1:
        shape = [depth - 1, width, width]
        z["z_U"] = numpyro.sample("z_U", dist.Normal(0.0, 1.0).expand(shape).to_event(3))
    return z


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
def full_model(width: int, activation: str, depth: int = 1) -> Callable[[dict, Theta], None]:
    """NUTS over every layer's weights and w: the model a user writes by hand.  Cached so one
    trace serves a sweep."""

    def model(data, theta):
        X = data["X"]
        z = _sample_inner(width, depth, X.shape[1])
        z_w = numpyro.sample("z_w", dist.Normal(0.0, 1.0).expand([width]).to_event(1))
        Phi = layer_features(z, X, theta, activation, depth)[-1]  # (P, N)
        f = Phi @ (z_w * jnp.sqrt(readout_var(theta, width)))
        numpyro.sample("y", dist.Normal(f, jnp.sqrt(noise_var(theta))).to_event(1), obs=data["y"])

    return model


@functools.cache
def collapsed_model(width: int, activation: str, depth: int = 1) -> Callable[[dict, Theta], None]:
    """NUTS over the inner weights only: the readout w is integrated out analytically (Gaussian
    given the last hidden layer)."""

    def model(data, theta):
        X = data["X"]
        z = _sample_inner(width, depth, X.shape[1])
        Phi = layer_features(z, X, theta, activation, depth)[-1]  # (P, N)
        ll = gp_given_features(
            Phi, Phi[:0], data["y"], readout_var(theta, width), noise_var(theta)
        )[0]
        numpyro.factor("marginal_likelihood", ll)

    return model


def _inner_stats(z, data, theta, activation, depth):
    """Last-layer features on train (P, N) and test (P*, N), the kernel statistics, and (depth > 1)
    the per-layer kernel scalars."""
    Phis = layer_features(z, data["X"], theta, activation, depth)
    Phis_t = layer_features(z, data["X_test"], theta, activation, depth)
    out = kernel_stats(Phis[-1], Phis_t[-1], data["y_hat"])
    if depth > 1:
        out.update(layer_kernel_stats(Phis, data["y_hat"]))
    return Phis[-1], Phis_t[-1], out


def full_stats(
    z: dict, data: dict, theta: Theta, width: int, activation: str, depth: int = 1
) -> dict[str, jax.Array]:
    """Per-draw outputs of the full model: f on train and test points and the hidden kernels."""
    w = z["z_w"] * jnp.sqrt(readout_var(theta, width))  # (N,)
    Phi, Phi_t, ks = _inner_stats(z, data, theta, activation, depth)
    out = {"f_train": Phi @ w, "f_test": Phi_t @ w}
    out.update(ks)
    return out


def collapsed_stats(
    z: dict, data: dict, theta: Theta, width: int, activation: str, depth: int = 1
) -> dict[str, jax.Array]:
    """Per-draw outputs of the collapsed model: E[f | inner weights], Var[f | inner weights] and
    the hidden kernels."""
    Phi, Phi_t, ks = _inner_stats(z, data, theta, activation, depth)
    _, m, mt, v, vt = gp_given_features(
        Phi, Phi_t, data["y"], readout_var(theta, width), noise_var(theta)
    )
    out = {"f_train": m, "f_test": mt, "var_train": v, "var_test": vt}
    out.update(ks)
    return out


MODELS = {"full": (full_model, full_stats), "collapsed": (collapsed_model, collapsed_stats)}
