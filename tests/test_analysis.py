"""analysis: diagnostics verdicts, sample estimates, and the comparison with theory."""
import json

import numpy as np
import pytest
import xarray as xr

import bayesnet
import theory
from analysis import comparison, diagnostics

SAMPLE_PARTS = ("f_train", "f_test", "discrepancy_train", "discrepancy_test",
                "signed_discrepancy_train", "signed_discrepancy_test")


def fake_tree(rng, chains=4, draws=500, shift=0.0, diverging=0, P=6, Pt=4, energy=None):
    """A hand-made posterior tree of i.i.d. normal draws (chain 0 shifted by `shift`)."""
    def noise(*shape):
        x = rng.standard_normal((chains, draws) + shape)
        x[0] += shift
        return x
    post = xr.Dataset({"f_train": (("chain", "draw", "train"), 1 + 0.1 * noise(P)),
                       "f_test": (("chain", "draw", "test"), 1 + 0.1 * noise(Pt)),
                       "var_train": (("chain", "draw", "train"), 0.01 + 0.001 * noise(P) ** 2),
                       "var_test": (("chain", "draw", "test"), 0.01 + 0.001 * noise(Pt) ** 2),
                       "kernel_target": (("chain", "draw"), 3 + noise()),
                       "kernel_trace": (("chain", "draw"), 1 + 0.1 * noise()),
                       "kernel_alignment": (("chain", "draw"), 0.5 + 0.01 * noise())})
    div = np.zeros((chains, draws), bool)
    div.flat[:diverging] = True
    stats = xr.Dataset({"diverging": (("chain", "draw"), div),
                        "tree_depth": (("chain", "draw"), np.full((chains, draws), 3)),
                        "energy": (("chain", "draw"), rng.standard_normal((chains, draws))
                                   if energy is None else energy)})
    obs = xr.Dataset({"y": ("train", np.ones(P)), "y_test": ("test", np.ones(Pt))})
    kern = xr.Dataset({"K_train": (("train", "train_"), np.eye(P)),
                       "K_test_train": (("test", "train_"), np.zeros((Pt, P)))})
    tree = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats,
                                  "observed_data": obs, "kernel": kern})
    tree.attrs = {"spec": json.dumps({"width": 4, "activation": "linear", "g_v": 1.0,
                                      "g_w": 1.0, "chi": 1.0, "kappa": 1.0}),
                  "method": "collapsed"}
    return tree


def test_verdict_ok_on_iid_draws():
    diag = diagnostics.diagnose(fake_tree(np.random.default_rng(0)))
    assert diag["verdict"].item() == "ok", diag["reasons"].item()
    assert float(diag["max_rhat"]) < 1.01 and float(diag["min_ess_bulk"]) > 400
    assert set(diag["diagnostic"].values) == set(diagnostics.DIAGNOSTICS)


@pytest.mark.parametrize("kwargs, reason", [({"shift": 1.0}, "R-hat"),
                                            ({"diverging": 3}, "divergences"),
                                            ({"draws": 60}, "bulk ESS")])
def test_verdict_warn_names_the_reason(kwargs, reason):
    diag = diagnostics.diagnose(fake_tree(np.random.default_rng(1), **kwargs))
    assert diag["verdict"].item() == "warn"
    assert reason in diag["reasons"].item()


def test_low_bfmi_warns():
    e = np.cumsum(np.random.default_rng(3).standard_normal((4, 500)), axis=1)  # random walk
    tree = fake_tree(np.random.default_rng(2), energy=e)
    diag = diagnostics.diagnose(tree)
    assert float(diag["bfmi"].min()) < 0.2 and "E-BFMI" in diag["reasons"].item()


def test_collapsed_variance_uses_law_of_total_variance():
    tree = fake_tree(np.random.default_rng(4))
    est = comparison.sample_estimates(tree)
    post = tree["posterior"]
    want = post["var_train"].mean(("chain", "draw")) + post["f_train"].var(("chain", "draw"))
    np.testing.assert_allclose(est["var_train"], want, rtol=1e-12)
    tree.attrs["method"] = "full"
    est_full = comparison.sample_estimates(tree)
    np.testing.assert_allclose(est_full["var_train"], post["f_train"].var(("chain", "draw")))


