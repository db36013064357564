"""Convergence diagnostics of one posterior run: R-hat, ESS, MCSE, divergences, tree depth, E-BFMI.

Every number comes from arviz-stats on permutation-invariant observables (outputs, kernel scalars
and the sign-corrected discrepancies), never from raw weights.  A run gets the verdict `ok`, or
`warn` with the reasons.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import xarray as xr

from .verdicts import BFMI_MIN, ESS_BULK_MIN, RHAT_MAX, redescribe

DEFAULT_MAX_TREE_DEPTH = 10
DIAGNOSTICS = ("rhat", "ess_bulk", "ess_tail", "mcse_mean")


def draws(tree: xr.DataTree) -> xr.Dataset:
    """Per-draw observables of a run: the posterior group plus the signed discrepancies."""
    post = tree["posterior"].to_dataset()
    obs = tree["observed_data"].to_dataset()
    out = post.copy()
    out["signed_discrepancy_train"] = signed_discrepancy(post["f_train"], obs["y"], "train")
    out["signed_discrepancy_test"] = signed_discrepancy(post["f_test"], obs["y_test"], "test")
    return out


def signed_discrepancy(f: xr.DataArray, y: xr.DataArray, dim: str) -> xr.DataArray:
    """Sign-corrected scalar discrepancy (1/P) sum_a y_a (y_a - f_a) (labels +-1)."""
    return (y * (y - f)).mean(dim)


def _stack(parts: dict) -> xr.Dataset:
    """Concatenate per-diagnostic Datasets along a `diagnostic` dimension."""
    return xr.concat(
        list(parts.values()),
        dim=xr.Variable("diagnostic", list(parts)),
        coords="minimal",
        compat="override",
    )


def observable_diagnostics(ds: xr.Dataset) -> xr.Dataset:
    """R-hat (rank), bulk and tail ESS and MCSE of the mean for every observable."""
    parts = {
        "rhat": azs.rhat(ds, method="rank"),
        "ess_bulk": azs.ess(ds, method="bulk"),
        "ess_tail": azs.ess(ds, method="tail"),
        "mcse_mean": azs.mcse(ds, method="mean"),
    }
    return _stack(parts)


def sampler_diagnostics(tree: xr.DataTree) -> xr.Dataset:
    """Divergences, tree-depth saturation and E-BFMI per chain from sample_stats."""
    nan_chain = xr.DataArray(np.full(tree["posterior"].sizes["chain"], np.nan), dims="chain")
    if "sample_stats" not in tree.children or "diverging" not in tree["sample_stats"]:
        return xr.Dataset({"n_divergent": 0, "treedepth_saturation": np.nan, "bfmi": nan_chain})
    stats = tree["sample_stats"].to_dataset()
    max_depth = int(tree.attrs.get("max_tree_depth", DEFAULT_MAX_TREE_DEPTH))
    # NUTS reports tree depth and energy; ChEES-HMC divergences only (fixed-length trajectories)
    bfmi = azs.bfmi(stats[["energy"]])["energy"] if "energy" in stats else nan_chain
    saturation = (stats["tree_depth"] >= max_depth).mean() if "tree_depth" in stats else np.nan
    return xr.Dataset(
        {
            "n_divergent": stats["diverging"].astype(int).sum(),
            "treedepth_saturation": saturation,
            "bfmi": bfmi,
        }
    ).drop_vars("chain", errors="ignore")


def verdict_reasons(diag: xr.Dataset) -> list[str]:
    """Why a run is not trusted: R-hat > 1.01, bulk ESS < 400, divergences, E-BFMI < 0.2."""
    obs = [v for v in diag.data_vars if "diagnostic" in diag[v].dims]
    rhat = max(float(np.nanmax(diag[v].sel(diagnostic="rhat"))) for v in obs)
    ess = min(float(np.nanmin(diag[v].sel(diagnostic="ess_bulk"))) for v in obs)
    reasons = []
    if rhat > RHAT_MAX:
        reasons.append(f"R-hat {rhat:.3f} > {RHAT_MAX}")
    if ess < ESS_BULK_MIN:
        reasons.append(f"bulk ESS {ess:.0f} < {ESS_BULK_MIN:.0f}")
    n_div = int(diag["n_divergent"])
    if n_div > 0:
        reasons.append(f"{n_div} divergences")
    bfmi = diag["bfmi"].values
    if np.any(np.isfinite(bfmi)) and float(np.nanmin(bfmi)) < BFMI_MIN:
        reasons.append(f"E-BFMI {float(np.nanmin(bfmi)):.2f} < {BFMI_MIN}")
    return reasons


def _finite(ds: xr.Dataset) -> xr.Dataset:
    """Drop observables without spread (e.g. a constant): their R-hat and ESS are undefined."""
    keep = [v for v in ds.data_vars if float(ds[v].std()) > 0 and np.all(np.isfinite(ds[v]))]
    return ds[keep]


def diagnose(tree: xr.DataTree) -> xr.Dataset:
    """All diagnostics of one run with a verdict (`ok`/`warn`) and its reasons as variables."""
    obs = observable_diagnostics(_finite(draws(tree)))
    diag = xr.merge([obs, sampler_diagnostics(tree)], compat="override", join="outer")
    reasons = verdict_reasons(diag)
    diag["max_rhat"] = max(float(np.nanmax(obs[v].sel(diagnostic="rhat"))) for v in obs.data_vars)
    diag["min_ess_bulk"] = min(
        float(np.nanmin(obs[v].sel(diagnostic="ess_bulk"))) for v in obs.data_vars
    )
    diag["min_ess_tail"] = min(
        float(np.nanmin(obs[v].sel(diagnostic="ess_tail"))) for v in obs.data_vars
    )
    diag["verdict"] = "warn" if reasons else "ok"
    diag["reasons"] = "; ".join(reasons)
    diag.attrs = {k: _plain(tree.attrs[k]) for k in ("spec", "method", "seed") if k in tree.attrs}
    return redescribe(diag)


def _plain(value):
    """numpy scalars (what a reloaded netCDF attribute is) as Python numbers."""
    return value.item() if isinstance(value, np.generic) else value


def worst_observable(diag: xr.Dataset) -> tuple[str, dict, float]:
    """The observable (name, point index) with the largest R-hat of a run."""
    best = ("", {}, -np.inf)
    for v in diag.data_vars:
        if "diagnostic" not in diag[v].dims:
            continue
        r = diag[v].sel(diagnostic="rhat")
        if not np.any(np.isfinite(r.values)):
            continue
        flat = int(np.nanargmax(r.values))
        idx = dict(zip(r.dims, np.unravel_index(flat, r.shape)))
        val = float(r.values.flat[flat])
        if val > best[2]:
            best = (v, {k: int(i) for k, i in idx.items()}, val)
    return best


def summary_line(diag: xr.Dataset) -> str:
    """One line: verdict, worst R-hat, smallest ESS, divergences, E-BFMI."""
    bfmi = diag["bfmi"].values
    bfmi_s = f"{np.nanmin(bfmi):.2f}" if np.any(np.isfinite(bfmi)) else "n/a"
    text = (
        f"{diag['verdict'].item()}: R-hat {float(diag['max_rhat']):.3f}, "
        f"ESS bulk {float(diag['min_ess_bulk']):.0f} tail {float(diag['min_ess_tail']):.0f}, "
        f"{int(diag['n_divergent'])} divergences, E-BFMI {bfmi_s}"
    )
    reasons = diag["reasons"].item()
    return f"{text} ({reasons})" if reasons else text
