"""Write the notebooks of this folder as .ipynb JSON (stdlib only): `python notebooks/make_notebooks.py`.

Each notebook's first code cell is `QUICK = False`; tests/test_notebooks.py runs every code cell
in order with QUICK = True (tiny sizes), so the notebooks never rot.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

SIZES = '''# Sizes: QUICK (set by the test) keeps everything tiny; otherwise the default experiment's sizes.
SIZES = (dict(n_train=12, n_test=8, dim=8, width=8, chains=2, warmup=100, draws=100, n_chi=2)
         if QUICK else
         dict(n_train=30, n_test=30, dim=16, width=32, chains=4, warmup=400, draws=800, n_chi=5))'''

IMPORTS = '''import matplotlib
matplotlib.use("Agg")  # figures are shown inline by Jupyter; Agg keeps the notebook headless
import matplotlib.pyplot as plt
import numpy as np

import analysis
import bayesnet
import theory
from analysis import diagnostics, figures'''

WALKTHROUGH = [
    ("markdown", "# bayesnet walkthrough\n\nBuild a network spec, sample its posterior with NUTS, "
     "compute the theories, compare them with the samples (z-scores against the Monte-Carlo "
     "standard error) and plot."),
    ("code", "QUICK = False"),
    ("code", IMPORTS),
    ("code", SIZES),
    ("markdown", "## 1. Data and network\n\nThe linearly separable Ising task and a linear "
     "network in mean-field scaling (chi = N): readout prior variance g_w/(chi N), noise kappa/chi."),
    ("code", '''data = bayesnet.ising(n_train=SIZES["n_train"], n_test=SIZES["n_test"], dim=SIZES["dim"],
                      flip=0.1, seed=0)
spec = bayesnet.NetworkSpec(width=SIZES["width"], activation="linear", kappa=0.2)
spec = spec.replace(chi=float(spec.width))  # mean-field scaling
print(spec, f"gamma = {spec.gamma:.2f}")'''),
    ("markdown", "## 2. Sample\n\n`collapsed` integrates the readout out analytically and runs "
     "NUTS over the input weights only.  The result is a DataTree (posterior, sample_stats, "
     "kernel, observed_data, constant_data)."),
    ("code", '''tree = bayesnet.sample(spec, data, method="collapsed", chains=SIZES["chains"],
                      warmup=SIZES["warmup"], draws=SIZES["draws"], seed=0, progress=not QUICK)
print(tree["posterior"])'''),
    ("markdown", "## 3. Diagnostics\n\nR-hat, bulk/tail ESS and MCSE from arviz-stats for every "
     "output and kernel scalar; a verdict `ok` or `warn` with the reasons."),
    ("code", '''diag = analysis.diagnose(tree)
print(diagnostics.summary_line(diag))'''),
    ("markdown", "## 4. Theory\n\n`theory.predict` for every method (exact: linear networks)."),
    ("code", '''predictions = {m: theory.predict(spec, data, [spec.chi], m) for m in theory.METHODS}
print({m: float(p["ubar"][0]) for m, p in predictions.items()})'''),
    ("markdown", "## 5. Compare\n\nz = (theory − sample)/MCSE per observable; a theory is flagged "
     "where some observable is off by more than 4 MCSE."),
    ("code", '''comparison = analysis.compare(tree, predictions)
table = comparison[["relerr", "max_abs_z", "flagged"]].to_dataframe()
print(table)
assert comparison["verdict"].item() in ("ok", "warn")'''),
    ("markdown", "## 6. Plot\n\nPredicted versus sampled mean outputs."),
    ("code", '''fig = figures.scatter_figure(comparison, f"linear N={spec.width}, chi={spec.chi:g}",
                             methods=("nngp", "tree", "one_loop", "exact"))
fig'''),
]

CONTINUUM = [
    ("markdown", "# The scaling continuum: from standard (chi = 1) to mean-field (chi = N)\n\n"
     "Claims checked against samples: (i) the NNGP, which ignores kernel adaptation, fails "
     "across chi; (ii) the adaptive theory (one loop; tree level towards mean field) holds; "
     "(iii) the hidden kernel adapts *directionally* (along the target) while the mean output "
     "is a GP with a *rescaled* kernel."),
    ("code", "QUICK = False"),
    ("code", IMPORTS),
    ("code", SIZES),
    ("code", '''data = bayesnet.ising(n_train=SIZES["n_train"], n_test=SIZES["n_test"], dim=SIZES["dim"],
                      flip=0.1, seed=0)
spec = bayesnet.NetworkSpec(width=SIZES["width"], activation="linear", kappa=0.2)
chis = np.geomspace(1.0, spec.width, SIZES["n_chi"])
print("chi grid:", np.round(chis, 3))'''),
    ("markdown", "## Sample every chi (one compiled sampler serves the whole sweep)"),
    ("code", '''trees = [bayesnet.sample(spec.replace(chi=float(c)), data, chains=SIZES["chains"],
                         warmup=SIZES["warmup"], draws=SIZES["draws"], seed=1,
                         progress=not QUICK, desc=f"chi={c:.3g}") for c in chis]
predictions = {m: theory.predict(spec, data, chis, m) for m in theory.METHODS}
comparison = analysis.compare(trees, predictions)
print(comparison["verdict"].values, comparison["reasons"].values)'''),
    ("markdown", "## (i) and (ii): which theory holds where\n\nmax |z| over all observables "
     "(mean outputs, discrepancies, variances, kernel projections); runs marked `warn` are "
     "shown as such."),
    ("code", '''maxz = comparison["max_abs_z"].to_pandas()
print(maxz.round(1))
print("best theory per chi:", dict(zip(np.round(chis, 3), comparison["best_method"].values)))
print("NNGP flagged at chi =", chis[comparison["flagged"].sel({"theory": "nngp"}).values == 1])'''),
    ("code", '''fig = figures.discrepancy_figure(comparison, f"linear N={spec.width}")
fig'''),
    ("markdown", "## (iii) Directional kernel adaptation, rescaled mean output\n\nThe change of "
     "the hidden kernel along the normalised target, ŷᵀ(K_post − K)ŷ, against its isotropic "
     "part tr(K_post − K)/P.  Meanwhile the mean output equals a GP with the rescaled kernel "
     "ūK (the one-loop scalar ū), which the z-scores of `f_train` test directly."),
    ("code", '''K = np.asarray(theory.kernel("linear", data.X, data.X, spec.g_v))
y_hat = data.y / np.linalg.norm(data.y)
prior = {"kernel_target": y_hat @ K @ y_hat, "kernel_trace": np.trace(K) / len(K)}
directional = comparison["kernel_target"].values - prior["kernel_target"]
isotropic = comparison["kernel_trace"].values - prior["kernel_trace"]
for c, d, i in zip(chis, directional, isotropic):
    print(f"chi={c:7.3f}  directional {d:8.4f}  isotropic {i:8.4f}  ratio {d / i:6.1f}")
ubar = predictions["one_loop"]["ubar"].values
print("one-loop rescaling ubar/g_w:", np.round(ubar / spec.g_w, 4))
print("max |z| of the rescaled-GP mean output (one loop):",
      np.round(comparison["f_train_maxabsz"].sel({"theory": "one_loop"}).values, 2))'''),
    ("code", '''import xarray as xr
prior_ds = xr.Dataset({k: v for k, v in prior.items()})
fig = figures.kernel_figure(comparison, prior_ds, f"linear N={spec.width}")
fig'''),
]


def notebook(cells) -> dict:
    """An nbformat-4 notebook from (kind, source) pairs."""
    out = []
    for kind, src in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {"cells": out, "metadata": {"kernelspec": {"display_name": "Python 3",
                                                      "language": "python", "name": "python3"},
                                       "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def main():
    for name, cells in (("walkthrough", WALKTHROUGH), ("scaling_continuum", CONTINUUM)):
        path = HERE / f"{name}.ipynb"
        path.write_text(json.dumps(notebook(cells), indent=1) + "\n")
        print(path)


if __name__ == "__main__":
    main()
