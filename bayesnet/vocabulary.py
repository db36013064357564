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

# Definitions of the core quantities; analysis/verdicts.py adds those of the comparison.
DEFINITIONS = {
    "signed_discrepancy": "Delta = (1/P) sum_a y_a (y_a - <f_a>), labels y = +-1: the mean "
    "training (or test) error along the labels, 0 for a perfect fit",
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
    "kernel_alignment": ("centred kernel-target alignment yc^T Kc yc / (||Kc||_F ||yc||^2)", "1"),
    "K_train": ("posterior mean hidden kernel (1/N) sum_i <phi_i phi_i^T>, train block", "1"),
    "K_test_train": ("posterior mean hidden kernel, test-train block", "1"),
    "layer_kernel_target": ("yhat^T K_l yhat of hidden layer l's kernel (depth > 1)", "1"),
    "layer_kernel_trace": ("tr K_l / P of hidden layer l's kernel (depth > 1)", "1"),
    "layer_kernel_alignment": ("kernel-target alignment of hidden layer l's kernel", "1"),
}

# The same names in a sampler's `posterior` group hold one value per draw.  f_train/f_test are
# what each sampler can give without Monte-Carlo noise it does not need: a draw of f for `full`,
# the Rao-Blackwellised mean E[f | V] for `collapsed` and E[f | s, y] for `exact` (their average
# is the posterior mean either way; their spread is not the posterior spread of f).
PER_DRAW = {
    "f_train": (
        "output per draw: f (full), E[f | V] (collapsed) or E[f | s, y] (exact), train points",
        "y",
    ),
    "f_test": (
        "output per draw: f (full), E[f | V] (collapsed) or E[f | s, y] (exact), test points",
        "y",
    ),
    "var_train": (
        "conditional output variance per draw: 0 (full), Var[f | V] (collapsed), "
        "Var[f | s, y] (exact), train points",
        "y^2",
    ),
    "var_test": (
        "conditional output variance per draw: 0 (full), Var[f | V] (collapsed), "
        "Var[f | s, y] (exact), test points",
        "y^2",
    ),
    "f_train_draw": ("posterior-predictive draw of the output f, train points", "y"),
    "f_test_draw": ("posterior-predictive draw of the output f, test points", "y"),
    "kernel_target": ("hidden-kernel target projection yhat^T K yhat per draw", "1"),
    "kernel_trace": ("hidden-kernel trace tr K / P per draw", "1"),
    "kernel_alignment": ("centred kernel-target alignment per draw", "1"),
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
    "f_train_draw": ("posterior-predictive draw of the output f, train points", "y"),
    "f_test_draw": ("posterior-predictive draw of the output f, test points", "y"),
    # theory
    "ubar": ("effective readout scale u-bar (g_w for the NNGP)", "1"),
    "converged": ("theory solver converged (1 = yes)", "1"),
    "status": ("'converged', or why the theory's solve did not (its outputs are then NaN)", "1"),
    "iterations": ("theory solver iterations (exact: quadrature nodes)", "1"),
    "residual": ("theory solver residual, max abs (exact: quadrature error)", "1"),
    "normalisability": ("c Delta^T K Delta (linear tilt normalisable iff < 1)", "1"),
    # theory: method-specific variables
    "correction_train": ("fluctuation correction f - f_tree, train points", "y"),
    "correction_test": ("fluctuation correction f - f_tree, test points", "y"),
    "correction_size_train": ("|f - f_tree| / |f_tree|, train points", "1"),
    "correction_size_test": ("|f - f_tree| / |f_tree|, test points", "1"),
    "correction_mcse_train": ("|Monte-Carlo standard error of the correction| / |f_tree|", "1"),
    "correction_mcse_test": ("|Monte-Carlo standard error of the correction| / |f_tree|", "1"),
    "s_mean": ("posterior mean of the readout scale s = chi |w|^2 / g_w", "1"),
    "s_std": ("posterior standard deviation of s", "1"),
    "s_mode": ("mode s* of the log-s posterior", "1"),
    "quad_error": ("quadrature error (max change between grid levels)", "1"),
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
    "width": ("hidden width N", "1"),
    "layer": ("hidden layer index l = 1..L (L = depth)", ""),
    "depth": ("number of hidden layers L", "1"),
}

# Index dimensions that get an integer coordinate 0, 1, ... where a Dataset has none.
INDEX_DIMS = ("train", "train_", "test", "feature", "chain", "draw")


def lookup(name: str, extra: dict | None = None) -> tuple[str, str] | None:
    """(long_name, units) of a variable or coordinate name, or None when it is not known.

    extra: a further vocabulary {name: (long_name, units)} consulted first (analysis adds its
    own, analysis/verdicts.py).
    """
    for table in (extra or {}, VARIABLES, COORDINATES):
        if name in table:
            return table[name]
    for suffix, (template, keep_unit) in SUFFIXES.items():
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in _BASE:
            long_name, units = _BASE[base]
            return template.format(long_name), units if keep_unit else "1"
    return None


def _describe_var(var: xr.DataArray, name: str, extra: dict | None, is_coord: bool) -> None:
    """Fill in long_name/units of one variable (in place), never overwriting a given one.

    Units: "1" for every dimensionless number and for labels (strings, CF's dimensionless).
    """
    known = lookup(name, extra)
    if "draw" in var.dims and name in PER_DRAW:
        known = PER_DRAW[name]
    if "diagnostic" in var.dims and not is_coord:  # R-hat, ESS and MCSE along `diagnostic`
        base = known or (name, "1")
        mcse = "" if base[1] in ("1", "") else f" except mcse_mean in {base[1]}"
        known = (f"R-hat, ESS and MCSE of the mean of the {base[0]}", f"1{mcse}")
    if known is None:
        return
    long_name, units = known
    var.attrs.setdefault("long_name", long_name)
    if not is_coord or var.dtype.kind in "iufb":
        var.attrs.setdefault("units", units or "1")


def describe(obj, extra: dict | None = None):
    """`obj` (Dataset or DataTree) with long_name/units on every known variable and coordinate,
    and integer coordinates on the index dimensions (train, test, chain, ...) that lack one.

    extra: a further vocabulary (see `lookup`).  Returns a new object; attributes already
    present are kept.
    """
    if isinstance(obj, xr.DataTree):
        return obj.map_over_datasets(lambda ds: describe(ds, extra))
    if not isinstance(obj, xr.Dataset):
        raise ValueError(f"describe needs an xarray Dataset or DataTree, got {type(obj).__name__}")
    ds = obj.copy()
    missing = {d: np.arange(ds.sizes[d]) for d in INDEX_DIMS if d in ds.dims and d not in ds.coords}
    ds = ds.assign_coords(missing)
    for name in list(ds.variables):
        _describe_var(ds[name], str(name), extra, name in ds.coords)
    return ds


def redescribe(ds: xr.Dataset, extra: dict | None = None) -> xr.Dataset:
    """`ds` described afresh: the attributes its variables inherited from their inputs (xarray
    keeps them through arithmetic and reductions, so an MCSE would carry its mean's long_name)
    are dropped first."""
    ds = ds.copy()
    for name in ds.variables:
        ds[name].attrs = {}
    return describe(ds, extra)
