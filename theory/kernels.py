"""NNGP feature kernels K^phi_ab = E_{h ~ N(0, K^x)}[phi(h_a) phi(h_b)] (docs/conventions.md).

Depth L > 1: the layer recursion K^h_1 = K^x, K^phi_l = E_{h ~ N(0, K^h_l)}[phi phi^T],
K^h_{l+1} = g_v K^phi_l (hidden-to-hidden weights N(0, g_v/N)); the last K^phi_L is the kernel
(`kernel_layers`, and the `depth` keyword of `kernel` and `kernel_diag`; docs/deep.md).

Closed forms for linear, erf and relu; a 2-D polar Gauss quadrature for any other elementwise
activation (tanh, ...).  The quadrature splits the angle at the zeros of both pre-activations, so
activations with a kink at 0 (relu, abs, leaky relu) converge exponentially too.
All arrays float64: the public functions run under bayesnet.precision.float64.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayesnet.activations import ACTIVATIONS, check_activation
from bayesnet.precision import with_float64

ArrayLike = Any  # numpy or jax array, or nested sequences

CLOSED_FORMS = ("linear", "erf", "relu")


@with_float64
def input_kernel(X1: ArrayLike, X2: ArrayLike, g_v: float) -> jax.Array:
    """Input kernel K^x = (g_v/D) X1 X2^T, dimensionless, shape (P1, P2)."""
    X1, X2 = jnp.asarray(X1, jnp.float64), jnp.asarray(X2, jnp.float64)
    return (g_v / X1.shape[1]) * X1 @ X2.T  # (P1, P2)


def input_diag(X: ArrayLike, g_v: float) -> jax.Array:
    """Diagonal of the input kernel, (g_v/D)|x_a|^2, shape (P,)."""
    X = jnp.asarray(X, jnp.float64)
    return (g_v / X.shape[1]) * jnp.sum(X * X, axis=1)  # (P,)


def _erf_kernel(k12, k11, k22):
    """Arcsine kernel of erf from input-kernel entries (broadcasting)."""
    return (2.0 / jnp.pi) * jnp.arcsin(
        jnp.clip(2.0 * k12 / jnp.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22)), -1.0, 1.0)
    )


def _relu_kernel(k12, k11, k22):
    """Arc-cosine (order 1) kernel of relu from input-kernel entries (broadcasting)."""
    norm = jnp.sqrt(k11 * k22)
    safe = jnp.where(norm > 0, norm, 1.0)
    cos = jnp.clip(k12 / safe, -1.0, 1.0)
    theta = jnp.arccos(cos)
    val = safe / (2.0 * jnp.pi) * (jnp.sin(theta) + (jnp.pi - theta) * cos)
    return jnp.where(norm > 0, val, 0.0)


@functools.partial(jax.jit, static_argnames=("activation",))
def _closed_form(activation, k12, k11, k22):
    """Closed-form K^phi from the input-kernel entries for linear / erf / relu."""
    if activation == "linear":
        return k12
    if activation == "erf":
        return _erf_kernel(k12, k11, k22)
    return _relu_kernel(k12, k11, k22)


@functools.cache
def radial_rule(n: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the weight r exp(-r^2/2) on [0, inf) (unit mass): nodes, weights (n,).

    Jacobi matrix by Lanczos on a fine discretisation of the weight (discretised Stieltjes).
    """
    x, w = np.polynomial.legendre.leggauss(50)
    edges = np.linspace(0.0, 16.0, 81)  # composite Gauss-Legendre, 80 panels x 50 nodes
    h = 0.5 * np.diff(edges)[:, None]  # (80, 1)
    r = (edges[:-1, None] + h * (x[None, :] + 1.0)).ravel()  # (4000,)
    wr = (h * w[None, :]).ravel() * r * np.exp(-0.5 * r * r)  # (4000,)
    q = np.sqrt(wr) / np.sqrt(wr.sum())
    Q = [q]
    alpha, beta = np.zeros(n), np.zeros(n - 1)
    q_prev, b_prev = np.zeros_like(q), 0.0
    for k in range(n):
        v = r * Q[-1]
        alpha[k] = Q[-1] @ v
        v = v - alpha[k] * Q[-1] - b_prev * q_prev
        for qq in Q:  # full reorthogonalisation
            v -= (qq @ v) * qq
        if k < n - 1:
            beta[k] = np.linalg.norm(v)
            q_prev, b_prev = Q[-1], beta[k]
            Q.append(v / beta[k])
    lam, vec = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
    return lam, vec[0] ** 2 * wr.sum()


