"""Gaussian-process algebra shared by the samplers and the theory (pure jax/numpy, no NumPyro).

- `gp_given_features`: the readout integrated out given the hidden features (collapsed sampler);
- `gp_posterior`, `gp_train_test`: GP posterior mean and variance from a kernel (NNGP, theory);
- `Spectrum`, `spectrum`, `linear_spectrum`: the eigen-representation of a train kernel, used by
  the kernel rescaling (theory.rescaling) and the exact linear posterior (scale_mixture).
Every solve goes through a Cholesky factor or the eigenbasis, never an explicit inverse.
Units: kernels and variances in units of y^2 once multiplied by their scale (docs/conventions.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from numpy.typing import ArrayLike

Scalar = Any  # a float or a traced 0-d array

# ------------------------------------------------------------------ function space (Cholesky)


def _factor(K: jax.Array, y: jax.Array, noise: Scalar) -> tuple[jax.Array, jax.Array, jax.Array]:
    """L = chol(K + noise I) (P, P), c = L^-1 y (P,), alpha = (K + noise I)^-1 y (P,)."""
    L = jnp.linalg.cholesky(K + noise * jnp.eye(K.shape[0], dtype=K.dtype))  # (P, P)
    c = jsl.solve_triangular(L, y, lower=True)  # (P,)
    alpha = jsl.solve_triangular(L.T, c, lower=False)  # (P,)
    return L, c, alpha


def _predict(
    L: jax.Array, alpha: jax.Array, K_star: jax.Array, k_star_diag: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Posterior mean K_* alpha (P*,) and variance k_** - diag(K_* (K + noise)^-1 K_*^T) (P*,)."""
    B = jsl.solve_triangular(L, K_star.T, lower=True)  # (P, P*)
    return K_star @ alpha, k_star_diag - jnp.sum(B * B, axis=0)


@jax.jit
def gp_posterior(
    K: jax.Array, K_star: jax.Array, k_star_diag: jax.Array, y: jax.Array, noise: Scalar
) -> tuple[jax.Array, jax.Array]:
    """GP posterior at new points: mean (P*,) and variance (P*,).

    K (P, P) prior covariance of the training outputs, K_star (P*, P) cross covariance,
    k_star_diag (P*,) prior variances at the new points, y (P,), noise variance `noise`.
    """
    L, _, alpha = _factor(K, y, noise)
    return _predict(L, alpha, K_star, k_star_diag)


@jax.jit
def gp_train_test(
    K: jax.Array, K_test: jax.Array, k_test_diag: jax.Array, y: jax.Array, noise: Scalar
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """GP posterior on train and test points from one factorisation: (m_tr, v_tr, m_te, v_te)."""
    L, _, alpha = _factor(K, y, noise)
    m_tr, v_tr = _predict(L, alpha, K, jnp.diag(K))
    m_te, v_te = _predict(L, alpha, K_test, k_test_diag)
    return m_tr, v_tr, m_te, v_te


def gp_given_features(
    Phi: jax.Array,
    Phi_test: jax.Array,
    y: jax.Array,
    s: Scalar,
    noise: Scalar,
    space: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Readout integrated out given features: log marginal likelihood, conditional means, variances.

    f = Phi w with w ~ N(0, s I), y ~ N(f, noise I).  Works in weight space (N x N Cholesky) when
    N < P and in function space (the GP with kernel s Phi Phi^T, P x P Cholesky) otherwise;
    space="weight" or "function" forces one (bench/ times both).
    Returns (loglik, mean_train (P,), mean_test (P*,), var_train (P,), var_test (P*,)).
    """
    P, N = Phi.shape
    if space not in (None, "weight", "function"):
        raise ValueError(f"space must be None, 'weight' or 'function', got {space!r}")
    if space == "weight" or (space is None and N < P):
        A = jnp.eye(N, dtype=Phi.dtype) / s + Phi.T @ Phi / noise  # (N, N) precision of w
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
        L, c, alpha = _factor(G, y, noise)
        quad = c @ c
        logdet = 2 * jnp.sum(jnp.log(jnp.diag(L)))
        mean, var = _predict(L, alpha, G, jnp.diag(G))
        mean_t, var_t = _predict(
            L, alpha, s * Phi_test @ Phi.T, s * jnp.sum(Phi_test * Phi_test, 1)
        )
    loglik = -0.5 * (quad + logdet + P * jnp.log(2 * jnp.pi))
    return loglik, mean, mean_t, var, var_t


# ------------------------------------------------------------------ eigenbasis (numpy, float64)


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Non-zero eigenmodes of a train kernel K = U diag(lam) U^T: lam (r,), U (P, r),
    yt = U^T y (r,), diag = diag K (P,)."""

    lam: np.ndarray
    U: np.ndarray
    yt: np.ndarray
    diag: np.ndarray

    def project(self, K_cross: ArrayLike) -> np.ndarray:
        """Cross kernel rows in the eigenbasis, B = K_cross U, shape (P*, r)."""
        return np.asarray(K_cross) @ self.U  # (P*, r)


def _keep(lam: np.ndarray, rtol: float) -> np.ndarray:
    """Modes above rtol * the largest eigenvalue (the others are round-off of a rank deficit)."""
    return lam > rtol * max(lam.max(), 0.0)


def spectrum(K: ArrayLike, y: ArrayLike, rtol: float = 1e-13) -> Spectrum:
    """Eigendecomposition of a PSD train kernel K (P, P); modes below rtol*max(lam) dropped."""
    lam, U = np.linalg.eigh(np.asarray(K, np.float64))
    keep = _keep(lam, rtol)
    U = U[:, keep]  # (P, r)
    return Spectrum(lam[keep], U, U.T @ np.asarray(y, np.float64), np.diag(np.asarray(K)).copy())


def linear_spectrum(X: ArrayLike, y: ArrayLike, g_v: float, rtol: float = 1e-13) -> Spectrum:
    """Spectrum of K^x = (g_v/D) X X^T from a thin SVD of X (P, D): O(P D min(P, D))."""
    X = np.asarray(X, np.float64)
    U, s, _ = np.linalg.svd(X, full_matrices=False)  # (P, m), (m,)
    lam = (g_v / X.shape[1]) * s * s  # (m,)
    keep = _keep(lam, rtol)
    U = U[:, keep]  # (P, r)
    diag = (g_v / X.shape[1]) * np.sum(X * X, axis=1)  # (P,)
    return Spectrum(lam[keep], U, U.T @ np.asarray(y, np.float64), diag)
