"""Hierarchy NNGP -> tree level -> one loop against the exact linear-network posterior.

Prints relative errors ||f_method - f_exact|| / ||f_exact|| of the mean train (and test) outputs
and of the hidden-kernel projection y^T K y / |y|^2, over widths N and chi in {1, sqrt(N), N}.
Uses theory.predict when it imports; otherwise the closed forms of shared/theory.md 3, 5.2, 5.3.

    .venv/bin/python bench/exact_hierarchy.py [--n-train 64 --dim 32 --kappa 0.5 --flip 0.1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.optimize import brentq

from bayesnet import NetworkSpec, ising
from theory.exact import predict_exact

METHODS = ("nngp", "tree", "one_loop")


def closed_form(spec, data, chi, method):
    """(f_train, f_test) of NNGP / tree level (5.2) / one loop (5.3) for a linear net."""
    K = spec.g_v / data.dim * data.X @ data.X.T  # (P, P)
    Kst = spec.g_v / data.dim * data.X_test @ data.X.T  # (P*, P)
    lam, U = np.linalg.eigh(K)
    lam, yt = np.clip(lam, 0, None), U.T @ data.y
    u = spec.g_w
    if method != "nngp":
        def F(logu):
            d = np.exp(logu) * lam + spec.kappa
            rhs = 1 / spec.g_w - chi / spec.width * np.sum(lam * yt**2 / d**2)
            if method == "one_loop":
                rhs += np.sum(lam / d) / spec.width
            return np.exp(-logu) - rhs
        u = np.exp(brentq(F, -30, 30, xtol=1e-14))
    a = U @ (yt / (u * lam + spec.kappa))  # (P,) (uK + kappa)^-1 y
    return u * K @ a, u * Kst @ a


def predictions(spec, data, chis, method):
    """f_train (chi, P), f_test (chi, P*), kernel_target (chi,) or None, from theory or closed form."""
    try:
        from theory import predict
        ds = predict(spec, data, chis, method=method)
        return ds.f_train.values, ds.f_test.values, ds.kernel_target.values
    except ImportError:
        rows = [closed_form(spec, data, c, method) for c in chis]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), None


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
    data = ising(n_train=args.n_train, n_test=args.n_test, dim=args.dim, flip=args.flip,
                 seed=args.seed)
    print(f"ising P={args.n_train} P*={args.n_test} D={args.dim} flip={args.flip} "
          f"kappa={args.kappa} g_v=g_w=1; rel. error vs exact: train outputs | test outputs"
          f" | y^T K y (one loop, sec 5.4)")
    head = "| N | chi | " + " | ".join(METHODS) + " | test: " + " | ".join(METHODS) + \
        " | kernel 1-loop | s_std |"
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
            kt = pr["one_loop"][2]
            kerr = abs(kt[i] / float(ex.kernel_target[i]) - 1) if kt is not None else np.nan
            cells = [f"{e:.1e}" for e in tr + te] + [f"{kerr:.1e}", f"{float(ex.s_std[i]):.3f}"]
            print(f"| {N} | {chi:.4g} | " + " | ".join(cells) + " |")
    print(f"exact predictions: {t_exact * 1e3:.0f} ms for {3 * len(args.widths)} chi values")


if __name__ == "__main__":
    main()
