"""Cavity tree level for relu (theory/cavity.py) against the cached references of
bench/relu_reference.py: relative errors of train/test means per seed, the seed spread, ESS and
y^T Q y (unit y) against the sampled kernel; writes bench/results/relu/cavity_<N>.json.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/relu_cavity.py --width 64 \
        --chis 1 sqrt N --seeds 0 1 --n-draws 65536
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from relu_reference import OUT, dataset, pooled, spec_for  # noqa: E402
from width_ladder import chi_value, relerr  # noqa: E402


def main() -> None:
    from bayesnet.precision import enable_float64
    from theory import cavity, homogeneous, kernels
    from theory.schema import PriorKernels

    enable_float64()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--chis", nargs="+", default=["1", "sqrt", "N"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--n-draws", type=int, default=65536)
    args = ap.parse_args()
    N, data = args.width, dataset()
    spec = spec_for(N, 1.0)
    kern = PriorKernels(
        *(
            np.asarray(k)
            for k in (
                kernels.kernel("relu", data.X, data.X, 1.0),
                kernels.kernel("relu", data.X_test, data.X, 1.0),
                kernels.kernel_diag("relu", data.X_test, 1.0),
            )
        )
    )
    pb = homogeneous.problem(spec, data, kern)
    chis = [chi_value(t, N) for t in args.chis]
    yh = pb.y / np.linalg.norm(pb.y)
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs.append(cavity.anneal(pb, chis, n_draws=args.n_draws, seed=seed))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    out = {}
    for k, tag in enumerate(args.chis):
        ref = pooled(N, tag)
        rows = [r[k][0] for r in runs]
        sols = [r[k][1] for r in runs]
        res = {
            "chi": chis[k],
            "converged": [bool(s.converged) for s in sols],
            "ess": [float(s.ess) for s in sols],
            "yQy": [float(yh @ r.K_train @ yh) for r in rows],
        }
        tr = np.array([r.f_train for r in rows])
        te = np.array([r.f_test for r in rows])
        if len(rows) > 1:
            res["spread_one_seed"] = [
                float(np.linalg.norm(tr.std(0, ddof=1)) / np.linalg.norm(tr.mean(0))),
                float(np.linalg.norm(te.std(0, ddof=1)) / np.linalg.norm(te.mean(0))),
            ]
        if ref is not None:
            fr, ft = ref["f_train"].values, ref["f_test"].values
            res["ref_noise"] = [ref.attrs["rel_mcse_train"], ref.attrs["rel_mcse_test"]]
            res["ref_yKy"] = float(yh @ ref["K_train"].values @ yh)
            res["err_per_seed"] = [[relerr(x, fr) for x in tr], [relerr(x, ft) for x in te]]
            res["err_mean"] = [relerr(tr.mean(0), fr), relerr(te.mean(0), ft)]
        out[tag] = res
        print(f"N={N} chi={tag}: {json.dumps(res)}", flush=True)
    (OUT / f"cavity_{N}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
