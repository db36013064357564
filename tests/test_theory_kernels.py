"""theory.kernels: closed forms vs Monte Carlo over sampled neurons, quadrature vs closed forms."""

import numpy as np
import pytest

from theory import kernels

G_V = 1.3


def _points(P=6, D=5, seed=3):
    """A few input points with varied norms and angles."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((P, D)) * rng.uniform(0.5, 2.0, size=(P, 1))


def _mc_kernel(activation, X, n=1_000_000, seed=0):
    """Monte-Carlo K^phi over n sampled neurons: mean and standard error, each (P, P)."""
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    phi = np.asarray(
        kernels.ACTIVATIONS[activation](rng.standard_normal((n, D)) * np.sqrt(G_V / D) @ X.T)
    )  # (n, P)
    mean = phi.T @ phi / n  # (P, P)
    second = (phi * phi).T @ (phi * phi) / n  # E[(phi_a phi_b)^2], (P, P)
    return mean, np.sqrt((second - mean**2) / n)


@pytest.mark.parametrize("activation", ["linear", "erf", "relu", "tanh"])
def test_kernel_matches_monte_carlo(activation):
    X = _points()
    mean, se = _mc_kernel(activation, X)
    K = np.asarray(kernels.kernel(activation, X, X, G_V))
    z = np.abs(K - mean) / se
    assert z.max() < 5.0, f"{activation}: max |z| = {z.max():.2f}"
    assert np.allclose(np.asarray(kernels.kernel_diag(activation, X, G_V)), np.diag(K), atol=1e-12)


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_quadrature_equals_closed_form(activation):
    X, X2 = _points(8, 4, seed=1), _points(5, 4, seed=2)
    kx = kernels.input_kernel(X, X2, G_V)
    q = kernels.quadrature_kernel(
        activation, kx, kernels.input_diag(X, G_V), kernels.input_diag(X2, G_V)
    )
    closed = kernels.kernel(activation, X, X2, G_V)
    assert float(np.max(np.abs(np.asarray(q) - np.asarray(closed)))) < 1e-8


def test_input_kernel_convention():
    X = _points()
    assert np.allclose(np.asarray(kernels.input_kernel(X, X, G_V)), G_V / X.shape[1] * X @ X.T)
    assert np.allclose(np.asarray(kernels.kernel("linear", X, X, G_V)), G_V / X.shape[1] * X @ X.T)


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="activation"):
        kernels.kernel("softsign", _points(), _points(), 1.0)
