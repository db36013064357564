"""One prepared GPU benchmark (never a unit test): many chains, NUTS vs ChEES-HMC.  CPU: --quick.

1. Check: the accelerator against the CPU and the exact scale-mixture quadrature on a small linear
   case (posterior means of the train outputs within MCSE), float64.
2. Many chains: collapsed posterior, linear network N = 1024, P = 512, D = 32, chi = N, float32,
   warmup 60 + 40 draws, ChEES-HMC at 1024, 2048, 4096 chains, then vectorized NUTS at 256, 1024,
   4096 chains, each through `bayesnet.engine.run` (the one chunk loop).  Per configuration:
   compile, warmup and sampling time, chain-gradients per
   second, ESS/s and the cost per unit precision (wall x MCSE^2 of the mean train output f-bar
   and of y_hat^T K y_hat, wall including compilation), and peak device memory.
A time guard predicts each configuration from the previous one of its algorithm (linear in the
chains; the first is guessed, --first-guess 120 s) and skips what would end after --budget
seconds (default 420: with compilation the whole script stays < 8 minutes).
Results are saved after every configuration.

Needs jax, numpyro, numpy, scipy, xarray and BlackJAX (no ArviZ: ESS/MCSE from bench/ess.py).

    PYTHONPATH=. python bench/gpu.py --out $OUT/gpu.json       # on the GPU machine, < 8 min
    .venv/bin/python bench/gpu.py --quick                        # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import numpy as np
from ess import figure_of_merit, mcse_mean

import bayesnet as bn
from bayesnet import engine, sampling

T_START = time.perf_counter()


def run(
    data,
    spec,
    chains,
    warmup,
    draws,
    dtype,
    algorithm="nuts",
    seed=0,
    depth=10,
    device=None,
    chunk=None,
):
    """Collapsed posterior through the engine on `device`; a dict of measurements."""
    opts = sampling.check_options(
        "collapsed",
        chains=chains,
        warmup=warmup,
        draws=draws,
        seed=seed,
        chain_method="vectorized",
        dtype=dtype,
        max_tree_depth=depth,
        algorithm=algorithm,
        chunk=chunk,
    )
    cfg = sampling.run_config(spec, opts)
    with sampling._precision(dtype), jax.default_device(device or jax.devices()[0]):
        d, th = sampling.data_arrays(data, dtype), sampling.theta_arrays(spec, dtype)
        keys, z0 = sampling.initial_positions(spec, data, opts, dtype)
        r = engine.run(cfg, keys, z0, d, th, draws)
    t = r.timing
    f, kt = r.draws["f_train"], r.draws["kernel_target"]
    fm = f.mean(-1)
    wall = t["compile_s"] + t["run_s"]
    sampling_s = t["draws_s"]
    res = {
        "algorithm": algorithm,
        "chains": chains,
        "dtype": dtype,
        "width": spec.width,
        "P": data.n_train,
        "warmup": warmup,
        "draws": draws,
        "max_tree_depth": depth,
        "compile_s": t["compile_s"],
        "warmup_s": t["warmup_s"],
        "sampling_s": sampling_s,
        "wall_s": wall,
        "grads": t["n_grad_warmup"] + t["n_grad"],
        "grads_per_s": t["n_grad"] / sampling_s,
        "mean_steps": float(r.draws["n_steps"].mean()),
        "lockstep_efficiency": t["n_grad"] / max(t["n_grad_lockstep"], 1),
        "divergences": int(r.draws["diverging"].sum()),
        **figure_of_merit(wall, fm, kt),
        "f_train_mean": f.mean((0, 1)),
        "f_train_mcse": np.array([mcse_mean(f[..., i]) for i in range(f.shape[-1])]),
    }
    try:
        stats = (device or jax.devices()[0]).memory_stats() or {}
        res["peak_device_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
    except Exception:  # noqa: BLE001  (CPU devices may not report memory)
        pass
    return res


def check_against_cpu(quick):
    """Accelerator vs CPU (and vs the exact quadrature) on a small linear case, within MCSE."""
    from bayesnet import scale_mixture as sm

    data = bn.ising(n_train=20, n_test=6, dim=8, flip=0.2, seed=1)
    spec = bn.NetworkSpec(width=16, activation="linear", chi=16.0, kappa=0.2)
    kw = dict(chains=8, warmup=150 if quick else 300, draws=150 if quick else 500, dtype="float64")
    acc = run(data, spec, device=jax.devices()[0], **kw)
    cpu = run(data, spec, device=jax.devices("cpu")[0], seed=1, **kw)
    ex = sm.posterior(spec, data)["mean_train"]
    z = (acc["f_train_mean"] - cpu["f_train_mean"]) / np.hypot(
        acc["f_train_mcse"], cpu["f_train_mcse"]
    )
    out = {
        "device": str(jax.devices()[0]),
        "max_abs_z": float(np.max(np.abs(z))),
        "max_abs_z_acc_vs_exact": float(
            np.max(np.abs((acc["f_train_mean"] - ex) / acc["f_train_mcse"]))
        ),
        "max_abs_z_cpu_vs_exact": float(
            np.max(np.abs((cpu["f_train_mean"] - ex) / cpu["f_train_mcse"]))
        ),
    }
    out["pass"] = bool(
        max(out["max_abs_z"], out["max_abs_z_acc_vs_exact"], out["max_abs_z_cpu_vs_exact"]) < 4.5
    )
    print(
        f"check: {out['device']} vs CPU max |z| = {out['max_abs_z']:.2f} over {z.size} "
        f"outputs; vs exact: acc {out['max_abs_z_acc_vs_exact']:.2f}, cpu "
        f"{out['max_abs_z_cpu_vs_exact']:.2f} -> {'PASS' if out['pass'] else 'FAIL'}",
        flush=True,
    )
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (CPU smoke test)")
    p.add_argument("--out", default=None)
    p.add_argument(
        "--budget",
        type=float,
        default=420.0,
        help="seconds; configurations predicted to end after this are skipped",
    )
    p.add_argument("--chees-chains", default=None, help="default 1024,2048,4096")
    p.add_argument("--nuts-chains", default=None, help="default 256,1024,4096")
    p.add_argument(
        "--first-guess",
        type=float,
        default=120.0,
        help="predicted seconds of an algorithm's first configuration",
    )
    p.add_argument("--dtype", default="float32", choices=sampling.DTYPES)
    args = p.parse_args(argv)
    res = {
        "machine": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "backend": jax.default_backend(),
        },
        "command": " ".join(["python"] + sys.argv),
        "runs": [],
    }
    print(res["machine"], flush=True)

    def save():
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1, default=lambda a: np.asarray(a).tolist())

    res["check"] = check_against_cpu(args.quick)
    save()
    if args.quick:
        N, P, D, warmup, draws, depth = 64, 32, 8, 40, 20, 6
        lists = {"chees": args.chees_chains or "8,32", "nuts": args.nuts_chains or "8,32"}
    else:
        N, P, D, warmup, draws, depth = 1024, 512, 32, 60, 40, 6
        lists = {
            "chees": args.chees_chains or "1024,2048,4096",
            "nuts": args.nuts_chains or "256,1024,4096",
        }
    data = bn.ising(n_train=P, n_test=64, dim=D, flip=0.1, seed=0)
    spec = bn.NetworkSpec(width=N, activation="linear", chi=float(N), kappa=1.0)
    for algorithm in ("chees", "nuts"):  # ChEES first: the new sampler, and the cheaper one
        last = None  # (chains, seconds excluding compilation) of the previous configuration
        for chains in [int(c) for c in lists[algorithm].split(",")]:
            elapsed = time.perf_counter() - T_START
            guess = args.first_guess if last is None else last[1] * chains / last[0]
            if elapsed + guess > args.budget:
                print(
                    f"skip {algorithm} C={chains}: {elapsed:.0f} s elapsed + ~{guess:.0f} s "
                    f"predicted > budget {args.budget:.0f} s",
                    flush=True,
                )
                res["runs"].append(
                    {
                        "algorithm": algorithm,
                        "chains": chains,
                        "skipped": True,
                        "predicted_s": guess,
                    }
                )
                continue
            try:
                r = run(data, spec, chains, warmup, draws, args.dtype, algorithm, depth=depth)
            except Exception as e:  # noqa: BLE001  (e.g. out of device memory)
                print(f"{algorithm} C={chains}: failed {e!r}"[:500], flush=True)
                res["runs"].append(
                    {"algorithm": algorithm, "chains": chains, "error": repr(e)[:500]}
                )
                save()
                continue
            last = (chains, r["wall_s"] - r["compile_s"])
            r = {k: v for k, v in r.items() if k not in ("f_train_mean", "f_train_mcse")}
            res["runs"].append(r)
            print(
                f"{algorithm:5s} C={chains:5d}: compile {r['compile_s']:.1f}s warmup "
                f"{r['warmup_s']:.1f}s sampling {r['sampling_s']:.1f}s {r['grads_per_s']:.3g} "
                f"grad/s, mean steps {r['mean_steps']:.1f}, lock-step eff. "
                f"{r['lockstep_efficiency']:.2f}, ESS f {r['ess_f']:.0f} K {r['ess_k']:.0f}, "
                f"cost f {r['cost_f']:.2e} K {r['cost_k']:.2e}, peak "
                f"{r.get('peak_device_mb', float('nan')):.0f} MB",
                flush=True,
            )
            save()
    res["total_s"] = time.perf_counter() - T_START
    save()
    print(f"total {res['total_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
