# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The finite-width ladder: how fast does each theory's error shrink with N?
#
# Reads the width-ladder results of `bench/width_ladder.py` (in `bench/results/width_ladder/`):
# for a linear network, every theory's relative error of the mean output measured against the
# exact posterior (no sampling noise); for an erf network, against long collapsed-NUTS reference
# runs (with their Monte-Carlo noise level).  Setup: Ising task, P = 40, D = 30, κ = 0.3,
# g_v = g_w = 1; χ = 1, √N and N.  An expansion in 1/N predicts slopes −1 (tree level) and −2
# (one loop) on these log-log axes.  Reading the files takes seconds; regenerating them is the
# command in `bench/width_ladder.py`'s docstring (hours on 2 cores).

# %%
# %matplotlib inline
import json
import pathlib

import numpy as np
import xarray as xr

from analysis import figures

# %% tags=["parameters"]
QUICK = False  # nothing to shorten: the notebook only reads saved results

# %%
HERE = pathlib.Path.cwd()
LADDER = next(
    p / "bench" / "results" / "width_ladder"
    for p in (HERE, *HERE.parents)
    if (p / "bench" / "results" / "width_ladder").is_dir()
)
RULES = {"1": "1", "sqrt": "√N", "N": "N"}


def ladder(path: pathlib.Path) -> xr.Dataset:
    """A width-ladder JSON as relerr / relerr_mcse over (side, width, theory, chi_rule)."""
    res = json.loads(path.read_text())
    names = [k for k in res if k != "mc_noise" and not k.endswith("_mcse")]
    tags = [t for t in RULES if t in res[names[0]]]
    widths = sorted({int(n) for t in tags for n in res[names[0]][t]})
    shape = (2, len(widths), len(names), len(tags))
    err, noise = np.full(shape, np.nan), np.full(shape, np.nan)
    for i, name in enumerate(names):
        for k, tag in enumerate(tags):
            for j, n in enumerate(widths):
                if str(n) in res[name][tag]:
                    err[:, j, i, k] = res[name][tag][str(n)]
                    own = res.get(f"{name}_mcse", {}).get(tag, {}).get(str(n), [0.0, 0.0])
                    ref = res.get("mc_noise", {}).get(tag, {}).get(str(n), [0.0, 0.0])
                    noise[:, j, i, k] = np.hypot(own, ref)
    dims = ("side", "width", "theory", "chi_rule")
    return xr.Dataset(
        {"relerr": (dims, err), "relerr_mcse": (dims, noise)},
        coords={
            "side": ["train", "test"],
            "width": widths,
            "theory": names,
            "chi_rule": [RULES[t] for t in tags],
        },
    )


def slopes(ds: xr.Dataset) -> xr.DataArray:
    """Least-squares slope of log(error) against log(N) per theory and chi rule."""
    logn = np.log(ds["width"].values.astype(float))

    def fit(e):
        ok = np.isfinite(e) & (e > 0)
        return np.polyfit(logn[ok], np.log(e[ok]), 1)[0] if ok.sum() >= 2 else np.nan

    return xr.apply_ufunc(fit, ds["relerr"], input_core_dims=[["width"]], vectorize=True)


# %% [markdown]
# ## Linear network, against the exact posterior

# %%
linear = ladder(LADDER / "linear_errors.json")
print("widths:", linear["width"].values)
slopes(linear).sel(side="train").to_pandas().round(2)

# %%
figures.finite_width_figure(linear.sel(side="train"))

# %% [markdown]
# ## erf network, against reference samples
#
# The grey band is the reference runs' Monte-Carlo noise: below it, no theory can be told from
# the samples, and the slopes flatten.

# %%
erf_path = LADDER / "erf_errors.json"
if erf_path.is_file():
    erf = ladder(erf_path)
    print("widths:", erf["width"].values)
    print(slopes(erf).sel(side="train").to_pandas().round(2))
else:
    erf = None
    print(f"no {erf_path.name} yet: run bench/width_ladder.py erf")

# %%
figures.finite_width_figure(erf.sel(side="train")) if erf is not None else None
