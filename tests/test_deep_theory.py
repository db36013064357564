"""Deep theory (theory/deep.py) against independent references.

- depth 1: every deep method reproduces the one-layer theory.predict (different code paths);
- depth 2, linear: the multi-scale tilted saddle point (one P x P tilt per layer, closed-form
  Gaussian layers) and the Li-Sompolinsky scale equation (one scalar per layer) are two
  derivations of the same tree level and must agree to solver precision;
- exact deep linear posterior (grid in log S) against an independent Monte-Carlo of the L-scale
  mixture (numpy draws of the scales, importance-weighted) and against the cached NUTS
  references of bench/results/deep (z from the MCSEs of both);
- a solve that does not converge returns NaN and converged=False with a warning.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

import bayesnet as bn
import theory
from theory import deep

REFS = pathlib.Path(__file__).resolve().parent.parent / "bench" / "results" / "deep"


def _data(P=8, Pt=4, D=10, seed=1):
    rng = np.random.default_rng(seed)
    X, Xt = rng.standard_normal((P, D)), rng.standard_normal((Pt, D))
    return bn.from_arrays(X, np.sign(X[:, 0]), Xt, np.sign(Xt[:, 0]))


@pytest.mark.parametrize(
    "method", ["nngp", "rescaling_tree", "rescaling_one_loop", "exact", "tree"]
)
def test_depth_one_reproduces_the_one_layer_theory(method):
    d = _data()
    spec = bn.NetworkSpec(width=32, activation="linear", kappa=0.5)
    chis = [1.0, math.sqrt(32), 32.0]
    ours = deep.predict(spec, d, chis, method)
    ref = theory.predict(spec, d, chis, method)
    # the tree's variances are the GP's with the adapted kernel here, the rescaled GP's there
    for v in ("f_train", "f_test") + (("var_test",) if method != "tree" else ()):
        np.testing.assert_allclose(ours[v], ref[v], rtol=1e-6, atol=1e-9, err_msg=v)


@pytest.mark.parametrize("depth", [2, 3])
def test_multiscale_tree_equals_li_sompolinsky_tree(depth):
    d = _data()
    spec = bn.NetworkSpec(width=32, activation="linear", kappa=0.5, depth=depth)
    chis = [1.0, math.sqrt(32), 32.0]
    tree = theory.predict(spec, d, chis, "tree")
    ls = theory.predict(spec, d, chis, "rescaling_tree")
    assert tree.converged.all() and ls.converged.all()
    np.testing.assert_allclose(tree.f_train, ls.f_train, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tree.f_test, ls.f_test, rtol=1e-6, atol=1e-8)
    # and adaptation is real: far from the NNGP at chi = N
    nngp = theory.predict(spec, d, [32.0], "nngp")
    assert float(np.abs(tree.f_test.sel(chi=32.0) - nngp.f_test.isel(chi=0)).max()) > 0.1


def _mc_scale_mixture(spec, d, n, seed):
    """Posterior mean test outputs of a deep linear net by importance sampling the L prior
    scales (numpy Gamma draws; independent of theory/deep.py): mean, standard error (P*,)."""
    rng = np.random.default_rng(seed)
    S = np.prod(rng.gamma(spec.width / 2, 2.0 / spec.width, size=(n, spec.depth)), axis=1)
    X, Xt, y = d.X, d.X_test, d.y
    Kx = spec.g_v * X @ X.T / X.shape[1]
    Kxt = spec.g_v * Xt @ X.T / X.shape[1]
    u = spec.g_w * spec.g_v ** (spec.depth - 1) * S  # (n,)
    lam, U = np.linalg.eigh(Kx)
    yt = U.T @ y
    dd = u[:, None] * lam + spec.kappa  # (n, P)
    logw = -0.5 * np.sum(np.log(dd), 1) - 0.5 * spec.chi * np.sum(yt**2 / dd, 1)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    m = (u[:, None] * yt / dd) @ (Kxt @ U).T  # (n, P*)
    mean = w @ m
    se = np.sqrt(np.sum(w[:, None] ** 2 * (m - mean) ** 2, 0))  # delta-method IS error
    return mean, se


@pytest.mark.parametrize("chi", [1.0, 16.0])
def test_exact_deep_linear_matches_scale_mixture_monte_carlo(chi):
    d = _data()
    spec = bn.NetworkSpec(width=16, activation="linear", kappa=0.5, depth=2, chi=chi)
    ex = theory.predict(spec, d, None, "exact")
    assert bool(ex.converged.all())
    m, se = _mc_scale_mixture(spec, d, 400_000, 7)
    z = (ex.f_test.values[0] - m) / se
    assert np.all(np.abs(z) < 4.5), z


def _ref_points():
    return sorted(REFS.glob("linear_L*_N*_chi*.json"))


def test_references_exist():
    assert len(_ref_points()) >= 9, "bench/results/deep references missing"


@pytest.mark.parametrize("ref", _ref_points(), ids=lambda p: p.stem)
def test_exact_deep_linear_matches_nuts_references(ref):
    rec = json.loads(ref.read_text())
    import sys

    sys.path.insert(0, str(REFS.parent.parent))
    from deep_references import data, spec_of

    spec = spec_of(rec["activation"], rec["depth"], rec["width"], rec["chi_tag"])
    ex = theory.predict(spec, data(), None, "exact")
    assert bool(ex.converged.all())
    for v in ("f_train", "f_test"):
        z = (ex[v].values[0] - np.asarray(rec[v])) / np.asarray(rec[v + "_mcse"])
        assert np.all(np.abs(z) < 4.5), (ref.stem, v, z)


def test_unconverged_tree_returns_nan_with_warning():
    d = _data()
    spec = bn.NetworkSpec(width=16, activation="erf", kappa=0.5, depth=2)
    with pytest.warns(UserWarning, match="chi="):
        out = theory.predict(spec, d, [16.0], "tree", maxiter=2, n_draws=512)
    assert not bool(out.converged.any())
    assert np.isnan(out.f_test.values).all()


def test_deep_methods_checked():
    d = _data()
    spec = bn.NetworkSpec(width=8, activation="erf", depth=2)
    with pytest.raises(ValueError, match="method"):
        theory.predict(spec, d, None, "exact")
    with pytest.raises(ValueError, match="method"):
        theory.predict(spec, d, None, "one_loop")


def _ref_error(activation, width, method, **opts):
    """rms error of the theory's mean outputs against the NUTS reference at depth 2, chi = N,
    and the reference's noise floor (rms MCSE)."""
    import sys

    sys.path.insert(0, str(REFS.parent.parent))
    from deep_references import data, load, spec_of

    rec = load(activation, 2, width, "N")
    th = theory.predict(spec_of(activation, 2, width, "N"), data(), None, method, **opts)
    ref = np.r_[rec["f_train"], rec["f_test"]]
    se = np.r_[rec["f_train_mcse"], rec["f_test_mcse"]]
    v = np.r_[th.f_train.values[0], th.f_test.values[0]]
    return float(np.sqrt(np.mean((v - ref) ** 2))), float(np.sqrt(np.mean(se**2)))


@pytest.mark.parametrize("width", [16, 32, 64])
def test_deep_linear_adaptive_theory_beats_nngp_at_mean_field(width):
    """Done criterion (linear): an adaptive theory >= 3x closer to the samples than the NNGP;
    the errors are far above the samples' noise floor, so the ratio is not noise."""
    e_nngp, noise = _ref_error("linear", width, "nngp")
    e_tree, _ = _ref_error("linear", width, "tree")
    assert e_nngp > 20 * noise
    assert e_nngp > 3 * (e_tree + 2 * noise)


@pytest.mark.slow
def test_deep_erf_tree_beats_nngp_at_mean_field():
    """Done criterion (erf, N = 32): the multi-scale tree level >= 3x closer than the NNGP."""
    e_nngp, noise = _ref_error("erf", 32, "nngp")
    e_tree, _ = _ref_error("erf", 32, "tree", n_draws=2**14)
    assert e_nngp > 3 * (e_tree + 2 * noise)
