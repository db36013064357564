"""`sample(..., method="exact")` (bayesnet.exact_sampler) and the one-compile-per-sweep property.

Ground truth: the independent numpy blocked-Gibbs sampler of tests/reference.py and the exact
scale-mixture quadrature (`theory.predict(method="exact")`, no Monte-Carlo error).  Every
tolerance is a multiple of Monte-Carlo standard errors (batch means for the Gibbs chain; the
exact sampler's draws are independent).
"""

from __future__ import annotations

import functools
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from reference import batch_mean_se, gibbs_linear  # noqa: E402

import bayesnet as bn  # noqa: E402
from bayesnet import scale_mixture as sm  # noqa: E402
from bayesnet.exact_sampler import sample_exact  # noqa: E402

KAPPA = 0.2
Z_MAX = 4.5  # |z| bound per observable: a false alarm over ~30 correlated z's is < 1e-3


@functools.cache
def data():
    return bn.ising(n_train=20, n_test=6, dim=8, flip=0.2, seed=1)


@functools.cache
def reference(width, chi):
    d = data()
    return gibbs_linear(
        d.X, d.y, d.X_test, width, 1.0, 1.0, chi, KAPPA, sweeps=6000, burn=300, seed=3
    )


def _flat(tree, name):
    a = tree["posterior"][name].values
    return a.reshape((-1,) + a.shape[2:])


def _z(a, ref):
    """z-scores of the difference of two means: exact draws are i.i.d., the reference is not."""
    m_ref, se_ref = batch_mean_se(ref)
    se = a.std(axis=0, ddof=1) / np.sqrt(a.shape[0])
    return (a.mean(axis=0) - m_ref) / np.sqrt(se**2 + se_ref**2)


def _total_var_terms(mean, var):
    """Per-draw terms whose average is the posterior variance: Var[f|.] + (E[f|.] - E f)^2."""
    return var + (mean - mean.mean(axis=0)) ** 2


@pytest.mark.parametrize(
    "width,chi",
    [(16, 1.0), (16, 16.0), (4, 1.0), (4, 4.0)],
    ids=["N16-standard", "N16-meanfield", "N4<D-standard", "N4<D-meanfield"],
)
def test_exact_matches_gibbs_reference(width, chi):
    """Rao-Blackwellised exact draws (given s) vs the blocked Gibbs reference (given V)."""
    spec = bn.NetworkSpec(width=width, activation="linear", chi=chi, kappa=KAPPA)
    tree = bn.sample(spec, data(), method="exact", chains=4, draws=2500, seed=1, progress=False)
    ref = reference(width, chi)
    for name in ("f_train", "f_test", "kernel_target"):
        z = np.atleast_1d(_z(_flat(tree, name), ref[name]))
        assert np.all(np.abs(z) < Z_MAX), (name, z)
    # conditional variances differ (given s vs given V); the posterior variance does not
    for part in ("train", "test"):
        a = _total_var_terms(_flat(tree, f"f_{part}"), _flat(tree, f"var_{part}"))
        b = _total_var_terms(ref[f"f_{part}"], ref[f"var_{part}"])
        z = _z(a, b)
        assert np.all(np.abs(z) < Z_MAX), (part, z)
    # the draws are independent, so lag-1 autocorrelation of a scalar is ~ N(0, 1/n)
    kt = tree["posterior"]["kernel_target"].values
    r1 = np.mean([np.corrcoef(c[:-1], c[1:])[0, 1] for c in kt])
    assert abs(r1) < 4.5 / np.sqrt(kt.size)
    # only what an exact sampler has: the drawn log s (no acceptance, no trajectory)
    assert set(tree["sample_stats"].data_vars) == {"log_s"}


@functools.cache
def _quadrature(width, chi):
    import theory  # the exact scale-mixture quadrature, no Monte-Carlo error

    spec = bn.NetworkSpec(width=width, activation="linear", chi=chi, kappa=KAPPA)
    return theory.predict(spec, data(), chis=[chi], method="exact").isel(chi=0)


@pytest.mark.parametrize("width,chi", [(16, 1.0), (16, 16.0), (3, 1.0)])
def test_exact_matches_quadrature_within_mcse(width, chi):
    """Every reported mean vs theory.predict(method="exact"), within Z_MAX i.i.d. SEs."""
    spec = bn.NetworkSpec(width=width, activation="linear", chi=chi, kappa=KAPPA)
    tree = sample_exact(spec, data(), chains=4, draws=1000, seed=5)
    q = _quadrature(width, chi)

    def z(per_draw, exact):
        n = per_draw.shape[0]
        return (per_draw.mean(0) - exact) / (per_draw.std(0, ddof=1) / np.sqrt(n) + 1e-300)

    for part in ("train", "test"):
        m, v = _flat(tree, f"f_{part}"), _flat(tree, f"var_{part}")
        assert np.all(np.abs(z(m, q[f"f_{part}"].values)) < Z_MAX), part
        assert np.all(np.abs(z(_total_var_terms(m, v), q[f"var_{part}"].values)) < Z_MAX), part
    for key in ("kernel_target", "kernel_trace"):
        assert abs(z(_flat(tree, key), float(q[key]))) < Z_MAX, key
    # the posterior mean kernel is the average of the per-draw E[K | s, y]
    yh = data().y / np.linalg.norm(data().y)
    K = tree["kernel"]["K_train"].values
    assert yh @ K @ yh == pytest.approx(float(_flat(tree, "kernel_target").mean()), rel=1e-10)
    assert np.trace(K) / K.shape[0] == pytest.approx(
        float(_flat(tree, "kernel_trace").mean()), rel=1e-10
    )
    s = np.exp(tree["sample_stats"]["log_s"].values.ravel())
    assert abs(s.mean() - float(q["s_mean"])) < Z_MAX * float(q["s_std"]) / np.sqrt(s.size)


