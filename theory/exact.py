"""Exact finite-width predictions for LINEAR networks over a sweep of chi (Gaussian scale mixture).

`predict_exact` returns the same xarray schema as the approximate methods of `theory.predict`,
plus exact-only variables (s_mean, s_std, s_mode, quad_error).  The maths is in
bayesnet/scale_mixture.py and docs/exact_linear.md (shared/theory.md 5.5).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from bayesnet import scale_mixture as sm


def _check_chis(chis) -> np.ndarray:
    """Validate chis: 1-D, finite, > 0, ascending; returns float64 (n_chi,)."""
    c = np.asarray(chis, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"chis must be a non-empty 1-D sequence, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"chis must be finite and > 0, got {c.tolist()}")
    if np.any(np.diff(c) < 0):
        raise ValueError(f"chis must be sorted ascending, got {c.tolist()}")
    return c


def _one_chi(spec, data, tol: float, prob) -> dict:
    """Exact posterior summaries at one chi (spec.chi), as a dict of numpy values."""
    post = sm.posterior(spec, data, tol=tol, prob=prob)
    y = np.asarray(data.y)
    yhat = y / np.linalg.norm(y)
    K = post["K_train"]
    return {
        "f_train": post["mean_train"], "f_test": post["mean_test"],
        "var_train": post["var_train"], "var_test": post["var_test"],
        "discrepancy_train": y - post["mean_train"],
        "discrepancy_test": np.asarray(data.y_test) - post["mean_test"],
        "K_train": K, "K_test_train": post["K_test_train"],
        "kernel_target": yhat @ K @ yhat, "kernel_trace": np.trace(K) / y.size,
        "ubar": spec.g_w * post["s_mode"],
        "converged": post["converged"], "iterations": post["n_nodes"],
        "residual": post["quad_error"], "normalisability": np.nan,
        "s_mean": post["s_mean"], "s_std": post["s_std"], "s_mode": post["s_mode"],
        "quad_error": post["quad_error"],
    }


_DIMS = {
    "f_train": ("train",), "f_test": ("test",), "var_train": ("train",), "var_test": ("test",),
    "discrepancy_train": ("train",), "discrepancy_test": ("test",),
    "K_train": ("train", "train_"), "K_test_train": ("test", "train_"),
}


def predict_exact(spec, data, chis, tol: float = 1e-12) -> xr.Dataset:
    """Exact posterior predictions of a linear network at each chi: outputs, variances, kernels.

    ubar = g_w s*, s* the mode of the log-s posterior (= the one-loop rescaling of theory.md 5.3);
    converged: quadrature error (max change between grid levels) <= tol; iterations: grid nodes.
    """
    sm.check_linear(spec)
    c = _check_chis(chis)
    prob = sm.prepare(spec, data)  # one eigendecomposition for all chi
    rows = [_one_chi(spec.replace(chi=float(x)), data, tol, prob) for x in c]
    data_vars = {}
    for name in rows[0]:
        arr = np.stack([np.asarray(r[name]) for r in rows])
        data_vars[name] = (("chi",) + _DIMS.get(name, ()), arr)
    coords = {"chi": c, "train": np.arange(data.n_train), "test": np.arange(data.n_test),
              "train_": np.arange(data.n_train)}
    attrs = {k: v for k, v in spec.to_attrs().items() if k != "chi"}  # chi is a coordinate
    attrs.update(data.to_attrs(), method="exact")
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
