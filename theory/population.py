"""Population sampler of the tilted single-neuron measure: short HMC chains that replace prior
draws when their importance weights degenerate (tilted.py)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bayesnet.activations import ACTIVATIONS


def _log_density(v, X, activation, delta, c, g_v):
    """Unnormalised log density of the tilted single-neuron measure at v (D,)."""
    s = ACTIVATIONS[activation](X @ v) @ delta
    return -0.5 * v.shape[0] * (v @ v) / g_v + 0.5 * c * s * s


@functools.partial(jax.jit, static_argnames=("activation", "n_warm", "n_keep", "thin", "n_leap"))
def hmc_population(
    key: jax.Array,
    V0: jnp.ndarray,
    X: jnp.ndarray,
    activation: str,
    delta: jnp.ndarray,
    c: float,
    g_v: float,
    n_warm: int = 60,
    n_keep: int = 32,
    thin: int = 2,
    n_leap: int = 6,
) -> jnp.ndarray:
    """Population of HMC chains (one per row of V0 (C, D)); returns kept states (C*n_keep, D)."""
    logp = lambda v: _log_density(v, X, activation, delta, c, g_v)  # noqa: E731
    grad = jax.vmap(jax.value_and_grad(logp))
    C, D = V0.shape

    def step(carry, key):
        V, eps = carry
        k_mom, k_eps, k_acc = jax.random.split(key, 3)  # independent: momentum, jitter, accept
        p0 = jax.random.normal(k_mom, V.shape)  # (C, D), unit mass
        lp0, g0 = grad(V)
        e = eps * jnp.exp(0.2 * jax.random.uniform(k_eps, (C, 1)) - 0.1)  # jittered step

        def leap(_, s):
            q, p, g = s
            p = p + 0.5 * e * g
            q = q + e * p
            _, g = grad(q)
            return q, p + 0.5 * e * g, g

        q, p, _ = jax.lax.fori_loop(0, n_leap, leap, (V, p0, g0))
        lp1, _ = grad(q)
        log_acc = lp1 - lp0 - 0.5 * jnp.sum(p * p - p0 * p0, axis=1)  # (C,)
        acc = jnp.log(jax.random.uniform(k_acc, (C,))) < log_acc
        V = jnp.where(acc[:, None], q, V)
        return (V, eps), jnp.mean(acc)

    def warm(carry, key):
        (V, eps), rate = step(carry, key)
        return (V, eps * jnp.exp(rate - 0.7)), rate  # adapt towards 70% acceptance

    keys = jax.random.split(key, n_warm + n_keep * thin)
    eps0 = 0.5 * jnp.sqrt(g_v / D) / jnp.sqrt(n_leap)
    carry, _ = jax.lax.scan(warm, (V0, eps0), keys[:n_warm])

    def keep(carry, ks):
        carry, _ = jax.lax.scan(step, carry, ks)
        return carry, carry[0]

    _, kept = jax.lax.scan(keep, carry, keys[n_warm:].reshape(n_keep, thin, 2))
    return kept.reshape(-1, D)  # (n_keep*C, D)
