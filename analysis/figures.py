"""Figures of a results tree; each answers one question at a glance.

- discrepancy: which theory follows the sampled training/test discrepancy Delta across chi?
- residuals:   where is each theory off by more than Monte-Carlo error ((theory - sample)/MCSE)?
- kernel:      how does the hidden kernel adapt along the target versus isotropically?
- rank_trace:  did the chains of the least converged observable mix?
- finite_width: how does each theory's error shrink with the width N (1/N, 1/N^2)?

Figures are built with `matplotlib.figure.Figure` (no pyplot), so importing this module selects no
backend: PNGs are written by `savefig`, and Jupyter shows a returned figure inline.  Runs whose
diagnostics verdict is `warn` are drawn hollow and red-edged and named in the legend.
Trace and rank plots use matplotlib: arviz-plots 0.8 (the last release for Python 3.11) fails to
import with matplotlib 3.11, and arviz-plots 1.x needs Python >= 3.12.
"""

from __future__ import annotations

import json
import pathlib

import matplotlib.ticker
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from . import comparison as cmp

# theory -> (legend name, colour, line style)
THEORY_STYLE = {
    "nngp": ("NNGP", "tab:gray", "--"),
    "rescaling_tree": ("rescaling (tree)", "tab:olive", ":"),
    "rescaling_one_loop": ("rescaling (one loop)", "tab:brown", "-."),
    "tree": ("tree level", "tab:blue", "-"),
    "one_loop": ("one loop", "tab:green", "-"),
    "laplace_one_loop": ("Laplace one loop", "tab:purple", "--"),
    "one_loop_first": ("one loop (first order)", "tab:cyan", "-"),  # bench/width_ladder.py
    "one_loop_dressed": ("one loop (dressed)", "tab:green", "-"),
    "exact": ("exact", "black", ":"),
}
DELTA_TEX = r"$\Delta = \frac{1}{P}\sum_\alpha y_\alpha\,(y_\alpha - \langle f(x_\alpha)\rangle)$"
Z_BAND = 3.0


def theory_order(names) -> list[str]:
    """Theory names in the order of THEORY_STYLE (unknown names last)."""
    names = [str(m) for m in names]
    return [m for m in THEORY_STYLE if m in names] + [m for m in names if m not in THEORY_STYLE]


def _label(m: str) -> str:
    return THEORY_STYLE.get(m, (m,))[0]


def _warn_mask(comp: xr.Dataset) -> np.ndarray:
    """True where the run's diagnostics verdict is `warn`."""
    return comp["verdict"].values.astype(str) == "warn"


def _samples(ax, chi, value, err, warn, label="samples (± MCSE)"):
    """Sample points with MCSE error bars; warn runs hollow with red edges."""
    ok = ~warn
    if np.any(ok):
        ax.errorbar(
            chi[ok],
            value[ok],
            yerr=err[ok],
            fmt="o",
            color="tab:red",
            ms=5,
            capsize=3,
            label=label,
            zorder=3,
        )
    if np.any(warn):
        ax.errorbar(
            chi[warn],
            value[warn],
            yerr=err[warn],
            fmt="o",
            mfc="white",
            mec="tab:red",
            ecolor="tab:red",
            ms=6,
            capsize=3,
            zorder=3,
            label=f"{label}, diagnostics warn",
        )


def _log_chi_axis(ax, width=None):
    """Log chi axis with plain-number ticks and, when known, a mark at chi = N."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(r"$\chi$  (readout prior $g_w/(\chi N)$; 1 standard, N mean field)")
    if width is not None:
        ax.axvline(
            float(width),
            color="0.6",
            lw=0.8,
            ls="-.",
            zorder=0,
            label=rf"$\chi = N = {int(width)}$ (mean field)",
        )


def dense_theory(node) -> xr.Dataset | None:
    """A network's theory on the dense chi grid (`theory_dense`), else at the sampled chi."""
    for group in ("theory_dense", "theory"):
        if group in node.children:
            return cmp.theory_table(node[group].to_dataset())
    return None


