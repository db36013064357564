"""Non-linear (erf) theory against collapsed NUTS on the same network: where each theory holds.

No exact reference exists for erf networks, so this checks the claims of docs/one_loop.md with
the tolerance rule (analysis/tolerance.py): the Monte-Carlo errors of the samples and of the
theory (its replica error bar) in quadrature, Sidak over the points, plus the bias bound of the
theory's order.  Towards mean field the tree-level saddle point holds to O(1/N) and the NNGP does
not; at standard scaling the tree level misses an O(1/N) fluctuation term that the first-order
correction supplies, leaving O(P^2/N^2).
"""

import math
import os

import arviz_stats as azs
import numpy as np
import pytest

import bayesnet as bn
import theory
from analysis import tolerance

N = 16
DATA = bn.ising(n_train=20, n_test=10, dim=12, flip=0.1, seed=2)
CHIS = [1.0, 2.0, 4.0, 8.0, 16.0]
# BAYESNET_TEST_SEED shifts every seed of the statistical tests here (flake checks: run with
# 0, 1, 2; the assertions hold for any value)
SEED = int(os.environ.get("BAYESNET_TEST_SEED", "0"))


@pytest.fixture(scope="module")
def sampled():
    out = {}
    for chi in (1.0, float(N)):
        spec = bn.NetworkSpec(width=N, activation="erf", kappa=0.3, chi=chi)
        run = dict(chains=4, warmup=500, draws=1500, progress=False, seed=3 + SEED)
        tree = bn.sample(spec, DATA, **run)
        post = tree["posterior"].to_dataset()[["f_train", "f_test"]]
        mcse = azs.mcse(post)
        out[chi] = {
            s: (post[s].mean(("chain", "draw")).values, mcse[s].values)
            for s in ("f_train", "f_test")
        }
    return out


def opts(method: str) -> dict:
    """Sampler options for the sampled theories (closed forms take none)."""
    return {"n_draws": 65536, "seed": SEED} if theory.predict_options(method, "erf") else {}


@pytest.fixture(scope="module")
def predicted():
    spec = bn.NetworkSpec(width=N, activation="erf", kappa=0.3)
    return {
        m: theory.predict(spec, DATA, CHIS, m, order="first", **opts(m))
        for m in ("nngp", "tree", "one_loop")
    }


def _rel(pred, chi, side, mean):
    f = pred[side].sel(chi=chi).values
    return float(np.linalg.norm(f - mean) / np.linalg.norm(mean))


def _noise(mean, se):
    return float(np.linalg.norm(se) / np.linalg.norm(mean))


def _agree(pred, chi, side, sampled, order, n_eff=1.0):
    """The theory at chi agrees with the samples under the tolerance rule (order's bias)."""
    mean, se = sampled[chi][side]
    th = pred.sel(chi=chi)
    bias = tolerance.bias_bound(tolerance.size(mean), N, order, n_eff=n_eff)
    return tolerance.agree(th[side].values, mean, se, th[f"{side}_mcse"].values, bias=bias)


def test_mean_field_tree_level_holds_nngp_fails(sampled, predicted):
    """chi = N: the tree level agrees with the samples within both MC errors and its O(1/N)
    bias bound (measured error 4.5e-3, noise 5.7e-4); the NNGP is told apart from the samples at
    their MC error (measured 6.4e-2), and is off by more than 5x the tree level (measured 13x)."""
    mean, se = sampled[float(N)]["f_train"]
    noise = _noise(mean, se)
    tree = _rel(predicted["tree"], N, "f_train", mean)
    nngp = _rel(predicted["nngp"], N, "f_train", mean)
    print(f"chi=N: tree {tree:.2e}, nngp {nngp:.2e}, MC noise {noise:.2e}")
    for side in ("f_train", "f_test"):
        assert _agree(predicted["tree"], float(N), side, sampled, tolerance.ORDERS["tree"])
        assert not _agree(predicted["nngp"], float(N), side, sampled, math.inf)  # MC error only
    assert nngp > 5 * tree  # kernel adaptation is what matters for erf


def test_standard_scaling_first_order_correction_helps(sampled, predicted):
    """chi = 1: the first-order fluctuation correction leaves an O(P^2/N^2) remainder: it agrees
    with the samples under the rule with that bias (n_eff = P), its error is below the tree
    level's (measured 3.6e-3 vs 1.1e-2 train, 3.7e-3 vs 7.9e-3 test, noise 1.4e-3 / 2.0e-3),
    and the correction is resolved above its own replica error."""
    for side in ("f_train", "f_test"):
        mean, se = sampled[1.0][side]
        noise = _noise(mean, se)
        one = _rel(predicted["one_loop"], 1.0, side, mean)
        tree = _rel(predicted["tree"], 1.0, side, mean)
        print(f"chi=1 {side}: one_loop {one:.2e}, tree {tree:.2e}, MC noise {noise:.2e}")
        order = tolerance.ORDERS["one_loop"]
        assert _agree(predicted["one_loop"], 1.0, side, sampled, order, n_eff=DATA.n_train)
        assert one < tree
    ds = predicted["one_loop"].sel(chi=1.0)
    z = float(ds.correction_size_train) / float(ds.correction_mcse_train)
    assert z > tolerance.z_threshold(1, dof=ds.attrs["replicas"] - 1)
