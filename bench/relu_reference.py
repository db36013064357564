"""ReLU reference samples for the homogeneous-activation theory (issue 16, docs/homogeneous.md).

Collapsed NUTS on a ReLU teacher (target relu(u.x/sqrt D): an odd and an even part), P=48 train
and 48 test points, D=20, kappa=0.2, g_v=g_w=1, for N in {16, 64, 128} and chi in {1, sqrt N, N}.
Each run is kept as the compact summary of bench/width_ladder.py (posterior means, MCSE from the
split-chain ESS, batch means, mean hidden kernel); seeds of one point pool by inverse variance.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/relu_reference.py \
        --widths 64 --chis 1 --chains 4 --warmup 500 --draws 3000 --seed 0
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import xarray as xr

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from width_ladder import chi_value, summarise  # noqa: E402
from width_ladder import pooled as width_ladder_pooled  # noqa: E402

OUT = HERE / "results" / "relu"
SETUP = dict(n_train=48, n_test=48, dim=20, kappa=0.2, g_v=1.0, g_w=1.0, seed=0)


def dataset(n_train: int = SETUP["n_train"]):
    """The ReLU teacher: y = relu(u.x/sqrt D), x ~ N(0, I_D), D=20, data seed 0."""
    import bayesnet as bn

    return bn.teacher(
        n_train=n_train, n_test=SETUP["n_test"], dim=SETUP["dim"], activation="relu", seed=0
    )


def spec_for(width: int, chi: float):
    """The ReLU network at one width and chi."""
    import bayesnet as bn

    return bn.NetworkSpec(
        width=width,
        activation="relu",
        g_v=SETUP["g_v"],
        g_w=SETUP["g_w"],
        chi=chi,
        kappa=SETUP["kappa"],
    )


def path_for(width: int, chi_tag: str, seed: int) -> pathlib.Path:
    """Summary file of one run."""
    return OUT / f"relu_N{width}_chi{chi_tag}_s{seed}.nc"


def pooled(width: int, chi_tag: str) -> xr.Dataset | None:
    """All seeds of one point pooled with inverse-variance weights (None if no run exists)."""
    return width_ladder_pooled(width, chi_tag, OUT, "relu", mean_vars=("K_train",))


def main() -> None:
    import bayesnet as bn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64])
    ap.add_argument("--chis", nargs="+", default=["1"])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = dataset()
    for N in args.widths:
        for tag in args.chis:
            path = path_for(N, tag, args.seed)
            if path.exists():
                continue
            t0 = time.perf_counter()
            tree = bn.sample(
                spec_for(N, chi_value(tag, N)),
                data,
                chains=args.chains,
                warmup=args.warmup,
                draws=args.draws,
                seed=args.seed,
                progress=False,
            )
            ds = summarise(tree, N, tag, args.seed)
            ds.attrs["wall_s"] = time.perf_counter() - t0
            ds.to_netcdf(path, engine="h5netcdf")
            print(
                f"relu N={N} chi={tag}: {ds.attrs['wall_s']:.0f} s, rel mcse train "
                f"{ds.attrs['rel_mcse_train']:.1e} test {ds.attrs['rel_mcse_test']:.1e}, "
                f"divergences {ds.attrs['divergences']}, depth {ds.attrs['mean_tree_depth']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
