"""Fluctuation corrections around the tilted saddle (theory/fluctuation.py, docs/one_loop.md).

Linear networks have exact answers (theory.exact, the Gaussian scale mixture), so the corrections
are checked there against the expansion order; the sampled code path (phi = identity through the
non-linear machinery) is checked against the Wick closed form within its own Monte-Carlo error.
"""

import os

import numpy as np
import pytest

import bayesnet as bn
import theory
from analysis import tolerance
from theory import fluctuation, rescaling

DATA = bn.ising(48, 16, 24, flip=0.1, seed=1)  # P=48, D=24 (P > D: singular input kernel)
KAPPA = 0.2
# BAYESNET_TEST_SEED shifts every seed of the statistical tests here (flake checks: run with
# 0, 1, 2; the assertions hold for any value)
SEED = int(os.environ.get("BAYESNET_TEST_SEED", "0"))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _errors(N, chi, methods, order="first"):
    """Relative train and test errors of each method against the exact linear posterior mean."""
    spec = bn.NetworkSpec(width=N, kappa=KAPPA)
    ex = theory.predict(spec, DATA, [chi], method="exact").isel(chi=0)
    out = {}
    for m in methods:
        ds = theory.predict(spec, DATA, [chi], method=m, order=order).isel(chi=0)
        out[m] = (
            _rel(ds.f_train.values, ex.f_train.values),
            _rel(ds.f_test.values, ex.f_test.values),
        )
    return out


def test_linear_first_order_is_exact_at_order_one_over_n():
    """chi = 1: the first-order correction is the whole O(1/N) term, so its error is O(1/N^2):
    the error ratio between N=128 and N=512 is 16 up to O(1/N) corrections; we require > 8 (a
    remainder of order 1/N would give 4).  It removes the tree level's O(1/N) error: at N=512
    the remainder is below 5 % of the tree level's error (measured 0.9 %)."""
    e = {N: _errors(N, 1.0, ("tree", "one_loop")) for N in (128, 512)}
    for side in (0, 1):
        assert e[128]["one_loop"][side] / e[512]["one_loop"][side] > 8.0
        assert e[512]["one_loop"][side] < 0.05 * e[512]["tree"][side]
    # sign and size: the shift points from the tree level to the exact mean
    spec = bn.NetworkSpec(width=512, kappa=KAPPA)
    ex = theory.predict(spec, DATA, [1.0], method="exact").f_train.values[0]
    one = theory.predict(spec, DATA, [1.0], method="one_loop", order="first")
    tree = theory.predict(spec, DATA, [1.0], method="tree").f_train.values[0]
    shift = one.correction_train.values[0]
    assert np.allclose(one.f_train.values[0], tree + shift, rtol=0, atol=1e-12)
    assert _rel(shift, ex - tree) < 0.05
    assert float(one.correction_size_train[0]) == pytest.approx(
        np.linalg.norm(shift) / np.linalg.norm(tree), rel=1e-12
    )
    assert float(one.correction_mcse_train[0]) == 0.0  # closed form: no Monte Carlo


@pytest.mark.parametrize("chi", [1.0, 16.0, 256.0])
def test_laplace_one_loop_matches_exact_to_1e6(chi):
    """The Laplace one-loop in the scale s is O(1/N^2) at every chi: 1e-6 at N=256 (measured
    2-5e-7), and between N=64 and N=256 its error falls by more than 8 (1/N^2 gives 16)."""
    e256 = _errors(256, chi, ("laplace_one_loop",))["laplace_one_loop"]
    assert max(e256) < 1e-6
    chi64 = 1.0 if chi == 1.0 else chi / 4.0  # same chi/N at N=64
    e64 = _errors(64, chi64, ("laplace_one_loop",))["laplace_one_loop"]
    assert e64[0] / e256[0] > 8.0 and e64[1] / e256[1] > 8.0


def test_laplace_mode_and_curvature():
    """s* solves l'(s*) = 0 and sigma^2 = -1/l''(s*) (finite differences of l)."""
    sp = rescaling.linear_spectrum(DATA.X, DATA.y, 1.0)
    N, chi = 64, 8.0
    lp = fluctuation.laplace_one_loop(
        sp.lam, sp.U, np.zeros((1, sp.lam.size)), DATA.y, 1.0, N, chi, KAPPA
    )
    ell = lambda s: fluctuation._ell(s, sp.lam, sp.yt, 1.0, N, chi, KAPPA)  # noqa: E731
    h = 1e-4 * lp.s_mode
    d1 = (ell(lp.s_mode + h) - ell(lp.s_mode - h)) / (2 * h)
    d2 = (ell(lp.s_mode + h) - 2 * ell(lp.s_mode) + ell(lp.s_mode - h)) / h**2
    assert abs(d1) < 1e-5 * N and d2 == pytest.approx(-1.0 / lp.sigma2, rel=1e-5)