# ------------------------------------------------------------------ real samples vs theory

DATA = dict(n_train=16, n_test=12, dim=8, flip=0.1, seed=3)
WIDTH, KAPPA, CHIS = 48, 0.2, (1.0, 48.0)


@pytest.fixture(scope="module")
def linear_sweep():
    data = bayesnet.ising(**DATA)
    spec = bayesnet.NetworkSpec(width=WIDTH, activation="linear", kappa=KAPPA)
    trees = [bayesnet.sample(spec.replace(chi=c), data, chains=4, warmup=300, draws=400,
                             seed=11, progress=False) for c in CHIS]
    preds = {m: theory.predict(spec, data, CHIS, m) for m in theory.METHODS}
    return data, spec, trees, preds


def test_compare_linear_one_loop_holds_nngp_flagged(linear_sweep):
    _, _, trees, preds = linear_sweep
    comp = comparison.compare(trees, preds)
    assert list(comp["chi"].values) == list(CHIS)
    assert set(comp["theory"].values) == set(theory.METHODS)
    assert set(comp["verdict"].values) <= {"ok", "warn"}
    one_loop, exact, nngp = ({"theory": m} for m in ("one_loop", "exact", "nngp"))
    for key in comparison.OBSERVABLES:  # exact and one loop hold at mean-field scaling chi = N
        z = comp[f"{key}_maxabsz"].sel(chi=CHIS[-1])
        assert float(z.sel(exact)) < 4 and float(z.sel(one_loop)) < 4, key
    for key in ("f_train", "f_test", "var_train", "var_test"):  # and pointwise at chi = 1
        assert float(comp[f"{key}_maxabsz"].sel(one_loop).sel(chi=1.0)) < 4, key
    # the NNGP ignores kernel adaptation: wrong in the mean-field regime, flagged there
    assert int(comp["flagged"].sel(nngp).sel(chi=CHIS[-1])) == 1
    assert int(comp["flagged"].sel(one_loop).sel(chi=CHIS[-1])) == 0
    assert float(comp["signed_discrepancy_train_maxabsz"].sel(nngp).sel(chi=CHIS[-1])) > 20
    assert float(comp["relerr"].sel(one_loop).max()) < float(comp["relerr"].sel(nngp).max())
    assert comp.attrs["width"] == WIDTH


def test_compare_z_and_relerr_definitions(linear_sweep):
    _, _, trees, preds = linear_sweep
    comp = comparison.compare(trees[0], preds["one_loop"])
    z = (comp["f_train_theory"] - comp["f_train"]) / comp["f_train_mcse"]
    np.testing.assert_allclose(comp["f_train_z"], z)
    rel = np.linalg.norm(comp["f_train_theory"] - comp["f_train"]) / np.linalg.norm(
        comp["f_train"])
    np.testing.assert_allclose(comp["f_train_relerr"].values.ravel(), rel)
    with pytest.raises(ValueError, match="no prediction at chi"):
        comparison.compare(trees[1], preds["one_loop"].isel(chi=[0]))


def test_against_exact_orders_the_theories(linear_sweep):
    _, _, _, preds = linear_sweep
    ref = comparison.against_reference(preds)
    err = ref["f_train_relerr"]
    assert "exact" not in err["theory"].values
    assert np.all(err.sel({"theory": "one_loop"}) < err.sel({"theory": "tree"}))


def test_non_converged_run_is_flagged(linear_sweep):
    data, spec, _, preds = linear_sweep
    bad = bayesnet.sample(spec.replace(chi=CHIS[-1]), data, chains=4, warmup=5, draws=40, seed=1,
                          progress=False)
    diag = diagnostics.diagnose(bad)
    assert diag["verdict"].item() == "warn"
    comp = comparison.compare(bad, preds)
    assert comp["verdict"].item() == "warn" and comp["reasons"].item()
