"""Sample estimates with MCSE against theory predictions: z-scores and relative errors over chi.

Observables: mean outputs and discrepancies on train and test points, posterior output
variances, the sign-corrected scalar discrepancies Delta = (1/P) sum y (y - f), and the kernel
projections y_hat^T K_post y_hat and tr K_post / P.  Their names, units and the definitions of
z, relative error, `flagged` and `best_method` live in analysis/verdicts.py and are written into
every result's attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import arviz_stats as azs
import numpy as np
import xarray as xr

from . import diagnostics
from .verdicts import DEFINITIONS, Z_FLAG, lookup, redescribe

POINT_OBSERVABLES = (
    "f_train",
    "f_test",
    "discrepancy_train",
    "discrepancy_test",
    "var_train",
    "var_test",
)
SCALAR_OBSERVABLES = (
    "signed_discrepancy_train",
    "signed_discrepancy_test",
    "kernel_target",
    "kernel_trace",
)
OBSERVABLES = POINT_OBSERVABLES + SCALAR_OBSERVABLES
REFERENCE = "exact"  # ground truth for linear networks: never the "best" approximation
NONE_WITHIN = "none within MC error"
CHI_RTOL = 1e-6
# samplers whose per-draw outputs are E[f | V] with Var[f | V] alongside (readout integrated out)
RAO_BLACKWELLISED = ("collapsed", "exact")


def _posterior_variance(ds: xr.Dataset, side: str, method: str):
    """Posterior output variance and its MCSE (law of total variance for collapsed/exact draws)."""
    f = ds[f"f_{side}"]
    sd = f.std(("chain", "draw"))
    mc_sd = azs.mcse(f.to_dataset(name="f"), method="sd")["f"]
    value, err = sd**2, 2 * sd * mc_sd
    if method in RAO_BLACKWELLISED and f"var_{side}" in ds:
        cond = ds[f"var_{side}"]
        mc_cond = azs.mcse(cond.to_dataset(name="v"), method="mean")["v"]
        value = value + cond.mean(("chain", "draw"))
        err = np.sqrt(err**2 + mc_cond**2)
    return value, err


def sample_estimates(tree: xr.DataTree) -> xr.Dataset:
    """Posterior estimate and MCSE of every observable of one run (variables `o`, `o_mcse`)."""
    ds = diagnostics.draws(tree)
    obs = tree["observed_data"].to_dataset()
    method = tree.attrs.get("method", "collapsed")
    mean = ds.mean(("chain", "draw"))
    mc = azs.mcse(ds, method="mean")
    out = {}
    for side, y in (("train", obs["y"]), ("test", obs["y_test"])):
        out[f"f_{side}"] = (mean[f"f_{side}"], mc[f"f_{side}"])
        out[f"discrepancy_{side}"] = (y - mean[f"f_{side}"], mc[f"f_{side}"])
        out[f"var_{side}"] = _posterior_variance(ds, side, method)
        key = f"signed_discrepancy_{side}"
        out[key] = (mean[key], mc[key])
    for key in ("kernel_target", "kernel_trace"):
        out[key] = (mean[key], mc[key])
    res = xr.Dataset()
    for key, (value, err) in out.items():
        res[key] = value.drop_vars([c for c in value.coords if c not in value.dims])
        res[f"{key}_mcse"] = err.drop_vars([c for c in err.coords if c not in err.dims])
    kern = tree["kernel"].to_dataset()
    res["K_train"], res["K_test_train"] = kern["K_train"], kern["K_test_train"]
    return redescribe(res.assign_coords(chi=float(json.loads(tree.attrs["spec"])["chi"])))


def sweep_estimates(trees: Sequence[xr.DataTree]) -> xr.Dataset:
    """Sample estimates of several runs stacked along `chi` (ascending)."""
    parts = sorted((sample_estimates(t) for t in trees), key=lambda d: float(d["chi"]))
    return redescribe(xr.concat(parts, dim="chi", coords="minimal", compat="override"))


def sweep_diagnostics(trees: Sequence[xr.DataTree]) -> xr.Dataset:
    """Diagnostics of several runs stacked along `chi` (ascending)."""
    parts = []
    for t in trees:
        d = diagnostics.diagnose(t)
        parts.append(d.assign_coords(chi=float(json.loads(t.attrs["spec"])["chi"])))
    parts.sort(key=lambda d: float(d["chi"]))
    return redescribe(
        xr.concat(parts, dim="chi", coords="minimal", compat="override", join="outer")
    )


def theory_table(prediction) -> xr.Dataset:
    """Theory predictions as one Dataset over (theory, chi, ...), observables named as samples."""
    if not isinstance(prediction, xr.Dataset):
        parts = [
            p.expand_dims(theory=[m]) if "theory" not in p.dims else p
            for m, p in prediction.items()
        ]
        prediction = xr.concat(
            parts,
            dim="theory",
            coords="minimal",
            compat="override",
            join="outer",
            combine_attrs="drop_conflicts",
        )
    elif "theory" not in prediction.dims:
        prediction = prediction.expand_dims(theory=[prediction.attrs.get("method", "theory")])
    th = prediction.copy()
    y = th["f_train"] + th["discrepancy_train"]
    yt = th["f_test"] + th["discrepancy_test"]
    th["signed_discrepancy_train"] = (y * th["discrepancy_train"]).mean("train")
    th["signed_discrepancy_test"] = (yt * th["discrepancy_test"]).mean("test")
    return th


def _align_chi(th: xr.Dataset, chis: np.ndarray) -> xr.Dataset:
    """Theory values at the sampled chi values (ValueError when one is missing)."""
    picked = th.sel(chi=chis, method="nearest")
    bad = ~np.isclose(picked["chi"].values, chis, rtol=CHI_RTOL, atol=0)
    if np.any(bad):
        raise ValueError(f"theory has no prediction at chi={chis[bad].tolist()}")
    return picked.assign_coords(chi=chis)


def _point_norm(a: xr.DataArray) -> xr.DataArray:
    """Euclidean norm over the point dimension (absolute value for scalars)."""
    dims = [d for d in a.dims if d in ("train", "test")]
    return np.sqrt((a**2).sum(dims)) if dims else abs(a)


def compare(posterior, prediction, diagnosis: xr.Dataset | None = None) -> xr.Dataset:
    """Per observable: sample estimate, MCSE, each theory, z = (theory - sample)/MCSE, rel. error.

    posterior: one result tree, a sequence of trees (one per chi), or sample estimates already
    stacked over chi (`sweep_estimates`).  prediction: a theory Dataset (over chi, optionally
    theory) or a mapping theory name -> Dataset.  Runs whose diagnostics verdict is `warn` are kept
    and marked in `verdict`/`reasons`, never dropped.
    """
    if isinstance(posterior, xr.DataTree):
        posterior = [posterior]
    trees = None if isinstance(posterior, xr.Dataset) else list(posterior)
    est = sweep_estimates(trees) if trees is not None else posterior
    if diagnosis is None and trees is not None:
        diagnosis = sweep_diagnostics(trees)
    chis = np.atleast_1d(est["chi"].values)
    th = _align_chi(theory_table(prediction), chis)
    out = xr.Dataset(coords={"chi": chis, "theory": th["theory"].values})
    for key in OBSERVABLES:
        sample, err = est[key], est[f"{key}_mcse"]
        theo = th[key]
        out[key] = sample
        out[f"{key}_mcse"] = err
        out[f"{key}_theory"] = theo
        z = (theo - sample) / err
        out[f"{key}_z"] = z
        out[f"{key}_maxabsz"] = abs(z).max([d for d in z.dims if d in ("train", "test")])
        out[f"{key}_relerr"] = _point_norm(theo - sample) / _point_norm(sample)
    zs = xr.concat([out[f"{k}_maxabsz"] for k in OBSERVABLES], dim="observable")
    out["max_abs_z"] = zs.max("observable", skipna=True)
    out["flagged"] = (out["max_abs_z"] > Z_FLAG).astype(np.int8)
    out["relerr"] = out["f_train_relerr"]
    out = _mark_verdicts(out, diagnosis)
    out["best_method"] = best_method(out)
    out = redescribe(out)
    out.attrs = _attrs(est, th)
    return out


def _mark_verdicts(out: xr.Dataset, diagnosis: xr.Dataset | None) -> xr.Dataset:
    """Attach each run's verdict and reasons (`unknown` without diagnostics)."""
    n = out.sizes["chi"]
    if diagnosis is None:
        out["verdict"] = ("chi", np.array(["unknown"] * n))
        out["reasons"] = ("chi", np.array(["no diagnostics"] * n))
        return out
    d = diagnosis.sel(chi=out["chi"].values, method="nearest")
    out["verdict"] = ("chi", d["verdict"].values.astype(str))
    out["reasons"] = ("chi", d["reasons"].values.astype(str))
    return out


