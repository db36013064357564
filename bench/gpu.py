"""One prepared GPU benchmark (never a unit test): many chains, NUTS vs ChEES-HMC.  CPU: --quick.

Sections (--sections, in this order; a shared time guard skips what would end after the deadline,
and the JSON is rewritten after every configuration):
1. check: the accelerator against the CPU (a separately compiled CPU program) and the exact
   scale-mixture quadrature on a small linear case (means of the train outputs within MCSE).
2. nuts1024: collapsed linear network N = 1024, P = 512, D = 32, chi = N, float32 (the issue-17
   case), NUTS at 1024 chains and ChEES at 1024 chains with the same short run (warmup 16 +
   16 draws, --long-warmup), max tree depth 6.
3. erf1000: erf network, Ising data P = 1000, D = 50, kappa = 0.5, float32: collapsed N = 256
   (function space, P x P) with ChEES at 256 chains and full (weight space) N = 64 with ChEES at
   1024 chains, warmup 60 + 60 draws (--erf-warmup), chi = 1 then chi = N (one compiled program
   per network: chi is traced).
4. auto: the algorithm="auto" threshold: NUTS against ChEES at 16, 256, 64 chains on a reference
   case (erf, Ising P = 40, D = 30, N = 64, chi = sqrt(N), kappa = 0.3, float64, warmup 200 +
   200 draws), cost per unit precision with and without compilation.
Per configuration: compile, warmup and sampling time, chain-gradients per second, mean leapfrog
steps per draw, lock-step efficiency, ESS, MCSE and cost per unit precision (wall x MCSE^2) of
f-bar and y_hat^T K y_hat (bench/ess.figure_of_merit), the device memory of the compiled chunk
program (XLA's memory analysis: arguments + outputs + temporaries) and the process's peak device
memory so far (a high-water mark over the whole process, not per configuration).
The guard predicts each configuration from the last one of its section, method and sampler (a
power of the chain ratio), or from a first guess, and skips what would end after the deadline.
Low-priority extras run last: ChEES at 1024 chains beside NUTS, erf at chi = N, 64 chains.

Needs jax, numpyro, numpy, scipy, xarray and BlackJAX (no ArviZ: ESS/MCSE from bench/ess.py).

    PYTHONPATH=.:bench python bench/gpu.py --out $OUT/gpu.json --deadline EPOCH_S  # GPU machine
    PYTHONPATH=.:bench .venv/bin/python bench/gpu.py --quick                      # CPU smoke test
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import jax
import numpy as np
from ess import figure_of_merit, mcse_mean
from references import TimeGuard, write_json

import bayesnet as bn
from bayesnet import engine, sampling

# how a section's time grows with the chains: saturated big problems linearly, small ones less
SCALING = {"nuts1024": 1.0, "erf1000": 1.0, "auto": 0.5}


def _program_mb(comp) -> float:
    """Device memory of the compiled chunk program (arguments + outputs + temporaries), MiB."""
    try:
        m = comp.chunk.memory_analysis()
        used = (
            m.argument_size_in_bytes
            + m.output_size_in_bytes
            + m.temp_size_in_bytes
            - m.alias_size_in_bytes
        )
        return used / 2**20
    except Exception:  # noqa: BLE001  (not every backend reports it)
        return float("nan")


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
    method="collapsed",
):
    """One configuration through the engine on `device`; a dict of measurements."""
    opts = sampling.check_options(
        method,
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
    device = device or jax.devices()[0]
    with sampling._precision(dtype), jax.default_device(device):
        d, th = sampling.data_arrays(data, dtype), sampling.theta_arrays(spec, dtype)
        keys, z0 = sampling.initial_positions(spec, data, opts, dtype)
        comp = engine.compiled_for(cfg, z0, d, th)  # timed here; engine.run then hits the cache
        r = engine.run(cfg, keys, z0, d, th, draws)
    ran_on = str(next(iter(jax.tree.leaves(r.state)[0].devices())))
    t = r.timing
    f, kt = r.draws["f_train"], r.draws["kernel_target"]
    fm = f.mean(-1)
    wall = comp.compile_s + t["run_s"]
    sampling_s = t["draws_s"]
    fom = figure_of_merit(wall, fm, kt)
    res = {
        "method": method,
        "algorithm": algorithm,
        "chains": chains,
        "dtype": dtype,
        "activation": spec.activation,
        "width": spec.width,
        "chi": spec.chi,
        "P": data.n_train,
        "D": data.dim,
        "warmup": warmup,
        "draws": draws,
        "max_tree_depth": depth,
        "device": ran_on,
        "compile_s": comp.compile_s,
        "warmup_s": t["warmup_s"],
        "sampling_s": sampling_s,
        "wall_s": wall,
        "grads": t["n_grad_warmup"] + t["n_grad"],
        "grads_per_s": t["n_grad"] / sampling_s,
        "mean_steps": float(r.draws["n_steps"].mean()),
        "lockstep_efficiency": t["n_grad"] / max(t["n_grad_lockstep"], 1),
        "divergences": int(r.draws["diverging"].sum()),
        **fom,
        # cost per unit precision without compilation (a program reused over a sweep)
        "cost_f_run": t["run_s"] * fom["mcse_f"] ** 2,
        "cost_k_run": t["run_s"] * fom["mcse_k"] ** 2,
        "program_mb": _program_mb(comp),
        "f_train_mean": f.mean((0, 1)),
        "f_train_mcse": np.array([mcse_mean(f[..., i]) for i in range(f.shape[-1])]),
    }
    try:
        stats = device.memory_stats() or {}
        res["process_peak_device_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
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
    # the engine caches programs by config and shapes, not device: without this the "CPU" run
    # would reuse the accelerator's program (and run there)
    engine._CACHE.clear()
    cpu = run(data, spec, device=jax.devices("cpu")[0], seed=1, **kw)
    engine._CACHE.clear()
    ex = sm.posterior(spec, data)["mean_train"]
    z = (acc["f_train_mean"] - cpu["f_train_mean"]) / np.hypot(
        acc["f_train_mcse"], cpu["f_train_mcse"]
    )
    out = {
        "device": acc["device"],
        "cpu_device": cpu["device"],
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
        f"check: {out['device']} vs {out['cpu_device']} max |z| = {out['max_abs_z']:.2f} over "
        f"{z.size} outputs; vs exact: acc {out['max_abs_z_acc_vs_exact']:.2f}, cpu "
        f"{out['max_abs_z_cpu_vs_exact']:.2f} -> {'PASS' if out['pass'] else 'FAIL'}",
        flush=True,
    )
    return out


def plan(args):
    """The configurations of every section, in priority order: (section, label, kwargs of `run`,
    first guess of its seconds on an H200 when nothing like it has run yet)."""
    q = args.quick
    first, extra = [], []
    # 2. NUTS at 1024 chains on the issue-17 case (ChEES beside it with the same short run: extra)
    N, P, D = (64, 32, 8) if q else (1024, 512, 32)
    lin = bn.ising(n_train=P, n_test=64, dim=D, flip=0.1, seed=0)
    spec = bn.NetworkSpec(width=N, activation="linear", chi=float(N), kappa=1.0)
    W, C = (10, 32) if q else (args.long_warmup, 1024)
    kw = dict(data=lin, spec=spec, chains=C, warmup=W, draws=W, dtype="float32")
    # first guesses from the earlier H200 run: NUTS at 256 chains took 0.9 s per draw (~50
    # leapfrog steps), saturated (x4 at 1024); ChEES 1024 (60 + 40) took 33 s; compile ~15 s
    first.append(
        ("nuts1024", f"linear N={N} P={P} nuts C={C}", dict(kw, algorithm="nuts"), 15 + 2 * W * 3.6)
    )
    extra.append(("nuts1024", f"linear N={N} P={P} chees C={C}", dict(kw, algorithm="chees"), 30.0))
    # 3. erf at P = 1000: collapsed N = 256 (P space), full N = 64 (weight space); chi = N: extra
    P, D = (64, 8) if q else (1000, 50)
    big = bn.ising(n_train=P, n_test=20 if q else 200, dim=D, flip=0.2, seed=0)
    W = 20 if q else args.erf_warmup
    for method, N, C in (("collapsed", 256, 256), ("full", 64, 1024)):
        N, C = (16, 16) if q else (N, C)
        for chi in (1.0, float(N)):
            spec = bn.NetworkSpec(width=N, activation="erf", chi=chi, kappa=0.5)
            kw = dict(data=big, spec=spec, chains=C, warmup=W, draws=W, method=method)
            kw.update(algorithm="chees", dtype="float32")
            label = f"erf {method} N={N} P={P} chi={chi:.4g} chees C={C}"
            (first if chi == 1.0 else extra).append(("erf1000", label, kw, 35.0))
    # 4. the algorithm="auto" threshold on a reference case (the last chain count: extra)
    ref = bn.ising(n_train=40, n_test=32, dim=30, flip=0.1, seed=0)
    spec = bn.NetworkSpec(width=64, activation="erf", chi=8.0, kappa=0.3)
    chains = [int(c) for c in (args.auto_chains or ("4,16" if q else "16,256,64")).split(",")]
    W = 50 if q else 200
    for i, C in enumerate(chains):
        for alg in ("chees", "nuts"):
            kw = dict(data=ref, spec=spec, chains=C, warmup=W, draws=W)
            kw.update(algorithm=alg, dtype="float64")
            label = f"erf N=64 P=40 chi=8 {alg} C={C}"
            (first if i < 2 else extra).append(("auto", label, kw, 20.0))
    return first + extra


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (CPU smoke test)")
    p.add_argument("--out", default=None)
    p.add_argument("--deadline", type=float, default=None, help="epoch seconds to end by")
    p.add_argument("--budget", type=float, default=270.0, help="seconds, if no --deadline")
    p.add_argument("--sections", default="check,nuts1024,erf1000,auto")
    p.add_argument("--long-warmup", type=int, default=16, help="nuts1024: warmup = draws")
    p.add_argument("--erf-warmup", type=int, default=60, help="erf1000: warmup = draws")
    p.add_argument("--auto-chains", default=None, help="default 16,256,64 (--quick: 4,16)")
    p.add_argument("--guess-scale", type=float, default=1.0, help="times the first guesses")
    p.add_argument("--depth", type=int, default=6, help="NUTS max tree depth")
    args = p.parse_args(argv)
    guard = TimeGuard(args.deadline if args.deadline else time.time() + args.budget)
    sections = args.sections.split(",")
    res = {
        "machine": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "backend": jax.default_backend(),
        },
        "command": " ".join(["python"] + (argv or sys.argv)),
        "runs": [],
    }
    print(res["machine"], f"{guard.left():.0f} s left", flush=True)
    t_start = time.perf_counter()

    def save():
        res["total_s"] = time.perf_counter() - t_start
        write_json(args.out, res)

    if "check" in sections:
        try:
            res["check"] = check_against_cpu(args.quick)
        except Exception as e:  # noqa: BLE001  (the benchmarks still run)
            print(f"check failed: {e!r}"[:500], flush=True)
            res["check"] = {"error": repr(e)[:500]}
        save()
    last = {}  # (section, method, algorithm) -> (chains, seconds without compilation, compile s)
    for section, label, kw, first_guess in plan(args):
        if section not in sections:
            continue
        key = (section, kw.get("method", "collapsed"), kw["algorithm"])
        if key in last:
            C0, run_s, comp_s = last[key]
            # a power of the chains (linear where the device is saturated, SCALING); a new
            # program (other shapes) compiles again, the same one (another chi) does not
            same = C0 == kw["chains"]
            predicted = run_s * (kw["chains"] / C0) ** SCALING[section] + (0 if same else comp_s)
        else:
            predicted = first_guess * args.guess_scale
        if not guard.fits(predicted):
            print(f"skip {label}: ~{predicted:.0f} s > {guard.left():.0f} s left", flush=True)
            res["runs"].append(
                {"section": section, "label": label, "skipped": True, "predicted_s": predicted}
            )
            save()
            continue
        try:
            r = run(depth=args.depth, **kw)
        except Exception as e:  # noqa: BLE001  (e.g. out of device memory)
            print(f"{label}: failed {e!r}"[:500], flush=True)
            res["runs"].append({"section": section, "label": label, "error": repr(e)[:500]})
            save()
            continue
        if r["compile_s"] > 0 or key not in last:
            last[key] = (kw["chains"], r["wall_s"] - r["compile_s"], max(r["compile_s"], 1.0))
        r = {k: v for k, v in r.items() if k not in ("f_train_mean", "f_train_mcse")}
        r.update(section=section, label=label, predicted_s=predicted)
        res["runs"].append(r)
        print(
            f"{label}: compile {r['compile_s']:.1f}s warmup {r['warmup_s']:.1f}s sampling "
            f"{r['sampling_s']:.1f}s {r['grads_per_s']:.3g} grad/s, steps {r['mean_steps']:.1f}, "
            f"lock-step eff. {r['lockstep_efficiency']:.2f}, ESS f {r['ess_f']:.0f} K "
            f"{r['ess_k']:.0f}, cost f {r['cost_f']:.2e} (run {r['cost_f_run']:.2e}) K "
            f"{r['cost_k']:.2e}, program {r['program_mb']:.0f} MB, process peak "
            f"{r.get('process_peak_device_mb', math.nan):.0f} MB (predicted {predicted:.0f} s)",
            flush=True,
        )
        save()
    save()
    print(f"gpu.py total {res['total_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
