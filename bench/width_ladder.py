"""Width-ladder reference samples for the one-loop theory (issue 9): erf net on the Ising task.

Long collapsed-NUTS runs at P=40, D=30, kappa=0.3, g_v=g_w=1 for N in {32, 64, 128, 256} and
chi in {1, sqrt(N), N}.  Each run is kept as a compact summary (a few tens of kB, never the full
draws): posterior mean of f_train / f_test, their Monte-Carlo standard errors from the split-chain
ESS of bench/ess.py, per-chain batch means (so the MCSE can be re-estimated), the mean
conditional variances, the posterior mean hidden kernel and sampler diagnostics.  Runs with
different seeds of the same point are independent and are pooled by `pooled()` (inverse-variance
weights).  One progress line per point.

    OPENBLAS_NUM_THREADS=1 JAX_COMPILATION_CACHE_DIR=.jax_cache nice -n 10 \
        .venv/bin/python bench/width_ladder.py --widths 32 64 128 256 --chis 1 sqrt N \
        --chains 4 --warmup 500 --draws 4000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

import numpy as np
import xarray as xr

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from ess import ess_bulk, mcse_mean  # noqa: E402

OUT = HERE / "results" / "width_ladder"
SETUP = dict(n_train=40, n_test=40, dim=30, kappa=0.3, g_v=1.0, g_w=1.0, activation="erf")
N_BATCH = 20  # batch means per chain kept in the summary


def chi_value(tag: str, width: int) -> float:
    """chi for a tag: a number, 'sqrt' (sqrt N) or 'N' (mean field)."""
    if tag == "sqrt":
        return math.sqrt(width)
    if tag == "N":
        return float(width)
    return float(tag)


def dataset():
    """The ladder's Ising data: P=40 train and 40 test points in D=30, flip 0.1, seed 0."""
    import bayesnet as bn

    return bn.ising(n_train=SETUP["n_train"], n_test=SETUP["n_test"], dim=SETUP["dim"])


def spec_for(width: int, chi: float):
    """The ladder's network at one width and chi."""
    import bayesnet as bn

    return bn.NetworkSpec(
        width=width,
        activation=SETUP["activation"],
        g_v=SETUP["g_v"],
        g_w=SETUP["g_w"],
        chi=chi,
        kappa=SETUP["kappa"],
    )


def mcse_and_ess(x: np.ndarray) -> tuple[float, float]:
    """MCSE of the mean of x (chains, draws) from the split-chain ESS, and its bulk ESS."""
    return mcse_mean(x), ess_bulk(x)


def summarise(tree, width: int, chi_tag: str, seed: int) -> xr.Dataset:
    """Compact summary of one run: means, MCSEs, batch means, kernel, diagnostics."""
    post = tree["posterior"].to_dataset()
    stats = tree["sample_stats"].to_dataset()
    out = {}
    for side in ("train", "test"):
        f = np.asarray(post[f"f_{side}"])  # (C, S, P)
        C, S, P = f.shape
        res = [mcse_and_ess(f[:, :, i]) for i in range(P)]
        out[f"f_{side}"] = ((side,), f.mean(axis=(0, 1)))
        out[f"f_{side}_mcse"] = ((side,), np.array([r[0] for r in res]))
        out[f"f_{side}_ess_bulk"] = ((side,), np.array([r[1] for r in res]))
        out[f"f_{side}_sd"] = ((side,), f.std(axis=(0, 1), ddof=1))
        b = S // N_BATCH
        bm = f[:, : b * N_BATCH].reshape(C, N_BATCH, b, P).mean(axis=2)  # (C, B, P)
        out[f"f_{side}_batch_means"] = (("chain", "batch", side), bm)
        out[f"var_{side}"] = ((side,), np.asarray(post[f"var_{side}"]).mean(axis=(0, 1)))
    kern = tree["kernel"].to_dataset()
    out["K_train"] = (("train", "train_"), np.asarray(kern["K_train"]))
    ds = xr.Dataset(out)
    chi = chi_value(chi_tag, width)
    f = ds["f_train"].values
    attrs = {k: v for k, v in tree.attrs.items() if isinstance(v, (int, float, str))}
    attrs.update(
        width=width,
        chi=chi,
        chi_tag=chi_tag,
        seed=seed,
        divergences=int(np.asarray(stats["diverging"]).sum()),
        mean_tree_depth=float(np.asarray(stats["tree_depth"]).mean()),
        rel_mcse_train=float(np.linalg.norm(ds["f_train_mcse"]) / np.linalg.norm(f)),
        rel_mcse_test=float(np.linalg.norm(ds["f_test_mcse"]) / np.linalg.norm(ds["f_test"])),
    )
    ds.attrs = attrs
    return ds


