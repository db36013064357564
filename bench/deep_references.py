"""NUTS references for deep networks (issue 18): collapsed sampler, small P, cached summaries.

Data: P = 8 train and 4 test Gaussian inputs in D = 6, labels sign(x_0 + 0.5 x_1) (seed 0);
kappa = 0.5, g_v = g_w = 1.  Points (tag, activation, depth, width, chi rule): the depth-2 deep
linear grid N in {16, 32, 64} x chi in {1, sqrt N, N}; depth-2 erf at N in {16, 32, 64} for
chi = N and at N = 32 for chi = 1, sqrt N; the depth ladder at N = 32, chi = N, depth 1, 2, 3,
linear and erf; depth-2 relu at N = 32, chi = 1 and N.  Each point is one JSON under
bench/results/deep/: posterior means of f_train, f_test and of the per-layer kernel scalars,
their Monte-Carlo standard errors (bench/ess.py, split-chain ESS), diagnostics, and the
sampler's figure of merit (wall x MCSE^2, under load).
Existing files are reused (delete one to redo it).

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/deep_references.py
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from ess import ess_mean, figure_of_merit, mcse_mean  # noqa: E402

import bayesnet as bn  # noqa: E402

OUT = HERE / "results" / "deep"
SETUP = dict(n_train=8, n_test=4, dim=6, kappa=0.5, g_v=1.0, g_w=1.0)


def data() -> bn.Dataset:
    """The reference data set (fixed seed)."""
    rng = np.random.default_rng(0)
    P, Pt, D = SETUP["n_train"], SETUP["n_test"], SETUP["dim"]
    X, Xt = rng.standard_normal((P, D)), rng.standard_normal((Pt, D))
    label = lambda A: np.sign(A[:, 0] + 0.5 * A[:, 1])  # noqa: E731
    return bn.from_arrays(X, label(X), Xt, label(Xt))


def chi_value(tag: str, width: int) -> float:
    """chi for a tag: '1', 'sqrt' (sqrt N) or 'N'."""
    return {"1": 1.0, "sqrt": math.sqrt(width), "N": float(width)}[tag]


def points() -> list[tuple[str, int, int, str]]:
    """(activation, depth, width, chi tag), the mean-field depth-2 points first."""
    pts = [(a, 2, n, "N") for a in ("linear", "erf") for n in (16, 32, 64)]
    pts += [("linear", 2, n, t) for n in (16, 32, 64) for t in ("1", "sqrt")]
    pts += [("erf", 2, 32, t) for t in ("1", "sqrt")]
    pts += [(a, L, 32, "N") for a in ("linear", "erf") for L in (1, 3)]
    pts += [("relu", 2, 32, t) for t in ("1", "N")]
    return pts


def path(activation: str, depth: int, width: int, tag: str) -> pathlib.Path:
    return OUT / f"{activation}_L{depth}_N{width}_chi{tag}.json"


def spec_of(activation: str, depth: int, width: int, tag: str) -> bn.NetworkSpec:
    return bn.NetworkSpec(
        width=width,
        activation=activation,
        depth=depth,
        chi=chi_value(tag, width),
        kappa=SETUP["kappa"],
        g_v=SETUP["g_v"],
        g_w=SETUP["g_w"],
    )


def summarise(tree, wall: float) -> dict:
    """Means, MCSEs, diagnostics and the figure of merit of one run."""
    post = tree.posterior
    out = {}
    for var in ("f_train", "f_test"):
        x = post[var].values  # (C, S, P)
        out[var] = x.mean((0, 1)).tolist()
        out[var + "_mcse"] = [mcse_mean(x[..., a]) for a in range(x.shape[-1])]
        out[var + "_ess"] = [ess_mean(x[..., a]) for a in range(x.shape[-1])]
    names = ["kernel_target", "kernel_trace", "kernel_alignment"]
    for name in names:
        if "layer_" + name in post:
            x = post["layer_" + name].values  # (C, S, L)
        else:
            x = post[name].values[..., None]  # (C, S, 1)
        out["layer_" + name] = x.mean((0, 1)).tolist()
        out["layer_" + name + "_mcse"] = [mcse_mean(x[..., k]) for k in range(x.shape[-1])]
    fm = post["f_train"].values.mean(-1)
    out["merit"] = figure_of_merit(wall, fm, post["kernel_target"].values)
    out["wall_s"] = wall
    st = tree.sample_stats
    out["divergences"] = int(st["diverging"].values.sum())
    out["mean_steps"] = float(st["n_steps"].values.mean())
    return out


def run_point(activation, depth, width, tag, chains, warmup, draws, seed) -> dict:
    spec = spec_of(activation, depth, width, tag)
    t0 = time.perf_counter()
    tree = bn.sample(
        spec, data(), chains=chains, warmup=warmup, draws=draws, seed=seed, progress=False
    )
    wall = time.perf_counter() - t0
    rec = {
        "activation": activation,
        "depth": depth,
        "width": width,
        "chi_tag": tag,
        "chi": spec.chi,
        "setup": SETUP,
        "sampler": dict(method="collapsed", chains=chains, warmup=warmup, draws=draws, seed=seed),
    }
    rec.update(summarise(tree, wall))
    return rec


def load(activation: str, depth: int, width: int, tag: str) -> dict | None:
    p = path(activation, depth, width, tag)
    return json.loads(p.read_text()) if p.exists() else None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--draws", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for pt in points():
        p = path(*pt)
        if p.exists():
            continue
        rec = run_point(*pt, args.chains, args.warmup, args.draws, args.seed)
        p.write_text(json.dumps(rec, indent=1))
        print(
            f"{p.name}: wall {rec['wall_s']:.0f}s  max mcse f_test "
            f"{max(rec['f_test_mcse']):.3g}  div {rec['divergences']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
