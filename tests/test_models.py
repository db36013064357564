"""The models' building blocks against closed forms: prior kernels and conditional GPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from numpy.polynomial.hermite_e import hermegauss

import bayesnet as bn
from bayesnet.gp import gp_given_features, gp_posterior, gp_train_test
from bayesnet.models import Theta, collapsed_stats, features, kernel_stats
from bayesnet.observables import factored_kernel_scalars, kernel_alignment, kernel_scalars
from bayesnet.sampling import data_arrays, theta_arrays


def nngp_reference(activation, K):
    """NNGP feature kernel E[phi(h_a) phi(h_b)], h ~ N(0, K), written independently in numpy."""
    d = np.sqrt(np.diag(K))
    if activation == "linear":
        return K
    if activation == "erf":
        return 2 / np.pi * np.arcsin(2 * K / np.sqrt(np.outer(1 + 2 * d**2, 1 + 2 * d**2)))
    if activation == "relu":
        c = np.clip(K / np.outer(d, d), -1, 1)
        th = np.arccos(c)
        return np.outer(d, d) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
    # tanh: 2-D Gauss-Hermite on the bivariate normal of each pair
    x, w = hermegauss(80)
    w = w / w.sum()
    out = np.empty_like(K)
    for a in range(K.shape[0]):
        for b in range(K.shape[0]):
            L = np.linalg.cholesky(
                np.array([[K[a, a], K[a, b]], [K[a, b], K[b, b]]]) + 1e-13 * np.eye(2)
            )
            h1 = L[0, 0] * x[:, None]
            h2 = L[1, 0] * x[:, None] + L[1, 1] * x[None, :]
            out[a, b] = np.sum(w[:, None] * w[None, :] * np.tanh(h1) * np.tanh(h2))
    return out


@pytest.mark.parametrize("activation", ["linear", "erf", "relu", "tanh"])
def test_prior_kernel_is_nngp(activation):
    """K = Phi Phi^T / N over 2e5 prior neurons equals the NNGP kernel within 5 MC SE."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 4))
    g_v = 1.7
    n = 200_000
    theta = Theta(*(jnp.asarray(v) for v in (g_v, 1.0, 1.0, 1.0)))
    z = jax.random.normal(jax.random.PRNGKey(0), (n, 4))
    Phi = np.asarray(features(z, jnp.asarray(X), theta, activation))  # (P, n)
    K_mc = np.asarray(
        kernel_stats(jnp.asarray(Phi), jnp.asarray(Phi[:1]), jnp.ones(5) / np.sqrt(5))["K_train"]
    )
    prods = Phi[:, None, :] * Phi[None, :, :]  # (P, P, n)
    se = prods.std(axis=-1) / np.sqrt(n)
    K_ref = nngp_reference(activation, g_v / 4 * X @ X.T)
    z = np.abs(K_mc - K_ref) / se
    assert z.max() < 5, (activation, z.max())


def _gp_numpy(Phi, Phi_t, y, s, noise):
    G = s * Phi @ Phi.T + noise * np.eye(len(y))
    Gt = s * Phi_t @ Phi.T
    mean = s * Phi @ Phi.T @ np.linalg.solve(G, y)
    mean_t = Gt @ np.linalg.solve(G, y)
    cov = s * Phi @ Phi.T - s * Phi @ Phi.T @ np.linalg.solve(G, s * Phi @ Phi.T)
    var_t = s * np.sum(Phi_t**2, 1) - np.sum(Gt * np.linalg.solve(G, Gt.T).T, 1)
    ll = scipy.stats.multivariate_normal(np.zeros(len(y)), G).logpdf(y)
    return ll, mean, mean_t, np.diag(cov), var_t


@pytest.mark.parametrize("P,N", [(6, 10), (10, 4)])  # function-space and weight-space branches
def test_conditional_gp_equals_closed_form(P, N):
    rng = np.random.default_rng(P)
    Phi, Phi_t, y = rng.standard_normal((P, N)), rng.standard_normal((3, N)), rng.standard_normal(P)
    got = gp_given_features(*map(jnp.asarray, (Phi, Phi_t, y)), 0.3, 0.2)
    want = _gp_numpy(Phi, Phi_t, y, 0.3, 0.2)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-10, atol=1e-12)


