"""ReLU theory against the cached references of bench/relu_reference.py (docs/homogeneous.md).

For each width and chi tag: the tree level of theory/homogeneous.py and the one-loop (dressed and
first order) on its draws, for several seeds of the direction sampler; prints relative errors of
the seed mean against the pooled reference, the seed-to-seed spread, u* and the ESS, and writes
bench/results/relu/theory_<N>.json.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/relu_theory.py --widths 64 \
        --chis 1 sqrt --seeds 0 1 2
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


def run(width: int, tag: str, seeds, n_draws: int, orders) -> dict:
    """Theory outputs per seed and errors against the pooled reference."""
    import theory

    data = dataset()
    chi = chi_value(tag, width)
    spec = spec_for(width, chi)
    ref = pooled(width, tag)
    out = {"width": width, "chi": chi, "tag": tag}
    if ref is not None:
        out["ref_noise"] = [ref.attrs["rel_mcse_train"], ref.attrs["rel_mcse_test"]]
    for order in orders:
        trs, tes, tree_tr, tree_te, info = [], [], [], [], []
        for seed in seeds:
            t0 = time.perf_counter()
            ds = theory.predict(
                spec,
                data,
                chis=[chi],
                method="one_loop",
                order=order,
                n_draws=n_draws,
                seed=seed,
                n_batches=0,
            )
            trs.append(ds["f_train"].values[0])
            tes.append(ds["f_test"].values[0])
            tree_tr.append(trs[-1] - ds["correction_train"].values[0])
            tree_te.append(tes[-1] - ds["correction_test"].values[0])
            info.append(
                dict(
                    converged=bool(ds["converged"].values[0]),
                    ess=float(ds.attrs["ess"][0]),
                    wall_s=time.perf_counter() - t0,
                )
            )
        res = {"runs": info}
        for name, a, b in (("tree", tree_tr, tree_te), (order, trs, tes)):
            a, b = np.array(a), np.array(b)
            m_tr, m_te = a.mean(0), b.mean(0)
            n = len(seeds)
            spread = [
                float(np.linalg.norm(a.std(0, ddof=1)) / np.linalg.norm(m_tr)) if n > 1 else np.nan,
                float(np.linalg.norm(b.std(0, ddof=1)) / np.linalg.norm(m_te)) if n > 1 else np.nan,
            ]
            res[name] = {"spread_one_seed": spread}
            if ref is not None:
                res[name]["err_mean"] = [
                    relerr(m_tr, ref["f_train"].values),
                    relerr(m_te, ref["f_test"].values),
                ]
                res[name]["err_per_seed"] = [
                    [relerr(x, ref["f_train"].values) for x in a],
                    [relerr(x, ref["f_test"].values) for x in b],
                ]
        out[order] = res
        print(f"N={width} chi={tag} {order}: {json.dumps(res)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64])
    ap.add_argument("--chis", nargs="+", default=["1"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-draws", type=int, default=65536)
    ap.add_argument("--orders", nargs="+", default=["dressed", "first"])
    args = ap.parse_args()
    for N in args.widths:
        path = OUT / f"theory_{N}.json"
        allres = json.loads(path.read_text()) if path.exists() else {}
        for tag in args.chis:
            allres[tag] = run(N, tag, args.seeds, args.n_draws, args.orders)
            path.write_text(json.dumps(allres, indent=1))


if __name__ == "__main__":
    main()
