"""Collect the finished points of a sweep into one dataset and the results tree of the report.

DIR/sweep.nc    one xarray Dataset over (network, <grid axes that vary>, chi, theory, train,
                test): every point's sample estimates, MCSE, theory values, z-scores and relative
                errors.  netCDF (h5netcdf, already a dependency): one file that xarray opens
                lazily; Zarr would only pay off for writes from many processes at once, and here
                only the driver writes, once.  Combinations that were not run are NaN.
DIR/results.nc  the DataTree that `report` and the figures read: root attributes, `data`, and per
                series over chi (`<name>/samples`, `diagnostics`, `theory`, `comparison`, `prior`,
                `worst`, optional `reference`, and `theory_dense` on a dense chi grid); with
                several widths also `finite_width` (relative error of each theory against N).
chi comes from the grid (the point's coordinate), never from attributes.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import xarray as xr

from bayesnet.observables import kernel_scalars

from . import grid as gridlib
from .point import netcdf_safe, theories
from .store import FolderError, PointFileError, Store, entry, write_atomic
from .verdicts import describe

STRING_VARS = ("verdict", "reasons", "best_method")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_points(grid, store: Store, log=_log) -> dict:
    """{key: small groups of each finished point}; unreadable files are marked failed."""
    manifest = store.read_manifest()
    out, bad = {}, 0
    for p in grid.points:
        if not store.point_path(p.key).exists():
            continue
        try:
            problem = store.verify_point(p.key)
            if problem:
                raise PointFileError(problem)
            out[p.key] = store.open_point(
                p.key, groups=("estimates", "diagnostics", "theory", "comparison")
            )
        except PointFileError as err:
            bad += 1
            log(f"{err}: marked failed, the next run recomputes it")
            manifest[p.key] = {**entry(p, "failed", str(err)), "file_error": True}
    if bad:
        store.write_manifest(manifest)
    return out


def missing_points(grid, loaded: dict, store: Store) -> list[str]:
    """One line per point of the grid that is not collected: where it is and why."""
    manifest = store.read_manifest()
    out = []
    for p in grid.points:
        if p.key in loaded:
            continue
        e = manifest.get(p.key, {})
        state = e.get("state") or "never run"
        why = e.get("error") or (
            "no point file" if not store.point_path(p.key).exists() else "unreadable point file"
        )
        out.append(f"{p.network} N={p.spec.width} chi={p.chi:.4g} ({p.chi_rule}): {state}, {why}")
    return out


def missing_section(results: xr.DataTree) -> list[str]:
    """The report's list of grid points missing from the results (empty when none)."""
    missing = json.loads(results.attrs.get("points_missing", "[]"))
    if not missing:
        return []
    total = results.attrs.get("points_total", "?")
    lines = [
        f"**Incomplete: {len(missing)} of {total} points are missing from this report** "
        "(`bayesnet run` with the same config computes them; `--retry-failed` reruns the "
        "failed ones):",
        "",
    ]
    return lines + [f"- {m}" for m in missing] + [""]


def prior_kernel(spec, data) -> xr.Dataset:
    """The prior (NNGP) hidden kernel and its target projection and trace (figure 2's origin)."""
    import theory

    K = np.asarray(theory.kernel(spec.activation, data.X, data.X, spec.g_v))  # (P, P)
    scalars = kernel_scalars(K, data.y)
    return xr.Dataset(
        {
            "K_train": (
                ("train", "train_"),
                K,
                {"long_name": "prior (NNGP) feature kernel K^phi, train block"},
            ),
            "kernel_target": (
                (),
                scalars["kernel_target"],
                {"long_name": "prior kernel target projection yhat^T K^phi yhat"},
            ),
            "kernel_trace": (
                (),
                scalars["kernel_trace"],
                {"long_name": "prior kernel trace tr K^phi / P"},
            ),
        },
        coords={"train": np.arange(K.shape[0]), "train_": np.arange(K.shape[0])},
    )


def data_group(data) -> xr.Dataset:
    """The data set as a Dataset (train, test, feature)."""
    ds = xr.Dataset(
        {
            "X": (("train", "feature"), data.X),
            "y": (("train",), data.y),
            "X_test": (("test", "feature"), data.X_test),
            "y_test": (("test",), data.y_test),
        }
    )
    ds.attrs = data.to_attrs()
    return ds