def test_replica_error_bar_is_calibrated_on_the_linear_closed_form():
    """phi = identity through the sampled path (tree importance sampling + first-order
    correction, closed_form=False) against the Wick closed form: the replica error bar
    (<v>_mcse, REPLICAS independent solves) covers the whole estimator.  Each run agrees under
    the tolerance rule (Sidak over its points, Student-t with replicas - 1 dof, no bias: the two
    estimate the same quantity), and pooled over 3 seeds the z-scores have the t_{R-1} variance
    (R-1)/(R-3): mean z^2 / that within [0.5, 2] (an error bar 1.5x too small gives 2.25;
    measured 0.88 and 1.0 for train and test over 6 seeds)."""
    from theory.predict import REPLICAS

    data = bn.ising(24, 10, 16, flip=0.1, seed=4)
    spec = bn.NetworkSpec(width=32, kappa=0.3)
    chis = [1.0, 32.0]
    wick = theory.predict(spec, data, chis, method="one_loop", order="first")
    z2 = {"f_train": [], "f_test": []}
    for seed in range(3 * SEED, 3 * SEED + 3):
        ds = theory.predict(
            spec, data, chis, "one_loop", order="first", closed_form=False, n_draws=8192, seed=seed
        )
        assert ds.converged.values.all() and ds.attrs["replicas"] == REPLICAS
        for k in z2:
            for i in range(len(chis)):
                a, b, se = ds[k].values[i], wick[k].values[i], ds[f"{k}_mcse"].values[i]
                assert tolerance.agree(a, b, se, dof=REPLICAS - 1), (seed, k, chis[i])
            z2[k].append(((ds[k] - wick[k]) / ds[f"{k}_mcse"]).values ** 2)
        # the correction's own error bar: its shift is resolved and within the rule
        size = np.linalg.norm(wick.correction_train.values, axis=1)
        se_c = ds.correction_mcse_train.values * np.linalg.norm(
            ds.f_train.values - ds.correction_train.values, axis=1
        )
        assert np.all(size > tolerance.z_threshold(1) * se_c)
    t_var = (REPLICAS - 1) / (REPLICAS - 3)
    for k, v in z2.items():
        ratio = float(np.mean(v)) / t_var
        assert 0.5 < ratio < 2.0, (k, ratio)


def test_linear_second_moments_against_exact():
    """Linear one_loop and laplace_one_loop report the one-loop second moments in s
    (theory/moments.py): variances, K and kernel_target well below the tree level's error at
    every chi (measured at N=128: var_test 3e-5 vs tree 6.6e-2 at chi=1, kernel_target 8e-7 vs
    1.6e-2 at chi=N), and their error falls with N at least like 1/N (the stated order of the
    variance remainder at chi = N; 1/N^2 or faster at chi = 1)."""
    keys = ("var_train", "var_test", "kernel_target", "kernel_trace", "K_train", "K_test_train")
    errs = {}
    for N in (128, 512):
        spec = bn.NetworkSpec(width=N, kappa=KAPPA)
        chis = [1.0, float(np.sqrt(N)), float(N)]
        ex = theory.predict(spec, DATA, chis, method="exact")
        tree = theory.predict(spec, DATA, chis, method="tree")
        for m in ("one_loop", "laplace_one_loop"):
            ds = theory.predict(spec, DATA, chis, method=m, order="first")  # order: means only
            for k in keys:
                for i in range(3):
                    e = _rel(ds[k].values[i], ex[k].values[i])
                    e_tree = _rel(tree[k].values[i], ex[k].values[i])
                    assert e < 0.1 * e_tree or e < 1e-7, (N, m, k, i, e, e_tree)
                    errs[(N, m, k, i)] = e
    for m in ("one_loop", "laplace_one_loop"):
        for k in keys:
            for i in range(3):
                assert errs[(128, m, k, i)] / errs[(512, m, k, i)] > 3.0, (m, k, i)
            assert errs[(128, m, k, 0)] / errs[(512, m, k, 0)] > 12.0, (m, k)  # chi = 1


def test_rescaling_one_loop_any_activation():
    """rescaling_one_loop is the scalar rescaling with the trace term, with K^phi for erf."""
    data = bn.ising(24, 10, 16, flip=0.1, seed=4)
    for act in ("linear", "erf"):
        spec = bn.NetworkSpec(width=32, kappa=0.3, activation=act)
        ds = theory.predict(spec, data, [1.0, 32.0], method="rescaling_one_loop")
        K = np.asarray(theory.kernel(act, data.X, data.X, 1.0))
        sp = rescaling.spectrum(K, data.y)
        for i, chi in enumerate([1.0, 32.0]):
            u = rescaling.solve_ubar(sp, 1.0, 32, chi, 0.3, trace=True)
            assert float(ds.ubar[i]) == pytest.approx(u, rel=1e-9)
            f = (u * K) @ np.linalg.solve(u * K + 0.3 * np.eye(K.shape[0]), data.y)
            assert np.allclose(ds.f_train.values[i], f, atol=1e-9)


