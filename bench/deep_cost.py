"""Sampler cost per unit precision against depth (issue 18): collapsed NUTS on the reference
data of bench/deep_references.py, erf, N = 32, chi = N, L = 1, 2, 3, in one process.

Each depth runs twice with the same settings; the second run is timed (the first compiles).
Cost per unit precision = wall x MCSE^2 of the mean train output and of yhat^T K yhat
(bench/ess.figure_of_merit).  Timings are taken on a shared machine: under load, compare the
ratios only.  Writes bench/results/deep/cost.json.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/deep_cost.py
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from deep_references import OUT, data, spec_of  # noqa: E402
from ess import figure_of_merit  # noqa: E402

import bayesnet as bn  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--activation", default="erf")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args(argv)
    out = {}
    for L in (1, 2, 3):
        spec = spec_of(args.activation, L, args.width, "N")
        kw = dict(chains=args.chains, warmup=args.warmup, draws=args.draws, progress=False)
        bn.sample(spec, data(), seed=1, **kw)  # compile
        t0 = time.perf_counter()
        tree = bn.sample(spec, data(), seed=2, **kw)
        wall = time.perf_counter() - t0
        post = tree.posterior
        fm = figure_of_merit(wall, post["f_train"].values.mean(-1), post["kernel_target"].values)
        fm["wall_s"] = wall
        fm["mean_steps"] = float(tree.sample_stats["n_steps"].values.mean())
        out[L] = fm
        print(
            f"L={L}: wall {wall:.1f}s steps {fm['mean_steps']:.0f} cost_f {fm['cost_f']:.3g} "
            f"cost_k {fm['cost_k']:.3g} ESS/s {fm['ess_per_s']:.3g}",
            flush=True,
        )
    (OUT / f"cost_{args.activation}_N{args.width}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
