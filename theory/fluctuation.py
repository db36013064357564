"""Fluctuation corrections around the tilted saddle point (docs/one_loop.md).

`TiltedSample` is what every correction consumes: weighted single-neuron draws of the tilted
measure at the tree-level solution, with the closed-form prior kernel for the control variate.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


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
    M = t.phi.shape[0]
    wt = t.w - 1.0 / M if t.prior else t.w  # (M,)
    Q = (t.phi * wt[:, None]).T @ t.phi  # (P, P)
    Q_test = (t.phi_test * wt[:, None]).T @ t.phi  # (P*, P)
    if t.prior:
        Q, Q_test = Q + t.K, Q_test + t.K_test
    return Q, Q_test
