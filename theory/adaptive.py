"""Multi-scale adaptive saddle point (tree level): shared formulas and the annealing ladder.

docs/one_loop.md ("The tilted saddle point").  Units: K dimensionless kernels of the hidden
layer, f outputs (units of y), c = g_w chi / (N kappa^2) the tilt strength (1/y^2).

Linear network: the tilted single-neuron measure is Gaussian, the adapted kernel is rank-one
(Sherman-Morrison) and the tree level reduces to the scalar rescaling (rescaling.py).
Non-linear network: f = (g_w/kappa) Q(f) (y - f), Q = <phi phi^T> under the tilt, computed by
self-normalised importance sampling over fixed draws (tilted.py); solved by damped Newton and
annealed over chi (Algorithm 1, `chi_ladder`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def tilt_coefficient(g_w: float, chi: float, width: float, kappa: float) -> float:
    """Tilt strength c = g_w chi / (N kappa^2) of exp(c (Delta^T phi)^2 / 2), units 1/y^2.

    The one definition of c in theory/ (the tree solvers, the corrections and the diagnostics).
    """
    return g_w * chi / (width * kappa**2)


def adapted_kernel(K, delta, c: float) -> jnp.ndarray:
    """Tree-level hidden kernel of the linear net, K + c K D D^T K / (1 - c D^T K D), (P, P).

    With K the train block this is the tilted covariance Q; with K the test-train block as the
    first factor use `adapted_cross_kernel`.
    """
    Kd = K @ delta  # (P,)
    return K + c * jnp.outer(Kd, Kd) / (1.0 - c * delta @ Kd)  # (P, P)


def adapted_cross_kernel(K, K_test_train, delta, c: float) -> jnp.ndarray:
    """Test-train block of the linear tilted covariance, K_* + c K_* D D^T K / (1 - c D^T K D),
    (P*, P)."""
    Kd = K @ delta  # (P,)
    return K_test_train + c * jnp.outer(K_test_train @ delta, Kd) / (1.0 - c * delta @ Kd)


def linear_posterior_kernel(
    K_train,
    K_test_train,
    fluct_train,
    fluct_test,
    f_train,
    f_test,
    ubar: float,
    chi: float,
    width: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean hidden kernel of the linear net, train (P, P), test-train (P*, P).

    K_post = K + (chi/(N ubar)) f f^T - (ubar/N) K (ubar K + kappa)^-1 K; fluct_* hold the last
    K (ubar K + kappa)^-1 K blocks (pass zeros for the tree level).
    """
    a = chi / (width * ubar)
    train = K_train + a * np.outer(f_train, f_train) - (ubar / width) * fluct_train  # (P, P)
    test = K_test_train + a * np.outer(f_test, f_train) - (ubar / width) * fluct_test  # (P*, P)
    return train, test


def chi_ladder(
    chis, width: float, max_ratio: float = 2.0, start_ratio: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Annealing ladder (Algorithm 1): the sorted chis plus log-spaced steps of ratio <= max_ratio,
    starting at min(chis[0], start_ratio * N) where the NNGP start is accurate (weak tilt).

    Returns (ladder (L,), index (len(chis),)) with ladder[index] == chis.
    """
    chis = np.sort(np.asarray(chis, float))
    ladder = [min(chis[0], start_ratio * width)]
    for target in chis:
        prev = ladder[-1]
        if target > prev:
            n = max(1, int(np.ceil(np.log(target / prev) / np.log(max_ratio) - 1e-9)))
            steps = prev * (target / prev) ** (np.arange(1, n + 1) / n)
            steps[-1] = target
            ladder.extend(steps.tolist())
    ladder = np.asarray(ladder)
    return ladder, np.searchsorted(ladder, chis)
