"""Exact finite-width predictions for LINEAR networks over a sweep of chi (Gaussian scale mixture).

`predict_exact` returns the prediction schema of theory/schema.py (shared with the approximate
methods of `theory.predict`), plus exact-only variables (s_mean, s_std, s_mode, quad_error).
The maths is in bayesnet/scale_mixture.py and docs/exact_linear.md.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesnet import scale_mixture as sm
from bayesnet.datasets import Dataset
from bayesnet.precision import with_float64
from bayesnet.spec import NetworkSpec

from .schema import Row, assemble, check_chis, finalise, mcse_vars

EXACT_ONLY = {
    "s_mean": "posterior mean of the scale s",
    "s_std": "posterior std of s",
    "s_mode": "mode s* of the log-s posterior (one-loop rescaling ubar = g_w s*)",
    "quad_error": "quadrature error (max change between grid levels)",
}


def _one_chi(spec, tol: float, prob: sm.LinearProblem) -> tuple[Row, dict]:
    """Exact posterior summaries at one chi (spec.chi): the schema row and the exact-only
    scalars."""
    post = sm.posterior(spec, None, tol=tol, prob=prob)
    row = Row(
        f_train=post["mean_train"],
        var_train=post["var_train"],
        f_test=post["mean_test"],
        var_test=post["var_test"],
        K_train=post["K_train"],
        K_test_train=post["K_test_train"],
        ubar=spec.g_w * post["s_mode"],
        converged=post["converged"],
        iterations=post["n_nodes"],
        residual=post["quad_error"],
    )
    return row, {k: post[k] for k in EXACT_ONLY}


@with_float64
def predict_exact(spec: NetworkSpec, data: Dataset, chis, tol: float = 1e-12) -> xr.Dataset:
    """Exact posterior predictions of a linear network at each chi: outputs, variances, kernels.

    chis: validated as in theory.predict, and must be ascending.  ubar = g_w s*, s* the mode of
    the log-s posterior; converged: quadrature error (max change between grid levels) <= tol;
    iterations: grid nodes; normalisability is NaN (no saddle point); <v>_mcse = 0; a chi whose
    quadrature did not converge is NaN with a warning (theory.schema.finalise).
    """
    sm.check_linear(spec)
    c = check_chis(chis, spec.chi, sort=False)
    prob = sm.prepare(spec, data)  # one eigendecomposition for all chi
    out = [_one_chi(spec.replace(chi=float(x)), tol, prob) for x in c]
    extra = {
        k: ((), np.array([o[1][k] for o in out], dtype=float), long)
        for k, long in EXACT_ONLY.items()
    }
    rows = finalise([o[0] for o in out], c, "exact")
    for _, arr, _ in extra.values():
        arr[[not r.converged for r in rows]] = np.nan
    return assemble(rows, c, spec, data, "exact", extra=extra | mcse_vars(rows))