def worst_trace(store: Store, pts, diag: xr.Dataset) -> xr.Dataset:
    """Draws of the observable with the worst R-hat in a series, for rank and trace plots."""
    from . import diagnostics

    name, idx, rhat = diagnostics.worst_observable(diag)
    k = idx.pop("chi")
    tree = store.open_point(pts[k].key, groups=("posterior", "observed_data"))
    da = diagnostics.draws(tree)[name].isel(idx)
    ds = xr.Dataset({"draws": da.drop_vars([c for c in da.coords if c not in da.dims])})
    ds.attrs = {
        "observable": name,
        "index": json.dumps(idx),
        "rhat": rhat,
        "chi": float(pts[k].chi),
    }
    return ds


def _concat(parts, join="outer") -> xr.Dataset:
    return xr.concat(
        parts, dim="chi", coords="minimal", compat="override", join=join, combine_attrs="override"
    )


def series_groups(name: str, pts, loaded: dict, store: Store, dense: int) -> dict:
    """The result groups of one series over chi (see the module docstring)."""
    from . import comparison as cmp

    est = _concat([loaded[p.key]["estimates"].to_dataset() for p in pts])
    diag = _concat([loaded[p.key]["diagnostics"].to_dataset() for p in pts])
    th = _concat([loaded[p.key]["theory"].to_dataset() for p in pts])
    chis = np.array([p.chi for p in pts])
    est, diag, th = (d.assign_coords(chi=chis) for d in (est, diag, th))
    failed = sorted(
        {
            f
            for p in pts
            for f in json.loads(loaded[p.key]["theory"].attrs.get("theory_failed", "[]"))
        }
    )
    th.attrs = {**pts[0].spec.to_attrs(chi=False), "theory_failed": json.dumps(failed)}
    data = gridlib.make_data(dict(pts[0].data))
    groups = {
        "samples": est,
        "diagnostics": diag,
        "theory": th,
        "comparison": cmp.compare(est, th, diagnosis=diag),
        "prior": prior_kernel(pts[0].spec, data),
        "worst": worst_trace(store, pts, diag),
    }
    if "exact" in th["theory"].values:
        groups["reference"] = cmp.against_reference(th)
    if dense >= 2 and chis.max() > chis.min():
        grid_chis = np.geomspace(chis.min(), chis.max(), dense)
        dense_th, _ = theories(pts[0], data, grid_chis)
        if dense_th is not None:
            dense_th.attrs.update(pts[0].spec.to_attrs(chi=False))
            groups["theory_dense"] = dense_th
    return {f"{name}/{g}": netcdf_safe(ds) for g, ds in groups.items()}


def finite_width(series: dict, groups: dict) -> dict:
    """Per network with several widths: relative error of the mean train output of each theory
    against the samples over (width, theory, chi_rule), and its Monte-Carlo noise level."""
    by_net: dict = {}
    for name, pts in series.items():
        by_net.setdefault(pts[0].network, []).append((name, pts))
    out = {}
    for net, members in by_net.items():
        widths = sorted({pts[0].spec.width for _, pts in members})
        if len(widths) < 2 or not all(f"{n}/comparison" in groups for n, _ in members):
            continue
        rules: list = []
        for _, pts in sorted(members, key=lambda m: m[1][0].spec.width):
            rules += [p.chi_rule for p in pts if p.chi_rule not in rules]
        methods = sorted(
            {str(m) for n, _ in members for m in groups[f"{n}/comparison"]["theory"].values}
        )
        shape = (len(widths), len(methods), len(rules))
        sums, noise, count = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        chi = np.full((len(widths), len(rules)), np.nan)
        for name, pts in members:
            comp = groups[f"{name}/comparison"]
            i = widths.index(pts[0].spec.width)
            f, f_mc = comp["f_train"], comp["f_train_mcse"]
            level = np.sqrt((f_mc**2).sum("train")) / np.sqrt((f**2).sum("train"))  # (chi,)
            for j, p in enumerate(pts):
                k = rules.index(p.chi_rule)
                chi[i, k] = p.chi
                for m_i, m in enumerate(methods):
                    if m in comp["theory"].values:
                        sums[i, m_i, k] += float(comp["relerr"].sel(theory=m).isel(chi=j))
                        noise[i, m_i, k] += float(level.isel(chi=j))
                        count[i, m_i, k] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            relerr, mcse = sums / count, noise / count / np.sqrt(np.maximum(count, 1))
        ds = xr.Dataset(
            {
                "relerr": (
                    ("width", "theory", "chi_rule"),
                    relerr,
                    {
                        "long_name": "relative error of the mean train output against samples",
                        "definition": "||f_theory - f_samples|| / ||f_samples|| over train "
                        "points, averaged over the other grid axes",
                    },
                ),
                "relerr_mcse": (
                    ("width", "theory", "chi_rule"),
                    mcse,
                    {
                        "long_name": "Monte-Carlo noise level of relerr",
                        "definition": "||MCSE of f_samples|| / ||f_samples||",
                    },
                ),
            },
            coords={
                "width": widths,
                "theory": methods,
                "chi_rule": rules,
                "chi": (("width", "chi_rule"), chi),
            },
        )
        ds.attrs = {"network": net}
        out["finite_width" if not out else f"finite_width_{net}"] = ds
    return out


