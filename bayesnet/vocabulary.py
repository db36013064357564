"""The vocabulary of every result: one long name and unit per variable, and the definitions.

`describe(obj)` gives each data variable and coordinate of a Dataset (or every node of a
DataTree) the `long_name` and `units` attributes it lacks, so a results file opened in xarray
tells a stranger what each number is.  Pure numpy/xarray: samplers, `theory` and `analysis` all
call it where they build their outputs.  Units: network outputs f are in the units of the labels
y ("y"), variances in "y^2"; "1" marks a dimensionless number (CF convention).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

# Definitions the reports and figures quote; stored as attributes of the comparison results.
DEFINITIONS = {
    "signed_discrepancy": "Delta = (1/P) sum_a y_a (y_a - <f_a>), labels y = +-1: the mean "
    "training (or test) error along the labels, 0 for a perfect fit",
    "z": "z = (theory - sample) / MCSE, MCSE the Monte-Carlo standard error of the sample mean",
    "max_abs_z": "largest |z| over every observable (mean outputs, discrepancies, variances, "
    "kernel scalars) and every point",
    "relerr": "||theory - sample|| / ||sample|| of the posterior mean train outputs",
    "flagged": "1 where max |z| > 4: the theory is off by more than Monte-Carlo error",
    "best": "the theory with the smallest max |z|, excluding exact (ground truth for linear "
    "networks); 'none within MC error' when every theory is flagged",
    "kernel_change": "absolute posterior values, in tables and figures alike; the figures' "
    "dashed line is the prior (NNGP) kernel's value, so the change from the "
    "prior is the distance to that line",
    "chi": "scaling of the readout prior: w ~ N(0, g_w/(chi N)), noise kappa/chi; chi = 1 "
    "standard, chi = N mean-field",
}

# Per-point and scalar observables shared by samples, theory and comparison.
_BASE = {
    "f_train": ("posterior mean output, train points", "y"),
    "f_test": ("posterior mean output, test points", "y"),
    "var_train": ("posterior output variance, train points", "y^2"),
    "var_test": ("posterior output variance, test points", "y^2"),
    "discrepancy_train": ("discrepancy y - <f>, train points", "y"),
    "discrepancy_test": ("discrepancy y_test - <f>, test points", "y"),
    "signed_discrepancy_train": ("training discrepancy Delta = (1/P) sum y (y - <f>)", "y^2"),
    "signed_discrepancy_test": ("test discrepancy Delta* = (1/P*) sum y* (y* - <f*>)", "y^2"),
    "kernel_target": ("hidden-kernel target projection yhat^T K_post yhat (absolute value)", "1"),
    "kernel_trace": ("hidden-kernel trace tr K_post / P (absolute value)", "1"),
    "kernel_alignment": ("kernel-target alignment yhat^T K yhat / ||K||_F", "1"),
    "K_train": ("posterior mean hidden kernel (1/N) sum_i <phi_i phi_i^T>, train block", "1"),
    "K_test_train": ("posterior mean hidden kernel, test-train block", "1"),
    "layer_kernel_target": ("yhat^T K_l yhat of hidden layer l's kernel (depth > 1)", "1"),
    "layer_kernel_trace": ("tr K_l / P of hidden layer l's kernel (depth > 1)", "1"),
    "layer_kernel_alignment": ("kernel-target alignment of hidden layer l's kernel", "1"),
}

# The same names in a sampler's `posterior` group hold one value per draw.
PER_DRAW = {
    "f_train": ("output per draw (E[f | V] for collapsed and exact draws), train points", "y"),
    "f_test": ("output per draw (E[f | V] for collapsed and exact draws), test points", "y"),
    "var_train": ("conditional output variance Var[f | V] per draw, train points", "y^2"),
    "var_test": ("conditional output variance Var[f | V] per draw, test points", "y^2"),
    "kernel_target": ("hidden-kernel target projection yhat^T K yhat per draw", "1"),
    "kernel_trace": ("hidden-kernel trace tr K / P per draw", "1"),
    "kernel_alignment": ("kernel-target alignment yhat^T K yhat / ||K||_F per draw", "1"),
    "signed_discrepancy_train": ("training discrepancy (1/P) sum y (y - f) per draw", "y^2"),
    "signed_discrepancy_test": ("test discrepancy (1/P*) sum y* (y* - f*) per draw", "y^2"),
    "layer_kernel_target": ("yhat^T K_l yhat of hidden layer l's kernel per draw", "1"),
    "layer_kernel_trace": ("tr K_l / P of hidden layer l's kernel per draw", "1"),
    "layer_kernel_alignment": ("kernel-target alignment of hidden layer l's kernel per draw", "1"),
}

VARIABLES: dict[str, tuple[str, str]] = {
    **_BASE,
    # raw data and sampler output
    "X": ("training inputs", "1"),
    "X_test": ("test inputs", "1"),
    "y": ("training labels", "y"),
    "y_test": ("test labels", "y"),
    "diverging": ("divergent NUTS transition (1 = yes)", "1"),
    "tree_depth": ("NUTS tree depth", "1"),
    "n_steps": ("leapfrog steps per draw", "1"),
    "step_size": ("NUTS step size", "1"),
    "energy": ("Hamiltonian energy", "1"),
    "acceptance_rate": ("mean acceptance probability of the transition", "1"),
    "lp": ("log posterior density (up to a constant)", "1"),
    "log_s": ("log of the readout scale s = chi |w|^2 / g_w (exact sampler)", "1"),
    "f_train_draw": ("exact posterior draw of the output, train points", "y"),
    "f_test_draw": ("exact posterior draw of the output, test points", "y"),
    # theory
    "ubar": ("effective readout scale u-bar (g_w for the NNGP)", "1"),
    "converged": ("theory solver converged (1 = yes)", "1"),
    "iterations": ("theory solver iterations (exact: quadrature nodes)", "1"),
    "residual": ("theory solver residual, max abs (exact: quadrature error)", "1"),
    "normalisability": ("c Delta^T K Delta (linear tilt normalisable iff < 1)", "1"),
    # diagnostics
    "n_divergent": ("number of divergent transitions", "1"),
    "treedepth_saturation": ("fraction of draws at the maximal tree depth", "1"),
    "bfmi": ("energy Bayesian fraction of missing information (E-BFMI) per chain", "1"),
    "max_rhat": ("largest rank-normalised R-hat over every observable", "1"),
    "min_ess_bulk": ("smallest bulk effective sample size over every observable", "1"),
    "min_ess_tail": ("smallest tail effective sample size over every observable", "1"),
    "verdict": (
        "diagnostics verdict: ok, or warn (R-hat > 1.01, bulk ESS < 400, divergences "
        "or E-BFMI < 0.2)",
        "",
    ),
    "reasons": ("why the diagnostics verdict is warn (empty when ok)", ""),
    "draws": ("draws of the observable with the worst R-hat", "y"),
    # comparison
    "max_abs_z": ("largest |z| = |theory - sample|/MCSE over every observable and point", "1"),
    "flagged": ("theory off by more than 4 MCSE somewhere (1 = yes)", "1"),
    "relerr": ("relative error ||theory - sample|| / ||sample|| of the mean train outputs", "1"),
    "best_method": (
        "theory with the smallest max |z| (exact excluded); 'none within MC error' "
        "when all are flagged",
        "",
    ),
    # finite-width ladder
    "relerr_mcse": ("Monte-Carlo standard error of the relative error", "1"),
}

# Suffixes of the comparison variables: long-name template and whether the unit is kept.
SUFFIXES = {
    "_mcse": ("Monte-Carlo standard error of the {}", True),
    "_theory": ("theory prediction of the {}", True),
    "_z": ("z = (theory - sample)/MCSE of the {}", False),
    "_maxabsz": ("max |z| over points of the {}", False),
    "_relerr": ("relative error ||theory - sample|| / ||sample|| of the {}", False),
}

COORDINATES = {
    "chi": ("readout-prior scaling chi (1 standard, N mean-field)", "1"),
    "theory": ("theory (prediction method)", ""),
    "train": ("training point index", ""),
    "train_": ("training point index (second)", ""),
    "test": ("test point index", ""),
    "feature": ("input feature index", ""),
    "chain": ("Markov chain", ""),
    "draw": ("draw within a chain", ""),
    "diagnostic": ("convergence diagnostic (R-hat, bulk/tail ESS, MCSE of the mean)", ""),
    "observable": ("observable", ""),
    "width": ("hidden width N", "1"),
    "layer": ("hidden layer index l = 1..L (L = depth)", ""),
    "depth": ("number of hidden layers L", "1"),
    "chi_rule": ("how chi is set from the width (e.g. 1 or N)", ""),
    # grid axes of a sweep (analysis.collect)
    "network": ("network name in the config", ""),
    "activation": ("activation phi", ""),
    "g_v": ("input-weight prior gain g_v", "1"),
    "g_w": ("readout prior gain g_w", "1"),
    "kappa": ("noise scale kappa (likelihood variance kappa/chi)", "1"),
    "n_train": ("number of training points P", "1"),
    "n_test": ("number of test points P*", "1"),
    "dim": ("input dimension D", "1"),
    "flip": ("spin-flip probability of the Ising task", "1"),
    "seed": ("data seed", ""),
    "data_name": ("data set", ""),
}


def lookup(name: str) -> tuple[str, str] | None:
    """(long_name, units) of a variable or coordinate name, or None when it is not known."""
    if name in VARIABLES:
        return VARIABLES[name]
    if name in COORDINATES:
        return COORDINATES[name]
    for suffix, (template, keep_unit) in SUFFIXES.items():
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in _BASE:
            long_name, units = _BASE[base]
            return template.format(long_name), units if keep_unit else "1"
    return None


def _describe_var(var: xr.DataArray, name: str) -> None:
    """Fill in long_name/units of one variable (in place), never overwriting a given one."""
    known = lookup(name)
    if "draw" in var.dims and name in PER_DRAW:
        known = PER_DRAW[name]
    if "diagnostic" in var.dims:  # R-hat, ESS and MCSE of an observable, along `diagnostic`
        known = (f"convergence diagnostics of the {known[0] if known else name}", "")
    if known is None:
        return
    long_name, units = known
    var.attrs.setdefault("long_name", long_name)
    if units and var.dtype.kind in "iufb":
        var.attrs.setdefault("units", units)


def describe(obj):
    """`obj` (Dataset or DataTree) with long_name/units on every known variable and coordinate.

    Returns a new object; attributes already present are kept.
    """
    if isinstance(obj, xr.DataTree):
        return obj.map_over_datasets(describe)
    if not isinstance(obj, xr.Dataset):
        raise ValueError(f"describe needs an xarray Dataset or DataTree, got {type(obj).__name__}")
    ds = obj.copy()
    if "feature" in ds.dims and "feature" not in ds.coords:
        ds = ds.assign_coords(feature=np.arange(ds.sizes["feature"]))
    for name in list(ds.variables):
        _describe_var(ds[name], str(name))
    return ds


def redescribe(ds: xr.Dataset) -> xr.Dataset:
    """`ds` described afresh: the attributes its variables inherited from their inputs (xarray
    keeps them through arithmetic and reductions, so an MCSE would carry its mean's long_name)
    are dropped first."""
    ds = ds.copy()
    for name in ds.variables:
        ds[name].attrs = {}
    return describe(ds)


def undescribed(ds: xr.Dataset) -> list[str]:
    """Data variables of `ds` without a long_name (what a test asserts is empty)."""
    return [str(v) for v in ds.data_vars if "long_name" not in ds[v].attrs]