def path_for(width: int, chi_tag: str, seed: int) -> pathlib.Path:
    return OUT / f"erf_N{width}_chi{chi_tag}_s{seed}.nc"


def pooled(
    width: int, chi_tag: str, out_dir: pathlib.Path = OUT, prefix: str = "erf", mean_vars=()
) -> xr.Dataset | None:
    """All seeds of one point pooled with inverse-variance weights (None if no run exists);
    `mean_vars` (e.g. K_train) are averaged over the seeds."""
    parts = [
        xr.load_dataset(p, engine="h5netcdf")
        for p in sorted(out_dir.glob(f"{prefix}_N{width}_chi{chi_tag}_s*.nc"))
    ]
    if not parts:
        return None
    out = xr.Dataset()
    for side in ("train", "test"):
        w = [1.0 / p[f"f_{side}_mcse"] ** 2 for p in parts]
        wsum = sum(w)
        out[f"f_{side}"] = sum(wi * p[f"f_{side}"] for wi, p in zip(w, parts)) / wsum
        out[f"f_{side}_mcse"] = 1.0 / np.sqrt(wsum)
    for v in mean_vars:
        out[v] = sum(p[v] for p in parts) / len(parts)
    out.attrs = dict(
        width=width,
        chi=parts[0].attrs["chi"],
        chi_tag=chi_tag,
        seeds=len(parts),
        sample_s=sum(
            p.attrs.get("timing_run_s", p.attrs.get("timing_sample_s", 0.0)) for p in parts
        ),
    )
    for side in ("train", "test"):
        out.attrs[f"rel_mcse_{side}"] = float(
            np.linalg.norm(out[f"f_{side}_mcse"]) / np.linalg.norm(out[f"f_{side}"])
        )
    return out


THEORIES = (
    ("nngp", "nngp", {}),
    ("rescaling_tree", "rescaling_tree", {}),
    ("rescaling_one_loop", "rescaling_one_loop", {}),
    ("tree", "one_loop", {}),
    ("one_loop_first", "one_loop", {"order": "first"}),
    ("one_loop_dressed", "one_loop", {"order": "dressed"}),
)
LINEAR_EXTRA = (("laplace_one_loop", "laplace_one_loop", {}),)


def relerr(f, ref) -> float:
    """||f - ref|| / ||ref|| over points."""
    return float(np.linalg.norm(np.asarray(f) - np.asarray(ref)) / np.linalg.norm(ref))


def theory_outputs(spec, data, chis, theories, options: dict) -> dict:
    """{theory name: (f_train (chi, P), f_test (chi, P*), correction MCSE train/test (chi,))};
    'tree' is the one_loop (first order) solution minus its correction (same solve)."""
    import theory

    out = {}
    for name, method, kw in theories:
        if name == "tree":
            continue
        opts = dict(kw, **options) if method == "one_loop" else dict(kw)
        ds = theory.predict(spec, data, chis=chis, method=method, **opts)
        out[name] = (
            ds["f_train"].values,
            ds["f_test"].values,
            ds["correction_mcse_train"].values
            if "correction_mcse_train" in ds
            else np.zeros(len(chis)),
            ds["correction_mcse_test"].values
            if "correction_mcse_test" in ds
            else np.zeros(len(chis)),
        )
        if name == "one_loop_first" and any(t[0] == "tree" for t in theories):
            out["tree"] = (
                ds["f_train"].values - ds["correction_train"].values,
                ds["f_test"].values - ds["correction_test"].values,
                np.zeros(len(chis)),
                np.zeros(len(chis)),
            )
    return out


def slope(ns, errs) -> float:
    """Least-squares slope of log err against log N."""
    ns, errs = np.asarray(ns, float), np.asarray(errs, float)
    ok = np.isfinite(errs) & (errs > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(ns[ok]), np.log(errs[ok]), 1)[0])