def sweep_dataset(points, loaded: dict) -> xr.Dataset:
    """Every finished point's comparison in one Dataset over the grid axes that vary."""
    pts = [p for p in points if p.key in loaded]
    coords = [p.coords() for p in pts]
    keys = [k for k in coords[0] if k not in ("network", "chi")]
    nets = list(dict.fromkeys(c["network"] for c in coords))

    def varies(k, within_net: bool) -> bool:
        groups = (
            [[c for c in coords if c["network"] == n] for n in nets] if within_net else [coords]
        )
        return any(len({json.dumps(c[k]) for c in g}) > 1 for g in groups)

    dims = [k for k in keys if varies(k, True)]
    per_net = [k for k in keys if k not in dims and varies(k, False)]
    scalar = [k for k in keys if k not in dims and k not in per_net]
    parts = []
    for p, c in zip(pts, coords):
        comp = loaded[p.key]["comparison"].to_dataset().assign_coords(chi=[p.chi])
        comp = comp.expand_dims({k: [c[k]] for k in ["network", *dims]})
        parts.append(comp.drop_attrs() if hasattr(comp, "drop_attrs") else comp)
    ds = xr.merge(parts, join="outer", compat="no_conflicts", combine_attrs="drop")
    first = {c["network"]: c for c in reversed(coords)}
    ds = ds.assign_coords(
        {k: ("network", [first[n][k] for n in ds["network"].values]) for k in per_net}
    )
    ds = ds.assign_coords({k: coords[0][k] for k in scalar})
    for v in STRING_VARS:
        if v in ds:
            ds[v] = ds[v].fillna("").astype(str)  # "" where a combination was not run
    ds.attrs = {
        "description": "bayesnet sweep: sample estimates with MCSE, theory, z-scores and "
        "relative errors of every finished point; NaN where a combination was not run",
        "z_definition": "(theory - sample) / MCSE",
        "relerr_definition": "||theory - sample|| / ||sample|| over points",
    }
    return netcdf_safe(describe(ds))  # long_name/units (analysis/verdicts.py)


def versions() -> dict:
    """Package versions (bayesnet.results.versions where it exists, else bayesnet.sampling's)."""
    import importlib

    for name in ("bayesnet.results", "bayesnet.sampling"):
        try:
            return importlib.import_module(name).versions()
        except (ImportError, AttributeError):
            continue
    return {}


def collect(grid, store: Store, timing: dict | None = None, log=_log) -> tuple:
    """Write DIR/sweep.nc and DIR/results.nc from the finished points; returns both trees."""
    loaded = load_points(grid, store, log)
    if not loaded:
        raise FolderError(f"no finished points in {store.points}: run `bayesnet run` first")
    sweep = sweep_dataset(grid.points, loaded)
    write_atomic(store.root / "sweep.nc", lambda tmp: sweep.to_netcdf(tmp, engine="h5netcdf"))
    series = {
        name: [p for p in pts if p.key in loaded]
        for name, pts in gridlib.series_of(grid.points).items()
    }
    series = {name: pts for name, pts in series.items() if pts}
    first = next(iter(series.values()))[0]
    groups = {"data": data_group(gridlib.make_data(dict(first.data)))}
    for name, pts in series.items():
        groups.update(series_groups(name, pts, loaded, store, grid.dense))
    groups.update(finite_width(series, groups))
    tree = xr.DataTree.from_dict(groups)
    for name, pts in series.items():
        coords = {k: v for k, v in pts[0].series_coords().items() if k not in gridlib.SPEC_KEYS}
        tree[name].attrs = {
            **pts[0].spec.to_attrs(chi=False),
            **netcdf_safe(xr.Dataset(attrs=coords)).attrs,
        }
    tree.attrs = {
        "config": json.dumps(grid.config),
        "networks": json.dumps(list(series)),
        "versions": json.dumps(versions()),
        "points_total": len(grid.points),
        "points_collected": len(loaded),
        "points_missing": json.dumps(missing_points(grid, loaded, store)),
        **{f"timing_{k}": float(v) for k, v in (timing or {}).items()},
    }
    tree = describe(tree)  # every variable gets long_name/units (analysis/verdicts.py)
    write_atomic(store.root / "results.nc", lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))
    return sweep, tree