def best_method(out: xr.Dataset) -> xr.DataArray:
    """Per chi, the theory with the smallest max |z|, `exact` excluded (it is the reference);
    NONE_WITHIN where even that one is flagged (max |z| > Z_FLAG)."""
    cands = [str(m) for m in out["theory"].values if m != REFERENCE] or [REFERENCE]
    z = out["max_abs_z"].sel({"theory": cands}).fillna(np.inf).transpose("chi", "theory")
    best = np.asarray(cands, dtype=object)[z.argmin("theory").values]
    best[z.min("theory").values > Z_FLAG] = NONE_WITHIN
    return xr.DataArray(best.astype(str), dims="chi")


def _attrs(est: xr.Dataset, th: xr.Dataset) -> dict:
    """Spec (without chi) and theory attributes, netCDF-safe."""
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in th.attrs.items()}
    keep = {k: v for k, v in plain.items() if isinstance(v, (str, int, float))}
    keep.pop("method", None)
    keep["methods"] = json.dumps([str(m) for m in th["theory"].values])
    keep.update({f"{k}_definition": v for k, v in DEFINITIONS.items()})
    keep["z_flag"] = Z_FLAG
    return keep


def against_reference(prediction, reference: str = "exact") -> xr.Dataset:
    """Relative error of each theory's mean train/test outputs measured against `reference`."""
    th = theory_table(prediction)
    ref = th.sel({"theory": reference})
    out = xr.Dataset()
    for key in ("f_train", "f_test", "var_train", "kernel_target"):
        out[f"{key}_relerr"] = _point_norm(th[key] - ref[key]) / _point_norm(ref[key])
    out = redescribe(out.drop_sel({"theory": reference}))
    for key in ("f_train", "f_test", "var_train", "kernel_target"):
        out[f"{key}_relerr"].attrs.update(
            long_name=f"relative error against {reference} of the {_long_name(key)}", units="1"
        )
    out.attrs["reference"] = reference
    return out


def _long_name(key: str) -> str:
    """The long name of an observable (its variable name when the vocabulary lacks it)."""
    known = lookup(key)
    return known[0] if known else key
