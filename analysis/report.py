"""`report.md`: summary table per chi and network, the theory hierarchy against exact, figures.

Every definition the report quotes (z, max |z|, relative error, flagged, best) is the one stored
in the comparison's attributes (analysis/comparison.py DEFINITIONS, thresholds from
analysis/tolerance.py), so the file and the report agree.  A theory that did not converge at a
chi shows "not converged" there, never numbers.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import xarray as xr

from . import collect, figures, tolerance
from . import comparison as cmp
from .comparison import DEFINITIONS
from .verdicts import verdict_rule

THEORY_ORDER = tuple(figures.THEORY_STYLE)
SMOKE_DRAWS = 2000  # chains x draws below this: a smoke test, not expected to pass diagnostics


def networks(results: xr.DataTree) -> list[str]:
    """Network names of a results tree, in config order."""
    return json.loads(results.attrs["networks"])


def _methods(comp: xr.Dataset) -> list[str]:
    have = [str(m) for m in comp["theory"].values]
    return [m for m in THEORY_ORDER if m in have] + [m for m in have if m not in THEORY_ORDER]


def _fmt(x: float, spec: str = ".2e") -> str:
    return "n/a" if not np.isfinite(x) else format(x, spec)


def summary_rows(results: xr.DataTree) -> list[dict]:
    """One row per (network, chi): verdict, per theory relative error and max |z|, best."""
    rows = []
    for name in networks(results):
        comp = results[name]["comparison"].to_dataset()
        best = cmp.best_method(comp)  # recomputed: one definition, also for older files
        for j, chi in enumerate(comp["chi"].values):
            c = comp.isel(chi=j)
            row = {
                "network": name,
                "chi": float(chi),
                "verdict": str(c["verdict"].item()),
                "reasons": str(c["reasons"].item()),
                "best": str(best.isel(chi=j).item()),
                "flagged": [m for m in _methods(comp) if int(c["flagged"].sel({"theory": m})) == 1],
            }
            row["worst"] = {m: _worst_observable(c, m) for m in row["flagged"]}
            for m in _methods(comp):
                row[m] = (
                    float(c["relerr"].sel({"theory": m})),
                    float(c["max_abs_z"].sel({"theory": m})),
                    _converged(c, m),
                )
            row["flagged"] = [m for m in row["flagged"] if row[m][2]]
            row["worst"] = {m: row["worst"][m] for m in row["flagged"]}
            row["not_converged"] = [m for m in _methods(comp) if not row[m][2]]
            rows.append(row)
    return rows


def _converged(c: xr.Dataset, method: str) -> bool:
    """Whether a theory converged at this chi (finite outputs; older files: finite max |z|)."""
    if "theory_converged" in c:
        return bool(c["theory_converged"].sel({"theory": method}))
    return bool(np.isfinite(float(c["max_abs_z"].sel({"theory": method}))))


def _cell(value: tuple) -> str:
    """`relerr / max|z|`, or NOT_CONVERGED."""
    if not value[2]:
        return cmp.NOT_CONVERGED
    return f"{_fmt(value[0])} / {_fmt(value[1], '.1f')}"


def _worst_observable(c: xr.Dataset, method: str) -> str:
    """The observable with the largest max |z| of one theory at one chi."""
    z = {
        k: float(c[f"{k}_maxabsz"].sel({"theory": method}))
        for k in cmp.OBSERVABLES
        if f"{k}_maxabsz" in c
    }
    z = {k: v for k, v in z.items() if np.isfinite(v)}
    return max(z, key=z.get) if z else "?"


def summary_table(results: xr.DataTree) -> str:
    """Markdown table: network, chi, verdict, per theory `rel.err / max|z|`, flagged, best."""
    rows = summary_rows(results)
    methods = [m for m in THEORY_ORDER if any(m in r for r in rows)]
    methods += sorted({m for r in rows for m in r.get("flagged", [])} - set(methods))
    head = (
        ["network", "chi", "diagnostics"]
        + [f"{m} relerr / max abs z" for m in methods]
        + ["flagged (max abs z > z_crit): worst observable", "best (exact excluded)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        verdict = "ok" if r["verdict"] == "ok" else f"**WARN** ({r['reasons']})"
        cells = [r["network"], f"{r['chi']:.3g}", verdict]
        for m in methods:
            cells.append(_cell(r[m]) if m in r else "-")
        cells.append(", ".join(f"{m}: {r['worst'][m]}" for m in r["flagged"]) or "none")
        cells.append(r["best"] if r["best"] == cmp.NONE_WITHIN else f"**{r['best']}**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hierarchy_table(results: xr.DataTree, name: str) -> str:
    """Linear networks: error of each theory's mean train output measured against exact."""
    ref = results[name]["reference"].to_dataset()
    methods = [m for m in THEORY_ORDER if m in ref["theory"].values]
    head = ["chi"] + [f"{m} (train / test)" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j, chi in enumerate(ref["chi"].values):
        r = ref.isel(chi=j)
        cells = [f"{chi:.3g}"] + [_hierarchy_cell(r, m) for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _hierarchy_cell(r: xr.Dataset, method: str) -> str:
    """`train / test` relative error against exact, or NOT_CONVERGED (NaN theory)."""
    tr, te = (float(r[f"f_{s}_relerr"].sel({"theory": method})) for s in ("train", "test"))
    if not (np.isfinite(tr) and np.isfinite(te)):
        return cmp.NOT_CONVERGED
    return f"{_fmt(tr)} / {_fmt(te)}"


def observable_table(comp: xr.Dataset) -> str:
    """Scalar observables per chi: sample +- MCSE and each theory's z-score."""
    keys = ("signed_discrepancy_train", "signed_discrepancy_test", "kernel_target", "kernel_trace")
    methods = _methods(comp)
    head = ["chi", "observable", "sample +- MCSE"] + [f"z {m}" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j, chi in enumerate(comp["chi"].values):
        c = comp.isel(chi=j)
        mark = "" if str(c["verdict"].item()) == "ok" else " (WARN)"
        for k in keys:
            cells = [f"{chi:.3g}{mark}", k, f"{float(c[k]):.4g} +- {float(c[k + '_mcse']):.2g}"]
            cells += [
                _fmt(float(c[f"{k}_z"].sel({"theory": m})), ".1f")
                if _converged(c, m)
                else cmp.NOT_CONVERGED
                for m in methods
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diagnostics_table(diag: xr.Dataset) -> str:
    """Per chi: R-hat, ESS, divergences, tree-depth saturation, E-BFMI."""
    head = [
        "chi",
        "verdict",
        "max R-hat",
        "min bulk ESS",
        "min tail ESS",
        "divergences",
        "tree depth saturated",
        "min E-BFMI",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j, chi in enumerate(diag["chi"].values):
        d = diag.isel(chi=j)
        bfmi = d["bfmi"].values
        cells = [
            f"{chi:.3g}",
            str(d["verdict"].item()),
            f"{float(d['max_rhat']):.3f}",
            f"{float(d['min_ess_bulk']):.0f}",
            f"{float(d['min_ess_tail']):.0f}",
            str(int(d["n_divergent"])),
            f"{float(d['treedepth_saturation']):.1%}",
            _fmt(float(np.nanmin(bfmi)) if np.any(np.isfinite(bfmi)) else np.nan, ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _network_section(
    results: xr.DataTree, name: str, figs: list[pathlib.Path], out: pathlib.Path
) -> list[str]:
    node = results[name]
    comp = node["comparison"].to_dataset()
    a = node.attrs
    lines = [
        f"## Network `{name}`: {a.get('activation')} N={a.get('width')}, "
        f"depth={a.get('depth', 1)}, "
        f"g_v={a.get('g_v')}, g_w={a.get('g_w')}, kappa={a.get('kappa')}",
        "",
    ]
    lines += ["### Diagnostics", "", _diagnostics_table(node["diagnostics"].to_dataset()), ""]
    lines += [
        "### Scalar observables (z = (theory - sample)/MCSE)",
        "",
        "kernel_target and kernel_trace are absolute posterior values (the kernel figure "
        "shows the same values, with the prior kernel's as a dashed line).",
        "",
        observable_table(comp),
        "",
    ]
    if "reference" in node.children:
        lines += [
            "### Theory hierarchy against the exact linear-network posterior",
            "",
            "Relative error of the mean output (train / test), no sampling noise:",
            "",
            hierarchy_table(results, name),
            "",
        ]
    lines += ["### Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figs]
    failed = json.loads(node["theory"].attrs.get("theory_failed", "[]"))
    if failed:
        lines += ["", "Theories that failed: " + "; ".join(failed)]
    return lines + [""]


def _smoke_test(cfg: dict) -> bool:
    """Whether the sampler settings are too short for the diagnostics thresholds."""
    sampler = cfg.get("sampler", {})
    chains, draws = sampler.get("chains", 4), sampler.get("draws", 1000)
    if isinstance(chains, list) or isinstance(draws, list):
        chains, draws = min(np.atleast_1d(chains)), min(np.atleast_1d(draws))
    return sampler.get("method") != "exact" and chains * draws < SMOKE_DRAWS


def _warn_note(rows: list[dict], cfg: dict) -> list[str]:
    """What the WARN rows mean, and whether they are expected (short smoke-test runs)."""
    n_warn = sum(r["verdict"] != "ok" for r in rows)
    if not n_warn:
        return [
            f"All runs pass the diagnostics ({verdict_rule()}).",
            "",
        ]
    text = (
        f"{n_warn} of {len(rows)} runs are marked **WARN**: they miss a diagnostics threshold "
        f"({verdict_rule()}); their z-scores are "
        "less trustworthy, and they are drawn hollow in the figures."
    )
    if _smoke_test(cfg):
        text += (
            f"  **This is a smoke test** ({cfg['sampler'].get('chains')} chains x "
            f"{cfg['sampler'].get('draws')} draws, e.g. `bayesnet run --quick`): it checks "
            "that the pipeline works, and short chains are expected to warn.  Run without "
            "`--quick` for numbers to trust."
        )
    return [text, ""]


def _definitions() -> list[str]:
    """The definitions behind the summary table, from the vocabulary the results files carry."""
    return [
        "How to read the summary:",
        "",
        f"- z: {DEFINITIONS['z']}.",
        f"- max abs z: {DEFINITIONS['max_abs_z']}.",
        f"- relerr: {DEFINITIONS['relerr']}.",
        f"- flagged: {DEFINITIONS['flagged']}; each flagged theory is listed with the "
        "observable whose |z| is largest.  Thresholds: family-wise false-alarm probability "
        f"alpha = {cmp.ALPHA:g}, z_crit(n) = {tolerance.z_threshold(1, cmp.ALPHA):.2f} for one "
        f"value, {tolerance.z_threshold(60, cmp.ALPHA):.2f} for 60, "
        f"{tolerance.z_threshold(200, cmp.ALPHA):.2f} for 200 (Sidak).",
        f"- not converged: {cmp.NOT_CONVERGED} marks a theory whose solve did not converge at "
        "that chi (its outputs are NaN, it is never best; the theory's `status` says why).",
        f"- best: {DEFINITIONS['best']}.",
        f"- Delta (discrepancy figures): {DEFINITIONS['signed_discrepancy']}.",
        f"- kernel_target, kernel_trace: {DEFINITIONS['kernel_change']}.",
        "",
    ]


def finite_width_section(results: xr.DataTree, out: pathlib.Path) -> list[str]:
    """The finite-width figure and table, when the tree has a `finite_width` group."""
    paths = figures.results_figures(results, out / "figures")
    if not paths:
        return []
    lines = [
        "## Finite width",
        "",
        "Relative error of the mean train output against the samples, against the width "
        "N (log-log; the reference slopes are 1/N and 1/N^2; the grey band is the "
        "Monte-Carlo noise level below which no theory can be told from the samples).",
        "",
    ]
    lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in paths]
    return lines + [""]


def write_report(results: xr.DataTree, out) -> pathlib.Path:
    """Write out/report.md and out/figures/*.png; returns the report path."""
    out = pathlib.Path(out)
    cfg = json.loads(results.attrs["config"])
    data = results["data"].attrs
    rows = summary_rows(results)
    lines = [
        "# bayesnet report",
        "",
        f"Data: {data.get('data_name')} (P={data.get('n_train')}, P*={data.get('n_test')}, "
        f"D={data.get('dim')}); sampler: {json.dumps(cfg['sampler'])}.",
        "",
    ]
    if "timing_total_s" in results.attrs:
        lines += [
            f"Wall time before collecting: {float(results.attrs['timing_total_s']):.1f} s "
            "(sampling and theory of every point; the run's log quotes the same number).",
            "",
        ]
    lines += collect.missing_section(results)  # grid points not in this report, if any
    lines += ["## Summary", "", summary_table(results), ""]
    lines += _warn_note(rows, cfg) + _definitions()
    lines += finite_width_section(results, out)
    for name in networks(results):
        figs = figures.network_figures(results, name, out / "figures")
        lines += _network_section(results, name, figs, out)
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