@pytest.mark.parametrize("chi", [1.0, 16.0])
def test_exact_f_draws_match_quadrature(chi):
    """The exact draws of f themselves (not Rao-Blackwellised): mean and variance."""
    spec = bn.NetworkSpec(width=16, activation="linear", chi=chi, kappa=KAPPA)
    trees = [
        sample_exact(spec, data(), chains=4, draws=1500, seed=s, f_draws=True) for s in (11, 12)
    ]
    ex = sm.posterior(spec, data())
    f = np.concatenate([_flat(t, "f_train_draw") for t in trees])
    zf = (f.mean(0) - ex["mean_train"]) / (f.std(0) / np.sqrt(len(f)))
    assert np.all(np.abs(zf) < Z_MAX)
    # sample variance of n i.i.d. near-Gaussian draws: relative SE sqrt(2/(n-1))
    rel = f.var(0, ddof=1) / ex["var_train"] - 1
    assert np.all(np.abs(rel) < Z_MAX * np.sqrt(2 / (len(f) - 1))), rel


def test_exact_at_a_million_neurons():
    """N = 10^6: nothing N-sized is formed; means within MCSE of the quadrature."""
    spec = bn.NetworkSpec(width=10**6, activation="linear", chi=1.0, kappa=KAPPA)
    tree = sample_exact(spec, data(), chains=2, draws=200, seed=0)
    ex = sm.posterior(spec, data())
    yh = data().y / np.linalg.norm(data().y)
    for name, exact in (("f_train", ex["mean_train"]), ("kernel_target", yh @ ex["K_train"] @ yh)):
        f = _flat(tree, name)
        se = f.std(0, ddof=1) / np.sqrt(len(f))
        assert np.all(np.abs(f.mean(0) - exact) < Z_MAX * se), name
    assert tree.attrs["method"] == "exact"


def test_exact_rejects_nonlinear():
    spec = bn.NetworkSpec(width=8, activation="erf")
    with pytest.raises(ValueError, match="linear"):
        bn.sample(spec, data(), method="exact", draws=10, progress=False)


def _run_collapsed(chi, kappa):
    """A tiny collapsed-NUTS run (not cached: each call samples)."""
    spec = bn.NetworkSpec(width=3, activation="linear", chi=chi, kappa=kappa)
    d = bn.ising(n_train=6, n_test=3, dim=4, flip=0.2, seed=2)
    return bn.sample(
        spec, d, method="collapsed", chains=2, warmup=30, draws=30, seed=0, progress=False, chunk=30
    )


def test_one_compile_per_sweep():
    """A second sample() at another chi / kappa reuses the compiled program, numbers differ."""
    from bayesnet import engine

    engine._CACHE.clear()  # so that the first call below must compile
    first = _run_collapsed(1.0, 0.5)  # never a cached tree: any test order
    n_programs = len(engine._CACHE)
    second = _run_collapsed(3.0, 0.5)
    third = _run_collapsed(3.0, 0.1)
    assert first.attrs["timing_compile_s"] > 0.0 and n_programs == 1
    assert len(engine._CACHE) == n_programs  # nothing new was compiled
    for t in (second, third):
        assert t.attrs["timing_compile_s"] == 0.0
        assert t.attrs["timing_run_s"] > 0.0
    a, b, c = (t["posterior"]["f_train"].values for t in (first, second, third))
    assert not np.allclose(a, b) and not np.allclose(b, c)


def test_exact_schema_matches_nuts_schema():
    spec = bn.NetworkSpec(width=3, activation="linear", chi=1.0, kappa=0.5)
    d = bn.ising(n_train=6, n_test=3, dim=4, flip=0.2, seed=2)
    ex = bn.sample(spec, d, method="exact", chains=2, draws=30, progress=False)
    nuts = _run_collapsed(1.0, 0.5)
    for group in ("posterior", "kernel", "observed_data", "constant_data"):
        a, b = ex[group].to_dataset(), nuts[group].to_dataset()
        assert set(a.data_vars) == set(b.data_vars), group
        for k in a.data_vars:
            assert a[k].dims == b[k].dims and a[k].shape == b[k].shape, (group, k)
    assert set(ex["sample_stats"].data_vars) == {"log_s"}
    assert ex["sample_stats"]["log_s"].dims == ("chain", "draw")
    # neither per-draw f is a draw of f, and both say so
    assert ex["posterior"].attrs["f_per_draw"].startswith("E[f | s, y]")
    assert nuts["posterior"].attrs["f_per_draw"].startswith("E[f | V]")
    assert "E[f | s, y] (exact)" in ex["posterior"]["f_train"].attrs["long_name"]
    assert ex.attrs["timing_run_s"] > 0 and ex.attrs["draws"] == 30 and ex.attrs["warmup"] == 0
