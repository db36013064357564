"""One prepared GPU benchmark (never a unit test).  Runs on CPU too with --quick.

Measures, for bayesnet's collapsed NUTS engine (linear network, N = 1024, P = 512, D = 32,
chi = N), vectorized chains 256 -> 4096 in float32 and float64: compile time, sampling time,
gradients per second (chain-gradients: sum of leapfrog steps over chains / sampling time),
bulk ESS per second of the mean train output and of y_hat^T K y_hat, and peak device memory.
Before that it checks the accelerator against the CPU on a small case: posterior means of the
train outputs from both devices (and from the exact scale-mixture quadrature) agree within MCSE.

Needs only jax, numpyro, numpy, scipy (no ArviZ, no xarray): bayesnet's engine and models are
imported without the package __init__ when xarray is missing; ESS from bench/ess.py.

    PYTHONPATH=. python bench/gpu.py --out $OUT/gpu.json        # on the GPU machine, < 8 min
    .venv/bin/python bench/gpu.py --quick                         # CPU smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import jax  # noqa: E402

# float32 runs in a child process without x64 (NumPyro's NUTS promotes float32 states to float64
# under x64); everything else in float64.  The package __init__ (which enables x64 and needs
# xarray) is bypassed: only engine, models, datasets, scale_mixture are imported.
X32 = "--x32" in sys.argv
jax.config.update("jax_enable_x64", not X32)
stub = types.ModuleType("bayesnet")
stub.__path__ = [os.path.join(ROOT, "bayesnet")]
sys.modules["bayesnet"] = stub

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bayesnet import datasets, engine  # noqa: E402
from bayesnet.models import MODELS  # noqa: E402
from ess import ess_bulk  # noqa: E402

T_START = time.perf_counter()


class _Stats:
    """Hashable statistics binding (part of the engine's cache key)."""

    def __init__(self, fn, width):
        self.fn, self.width = fn, width

    def __call__(self, z, d, t):
        return self.fn(z, d, t, self.width, "linear")

    def __eq__(self, o):
        return isinstance(o, _Stats) and (o.fn, o.width) == (self.fn, self.width)

    def __hash__(self):
        return hash((self.fn, self.width))


def arrays(data, spec, dtype):
    y_hat = data.y / np.linalg.norm(data.y)
    d = {k: jnp.asarray(v, dtype) for k, v in (("X", data.X), ("y", data.y),
                                                ("X_test", data.X_test), ("y_hat", y_hat))}
    th = {k: jnp.asarray(v, dtype) for k, v in spec.items()}
    return d, th


def run_nuts(data, spec, N, chains, warmup, draws, dtype, seed=0, depth=10, device=None):
    """Collapsed NUTS through bayesnet.engine on `device`; returns a dict of measurements."""
    model_fn, stats_fn = MODELS["collapsed"]
    cfg = engine.RunConfig(model_fn(N, "linear"), _Stats(stats_fn, N), chains, warmup,
                           max(1, min(warmup if warmup else draws, draws)), 0.8, depth)
    with jax.default_device(device or jax.devices()[0]):
        d, th = arrays(data, spec, dtype)
        k0, k1 = jax.random.split(jax.random.PRNGKey(seed))
        z0 = {"z_V": jax.random.normal(k0, (chains, N, data.X.shape[1]), dtype)}
        keys = jax.random.split(k1, chains)
        comp = engine.compiled_for(cfg, z0, d, th)
        states = comp.init(keys, z0, d, th)
        t0 = time.perf_counter()
        done = 0
        while done < warmup:
            n = min(cfg.chunk, warmup - done)
            states, _, _ = comp.chunk(states, d, th, jnp.int32(n), jnp.bool_(False))
            done += n
        jax.block_until_ready(states)
        t1 = time.perf_counter()
        outs, done = [], 0
        while done < draws:
            n = min(cfg.chunk, draws - done)
            states, _, out = comp.chunk(states, d, th, jnp.int32(n), jnp.bool_(True))
            outs.append({k: np.asarray(out[k][:, :n]) for k in
                         ("f_train", "kernel_target", "n_steps", "diverging")})
            done += n
        jax.block_until_ready(states)
        t2 = time.perf_counter()
    o = {k: np.concatenate([p[k] for p in outs], axis=1) for k in outs[0]}
    fm = o["f_train"].mean(-1)
    grads = float(o["n_steps"].sum())
    e_f, e_k = ess_bulk(fm), ess_bulk(o["kernel_target"])
    res = {"chains": chains, "dtype": dtype, "width": N, "P": data.X.shape[0],
           "warmup": warmup, "draws": draws, "max_tree_depth": depth,
           "compile_s": comp.compile_s, "warmup_s": t1 - t0, "sample_s": t2 - t1,
           "grads_sampling": grads, "grads_per_s": grads / (t2 - t1),
           "mean_steps": float(o["n_steps"].mean()), "divergences": int(o["diverging"].sum()),
           "ess_f": e_f, "ess_k": e_k, "ess_per_s": min(e_f, e_k) / (t2 - t1),
           "ess_per_s_incl_warmup": min(e_f, e_k) / (t2 - t0),
           "f_mean": fm.mean(), "f_train_mean": o["f_train"].mean((0, 1)),
           "f_train_sd": o["f_train"].std((0, 1)), "ess_f_train": [
               ess_bulk(o["f_train"][..., i]) for i in range(o["f_train"].shape[-1])]}
    try:
        stats = (device or jax.devices()[0]).memory_stats() or {}
        res["peak_device_mb"] = stats.get("peak_bytes_in_use", 0) / 2**20
    except Exception:  # CPU devices may not report memory
        pass
    return res


def check_against_cpu(quick):
    """Accelerator vs CPU (and vs the exact quadrature) on a small linear case, within MCSE."""
    N, P, D, chi = 16, 20, 8, 16.0
    data = datasets.ising(n_train=P, n_test=6, dim=D, flip=0.2, seed=1)
    spec = {"g_v": 1.0, "g_w": 1.0, "chi": chi, "kappa": 0.2}
    kw = dict(chains=8, warmup=150 if quick else 300, draws=150 if quick else 500,
              dtype="float64")
    acc = run_nuts(data, spec, N, device=jax.devices()[0], **kw)
    cpu = run_nuts(data, spec, N, device=jax.devices("cpu")[0], seed=1, **kw)
    out = {"device": str(jax.devices()[0]), "acc": acc, "cpu": cpu}
    se = lambda r: r["f_train_sd"] / np.sqrt(np.asarray(r["ess_f_train"]))  # noqa: E731
    z = (acc["f_train_mean"] - cpu["f_train_mean"]) / np.sqrt(se(acc) ** 2 + se(cpu) ** 2)
    out["z_acc_vs_cpu"] = z
    try:
        from bayesnet import scale_mixture as sm

        class Spec:  # the quadrature reads these attributes only
            width, activation, g_v, g_w, kappa = N, "linear", 1.0, 1.0, 0.2
        Spec.chi = chi
        ex = sm.posterior(Spec, data)["mean_train"]
        out["z_acc_vs_exact"] = (acc["f_train_mean"] - ex) / se(acc)
        out["z_cpu_vs_exact"] = (cpu["f_train_mean"] - ex) / se(cpu)
    except Exception as e:  # noqa: BLE001
        out["exact_error"] = repr(e)
    out["max_abs_z"] = float(np.max(np.abs(z)))
    out["pass"] = bool(out["max_abs_z"] < 4.5)
    print(f"check: {out['device']} vs CPU max |z| = {out['max_abs_z']:.2f} over {z.size} train "
          f"outputs; vs exact max |z| acc {np.max(np.abs(out.get('z_acc_vs_exact', [np.nan]))):.2f}"
          f" cpu {np.max(np.abs(out.get('z_cpu_vs_exact', [np.nan]))):.2f} -> "
          f"{'PASS' if out['pass'] else 'FAIL'}", flush=True)
    for k in ("acc", "cpu"):
        out[k] = {kk: vv for kk, vv in out[k].items() if kk not in ("f_train_mean",
                                                                     "f_train_sd", "ess_f_train")}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (CPU smoke test)")
    p.add_argument("--out", default=None)
    p.add_argument("--budget", type=float, default=430.0,
                   help="seconds; configurations that would end after this are skipped")
    p.add_argument("--x32", action="store_true", help="(internal) float32 throughput only")
    args = p.parse_args(argv)
    res = {"machine": {"python": platform.python_version(), "jax": jax.__version__,
                       "devices": [str(d) for d in jax.devices()],
                       "backend": jax.default_backend()},
           "command": " ".join(["python"] + sys.argv), "throughput": []}
    try:
        import numpyro
        res["machine"]["numpyro"] = numpyro.__version__
    except ImportError:
        pass
    print(res["machine"], flush=True)

    def save():
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1, default=lambda a: np.asarray(a).tolist())

    if not args.x32:
        res["check"] = check_against_cpu(args.quick)
        save()
        # float32 throughput in a child process (x64 off), given part of the remaining budget
        import subprocess
        left = args.budget - (time.perf_counter() - T_START)
        child_out = (args.out or "/tmp/gpu_bench") + ".f32.json"
        cmd = [sys.executable, os.path.abspath(__file__), "--x32", "--out", child_out,
               "--budget", str(0.45 * left)] + (["--quick"] if args.quick else [])
        subprocess.run(cmd, check=False)
        try:
            with open(child_out) as f:
                res["throughput"].extend(json.load(f)["throughput"])
        except (OSError, ValueError, KeyError) as e:
            res["throughput"].append({"dtype": "float32", "error": repr(e)})
        save()
    if args.quick:
        N, P, D, chain_list, warmup, draws, depth = 64, 32, 8, (8, 32), 20, 20, 6
    else:
        N, P, D, chain_list, warmup, draws, depth = 1024, 512, 32, (256, 1024, 4096), 30, 30, 6
    data = datasets.ising(n_train=P, n_test=64, dim=D, flip=0.1, seed=0)
    spec = {"g_v": 1.0, "g_w": 1.0, "chi": float(N), "kappa": 1.0}
    dtype = "float32" if args.x32 else "float64"
    last = None  # (chains, seconds) of the previous configuration: predicts the next one
    for chains in chain_list:
        if True:
            elapsed = time.perf_counter() - T_START
            guess = 0.0 if last is None else last[1] * chains / last[0]
            if elapsed + guess > args.budget:
                print(f"skip C={chains} {dtype}: {elapsed:.0f} s elapsed + ~{guess:.0f} s "
                      f"predicted > budget {args.budget:.0f} s", flush=True)
                res["throughput"].append({"chains": chains, "dtype": dtype, "skipped": True,
                                          "predicted_s": guess})
                continue
            t_cfg = time.perf_counter()
            try:
                r = run_nuts(data, spec, N, chains, warmup, draws, dtype, depth=depth)
            except Exception as e:  # noqa: BLE001  (e.g. out of device memory)
                print(f"C={chains} {dtype}: failed {e!r}"[:500], flush=True)
                res["throughput"].append({"chains": chains, "dtype": dtype,
                                          "error": repr(e)[:500]})
                save()
                continue
            last = (chains, time.perf_counter() - t_cfg - r["compile_s"])
            r = {k: v for k, v in r.items() if k not in ("f_train_mean", "f_train_sd",
                                                         "ess_f_train")}
            res["throughput"].append(r)
            print(f"C={chains:5d} {dtype}: compile {r['compile_s']:.1f}s warmup "
                  f"{r['warmup_s']:.1f}s sample {r['sample_s']:.1f}s  {r['grads_per_s']:.3g} "
                  f"grad/s  mean steps {r['mean_steps']:.1f}  ESS f {r['ess_f']:.0f} "
                  f"K {r['ess_k']:.0f}  ESS/s {r['ess_per_s']:.1f}  peak "
                  f"{r.get('peak_device_mb', float('nan')):.0f} MB", flush=True)
            save()
    res["total_s"] = time.perf_counter() - T_START
    save()
    print(f"total {res['total_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