def _theory_lines(ax, theory: xr.Dataset, key: str, methods=None):
    """One line per theory over chi (`theory` a table over (theory, chi)).

    A curve that coincides with one drawn before (e.g. rescaling (tree) and tree level for a
    linear network) is drawn dashed with markers over it, and its legend entry says so.
    """
    drawn: list = []  # (label, values) of the curves drawn so far
    for m in theory_order(theory["theory"].values if methods is None else methods):
        if m not in theory["theory"].values or key not in theory:
            continue
        name, color, ls = THEORY_STYLE.get(m, (m, None, "-"))
        y = np.asarray(theory[key].sel({"theory": m}), dtype=float)  # (chi,)
        same = [
            label
            for label, prev in drawn
            if np.all(np.isfinite(y)) and np.allclose(y, prev, rtol=1e-6, atol=1e-12)
        ]
        drawn.append((name, y))
        style = {"ls": ls, "lw": 1.6, "zorder": 2}
        if same:
            name = f"{name} (= {same[0]})"
            style = {"ls": (0, (2, 3)), "lw": 1.2, "marker": "x", "ms": 4, "zorder": 2.5}
            style["markevery"] = max(1, y.size // 8)
        ax.plot(theory["chi"], y, color=color, label=name, **style)


def _theory_source(comp: xr.Dataset, theory: xr.Dataset | None) -> xr.Dataset:
    """The dense theory table, or the comparison's own `<obs>_theory` values at sampled chi."""
    if theory is not None:
        return theory
    keys = [k for k in comp.data_vars if str(k).endswith("_theory")]
    return xr.Dataset({k[: -len("_theory")]: comp[k] for k in keys})


def discrepancy_figure(
    comp: xr.Dataset, title: str, theory: xr.Dataset | None = None, width: int | None = None
) -> Figure:
    """Training and test discrepancy Delta against chi: samples with MCSE, one curve per theory.

    theory: a theory table over (theory, chi) on a dense chi grid (default: the comparison's
    theory values at the sampled chi only).
    """
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    chi, warn = comp["chi"].values, _warn_mask(comp)
    src = _theory_source(comp, theory)
    for ax, side in zip(axes, ("train", "test")):
        key = f"signed_discrepancy_{side}"
        _theory_lines(ax, src, key)
        _samples(ax, chi, comp[key].values, comp[f"{key}_mcse"].values, warn)
        _log_chi_axis(ax, width)
        sym = r"\Delta" if side == "train" else r"\Delta_*"
        ax.set_ylabel(rf"${sym}$ ({side} points)")
        ax.set_title(f"{side} discrepancy")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        f"{title}: which theory follows the samples?   {DELTA_TEX} "
        r"($\Delta_*$: same on test points)",
        fontsize=10,
    )
    return fig


