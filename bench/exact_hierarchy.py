"""Hierarchy NNGP -> tree level -> one loop against the exact linear-network posterior.

Prints relative errors ||f_method - f_exact|| / ||f_exact|| of the mean train (and test) outputs
and of the hidden-kernel projection y^T K y / |y|^2, over widths N and chi in {1, sqrt(N), N}.
The theory side is theory.predict (equations in docs/rescaling.md).

    .venv/bin/python bench/exact_hierarchy.py [--n-train 64 --dim 32 --kappa 0.5 --flip 0.1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bayesnet import NetworkSpec, ising
from theory import predict
from theory.exact import predict_exact

METHODS = ("nngp", "tree", "one_loop")


def predictions(spec, data, chis, method):
    """f_train (chi, P), f_test (chi, P*), kernel_target (chi,) from theory.predict."""
    ds = predict(spec, data, chis, method=method)
    return ds.f_train.values, ds.f_test.values, ds.kernel_target.values


def rel(a, b, axis=-1):
    """Relative error ||a - b|| / ||b|| along axis."""
    return np.linalg.norm(a - b, axis=axis) / np.linalg.norm(b, axis=axis)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=64)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--kappa", type=float, default=0.5)
    ap.add_argument("--flip", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256, 1024])
    args = ap.parse_args(argv)
    data = ising(
        n_train=args.n_train, n_test=args.n_test, dim=args.dim, flip=args.flip, seed=args.seed
    )
    print(
        f"ising P={args.n_train} P*={args.n_test} D={args.dim} flip={args.flip} "
        f"kappa={args.kappa} g_v=g_w=1; rel. error vs exact: train outputs | test outputs"
        f" | y^T K y (one loop, sec 5.4)"
    )
    head = (
        "| N | chi | "
        + " | ".join(METHODS)
        + " | test: "
        + " | ".join(METHODS)
        + " | kernel 1-loop | s_std |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    t_exact = 0.0
    for N in args.widths:
        spec = NetworkSpec(width=N, kappa=args.kappa)
        chis = np.array([1.0, np.sqrt(N), float(N)])
        t0 = time.perf_counter()
        ex = predict_exact(spec, data, chis)
        t_exact += time.perf_counter() - t0
        pr = {m: predictions(spec, data, chis, m) for m in METHODS}
        for i, chi in enumerate(chis):
            tr = [rel(pr[m][0][i], ex.f_train.values[i]) for m in METHODS]
            te = [rel(pr[m][1][i], ex.f_test.values[i]) for m in METHODS]
            kerr = abs(pr["one_loop"][2][i] / float(ex.kernel_target[i]) - 1)
            cells = [f"{e:.1e}" for e in tr + te] + [f"{kerr:.1e}", f"{float(ex.s_std[i]):.3f}"]
            print(f"| {N} | {chi:.4g} | " + " | ".join(cells) + " |")
    print(f"exact predictions: {t_exact * 1e3:.0f} ms for {3 * len(args.widths)} chi values")


if __name__ == "__main__":
    main()
