"""Sample estimates with MCSE against theory predictions: z-scores and relative errors over chi.

Observables: mean outputs and discrepancies on train and test points, posterior output
variances, the sign-corrected scalar discrepancies Delta = (1/P) sum y (y - f), and the kernel
projections y_hat^T K_post y_hat and tr K_post / P.  z includes the theory's own Monte-Carlo
error (<v>_mcse of theory.predict) in quadrature with the sample MCSE; a theory is flagged when
its max |z| over the n_z values of one chi exceeds the Sidak threshold z_crit(n_z) of
analysis/tolerance.py (family-wise level ALPHA): that is how taking the largest of ~60-200 z
values is accounted for.  A theory that did not converge (NaN outputs) has NaN z, is flagged
and is never best.  The definitions (DEFINITIONS: analysis/verdicts.py's, with the
tolerance rule's z, flagged and best) are written into every result's attributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import arviz_stats as azs
import numpy as np
import xarray as xr

from . import diagnostics, tolerance
from .verdicts import DEFINITIONS, lookup, redescribe

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
NOT_CONVERGED = "not converged"  # a theory whose solve did not converge (NaN outputs)
CHI_RTOL = 1e-6
ALPHA = tolerance.ALPHA  # family-wise false-alarm probability of each theory's verdict per chi
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
    for key in ("f_train", "f_test", "var_train", "var_test", "kernel_target", "kernel_trace"):
        if f"{key}_mcse" not in th:  # a theory file without its error bar: closed form
            th[f"{key}_mcse"] = xr.zeros_like(th[key])
        th[f"{key}_mcse"] = th[f"{key}_mcse"].where(np.isfinite(th[key]))
    for side, lab in (("train", y), ("test", yt)):
        th[f"discrepancy_{side}_mcse"] = th[f"f_{side}_mcse"]
        # bound: perfectly correlated point errors (1/P) sum |y| se
        th[f"signed_discrepancy_{side}_mcse"] = (abs(lab) * th[f"f_{side}_mcse"]).mean(side)
    if "status" in th:
        th["status"] = th["status"].fillna("").astype(str)
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
    n_z = 0
    for key in OBSERVABLES:
        sample, err = est[key], est[f"{key}_mcse"]
        theo, theo_err = th[key], th[f"{key}_mcse"]
        out[key] = sample
        out[f"{key}_mcse"] = err
        out[f"{key}_theory"] = theo
        out[f"{key}_theory_mcse"] = theo_err
        z = tolerance.z_score(theo, sample, theo_err, err)
        out[f"{key}_z"] = z
        point_dims = [d for d in z.dims if d in ("train", "test")]
        out[f"{key}_maxabsz"] = abs(z).max(point_dims)  # NaN for a theory that did not converge
        n_z = n_z + np.isfinite(z).sum(point_dims)
        out[f"{key}_relerr"] = _point_norm(theo - sample) / _point_norm(sample)
    zs = xr.concat([out[f"{k}_maxabsz"] for k in OBSERVABLES], dim="observable")
    out["theory_converged"] = _theory_converged(th)
    out["max_abs_z"] = zs.max("observable", skipna=True).where(out["theory_converged"])
    out["n_z"] = n_z.astype(np.int64)
    out["z_crit"] = xr.apply_ufunc(
        np.vectorize(lambda n: tolerance.z_threshold(max(int(n), 1), ALPHA)), out["n_z"]
    )
    # a theory that did not converge is never within error
    out["flagged"] = (~(out["max_abs_z"] <= out["z_crit"])).astype(np.int8)
    out["relerr"] = out["f_train_relerr"]
    out = _mark_verdicts(out, diagnosis)
    out["best_method"] = best_method(out)
    out = redescribe(out)
    for k, long in _LONG.items():
        out[k].attrs.update(long_name=long, units="1")
    for key in OBSERVABLES:
        long, units = lookup(key) or (key, "")
        out[f"{key}_theory_mcse"].attrs.update(
            long_name=f"the theory's own Monte-Carlo standard error of the {long}", units=units
        )
    out.attrs = _attrs(est, th)
    return out


_LONG = {
    "flagged": "theory off by more than Monte-Carlo error somewhere: max |z| > z_crit (1 = yes)",
    "z_crit": "Sidak threshold on max |z| for the n_z z values (analysis/tolerance.py)",
    "n_z": "number of finite z values of the theory at this chi",
    "theory_converged": "the theory's solve converged (1 = yes; otherwise its outputs are NaN)",
}


def _theory_converged(th: xr.Dataset) -> xr.DataArray:
    """(theory, chi) True where the theory converged and its mean outputs are finite."""
    ok = np.isfinite(th["f_train"]).all("train") & np.isfinite(th["f_test"]).all("test")
    if "converged" in th:
        ok = ok & (th["converged"].fillna(0) != 0)
    return ok


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
    """Per chi, among the theories within MC error (converged, max |z| <= z_crit; `exact`
    excluded, it is the reference), the one with the smallest max |z|; NONE_WITHIN where no
    theory is.  Older files without z_crit use the threshold for their number of z values."""
    cands = [str(m) for m in out["theory"].values if m != REFERENCE] or [REFERENCE]
    sel = out.sel({"theory": cands})
    z = sel["max_abs_z"].transpose("chi", "theory")
    crit = sel["z_crit"] if "z_crit" in sel else xr.full_like(z, tolerance.z_threshold(60, ALPHA))
    ok = (z <= crit.transpose("chi", "theory")).values  # NaN (not converged) is never ok
    zz = np.where(ok, z.values, np.inf)
    best = np.asarray(cands, dtype=object)[np.argmin(zz, axis=1)]
    best[~ok.any(axis=1)] = NONE_WITHIN
    return xr.DataArray(best.astype(str), dims="chi")


def _attrs(est: xr.Dataset, th: xr.Dataset) -> dict:
    """Spec (without chi) and theory attributes, netCDF-safe."""
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in th.attrs.items()}
    keep = {k: v for k, v in plain.items() if isinstance(v, (str, int, float))}
    keep.pop("method", None)
    keep["methods"] = json.dumps([str(m) for m in th["theory"].values])
    keep.update({f"{k}_definition": v for k, v in DEFINITIONS.items()})
    keep["alpha"] = ALPHA
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