def test_gp_posterior_from_a_kernel_equals_closed_form():
    """gp_posterior / gp_train_test (the theory's GP) against numpy solves with the same kernel."""
    rng = np.random.default_rng(3)
    Phi, Phi_t, y = rng.standard_normal((8, 5)), rng.standard_normal((3, 5)), rng.standard_normal(8)
    _, mean, mean_t, var, var_t = _gp_numpy(Phi, Phi_t, y, 0.3, 0.2)
    K, Kt, kt = 0.3 * Phi @ Phi.T, 0.3 * Phi_t @ Phi.T, 0.3 * np.sum(Phi_t**2, 1)
    got = gp_train_test(*map(jnp.asarray, (K, Kt, kt, y)), 0.2)
    for g, w in zip(got, (mean, var, mean_t, var_t), strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-10, atol=1e-12)
    m, v = gp_posterior(*map(jnp.asarray, (K, Kt, kt, y)), 0.2)
    np.testing.assert_allclose(np.asarray(m), mean_t, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(v), var_t, rtol=1e-10)


def test_kernel_scalars_plain_factored_and_stacked_agree():
    """ŷᵀKŷ, tr K/P and the centred alignment: from K, from a factor G (K = GᵀG), per stack."""
    rng = np.random.default_rng(4)
    G, y = rng.standard_normal((3, 9)), rng.choice([-1.0, 1.0], 9)
    K = G.T @ G  # (P, P), rank 3
    yh = y / np.linalg.norm(y)
    H = np.eye(9) - 1 / 9
    Kc, Y = H @ K @ H, np.outer(H @ yh, H @ yh)
    want = {
        "kernel_target": yh @ K @ yh,
        "kernel_trace": np.trace(K) / 9,
        "kernel_alignment": np.sum(Kc * Y) / (np.linalg.norm(Kc) * np.linalg.norm(Y)),
    }
    got = {**kernel_scalars(K, y), "kernel_alignment": kernel_alignment(K, y)}
    for k, v in factored_kernel_scalars(jnp.asarray(G), jnp.asarray(y)).items():
        assert float(v) == pytest.approx(want[k], rel=1e-12), k
        assert float(got[k]) == pytest.approx(want[k], rel=1e-12), k
    stacked = kernel_scalars(np.stack([K, 2 * K]), y)
    np.testing.assert_allclose(
        stacked["kernel_target"], [want["kernel_target"], 2 * want["kernel_target"]], rtol=1e-12
    )


@pytest.mark.parametrize("activation", ["linear", "erf"])
def test_collapsed_stats_fixed_V(activation):
    """V fixed: the collapsed outputs are the GP posterior with kernel (g_w/(chi N)) Phi Phi^T."""
    d = bn.ising(n_train=12, n_test=5, dim=6, flip=0.2, seed=0)
    spec = bn.NetworkSpec(width=7, activation=activation, g_v=1.3, g_w=0.8, chi=3.0, kappa=0.4)
    z = {"z_V": jax.random.normal(jax.random.PRNGKey(2), (7, 6))}
    out = collapsed_stats(z, data_arrays(d), theta_arrays(spec), 7, activation)
    V = np.asarray(z["z_V"]) * np.sqrt(1.3 / 6)
    phi = {"linear": lambda h: h, "erf": scipy.special.erf}[activation]
    _, m, mt, v, vt = _gp_numpy(
        phi(d.X @ V.T), phi(d.X_test @ V.T), d.y, spec.readout_var, spec.noise_var
    )
    for key, want in (("f_train", m), ("f_test", mt), ("var_train", v), ("var_test", vt)):
        np.testing.assert_allclose(np.asarray(out[key]), want, rtol=1e-9, atol=1e-12)
    K = phi(d.X @ V.T) @ phi(d.X @ V.T).T / 7
    yh = d.y / np.linalg.norm(d.y)
    assert float(out["kernel_target"]) == pytest.approx(yh @ K @ yh, rel=1e-12)
    H = np.eye(12) - 1 / 12
    cka = np.sum(H @ K @ H * np.outer(H @ yh, H @ yh)) / (
        np.linalg.norm(H @ K @ H) * np.linalg.norm(np.outer(H @ yh, H @ yh))
    )
    assert float(out["kernel_alignment"]) == pytest.approx(cka, rel=1e-10)