def residual_figure(comp: xr.Dataset, title: str, key: str = "f_train") -> Figure:
    """(theory - sample)/MCSE of `key` per point and chi, one panel per theory, ±3 band."""
    methods = theory_order(comp["theory"].values)
    ncol = len(methods) if len(methods) <= 5 else 4
    nrow = -(-len(methods) // ncol)
    fig = Figure(figsize=(3.0 * ncol + 0.6, 3.0 * nrow + 0.6), layout="constrained")
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False)
    chi, warn = comp["chi"].values, _warn_mask(comp)
    z = comp[f"{key}_z"].transpose("theory", "chi", ...)  # (theory, chi, P)
    zmax = float(np.nanmax(np.abs(z.values))) if np.any(np.isfinite(z.values)) else Z_BAND
    for ax, m in zip(axes.flat, methods):
        zm = z.sel({"theory": m}).values  # (chi, P)
        ax.axhspan(
            -Z_BAND, Z_BAND, color="tab:green", alpha=0.15, lw=0, label=rf"$|z| \leq {Z_BAND:g}$"
        )
        ax.axhline(0.0, color="0.4", lw=0.6)
        spread = np.linspace(-0.06, 0.06, zm.shape[1]) if zm.ndim > 1 else np.zeros(1)
        for j, c in enumerate(chi):
            ok = not warn[j]
            ax.plot(
                c * np.exp(spread),
                np.atleast_1d(zm[j]),
                "o",
                ms=2.5,
                alpha=0.7,
                color=THEORY_STYLE.get(m, (m, "tab:blue"))[1] if ok else "tab:red",
                mfc=None if ok else "white",
            )
        worst = float(np.nanmax(np.abs(zm))) if np.any(np.isfinite(zm)) else np.nan
        bad = bool(np.any(comp["flagged"].sel({"theory": m}).values == 1))  # compare's rule
        ax.set_title(
            f"{_label(m)}: max |z| = {worst:.1f}", fontsize=9, color="tab:red" if bad else "black"
        )
        ax.set_yscale("symlog", linthresh=Z_BAND, linscale=1.5)
        top = max(zmax, 5.0) * 1.3
        ax.set_ylim(-top, top)
        ticks = [t for t in (3, 10, 30, 100, 300, 1000, 3000, 10000) if t <= top]
        ax.set_yticks([-t for t in ticks[::-1]] + [0] + ticks)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xscale("log")
        ax.set_xlim(chi.min() / 1.25, chi.max() * 1.25)
        ax.set_xticks(chi)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(r"$\chi$")
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("z = (theory − sample) / MCSE")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    side = key.split("_")[-1]
    tag = "; hollow red: diagnostics warn" if np.any(warn) else ""
    fig.suptitle(
        f"{title}: residuals of the mean output, one dot per {side} point and χ "
        f"(symlog axis, linear inside ±{Z_BAND:g}{tag})",
        fontsize=10,
    )
    return fig


KERNEL_LABELS = {
    "kernel_target": r"kernel_target  $\hat y^\top K_{post}\,\hat y$",
    "kernel_trace": r"kernel_trace  $\mathrm{tr}\,K_{post}/P$",
}