def test_erf_first_order_variables():
    """erf: correction variables over chi with long names; the correction is O(1/N) (a few %
    at N=32 at most), resolved above its Monte-Carlo error, and the tree variances are kept."""
    data = bn.ising(24, 10, 16, flip=0.1, seed=4)
    spec = bn.NetworkSpec(width=32, kappa=0.3, activation="erf")
    ds = theory.predict(spec, data, [1.0, 32.0], method="one_loop", order="first", n_draws=8192)
    tree = theory.predict(spec, data, [1.0, 32.0], method="tree", n_draws=8192)
    assert ds.attrs["order"] == "first" and ds.converged.values.all()
    for side in ("train", "test"):
        size, mcse = ds[f"correction_size_{side}"].values, ds[f"correction_mcse_{side}"].values
        assert ds[f"correction_size_{side}"].dims == ("chi",)
        assert "long_name" in ds[f"correction_mcse_{side}"].attrs
        assert np.all(size < 1.0 / 32) and np.all(size > 3 * mcse)
        np.testing.assert_allclose(
            ds[f"f_{side}"] - ds[f"correction_{side}"], tree[f"f_{side}"], atol=1e-9
        )
        np.testing.assert_allclose(ds[f"var_{side}"], tree[f"var_{side}"], atol=1e-12)


def test_generic_first_order_on_exact_gaussian_moments_equals_wick():
    """The generic first-order formulas (T1, T2 on train and test points) evaluated on exact
    Gaussian moments of the linear tilted measure (degree-7 cubature) equal the Wick closed form
    to rounding."""
    from theory import adaptive, dressed

    data = bn.ising(16, 6, 8, flip=0.1, seed=3)
    spec = bn.NetworkSpec(width=24, kappa=0.3)
    K = np.asarray(theory.kernel("linear", data.X, data.X, 1.0))
    Kt = np.asarray(theory.kernel("linear", data.X_test, data.X, 1.0))
    for chi in (1.0, 24.0):
        f = theory.predict(spec, data, [chi], method="tree").f_train.values[0]
        t = dressed.linear_tilted_sample(data.X, data.X_test, data.y, f, 1.0, 1.0, 0.3, chi, 24)
        _, _, s_tr, s_te = fluctuation.first_order_shift(t)
        c = adaptive.tilt_coefficient(1.0, chi, 24, 0.3)
        Q = adaptive.adapted_kernel(K, data.y - f, c)
        Q_t = adaptive.adapted_cross_kernel(K, Kt, data.y - f, c)
        w_tr, w_te = fluctuation.linear_first_order_shift(Q, Q_t, data.y, 1.0, 0.3, 24)
        scale = np.linalg.norm(w_tr)
        assert np.max(np.abs(np.asarray(s_tr) - w_tr)) < 1e-9 * scale
        assert np.max(np.abs(np.asarray(s_te) - w_te)) < 1e-9 * scale


def test_tilted_samples_reproduce_the_tree_level():
    """tilted_samples gives the draws at each chi's solution: g_w Q a from them is the tree
    level's train output (to the solver tolerance), and first_order_correction adds the shift."""
    from theory.predict import SEED_STRIDE, tilted_samples

    data = bn.ising(16, 6, 8, flip=0.1, seed=3)
    spec = bn.NetworkSpec(width=16, kappa=0.3, activation="erf")
    # predict pools 2 replicas of 1024 draws with seeds 0 and SEED_STRIDE: their mean
    reps = [tilted_samples(spec, data, [4.0, 1.0], n_draws=1024, seed=s) for s in (0, SEED_STRIDE)]
    opts = dict(n_draws=2048, replicas=2)
    tree = theory.predict(spec, data, [1.0, 4.0], method="tree", **opts)
    one = theory.predict(spec, data, [1.0, 4.0], method="one_loop", order="first", **opts)
    for i in range(2):
        assert all(r[i].chi == [1.0, 4.0][i] for r in reps)
        tl = [fluctuation.first_order_shift(r[i])[:2] for r in reps]
        np.testing.assert_allclose(np.mean([t[0] for t in tl], 0), tree.f_train[i], atol=1e-8)
        np.testing.assert_allclose(np.mean([t[1] for t in tl], 0), tree.f_test[i], atol=1e-8)
        fc = [fluctuation.first_order_correction(r[i]) for r in reps]
        np.testing.assert_allclose(np.mean([f[0] for f in fc], 0), one.f_train[i], atol=1e-8)
        np.testing.assert_allclose(np.mean([f[1] for f in fc], 0), one.f_test[i], atol=1e-8)
        se = np.abs(tl[0][0] - tl[1][0]) / 2  # sd / sqrt(2) of two replicas
        np.testing.assert_allclose(tree.f_train_mcse[i], se, rtol=1e-6, atol=1e-12)
