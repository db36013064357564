"""Deep theories against the NUTS references of bench/deep_references.py (issue 18).

For every cached reference and every theory that applies, the error of the posterior mean
outputs: rms over the 8 train and 4 test points of (theory - samples), beside the sampling noise
floor (rms of the MCSEs) and max |z|.  Writes bench/results/deep/errors.json and prints three
tables: depth 2 against N and chi (with log-log slopes over N), the ratio NNGP / best adaptive
theory at chi = N (the done criterion: >= 3), and the depth ladder (N = 32, chi = N, L = 1..3)
with the sampler's cost per unit precision (wall x MCSE^2, bench/ess.figure_of_merit, under
load).  With --figure, also the depth-ladder figure (analysis.figures.depth_ladder).

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/deep_theory.py --figure
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from deep_references import OUT, data, load, points, spec_of  # noqa: E402

import theory  # noqa: E402

LINEAR = ("nngp", "rescaling_tree", "rescaling_one_loop", "tree", "exact")
NONLINEAR = ("nngp", "tree")
ADAPTIVE = ("rescaling_tree", "rescaling_one_loop", "tree")


def errors(rec: dict, n_draws: int) -> dict:
    """{method: {err, noise, max_z, converged}} for one reference."""
    pt = (rec["activation"], rec["depth"], rec["width"], rec["chi_tag"])
    spec, d = spec_of(*pt), data()
    ref = np.r_[rec["f_train"], rec["f_test"]]
    se = np.r_[rec["f_train_mcse"], rec["f_test_mcse"]]
    out = {}
    for m in LINEAR if rec["activation"] == "linear" else NONLINEAR:
        opts = {"n_draws": n_draws} if m == "tree" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            th = theory.predict(spec, d, None, m, **opts)
        v = np.r_[th.f_train.values[0], th.f_test.values[0]]
        out[m] = {
            "err": float(np.sqrt(np.mean((v - ref) ** 2))),
            "noise": float(np.sqrt(np.mean(se**2))),
            "max_z": float(np.max(np.abs(v - ref) / se)),
            "converged": bool(th.converged.values.all()),
        }
    return out


def slope(ns, errs) -> float:
    """Least-squares slope of log err against log N."""
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-draws", type=int, default=2**15, help="tree-level draws per layer")
    ap.add_argument("--figure", action="store_true")
    args = ap.parse_args(argv)
    table = {}
    for pt in points():
        rec = load(*pt)
        if rec is None:
            print(f"missing reference {pt}")
            continue
        key = "{}_L{}_N{}_chi{}".format(*pt)
        table[key] = {"point": list(pt), "errors": errors(rec, args.n_draws)}
        table[key]["merit"] = rec["merit"]
    (OUT / "errors.json").write_text(json.dumps(table, indent=1))

    print("\n## depth 2: rms error of the mean outputs (noise floor), against N")
    for act, tags in (("linear", ("1", "sqrt", "N")), ("erf", ("N",))):
        for tag in tags:
            rows = [table.get(f"{act}_L2_N{n}_chi{tag}") for n in (16, 32, 64)]
            if any(r is None for r in rows):
                continue
            for m in rows[0]["errors"]:
                e = [r["errors"][m]["err"] for r in rows]
                print(
                    f"| {act} | {tag} | {m} | "
                    + " | ".join(f"{x:.4f}" for x in e)
                    + f" | {slope([16, 32, 64], e):+.2f} | "
                    + f"{rows[0]['errors'][m]['noise']:.4f} |"
                )
    print("\n## chi = N, depth 2: NNGP error / best adaptive error")
    for act in ("linear", "erf"):
        for n in (16, 32, 64):
            r = table.get(f"{act}_L2_N{n}_chiN")
            if r is None:
                continue
            e = r["errors"]
            best = min((m for m in ADAPTIVE if m in e), key=lambda m: e[m]["err"])
            print(
                f"| {act} | {n} | {e['nngp']['err']:.4f} | {best} {e[best]['err']:.4f} | "
                f"{e['nngp']['err'] / e[best]['err']:.1f}x |"
            )
    print("\n## depth ladder N = 32, chi = N: error per method, sampler cost (under load)")
    for act in ("linear", "erf"):
        for L in (1, 2, 3):
            r = table.get(f"{act}_L{L}_N32_chiN")
            if r is None:
                continue
            e, mr = r["errors"], r["merit"]
            print(
                f"| {act} | {L} | "
                + " | ".join(f"{m} {e[m]['err']:.4f}" for m in e)
                + f" | cost_f {mr['cost_f']:.3g} | cost_k {mr['cost_k']:.3g} | "
                f"ESS/s {mr['ess_per_s']:.3g} |"
            )
    if args.figure:
        import xarray as xr
        from matplotlib.figure import Figure

        from analysis.figures import depth_ladder_figure

        for act in ("linear", "erf"):
            rows = [table.get(f"{act}_L{L}_N32_chiN") for L in (1, 2, 3)]
            if any(r is None for r in rows):
                continue
            ms = list(rows[0]["errors"])
            err = [[r["errors"][m]["err"] for m in ms] for r in rows]
            noise = [[r["errors"][m]["noise"] for m in ms] for r in rows]
            ds = xr.Dataset(
                {
                    "relerr": (("depth", "theory"), np.asarray(err)),
                    "relerr_mcse": (("depth", "theory"), np.asarray(noise)),
                },
                coords={"depth": [1, 2, 3], "theory": ms},
            )
            fig: Figure = depth_ladder_figure(
                ds, f"{act}, N = 32, chi = N: rms error of the mean outputs against NUTS"
            )
            fig.savefig(OUT / f"depth_ladder_{act}.png", dpi=110)
            print(f"wrote {OUT / f'depth_ladder_{act}.png'}")


if __name__ == "__main__":
    main()