def kernel_figure(
    comp: xr.Dataset,
    prior: xr.Dataset,
    title: str,
    theory: xr.Dataset | None = None,
    width: int | None = None,
) -> Figure:
    """Directional (target) against isotropic (trace) adaptation of the hidden kernel over chi.

    Both panels show the absolute posterior values under the report table's names
    (`kernel_target`, `kernel_trace`); the dashed line is the prior (NNGP) kernel's value.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    chi, warn = comp["chi"].values, _warn_mask(comp)
    src = _theory_source(comp, theory)
    methods = [m for m in theory_order(src["theory"].values) if m != "nngp"]
    for ax, key in zip(axes, KERNEL_LABELS):
        _theory_lines(ax, src, key, methods)
        ax.axhline(
            float(prior[key]),
            color="tab:gray",
            lw=1.0,
            ls="--",
            label="prior kernel (NNGP: no adaptation)",
        )
        _samples(ax, chi, comp[key].values, comp[f"{key}_mcse"].values, warn)
        _log_chi_axis(ax, width)
        ax.set_ylabel(KERNEL_LABELS[key])
        ax.legend(fontsize=7, loc="best")
    axes[0].set_title("directional: along the normalised target ŷ")
    axes[1].set_title("isotropic: mean eigenvalue")
    fig.suptitle(f"{title}: does the hidden kernel adapt along the target?", fontsize=10)
    return fig


def _point_name(observable: str, index: dict) -> str:
    """`f_train`, {'train': 7} -> 'f_train at train point 7'."""
    if not index:
        return observable
    return observable + " at " + ", ".join(f"{d} point {i}" for d, i in index.items())


def rank_trace_figure(worst: xr.Dataset, title: str) -> Figure:
    """Trace and rank plots (per chain) of the observable with the worst R-hat."""
    x = worst["draws"].values  # (chain, draw)
    C, S = x.shape
    ranks = np.argsort(np.argsort(x.ravel())).reshape(C, S)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    nbins = 20
    bins = np.linspace(0, C * S, nbins + 1)
    counts = [np.histogram(ranks[c], bins=bins)[0] for c in range(C)]  # (nbins,) per chain
    for c in range(C):
        axes[0].plot(x[c], lw=0.6, alpha=0.8, label=f"chain {c}")
        # the outline of the bin counts only: no drop to zero at the two edges
        axes[1].stairs(counts[c], bins, baseline=None, lw=1.2, label=f"chain {c}")
    sd = np.sqrt(S / nbins)  # Poisson spread of a uniform bin count
    axes[1].axhspan(
        S / nbins - 2 * sd, S / nbins + 2 * sd, color="0.85", zorder=0, label="uniform ± 2 sd"
    )
    a = worst.attrs
    idx = json.loads(a.get("index", "{}")) if isinstance(a.get("index"), str) else {}
    name = _point_name(str(a.get("observable", "observable")), idx)
    chi = float(a.get("chi", np.nan))
    axes[0].set_title(f"trace of {name} (χ = {chi:.3g})", fontsize=9)
    axes[0].set_xlabel("draw (after warm-up)")
    axes[0].set_ylabel(name)
    rhat = float(a.get("rhat", np.nan))
    axes[1].set_title(f"rank plot: flat when chains mix; R-hat = {rhat:.3f}", fontsize=9)
    axes[1].set_xlabel("rank of the draw among all chains")
    axes[1].set_ylabel(f"draws per bin ({nbins} bins)")
    axes[1].set_xlim(bins[0], bins[-1])
    axes[1].set_ylim(0, 1.45 * max(cnt.max() for cnt in counts))
    axes[1].legend(fontsize=7, loc="upper center", ncol=3)
    fig.suptitle(f"{title}: did the chains of the least converged observable mix?", fontsize=10)
    return fig


def finite_width_figure(results: xr.DataTree) -> Figure:
    """Log-log relative error of each theory against the width N, with 1/N and 1/N^2 slopes.

    Reads the top-level `finite_width` group: `relerr` and `relerr_mcse` over (width, theory,
    chi_rule[, ...]); other dimensions are averaged over.  One panel per chi rule.
    """
    fw = results["finite_width"].to_dataset() if isinstance(results, xr.DataTree) else results
    extra = [d for d in fw["relerr"].dims if d not in ("width", "theory", "chi_rule")]
    err = fw["relerr"].mean(extra) if extra else fw["relerr"]
    noise = fw["relerr_mcse"].mean(extra) if extra else fw["relerr_mcse"]
    if "chi_rule" not in err.dims:
        err, noise = err.expand_dims(chi_rule=["chi"]), noise.expand_dims(chi_rule=["chi"])
    rules = [str(r) for r in err["chi_rule"].values]
    fig = Figure(figsize=(4.6 * len(rules) + 2.0, 4.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(rules), squeeze=False)[0])
    N = err["width"].values.astype(float)
    for ax, rule in zip(axes, rules):
        e, s = err.sel(chi_rule=rule), noise.sel(chi_rule=rule)
        for m in theory_order(e["theory"].values):
            name, color, ls = THEORY_STYLE.get(m, (m, None, "-"))
            ax.errorbar(
                N,
                e.sel(theory=m),
                yerr=s.sel(theory=m),
                color=color,
                ls=ls,
                marker="o",
                ms=4,
                capsize=2,
                label=name,
            )
        floor = s.median("theory").values
        ax.plot(N, floor, color="0.5", lw=4, alpha=0.35, label="MC noise (median MCSE)")
        anchor = float(np.nanmax(e.isel(width=0).values))
        if np.isfinite(anchor) and anchor > 0:
            for p, ls in ((1, "--"), (2, ":")):
                ax.plot(
                    N,
                    anchor * (N[0] / N) ** p,
                    color="black",
                    lw=0.9,
                    ls=ls,
                    label=rf"$\propto 1/N^{p}$" if p > 1 else r"$\propto 1/N$",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(N)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("width N")
        ax.set_ylabel("relative error ||theory − sample|| / ||sample||")
        ax.set_title(f"χ = {rule}", fontsize=9)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.suptitle("finite width: how fast does each theory's error shrink with N?", fontsize=10)
    return fig


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    fig.savefig(path, dpi=110)
    return path


def network_figures(results: xr.DataTree, name: str, folder) -> list[pathlib.Path]:
    """The four figures of one network, saved as PNG; returns the paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    node = results[name]
    comp = node["comparison"].to_dataset()
    width = node.attrs.get("width")
    width = int(width) if width is not None else None
    title = f"{name} network (N={width})" if width is not None else f"{name} network"
    theory = dense_theory(node)
    figs = {
        "discrepancy": discrepancy_figure(comp, title, theory, width),
        "residuals": residual_figure(comp, title),
        "kernel": kernel_figure(comp, node["prior"].to_dataset(), title, theory, width),
    }
    if "worst" in node.children:
        figs["rank_trace"] = rank_trace_figure(node["worst"].to_dataset(), title)
    return [_save(fig, folder / f"{name}_{key}.png") for key, fig in figs.items()]