def linear_ladder(widths, kappa: float, out: pathlib.Path) -> dict:
    """Linear network, same data: every theory against method='exact' (no sampling); widths
    already in `out` are read back, not recomputed."""
    import bayesnet as bn
    import theory

    data = dataset()
    res = {}
    if out.exists():
        res = {
            n: {tag: {int(N): tuple(v) for N, v in d.items()} for tag, d in r.items()}
            for n, r in json.loads(out.read_text()).items()
        }
    for N in widths:
        if all(N in res.get(n, {}).get("1", {}) for n in ("nngp", "one_loop_dressed")):
            continue
        spec = bn.NetworkSpec(
            width=N, activation="linear", g_v=SETUP["g_v"], g_w=SETUP["g_w"], kappa=kappa
        )
        chis = [1.0, math.sqrt(N), float(N)]
        t0 = time.perf_counter()
        ex = theory.predict(spec, data, chis=chis, method="exact")
        th = theory_outputs(spec, data, chis, THEORIES + LINEAR_EXTRA, {})
        for k, tag in enumerate(("1", "sqrt", "N")):
            for name, (ftr, fte, _, _) in th.items():
                res.setdefault(name, {}).setdefault(tag, {})[N] = (
                    relerr(ftr[k], ex["f_train"].values[k]),
                    relerr(fte[k], ex["f_test"].values[k]),
                )
        print(
            f"linear N={N}: {time.perf_counter() - t0:.0f} s; chi=1 train err "
            + ", ".join(f"{n} {res[n]['1'][N][0]:.1e}" for n in res),
            flush=True,
        )
    out.write_text(json.dumps(res, indent=1))
    return res


def erf_theory(widths, options: dict, path: pathlib.Path, tags) -> dict:
    """Every theory at the chi tags for each width (cached in `path`, .npz)."""
    cache = dict(np.load(path)) if path.exists() else {}
    data = dataset()
    for N in widths:
        if f"N{N}_one_loop_dressed_train" in cache:
            continue
        chis = [chi_value(tag, N) for tag in tags]
        t0 = time.perf_counter()
        th = theory_outputs(spec_for(N, 1.0), data, chis, THEORIES, options)
        for name, arrs in th.items():
            for key, arr in zip(("train", "test", "mcse_train", "mcse_test"), arrs):
                cache[f"N{N}_{name}_{key}"] = np.asarray(arr)
        np.savez(path, **cache)
        print(f"erf theory N={N}: {time.perf_counter() - t0:.0f} s", flush=True)
    return cache


def erf_ladder(
    widths, options: dict, out: pathlib.Path, tags=("1", "sqrt", "N"), suffix: str = ""
) -> dict:
    """Erf network: every theory against the pooled reference samples; MC noise per point."""
    cache = erf_theory(widths, options, OUT / f"erf_theory{suffix}.npz", tags)
    names = [t[0] for t in THEORIES]
    res = {}
    for N in widths:
        for k, tag in enumerate(tags):
            ref = pooled(N, tag)
            if ref is None:
                continue
            fr, frt = ref["f_train"].values, ref["f_test"].values
            res.setdefault("mc_noise", {}).setdefault(tag, {})[N] = (
                ref.attrs["rel_mcse_train"],
                ref.attrs["rel_mcse_test"],
            )
            for name in names:
                res.setdefault(name, {}).setdefault(tag, {})[N] = (
                    relerr(cache[f"N{N}_{name}_train"][k], fr),
                    relerr(cache[f"N{N}_{name}_test"][k], frt),
                )
                res.setdefault(name + "_mcse", {}).setdefault(tag, {})[N] = (
                    float(cache[f"N{N}_{name}_mcse_train"][k]),
                    float(cache[f"N{N}_{name}_mcse_test"][k]),
                )
    out.write_text(json.dumps(res, indent=1))
    return res


