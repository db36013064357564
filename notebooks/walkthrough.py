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
# # bayesnet walkthrough
#
# Build a network spec, sample its posterior with NUTS, check the chains, compute the theories,
# compare them with the samples (z = (theory − sample)/MCSE) and plot the residuals.
# About 30 s on 2 CPU cores; `QUICK = True` (what the tests set) takes seconds.

# %%
# %matplotlib inline
import arviz_stats as azs

import analysis
import bayesnet
import theory
from analysis import diagnostics, figures

# %% tags=["parameters"]
QUICK = False

# %%
SIZES = (
    dict(n_train=12, n_test=8, dim=8, width=8, chains=2, warmup=100, draws=100)
    if QUICK
    else dict(n_train=30, n_test=30, dim=16, width=32, chains=4, warmup=500, draws=1000)
)

# %% [markdown]
# ## 1. Data and network
#
# The linearly separable Ising task and a linear network in mean-field scaling (χ = N): readout
# prior variance g_w/(χN), noise κ/χ.

# %%
data = bayesnet.ising(
    n_train=SIZES["n_train"], n_test=SIZES["n_test"], dim=SIZES["dim"], flip=0.1, seed=0
)
spec = bayesnet.NetworkSpec(width=SIZES["width"], activation="linear", kappa=0.2)
spec = spec.replace(chi=float(spec.width))  # mean-field scaling
print(spec, f"gamma = {spec.gamma:.2f}")

# %% [markdown]
# ## 2. Sample
#
# `collapsed` integrates the readout out analytically and runs NUTS over the input weights
# only.  The result is an `xarray.DataTree` (posterior, sample_stats, kernel, observed_data,
# constant_data); every variable carries a `long_name` and `units`.

# %%
tree = bayesnet.sample(
    spec,
    data,
    method="collapsed",
    chains=SIZES["chains"],
    warmup=SIZES["warmup"],
    draws=SIZES["draws"],
    seed=0,
    progress=not QUICK,
)
tree["posterior"]

# %% [markdown]
# ## 3. Diagnostics
#
# The posterior group opens in ArviZ as it is; `analysis.diagnose` collects R-hat, bulk/tail ESS
# and MCSE of every output and kernel scalar into a verdict `ok` or `warn` with its reasons.

# %%
print(azs.summary(tree["posterior"].to_dataset()[["kernel_target", "kernel_trace"]]))
diag = analysis.diagnose(tree)
print(diagnostics.summary_line(diag))

# %% [markdown]
# ## 4. Theory
#
# `theory.predict` for every method (`exact` and `laplace_one_loop`: linear networks only).

# %%
predictions = {m: theory.predict(spec, data, [spec.chi], m) for m in theory.METHODS}
print({m: round(float(p["ubar"][0]), 4) for m, p in predictions.items()})

# %% [markdown]
# ## 5. Compare
#
# z = (theory − sample)/MCSE per observable; a theory is *flagged* where some observable is off
# by more than 4 MCSE; *best* is the unflagged theory with the smallest max |z| (exact, the
# ground truth for linear networks, excluded).

# %%
comparison = analysis.compare(tree, predictions)
print(comparison[["relerr", "max_abs_z", "flagged"]].to_dataframe().round(4))
print("best:", comparison["best_method"].item())
assert comparison["verdict"].item() in ("ok", "warn")

# %% [markdown]
# ## 6. Residuals
#
# One panel per theory: (theory − sample)/MCSE of the mean output at every training point; the
# green band is |z| ≤ 3.

# %%
figures.residual_figure(comparison, f"linear N={spec.width}")
