"""Figures of a results tree (matplotlib Agg, PNG).  Runs with verdict `warn` are drawn hollow
and red-edged, and named in the legend, never silently mixed with trusted runs."""
from __future__ import annotations

import json
import pathlib

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

THEORY_STYLE = {"nngp": ("NNGP", "tab:gray", "--"), "rescaling_tree": ("rescaling (tree)",
                "tab:olive", ":"), "tree": ("tree level", "tab:blue", "-"),
                "one_loop": ("one loop", "tab:green", "-"), "exact": ("exact", "black", ":")}
FIG1_METHODS = ("nngp", "tree", "one_loop", "exact")


def _warn_mask(comp: xr.Dataset) -> np.ndarray:
    """True where the run's diagnostics verdict is `warn`."""
    return comp["verdict"].values.astype(str) == "warn"


def _samples(ax, chi, value, err, warn, label="samples"):
    """Sample points with MCSE error bars; warn runs hollow with red edges."""
    ok = ~warn
    if np.any(ok):
        ax.errorbar(chi[ok], value[ok], yerr=err[ok], fmt="o", color="tab:red", ms=5,
                    capsize=3, label=label, zorder=3)
    if np.any(warn):
        ax.errorbar(chi[warn], value[warn], yerr=err[warn], fmt="o", mfc="white",
                    mec="tab:red", ecolor="tab:red", ms=6, capsize=3, zorder=3,
                    label=f"{label} (diagnostics warn)")


def _log_chi_axis(ax):
    """Log chi axis with plain-number tick labels."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(r"$\chi$")


def _theory_lines(ax, comp, key, methods, offset=0.0):
    """One line per theory over chi."""
    for m in methods:
        if m not in comp["theory"].values:
            continue
        name, color, ls = THEORY_STYLE.get(m, (m, None, "-"))
        ax.plot(comp["chi"], comp[f"{key}_theory"].sel({"theory": m}) - offset, ls=ls,
                color=color, label=name)


def discrepancy_figure(comp: xr.Dataset, title: str):
    """Fig. 1: sign-corrected train and test discrepancies versus chi, samples and theories."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    chi, warn = comp["chi"].values, _warn_mask(comp)
    for ax, side in zip(axes, ("train", "test")):
        key = f"signed_discrepancy_{side}"
        _samples(ax, chi, comp[key].values, comp[f"{key}_mcse"].values, warn)
        _theory_lines(ax, comp, key, FIG1_METHODS)
        _log_chi_axis(ax)
        ax.set_ylabel(rf"$\frac{{1}}{{P}}\sum_\alpha y_\alpha\Delta_\alpha$ ({side})")
        ax.set_title(f"{title}: {side} discrepancy")
    axes[0].legend(fontsize=8)
    return fig


def kernel_figure(comp: xr.Dataset, prior: xr.Dataset, title: str):
    """Fig. 2: directional y^T(K_post - K)y versus isotropic tr(K_post - K)/P change over chi."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    chi, warn = comp["chi"].values, _warn_mask(comp)
    labels = {"kernel_target": r"directional $\hat y^\top(K_{post}-K)\hat y$",
              "kernel_trace": r"isotropic $\mathrm{tr}(K_{post}-K)/P$"}
    methods = [m for m in comp["theory"].values if m != "nngp"]
    for ax, key in zip(axes, labels):
        base = float(prior[key])
        _samples(ax, chi, comp[key].values - base, comp[f"{key}_mcse"].values, warn)
        _theory_lines(ax, comp, key, methods, offset=base)
        ax.axhline(0.0, color="tab:gray", lw=0.8, ls="--", label="NNGP (no change)")
        _log_chi_axis(ax)
        ax.set_title(f"{title}: {labels[key]}", fontsize=9)
    axes[0].legend(fontsize=8)
    return fig


def scatter_figure(comp: xr.Dataset, title: str, methods=("nngp", "tree", "one_loop")):
    """Fig. 3: predicted versus sampled mean outputs (train and test) at every chi."""
    n = comp.sizes["chi"]
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.3), constrained_layout=True,
                             squeeze=False)
    warn = _warn_mask(comp)
    for j, ax in enumerate(axes[0]):
        c = comp.isel(chi=j)
        for m in methods:
            if m not in comp["theory"].values:
                continue
            name, color, _ = THEORY_STYLE.get(m, (m, None, "-"))
            for side, mk in (("train", "o"), ("test", "^")):
                ax.scatter(c[f"f_{side}"], c[f"f_{side}_theory"].sel({"theory": m}), s=10,
                           marker=mk, color=color, alpha=0.7,
                           label=f"{name} ({side})" if j == 0 else None)
        lim = [float(min(c["f_train"].min(), c["f_test"].min())),
               float(max(c["f_train"].max(), c["f_test"].max()))]
        ax.plot(lim, lim, color="black", lw=0.8)
        tag = " [WARN]" if warn[j] else ""
        ax.set_title(f"chi={float(c['chi']):.3g}{tag}", color="tab:red" if warn[j] else "black")
        ax.set_xlabel("sampled mean output")
    axes[0, 0].set_ylabel("predicted mean output")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(title)
    return fig


def rank_trace_figure(worst: xr.Dataset, title: str):
    """Fig. 4: trace and rank plots (per chain) of the observable with the worst R-hat."""
    x = worst["draws"].values  # (chain, draw)
    C, S = x.shape
    ranks = np.argsort(np.argsort(x.ravel())).reshape(C, S)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    bins = np.linspace(0, C * S, 21)
    for c in range(C):
        axes[0].plot(x[c], lw=0.6, alpha=0.8, label=f"chain {c}")
        axes[1].hist(ranks[c], bins=bins, histtype="step", lw=1.2, label=f"chain {c}")
    axes[1].axhline(S / 20, color="black", lw=0.8, ls="--", label="uniform")
    a = worst.attrs
    idx = json.loads(a.get("index", "{}"))
    name = a.get("observable", "?") + (f"{idx}" if idx else "")
    axes[0].set_title(f"{title}: trace of {name} at chi={a.get('chi', float('nan')):.3g}")
    axes[1].set_title(f"rank plot, R-hat={a.get('rhat', float('nan')):.3f}")
    axes[0].set_xlabel("draw")
    axes[1].set_xlabel("rank over all chains")
    axes[1].legend(fontsize=7)
    return fig


def network_figures(results: xr.DataTree, name: str, folder) -> list[pathlib.Path]:
    """All four figures of one network, saved as PNG; returns the paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    node = results[name]
    comp = node["comparison"].to_dataset()
    title = f"{name} (N={node.attrs.get('width', '?')})"
    figs = {"discrepancy": discrepancy_figure(comp, title),
            "kernel": kernel_figure(comp, node["prior"].to_dataset(), title),
            "scatter": scatter_figure(comp, title),
            "rank_trace": rank_trace_figure(node["worst"].to_dataset(), title)}
    paths = []
    for key, fig in figs.items():
        path = folder / f"{name}_{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
