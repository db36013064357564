"""Gaussian-process posterior mean and variance via a Cholesky factor (never an explicit inverse)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl



@jax.jit
def gp_posterior(K, K_star, k_star_diag, y, noise):
    """GP with prior covariance K (P, P), cross block K_star (P*, P), prior variances k_star_diag
    (P*,), targets y (P,) and noise variance `noise` (units of y^2).

    Returns mean (P*,) = K_* (K + noise I)^-1 y and variance (P*,) = k_** - diag(K_* (K+noise)^-1 K_*^T).
    """
    P = K.shape[0]
    L = jnp.linalg.cholesky(K + noise * jnp.eye(P))  # (P, P)
    alpha = jsl.cho_solve((L, True), y)  # (P,)
    B = jsl.solve_triangular(L, K_star.T, lower=True)  # (P, P*)
    return K_star @ alpha, k_star_diag - jnp.sum(B * B, axis=0)


def gp_train_test(K, K_test, k_test_diag, y, noise):
    """GP posterior on train and test points: (mean_train, var_train, mean_test, var_test)."""
    m_tr, v_tr = gp_posterior(K, K, jnp.diag(K), y, noise)
    m_te, v_te = gp_posterior(K, K_test, k_test_diag, y, noise)
    return m_tr, v_tr, m_te, v_te