def _pair_quadrature(phi, k12, k11, k22, n_r, n_theta):
    """E[phi(h1) phi(h2)] for one pair, polar Gauss rule split at the kinks; scalar."""
    r, wr = radial_rule(n_r)
    xg, wg = np.polynomial.legendre.leggauss(n_theta)
    norm = jnp.sqrt(k11 * k22)
    rho = jnp.clip(jnp.where(norm > 0, k12 / jnp.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
    beta = jnp.arccos(rho)  # h2 = sqrt(k22) r cos(theta - beta), h1 = sqrt(k11) r cos(theta)
    breaks = jnp.sort(
        jnp.mod(
            jnp.array([0.5, 1.5, 0.0, 0.0]) * jnp.pi
            + jnp.array([0.0, 0.0, beta + 0.5 * jnp.pi, beta + 1.5 * jnp.pi]),
            2 * jnp.pi,
        )
    )  # (4,)
    ends = jnp.concatenate([breaks[1:], breaks[:1] + 2 * jnp.pi])  # (4,)
    half = 0.5 * (ends - breaks)  # (4,)
    theta = (breaks + half)[:, None] + half[:, None] * xg[None, :]  # (4, n_theta)
    wt = half[:, None] * wg[None, :] / (2 * jnp.pi)  # (4, n_theta)
    h1 = jnp.sqrt(k11) * r[:, None, None] * jnp.cos(theta)[None]  # (n_r, 4, n_theta)
    h2 = jnp.sqrt(k22) * r[:, None, None] * jnp.cos(theta - beta)[None]  # (n_r, 4, n_theta)
    return jnp.sum(wr[:, None, None] * wt[None] * phi(h1) * phi(h2))


@functools.partial(jax.jit, static_argnames=("activation", "n_r", "n_theta", "chunk"))
def quadrature_pairs(
    activation: str,
    k12: jax.Array,
    k11: jax.Array,
    k22: jax.Array,
    n_r: int = 32,
    n_theta: int = 32,
    chunk: int = 256,
) -> jax.Array:
    """E[phi(h1) phi(h2)] for flat arrays of pairs (n,) with Var h1 = k11, Var h2 = k22,
    Cov = k12; evaluated in chunks of `chunk` pairs to bound memory."""
    phi = ACTIVATIONS[activation]
    pair = jax.vmap(functools.partial(_pair_quadrature, phi, n_r=n_r, n_theta=n_theta))
    n = k12.shape[0]
    pad = (-n) % chunk
    stack = jnp.stack([jnp.pad(a, (0, pad), constant_values=1.0) for a in (k12, k11, k22)])
    out = jax.lax.map(lambda a: pair(a[0], a[1], a[2]), stack.reshape(3, -1, chunk).swapaxes(0, 1))
    return out.reshape(-1)[:n]


def quadrature_kernel(
    activation: str, k12: ArrayLike, k11: ArrayLike, k22: ArrayLike, **kw: int
) -> jax.Array:
    """K^phi by 2-D quadrature from input-kernel entries k12 (P1, P2), k11 (P1,), k22 (P2,)."""
    P1, P2 = k12.shape
    a = jnp.broadcast_to(jnp.asarray(k11)[:, None], (P1, P2)).reshape(-1)
    b = jnp.broadcast_to(jnp.asarray(k22)[None, :], (P1, P2)).reshape(-1)
    return quadrature_pairs(activation, jnp.asarray(k12).reshape(-1), a, b, **kw).reshape(P1, P2)


def kernel_from_input(activation: str, k12: ArrayLike, k11: ArrayLike, k22: ArrayLike) -> jax.Array:
    """K^phi from input-kernel entries: closed form where known, quadrature otherwise."""
    check_activation(activation)
    k12, k11, k22 = (jnp.asarray(a, jnp.float64) for a in (k12, k11, k22))
    if activation in CLOSED_FORMS:
        return _closed_form(activation, k12, k11[:, None], k22[None, :])  # (P1, P2)
    return quadrature_kernel(activation, k12, k11, k22)


@with_float64
def kernel(activation: str, X1: ArrayLike, X2: ArrayLike, g_v: float, depth: int = 1) -> jax.Array:
    """NNGP feature kernel K^phi_L(X1, X2) of the last of `depth` hidden layers, (P1, P2);
    linear depth 1 gives K^x = (g_v/D) X1 X2^T."""
    check_activation(activation)
    return kernel_layers(activation, X1, X2, g_v, depth)[-1][0]


@with_float64
def kernel_layers(
    activation: str, X1: ArrayLike, X2: ArrayLike, g_v: float, depth: int
) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
    """The layer recursion: for l = 1..depth, (K^phi_l(X1, X2) (P1, P2), diag on X1 (P1,), diag
    on X2 (P2,)).  Pre-activations of layer l + 1 have the kernel g_v K^phi_l."""
    check_activation(activation)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    k12, k11, k22 = input_kernel(X1, X2, g_v), input_diag(X1, g_v), input_diag(X2, g_v)
    out = []
    for layer in range(depth):
        if layer:
            k12, k11, k22 = g_v * k12, g_v * k11, g_v * k22  # pre-activation kernels
        k12 = kernel_from_input(activation, k12, k11, k22)  # (P1, P2)
        k11 = kernel_diag_from_input(activation, k11)  # (P1,)
        k22 = kernel_diag_from_input(activation, k22)  # (P2,)
        out.append((k12, k11, k22))
    return out


def kernel_diag_from_input(activation: str, k11: ArrayLike) -> jax.Array:
    """Diagonal E[phi(h_a)^2], h_a ~ N(0, k11_a), shape (P,)."""
    check_activation(activation)
    k11 = jnp.asarray(k11, jnp.float64)
    if activation in CLOSED_FORMS:
        return _closed_form(activation, k11, k11, k11)
    return quadrature_pairs(activation, k11, k11, k11)


@with_float64
def kernel_diag(activation: str, X: ArrayLike, g_v: float, depth: int = 1) -> jax.Array:
    """Diagonal of K^phi_L(X, X) for `depth` layers, shape (P,), without forming the P x P
    matrix."""
    d = input_diag(X, g_v)
    for layer in range(depth):
        d = kernel_diag_from_input(activation, g_v * d if layer else d)  # (P,)
    return d
