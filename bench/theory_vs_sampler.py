"""Theory against sampling as one figure of merit: wall (and CPU) time to the same precision.

For the same posterior (erf network N=256, D=50, chi=N, kappa=0.3, Ising task with P train
points) the dressed one-loop (`theory.predict(method="one_loop")`, one chi, compilation
included) is compared with the collapsed NUTS sampler (`bayesnet.sample(method="collapsed")`).
The sampler's cost per unit precision is time x MCSE^2 (bench/ess.figure_of_merit) for the
mean train output f-bar and for yhat^T K yhat; its time to reach a precision eps is
cost / eps^2.  The target eps is the theory's own Monte-Carlo precision: its batch-means
standard error per train point, relative to the output scale (correction_mcse_train), applied
to f-bar and to yhat^T K yhat alike.  That per-point error bounds the error of the mean f-bar,
so the target is loose and the ratio is a lower bound on the theory's advantage.

Sampler sizes beyond those measured are extrapolated with the exponent fitted to the measured
sizes (log-log least squares of the sampler's cost per unit precision against P); the output
says which numbers are extrapolated.  Rows measured elsewhere (--theory-json, --sampler-json)
are merged in; for theory rows without them, the output scale f_rms comes from the NNGP and
yhat^T K yhat from the sampler's values fitted against P.

Usage: OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/theory_vs_sampler.py \
    [--P-sampler 64 128] [--P-theory 64 128 320 1000] [--theory-json FILE ...]
    [--out bench/results/theory_vs_sampler.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from ess import figure_of_merit  # noqa: E402

import bayesnet as bn  # noqa: E402
import theory  # noqa: E402

N, D, KAPPA = 256, 50, 0.3


def cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def problem(P: int):
    data = bn.ising(P, 64, D, flip=0.1, seed=0)
    return bn.NetworkSpec(width=N, activation="erf", chi=float(N), kappa=KAPPA), data


def run_theory(P: int) -> dict:
    """One-loop at chi = N: wall and CPU time (compilation included) and its MC precision."""
    spec, data = problem(P)
    t0, c0 = time.perf_counter(), cpu_s()
    ds = theory.predict(spec, data, [float(N)], method="one_loop")
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    f = ds.f_train.values[0]
    return {
        "P": P,
        "theory_wall_s": wall,
        "theory_cpu_s": cpu,
        "rel_precision": float(ds.correction_mcse_train[0]),
        "correction_size": float(ds.correction_size_train[0]),
        "f_rms": float(np.sqrt(np.mean(f**2))),
        "kernel_target": float(ds.kernel_target[0]),
    }


def run_sampler(P: int, chains: int, warmup: int, draws: int) -> dict:
    """Collapsed NUTS: cost per unit precision (time x MCSE^2) of f-bar and yhat^T K yhat."""
    spec, data = problem(P)
    t0, c0 = time.perf_counter(), cpu_s()
    tree = bn.sample(
        spec, data, method="collapsed", chains=chains, warmup=warmup, draws=draws, progress=False
    )
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    post = tree["posterior"]
    fm, kt = post["f_train"].values.mean(-1), post["kernel_target"].values
    fom = figure_of_merit(wall, fm, kt)
    return {
        "P": P,
        "sampler_wall_s": wall,
        "sampler_cpu_s": cpu,
        "cost_f_wall": fom["cost_f"],
        "cost_k_wall": fom["cost_k"],
        "cost_f_cpu": cpu * fom["mcse_f"] ** 2,
        "cost_k_cpu": cpu * fom["mcse_k"] ** 2,
        "ess_f": fom["ess_f"],
        "ess_k": fom["ess_k"],
        "mean_f": float(np.mean(fm)),
        "mean_k": float(np.mean(kt)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--P-sampler", type=int, nargs="*", default=[64, 128])
    ap.add_argument("--P-theory", type=int, nargs="*", default=[64, 128, 320])
    ap.add_argument("--theory-json", nargs="*", default=[], help="theory rows measured elsewhere")
    ap.add_argument("--sampler-json", nargs="*", default=[], help="sampler rows measured before")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--out", default="bench/results/theory_vs_sampler.json")
    args = ap.parse_args()
    samp = {}
    for P in args.P_sampler:
        samp[P] = run_sampler(P, args.chains, args.warmup, args.draws)
        print("sampler", json.dumps(samp[P]), flush=True)
    th = {}
    for P in args.P_theory:
        th[P] = run_theory(P)
        print("theory", json.dumps(th[P]), flush=True)
    for path in args.sampler_json:
        for r in json.load(open(path)):
            samp.setdefault(r["P"], r)
    for path in args.theory_json:
        for r in json.load(open(path)):
            th.setdefault(r["P"], r)
    Ps = sorted(samp)
    k_fit = np.polyfit(np.log(Ps), np.log([samp[p]["mean_k"] for p in Ps]), 1) if Ps else None
    for P, t in th.items():  # rows measured elsewhere: output scale from the NNGP (cheap)
        if "f_rms" not in t:
            spec, data = problem(P)
            f = theory.predict(spec, data, [float(N)], method="nngp").f_train.values[0]
            t["f_rms"] = float(np.sqrt(np.mean(f**2)))
        if "kernel_target" not in t and k_fit is not None:
            t["kernel_target"] = float(np.exp(k_fit[1]) * P ** k_fit[0])  # sampler's, fitted
    fit = {}
    for key in ("cost_f_wall", "cost_k_wall", "cost_f_cpu", "cost_k_cpu"):
        if len(Ps) >= 2:
            x, y = np.log(Ps), np.log([samp[p][key] for p in Ps])
            fit[key] = tuple(float(v) for v in np.polyfit(x, y, 1))  # (exponent, log prefactor)
    rows = []
    for P in sorted(th):
        t = th[P]
        eps_f = t["rel_precision"] * t["f_rms"]
        measured = P in samp
        row = {"P": P, "sampler": "measured" if measured else "extrapolated", **t}
        for unit in ("wall", "cpu"):
            c = {}
            for obs in ("f", "k"):
                key = f"cost_{obs}_{unit}"
                if measured:
                    c[obs] = samp[P][key]
                elif key in fit:
                    c[obs] = float(np.exp(fit[key][1]) * P ** fit[key][0])
            if len(c) < 2:
                continue
            mean_k = samp[P]["mean_k"] if measured else t["kernel_target"]
            eps_k = t["rel_precision"] * abs(mean_k)
            need_f, need_k = c["f"] / eps_f**2, c["k"] / eps_k**2
            need = max(need_f, need_k)
            row[f"sampler_{unit}_to_target_f_s"] = need_f
            row[f"sampler_{unit}_to_target_k_s"] = need_k
            row[f"sampler_{unit}_to_target_s"] = need
            row[f"ratio_{unit}"] = need / t[f"theory_{unit}_s"]
        rows.append(row)
        print("row", json.dumps(row), flush=True)
    out = {
        "setting": f"erf N={N} D={D} chi=N kappa={KAPPA}, bn.ising(P, 64, {D}, flip=0.1, seed=0); "
        f"collapsed NUTS {args.chains} chains x ({args.warmup} + {args.draws}); shared 2-core "
        "machine under load",
        "sampler_fit": fit,
        "sampler": list(samp.values()),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