def results_figures(results: xr.DataTree, folder) -> list[pathlib.Path]:
    """Figures that span widths: one finite-width figure per `finite_width*` group."""
    folder = pathlib.Path(folder)
    groups = sorted(g for g in results.children if str(g).startswith("finite_width"))
    if groups:
        folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for g in groups:
        fig = finite_width_figure(results[g].to_dataset())
        net = results[g].attrs.get("network")
        if net:
            fig.suptitle(
                f"{net} network: how fast does each theory's error shrink with N?", fontsize=10
            )
        paths.append(_save(fig, folder / f"{g}.png"))
    return paths


def depth_ladder_figure(err: xr.Dataset, title: str = "") -> Figure:
    """Theory error against the depth L at fixed N and chi (the "depth ladder").

    err: `relerr` (or any error) over (depth, theory), optionally `relerr_mcse` of the same dims
    (the samples' noise floor, drawn as a grey band).  Log error axis, integer depth axis.
    """
    e = err["relerr"]
    L = e["depth"].values.astype(int)
    fig = Figure(figsize=(6.2, 4.2), layout="constrained")
    ax = fig.subplots()
    for m in theory_order(e["theory"].values):
        name, color, ls = THEORY_STYLE.get(str(m), (str(m), None, "-"))
        ax.plot(L, e.sel(theory=m), color=color, ls=ls, marker="o", ms=5, label=name)
    if "relerr_mcse" in err:
        floor = err["relerr_mcse"].median("theory").values
        ax.plot(L, floor, color="0.5", lw=4, alpha=0.35, label="MC noise")
    ax.set_yscale("log")
    ax.set_xticks(L)
    ax.set_xlabel("depth L (hidden layers)")
    ax.set_ylabel("error of the mean outputs against samples")
    ax.legend(fontsize=8)
    fig.suptitle(title or "depth ladder: how does each theory's error grow with L?", fontsize=10)
    return fig


def depth_ladder_from_sweep(sweep: xr.Dataset, **sel) -> xr.Dataset:
    """The depth ladder of a sweep (analysis.collect.sweep_dataset with a `depth` axis): relerr
    and its noise level over (depth, theory), after selecting `sel` (e.g. width=32, chi=32.0,
    network="deep") and averaging every other axis."""
    if "depth" not in sweep.dims:
        raise ValueError("sweep has no depth axis (give the grid a list of depths)")
    ds = sweep.sel(**sel) if sel else sweep
    keep = {"depth", "theory"}
    err = ds["relerr"]
    err = err.mean([d for d in err.dims if d not in keep])
    out = xr.Dataset({"relerr": err})
    if "f_train_mcse" in ds and "f_train_sample" in ds:
        f, s = ds["f_train_sample"], ds["f_train_mcse"]
        level = np.sqrt((s**2).sum("train")) / np.sqrt((f**2).sum("train"))
        out["relerr_mcse"] = level.mean([d for d in level.dims if d != "depth"]).expand_dims(
            theory=err["theory"].values
        )
    return out
