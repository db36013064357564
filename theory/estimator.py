"""The control-variate estimator of the tilted kernels: the one home of Q_CV (docs/one_loop.md).

Every tilted-measure kernel in theory/ is an importance-sampling sum over single-neuron draws
with the closed-form prior kernel K^phi as control variate,
  Q = K + sum_m (w_m - w0_m) phi_m phi_m^T,
where w_m are the tilted weights and w0_m the weights under which the same draws estimate the
prior kernel K (1/M for prior draws).  Without a control variate (w0 = None) Q = sum_m w_m phi_m
phi_m^T.  The estimator is exact at zero tilt (w = w0) and cancels most sampling noise at weak
tilt.  Used by tilted.py (prior draws), homogeneous.py (direction draws) and fluctuation.py.
"""

from __future__ import annotations


def cv_kernels(phi, phi_test, w, w0, K, K_test):
    """Tilted kernels Q (P, P) and Q_* (P*, P) from draws phi (M, P), phi_test (M, P*), tilted
    weights w (M,) and prior weights w0 ((M,), a scalar, or None: no control variate); K (P, P)
    and K_test (P*, P) the prior kernels (ignored when w0 is None)."""
    wt = w if w0 is None else w - w0  # (M,)
    Q = (phi * wt[:, None]).T @ phi  # (P, P)
    Q_test = (phi_test * wt[:, None]).T @ phi  # (P*, P)
    if w0 is None:
        return Q, Q_test
    return Q + K, Q_test + K_test


def cv_diagonal(phi_test, w, w0, k_test):
    """Diagonal of the tilted test kernel (P*,) with the same control variate as cv_kernels."""
    wt = w if w0 is None else w - w0  # (M,)
    q = wt @ (phi_test * phi_test)  # (P*,)
    return q if w0 is None else q + k_test