def table(res: dict, names, side: int, noise: bool) -> str:
    """Markdown table: one row per (chi, N), one column per theory, slopes in the last rows."""
    tags = [t for t in ("1", "sqrt", "N") if t in res[names[0]]]
    label = {"1": "1", "sqrt": "√N", "N": "N"}
    cols = (["MC noise"] if noise else []) + list(names)
    lines = ["| χ | N | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for tag in tags:
        ns = sorted(int(n) for n in res[names[0]][tag])
        for N in ns:
            vals = ([res["mc_noise"][tag][N][side]] if noise else []) + [
                res[n][tag][N][side] for n in names
            ]
            lines.append(f"| {label[tag]} | {N} | " + " | ".join(f"{v:.1e}" for v in vals) + " |")
        sl = [slope(ns, [res[n][tag][N][side] for N in ns]) for n in names]
        lines.append(
            f"| {label[tag]} | slope | "
            + ("– | " if noise else "")
            + " | ".join(f"{s:+.2f}" for s in sl)
            + " |"
        )
    return "\n".join(lines)


def noise_table(res: dict, names, side: int) -> str:
    """Markdown: error / combined MC noise (reference and the theory's own batch-means error)
    and the noise-subtracted error sqrt(max(err^2 - noise^2, 0)) per (chi, N) for `names`."""
    label = {"1": "1", "sqrt": "√N", "N": "N"}
    cols = [f"{n} err/noise" for n in names] + [f"{n} debiased" for n in names]
    lines = ["| χ | N | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for tag in [t for t in ("1", "sqrt", "N") if t in res[names[0]]]:
        for N in sorted(int(n) for n in res[names[0]][tag]):
            ratio, deb = [], []
            for n in names:
                err = res[n][tag][N][side]
                noise = math.hypot(res["mc_noise"][tag][N][side], res[n + "_mcse"][tag][N][side])
                ratio.append(f"{err / noise:.1f}")
                deb.append(f"{math.sqrt(max(err**2 - noise**2, 0.0)):.1e}")
            lines.append(f"| {label[tag]} | {N} | " + " | ".join(ratio + deb) + " |")
    return "\n".join(lines)


def figure(res: dict, names, path: pathlib.Path, title: str, noise: bool) -> None:
    """Log-log error against N, one panel per chi (train top, test bottom), slopes 1 and 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tags = [t for t in ("1", "sqrt", "N") if t in res[names[0]]]
    label = {"1": "χ = 1", "sqrt": "χ = √N", "N": "χ = N"}
    fig, axes = plt.subplots(2, len(tags), figsize=(4.2 * len(tags), 7), squeeze=False, sharex=True)
    for side, row in enumerate(axes):
        for ax, tag in zip(row, tags):
            ns = np.array(sorted(int(n) for n in res[names[0]][tag]))
            for n in names:
                ax.loglog(ns, [res[n][tag][N][side] for N in ns], "o-", label=n, ms=4)
            if noise:
                ax.loglog(
                    ns,
                    [res["mc_noise"][tag][N][side] for N in ns],
                    "k--",
                    lw=2,
                    label="MC noise (reference)",
                )
            e0 = max(res[n][tag][ns[0]][side] for n in names)
            for p, ls in ((1, ":"), (2, "-.")):
                ax.loglog(ns, e0 * (ns / ns[0]) ** (-p), "0.5", ls=ls, lw=1, label=f"slope -{p}")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_title(f"{label[tag]}, {'train' if side == 0 else 'test'}")
            ax.set_xlabel("width N")
            ax.grid(True, which="both", alpha=0.3)
        row[0].set_ylabel("relative error of the mean output")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def trace_resummation(K, K_test, y, g_w: float, kappa: float, chi: float, width: int):
    """The beyond-first-order part of the scalar trace-term resummation (an experiment): the
    rescaling one loop minus the rescaling tree minus its first order in the trace term
    (central difference), on train (P,) and test (P*,) points, with kernel K (K^phi)."""
    import scipy.optimize

    from theory import rescaling

    sp = rescaling.spectrum(K, y)
    B = sp.project(K_test)  # (P*, r)

    def outputs(eps):
        # the rescaling equation with its trace term scaled by eps (linear in the term)
        def F(lu):
            return (1 - eps) * rescaling.ubar_equation(
                lu, sp, g_w, width, chi, kappa, trace=False
            ) + eps * rescaling.ubar_equation(lu, sp, g_w, width, chi, kappa, trace=True)

        u = math.exp(scipy.optimize.brentq(F, -30.0, 30.0, xtol=1e-15))
        f_tr, _, f_te, _ = rescaling.rescaled_outputs(sp, B, np.zeros(B.shape[0]), u, chi, kappa)
        return np.concatenate([f_tr, f_te])

    h = 1e-3
    hi = outputs(1.0) - outputs(0.0) - (outputs(h) - outputs(-h)) / (2 * h)
    return hi[: len(y)], hi[len(y) :]


def resum_table(widths) -> str:
    """Dressed one-loop with and without the trace resummation: linear (against exact) and erf
    (against the pooled references, cached 65k-draw theory)."""
    import bayesnet as bn
    import theory
    from theory import kernels

    data = dataset()
    X, Xt, y = np.asarray(data.X), np.asarray(data.X_test), np.asarray(data.y)
    cache = dict(np.load(OUT / "erf_theory.npz"))
    lines = [
        "| net | χ | N | reference noise | dressed | dressed + resummation |",
        "|---|---|---|---|---|---|",
    ]
    for act in ("linear", "erf"):
        K = np.asarray(kernels.kernel(act, X, X, SETUP["g_v"]))
        Kt = np.asarray(kernels.kernel(act, Xt, X, SETUP["g_v"]))
        for k, tag in enumerate(("1", "sqrt", "N")):
            for N in widths:
                chi = chi_value(tag, N)
                spec = bn.NetworkSpec(width=N, activation=act, chi=chi, kappa=SETUP["kappa"])
                if act == "linear":
                    ex = theory.predict(spec, data, method="exact")
                    ref = (ex["f_train"].values[0], ex["f_test"].values[0])
                    noise = (0.0, 0.0)
                    dr = theory.predict(spec, data, method="one_loop", order="dressed")
                    fd = (dr["f_train"].values[0], dr["f_test"].values[0])
                else:
                    p = pooled(N, tag)
                    if p is None or f"N{N}_one_loop_dressed_train" not in cache:
                        continue
                    ref = (p["f_train"].values, p["f_test"].values)
                    noise = (p.attrs["rel_mcse_train"], p.attrs["rel_mcse_test"])
                    fd = (
                        cache[f"N{N}_one_loop_dressed_train"][k],
                        cache[f"N{N}_one_loop_dressed_test"][k],
                    )
                hi = trace_resummation(K, Kt, y, SETUP["g_w"], SETUP["kappa"], chi, N)
                cell = lambda f: " / ".join(f"{relerr(f[i], ref[i]):.1e}" for i in (0, 1))  # noqa
                lines.append(
                    f"| {act} | {tag} | {N} | {noise[0]:.1e} / {noise[1]:.1e} | "
                    f"{cell(fd)} | {cell((fd[0] + hi[0], fd[1] + hi[1]))} |"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "mode",
        nargs="?",
        default="sample",
        choices=["sample", "erf", "linear", "resum"],
        help="sample: reference runs; erf: theories against them (table, figure); "
        "linear: theories against the exact linear posterior; resum: the "
        "trace-resummation experiment",
    )
    ap.add_argument(
        "--n-draws",
        type=int,
        default=65536,
        help="erf: importance-sampling draws of the tilted measure",
    )
    ap.add_argument("--suffix", default="", help="erf: name suffix of the theory cache and outputs")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument(
        "--chis",
        nargs="+",
        default=["1", "sqrt", "N"],
        help="chi values: numbers, 'sqrt' (sqrt N) or 'N' (mean field)",
    )
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rerun points whose file exists")
    args = ap.parse_args(argv)

    import bayesnet as bn

    if args.mode == "linear":
        names = [t[0] for t in THEORIES + LINEAR_EXTRA]
        res = linear_ladder(args.widths, SETUP["kappa"], OUT / "linear_errors.json")
        for side in (0, 1):
            print(("train" if side == 0 else "test") + "\n" + table(res, names, side, False))
        figure(res, names, OUT / "linear_ladder.png", "linear net vs exact", False)
        return 0
    if args.mode == "resum":
        print(resum_table(args.widths))
        return 0
    if args.mode == "erf":
        names = [t[0] for t in THEORIES]
        sfx = args.suffix
        res = erf_ladder(
            args.widths,
            {"n_draws": args.n_draws},
            OUT / f"erf_errors{sfx}.json",
            tuple(args.chis),
            sfx,
        )
        for side in (0, 1):
            print(("train" if side == 0 else "test") + "\n" + table(res, names, side, True))
            print(noise_table(res, ["tree", "one_loop_first", "one_loop_dressed"], side))
        figure(res, names, OUT / f"erf_ladder{sfx}.png", "erf net vs collapsed NUTS", True)
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    data = dataset()
    for width in args.widths:
        for tag in args.chis:
            path = path_for(width, tag, args.seed)
            if path.exists() and not args.force:
                print(f"N={width} chi={tag} seed={args.seed}: exists, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            tree = bn.sample(
                spec_for(width, chi_value(tag, width)),
                data,
                method="collapsed",
                chains=args.chains,
                warmup=args.warmup,
                draws=args.draws,
                seed=args.seed,
                progress=False,
            )
            ds = summarise(tree, width, tag, args.seed)
            ds.to_netcdf(path, engine="h5netcdf")
            print(
                f"N={width} chi={tag} seed={args.seed}: {time.perf_counter() - t0:.0f} s, "
                f"rel MCSE train {ds.attrs['rel_mcse_train']:.2e} test "
                f"{ds.attrs['rel_mcse_test']:.2e}, ESS(min) "
                f"{float(ds['f_train_ess_bulk'].min()):.0f}, div {ds.attrs['divergences']}, "
                f"depth {ds.attrs['mean_tree_depth']:.1f} -> {path.name}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
