"""Non-linear (erf) theory against collapsed NUTS on the same network: where each theory holds.

No exact reference exists for erf networks, so this checks the claims of docs/one_loop.md with
bounds from the Monte-Carlo error of the samples and the expansion order: towards mean field the
tree-level saddle point holds to O(1/N) and the NNGP does not; at standard scaling the tree level
misses an O(1/N) fluctuation term that the first-order correction supplies.
"""

import arviz_stats as azs
import numpy as np
import pytest

import bayesnet as bn
import theory

N = 16
DATA = bn.ising(n_train=20, n_test=10, dim=12, flip=0.1, seed=2)
CHIS = [1.0, 2.0, 4.0, 8.0, 16.0]


@pytest.fixture(scope="module")
def sampled():
    out = {}
    for chi in (1.0, float(N)):
        spec = bn.NetworkSpec(width=N, activation="erf", kappa=0.3, chi=chi)
        post = bn.sample(spec, DATA, chains=4, warmup=500, draws=1500, progress=False, seed=3)[
            "posterior"
        ].to_dataset()[["f_train", "f_test"]]
        mcse = azs.mcse(post)
        out[chi] = {
            s: (post[s].mean(("chain", "draw")).values, mcse[s].values)
            for s in ("f_train", "f_test")
        }
    return out


@pytest.fixture(scope="module")
def predicted():
    spec = bn.NetworkSpec(width=N, activation="erf", kappa=0.3)
    return {
        m: theory.predict(spec, DATA, CHIS, m, order="first") for m in ("nngp", "tree", "one_loop")
    }


def _rel(pred, chi, side, mean):
    f = pred[side].sel(chi=chi).values
    return float(np.linalg.norm(f - mean) / np.linalg.norm(mean))


def _noise(mean, se):
    return float(np.linalg.norm(se) / np.linalg.norm(mean))


def test_mean_field_tree_level_holds_nngp_fails(sampled, predicted):
    """chi = N: tree error < 3 x MC noise + 0.2/N (its O(1/N) remainder; measured 4.9e-3 with
    noise 5.6e-4); the NNGP is off by more than 5x the tree level (measured 13x)."""
    mean, se = sampled[float(N)]["f_train"]
    noise = _noise(mean, se)
    tree = _rel(predicted["tree"], N, "f_train", mean)
    nngp = _rel(predicted["nngp"], N, "f_train", mean)
    print(f"chi=N: tree {tree:.2e}, nngp {nngp:.2e}, MC noise {noise:.2e}")
    assert noise < 2e-3
    assert tree < 3 * noise + 0.2 / N
    assert nngp > 5 * tree  # kernel adaptation is what matters for erf


def test_standard_scaling_first_order_correction_helps(sampled, predicted):
    """chi = 1: the first-order fluctuation correction leaves an O(1/N^2) remainder: its error is
    < 3 x MC noise + 1/N^2, below half the tree level's on train points and below the tree
    level's on test points (measured 3.6e-3 vs 1.1e-2 train, 3.7e-3 vs 7.9e-3 test, noise
    1.4e-3 / 2.0e-3)."""
    for side, factor in (("f_train", 0.5), ("f_test", 1.0)):
        mean, se = sampled[1.0][side]
        noise = _noise(mean, se)
        one = _rel(predicted["one_loop"], 1.0, side, mean)
        tree = _rel(predicted["tree"], 1.0, side, mean)
        print(f"chi=1 {side}: one_loop {one:.2e}, tree {tree:.2e}, MC noise {noise:.2e}")
        assert one < 3 * noise + 1.0 / N**2
        assert one < factor * tree
    # the correction is resolved above its own Monte-Carlo error
    ds = predicted["one_loop"].sel(chi=1.0)
    assert float(ds.correction_size_train) > 5 * float(ds.correction_mcse_train)
