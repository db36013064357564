"""Scaling of the collapsed sampler and of the dressed one-loop with the number of train points.

Each (method, P) runs in its own subprocess, which reports its wall time and its peak resident
memory (resource.getrusage ru_maxrss: XLA allocates outside Python, so tracemalloc sees nothing).
Erf network N=256, D=50, chi=N, Ising task; fitted exponents are log-log least squares over P.

  sampler:  bayesnet.sample(method="collapsed"), 1 chain, few warm-up steps and draws at
            max_tree_depth 3: the cost per gradient (compile excluded) is what scales.
  one_loop: theory.predict(method="one_loop") at one chi (tree level + dressed correction with
            its batch errors), default 32768 draws; the tree level alone is timed too.

Usage: OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/scaling.py \
           [--methods sampler,one_loop] \
           [--P 128 256 512 1024 2048] [--n-draws 32768] [--timeout 600] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SAMPLER = """
import json, resource, time, bayesnet as bn
d = bn.ising({P}, 64, 50, flip=0.1, seed=0)
s = bn.NetworkSpec(width=256, activation="erf", chi=256.0, kappa=0.3)
c0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t = bn.sample(s, d, method="collapsed", chains=1, warmup={warmup}, draws={draws},
              max_tree_depth=3, progress=False, seed=1)
a = t.attrs
print(json.dumps({{"sample_s": a["timing_sample_s"], "compile_s": a["timing_compile_s"],
                  "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - c0,
                  "grads": int(a.get("timing_n_grad", 0)),
                  "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""

ONE_LOOP = """
import json, resource, time, bayesnet as bn, theory
d = bn.ising({P}, 64, 50, flip=0.1, seed=0)
s = bn.NetworkSpec(width=256, activation="erf", kappa=0.3)
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t0, c0 = time.perf_counter(), cpu()
tr = theory.predict(s, d, [256.0], method="tree", n_draws={n_draws})
tree_s, tree_cpu = time.perf_counter() - t0, cpu() - c0
t0, c0 = time.perf_counter(), cpu()
ds = theory.predict(s, d, [256.0], method="one_loop", n_draws={n_draws})
one_s, one_cpu = time.perf_counter() - t0, cpu() - c0
print(json.dumps({{"tree_s": tree_s, "one_loop_s": one_s, "tree_cpu_s": tree_cpu,
                  "one_loop_cpu_s": one_cpu, "n_draws": {n_draws},
                  "converged": bool(ds.converged.all()),
                  "correction_size": float(ds.correction_size_train[0]),
                  "correction_mcse": float(ds.correction_mcse_train[0]),
                  "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def run(code: str, timeout: float) -> dict:
    """Run `code` in a fresh interpreter; its last stdout line as a dict (or the failure)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {"timeout_s": timeout}
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1][:300]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


def exponent(rows: list[dict], key: str) -> float | None:
    """Log-log least-squares slope of rows[key] against P (None with fewer than 2 points)."""
    pts = [(r["P"], r[key]) for r in rows if r.get(key)]
    if len(pts) < 2:
        return None
    return float(np.polyfit(np.log([p for p, _ in pts]), np.log([v for _, v in pts]), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--P", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    ap.add_argument("--methods", default="sampler,one_loop")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--n-draws", type=int, default=32768, help="one-loop tilted draws")
    ap.add_argument("--out", default="bench/results/scaling.json")
    args = ap.parse_args()
    if os.path.exists(args.out):  # add to the rows of an earlier run (e.g. the other method)
        with open(args.out) as f:
            old = json.load(f)["rows"]
    else:
        old = {"sampler": [], "one_loop": []}
    rows = {m: [r for r in old[m] if m not in args.methods.split(",")] for m in old}
    for method in args.methods.split(","):
        for P in args.P:
            code = (SAMPLER if method == "sampler" else ONE_LOOP).format(
                P=P, warmup=args.warmup, draws=args.draws, n_draws=args.n_draws
            )
            r = {"P": P, **run(code, args.timeout)}
            if method == "sampler" and r.get("grads"):
                r["ms_per_grad"] = 1e3 * r["sample_s"] / r["grads"]
            rows[method].append(r)
            print(method, json.dumps(r), flush=True)
    fits = {
        "sampler_ms_per_grad": exponent(rows["sampler"], "ms_per_grad"),
        "sampler_maxrss_gb": exponent(rows["sampler"], "maxrss_gb"),
        "one_loop_s": exponent(rows["one_loop"], "one_loop_s"),
        "tree_s": exponent(rows["one_loop"], "tree_s"),
        "one_loop_cpu_s": exponent(rows["one_loop"], "one_loop_cpu_s"),
        "tree_cpu_s": exponent(rows["one_loop"], "tree_cpu_s"),
        "one_loop_maxrss_gb": exponent(rows["one_loop"], "maxrss_gb"),
    }
    print("exponents", json.dumps(fits), flush=True)
    out = {
        "setting": "erf N=256 D=50 chi=N kappa=0.3, bn.ising(P, 64, 50, flip=0.1, seed=0); "
        "shared 2-core machine under load",
        "rows": rows,
        "exponents": fits,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
