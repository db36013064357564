"""NNGP layer recursion (theory.kernels, depth > 1) against Monte-Carlo kernels of wide random
networks of the same depth.

Each of R independent networks of width N gives K_l = Phi_l Phi_l^T / N; their mean estimates
the NNGP kernel with standard error SE (spread over networks / sqrt R) and a finite-width bias of
order 1/N (the layer-l pre-activation covariance is itself random at finite N).  Tolerance:
5 SE + BIAS / N with BIAS = 4 (|K| <= 1 here, so the bias bound is a few 1e-3 at N = 2048, while
5 SE is about 1e-2): a wrong recursion (e.g. g_v applied twice, a wrong arcsine factor) is off by
O(0.1).
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesnet.activations import ACTIVATIONS
from theory import kernels

N, R, BIAS = 2048, 12, 4.0


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 3)), rng.standard_normal((3, 3))


def _mc_layers(activation, X, g_v, depth, seed=0):
    """Mean and standard error over R networks of every layer's kernel on X, (L, P, P) each."""
    rng = np.random.default_rng(seed)
    phi = ACTIVATIONS[activation]
    Ks = []
    for _ in range(R):
        H = X @ rng.standard_normal((X.shape[1], N)) * np.sqrt(g_v / X.shape[1])  # (P, N)
        per, Phi = [], None
        for layer in range(depth):
            if layer:
                H = Phi @ rng.standard_normal((N, N)) * np.sqrt(g_v / N)  # (P, N)
            Phi = np.asarray(phi(H))  # (P, N)
            per.append(Phi @ Phi.T / N)
        Ks.append(per)
    Ks = np.asarray(Ks)  # (R, L, P, P)
    return Ks.mean(0), Ks.std(0, ddof=1) / np.sqrt(R)


@pytest.mark.parametrize("activation", ["linear", "erf", "relu", "tanh"])
@pytest.mark.parametrize("depth", [2, 3])
def test_recursion_matches_wide_network_monte_carlo(activation, depth):
    X, Xt = _inputs()
    Z = np.vstack([X, Xt])  # train and test together: every block of the kernel
    g_v = 1.5
    mean, se = _mc_layers(activation, Z, g_v, depth)
    layers = kernels.kernel_layers(activation, Z, Z, g_v, depth)
    assert len(layers) == depth
    for layer, (K, d1, d2) in enumerate(layers):
        K = np.asarray(K)
        tol = 5 * se[layer] + BIAS / N
        assert np.all(np.abs(K - mean[layer]) < tol), (activation, depth, layer)
        np.testing.assert_allclose(np.diag(K), d1, rtol=1e-10)
        np.testing.assert_allclose(d1, d2, rtol=1e-12)
    # the public functions return the last layer and its blocks
    K_tt = np.asarray(kernels.kernel(activation, Xt, X, g_v, depth=depth))
    np.testing.assert_allclose(K_tt, np.asarray(layers[-1][0])[5:, :5], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        kernels.kernel_diag(activation, Xt, g_v, depth=depth),
        np.diag(np.asarray(layers[-1][0]))[5:],
        rtol=1e-9,
    )


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_closed_forms_match_quadrature_through_the_layers(activation):
    """The closed forms and the 2-D quadrature give the same depth-3 kernel (1e-8)."""
    X, _ = _inputs()
    g_v = 1.3
    k12, k11 = kernels.input_kernel(X, X, g_v), kernels.input_diag(X, g_v)
    for layer in range(3):
        if layer:
            k12, k11 = g_v * k12, g_v * k11
        k12 = kernels.quadrature_kernel(activation, k12, k11, k11)
        k11 = np.diag(np.asarray(k12))
    np.testing.assert_allclose(
        k12, kernels.kernel(activation, X, X, g_v, depth=3), rtol=1e-8, atol=1e-10
    )


def test_linear_recursion_is_a_power_of_g_v():
    X, Xt = _inputs()
    np.testing.assert_allclose(
        kernels.kernel("linear", Xt, X, 2.0, depth=3),
        4.0 * np.asarray(kernels.kernel("linear", Xt, X, 2.0)),
        rtol=1e-13,
    )


@pytest.mark.parametrize("bad", [0, 1.0, True])
def test_depth_checked(bad):
    X, _ = _inputs()
    with pytest.raises(ValueError, match="depth must be an integer"):
        kernels.kernel_layers("erf", X, X, 1.0, bad)
