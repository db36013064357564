"""`sample(..., method="exact")` (bayesnet.exact) and the one-compile-per-sweep property.

Ground truth: the independent numpy blocked-Gibbs sampler of tests/reference.py (and, for the
posterior mean kernel and the exact f draws, the scale-mixture quadrature).  Every tolerance is a
multiple of Monte-Carlo standard errors (batch means for the Gibbs chain; the exact sampler's
draws are independent).
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
from bayesnet.exact import sample_exact  # noqa: E402

KAPPA = 0.2
Z_MAX = 4.5  # |z| bound per observable: a false alarm over ~30 correlated z's is < 1e-3


@functools.lru_cache(maxsize=None)
def data():
    return bn.ising(n_train=20, n_test=6, dim=8, flip=0.2, seed=1)


@functools.lru_cache(maxsize=None)
def reference(width, chi):
    d = data()
    return gibbs_linear(d.X, d.y, d.X_test, width, 1.0, 1.0, chi, KAPPA, sweeps=6000, burn=300,
                        seed=3)


def _flat(tree, name):
    a = tree["posterior"][name].values
    return a.reshape((-1,) + a.shape[2:])


def _z(a, ref):
    """z-scores of the difference of two means: exact draws are i.i.d., the reference is not."""
    m_ref, se_ref = batch_mean_se(ref)
    se = a.std(axis=0, ddof=1) / np.sqrt(a.shape[0])
    return (a.mean(axis=0) - m_ref) / np.sqrt(se**2 + se_ref**2)


@pytest.mark.parametrize("width,chi", [(16, 1.0), (16, 16.0), (4, 1.0), (4, 4.0)],
                         ids=["N16-standard", "N16-meanfield", "N4<D-standard", "N4<D-meanfield"])
def test_exact_matches_gibbs_reference(width, chi):
    spec = bn.NetworkSpec(width=width, activation="linear", chi=chi, kappa=KAPPA)
    tree = bn.sample(spec, data(), method="exact", chains=4, draws=2500, seed=1, progress=False)
    ref = reference(width, chi)
    for name in ("f_train", "f_test", "var_train", "var_test", "kernel_target"):
        z = np.atleast_1d(_z(_flat(tree, name), ref[name]))
        assert np.all(np.abs(z) < Z_MAX), (name, z)
    # ESS: the draws are independent, so lag-1 autocorrelation of a scalar is ~ N(0, 1/n)
    kt = tree["posterior"]["kernel_target"].values
    r1 = np.mean([np.corrcoef(c[:-1], c[1:])[0, 1] for c in kt])
    assert abs(r1) < 4.5 / np.sqrt(kt.size)
    assert tree["sample_stats"]["acceptance_rate"].mean() > 0.999


@pytest.mark.parametrize("chi", [1.0, 16.0])
def test_exact_kernel_and_f_draws_match_quadrature(chi):
    """Posterior mean kernel vs the scale-mixture quadrature; exact f draws' mean and variance."""
    spec = bn.NetworkSpec(width=16, activation="linear", chi=chi, kappa=KAPPA)
    trees = [sample_exact(spec, data(), chains=4, draws=1500, seed=s, f_draws=True)
             for s in (11, 12)]
    ex = sm.posterior(spec, data())
    K1, K2 = (t["kernel"]["K_train"].values for t in trees)
    se = np.abs(K1 - K2) / 2 + 1e-12  # SE of the mean of two independent halves, per element
    # |K1 - K2| / 2 is a single-draw SE estimate: use a generous quantile bound on the average
    z = ((K1 + K2) / 2 - ex["K_train"]) / np.sqrt(np.mean(se**2))
    assert np.sqrt(np.mean(z**2)) < 3.0, np.sqrt(np.mean(z**2))
    f = np.concatenate([_flat(t, "f_train_draw") for t in trees])
    zf = (f.mean(0) - ex["mean_train"]) / (f.std(0) / np.sqrt(len(f)))
    assert np.all(np.abs(zf) < Z_MAX)
    # sample variance of n i.i.d. near-Gaussian draws: relative SE sqrt(2/(n-1))
    rel = f.var(0, ddof=1) / ex["var_train"] - 1
    assert np.all(np.abs(rel) < Z_MAX * np.sqrt(2 / (len(f) - 1))), rel


def test_exact_at_a_million_neurons():
    """N = 10^6: nothing N-sized is formed; the posterior is then the NNGP to O(1/N)."""
    spec = bn.NetworkSpec(width=10**6, activation="linear", chi=1.0, kappa=KAPPA)
    tree = sample_exact(spec, data(), chains=2, draws=200, seed=0)
    ex = sm.posterior(spec, data())
    f = _flat(tree, "f_train")
    se = f.std(0, ddof=1) / np.sqrt(len(f)) + 1e-9
    assert np.all(np.abs(f.mean(0) - ex["mean_train"]) < Z_MAX * se + 1e-6)
    assert np.allclose(tree["kernel"]["K_train"].values, ex["K_train"], atol=5e-3)
    assert tree.attrs["method"] == "exact"


def test_exact_rejects_nonlinear():
    spec = bn.NetworkSpec(width=8, activation="erf")
    with pytest.raises(ValueError, match="linear"):
        bn.sample(spec, data(), method="exact", draws=10, progress=False)


@functools.lru_cache(maxsize=None)
def _collapsed(chi, kappa):
    spec = bn.NetworkSpec(width=3, activation="linear", chi=chi, kappa=kappa)
    d = bn.ising(n_train=6, n_test=3, dim=4, flip=0.2, seed=2)
    return bn.sample(spec, d, method="collapsed", chains=2, warmup=30, draws=30, seed=0,
                     progress=False, chunk=30)


def test_one_compile_per_sweep():
    """A second sample() at another chi / kappa reuses the compiled program, numbers differ."""
    first = _collapsed(1.0, 0.5)
    second = _collapsed(3.0, 0.5)
    third = _collapsed(3.0, 0.1)
    assert first.attrs["timing_compile_s"] >= 0.0
    for t in (second, third):
        assert t.attrs["timing_compile_s"] == 0.0
        assert t.attrs["timing_sample_s"] > 0.0
    a, b, c = (t["posterior"]["f_train"].values for t in (first, second, third))
    assert not np.allclose(a, b) and not np.allclose(b, c)


def test_exact_schema_matches_nuts_schema():
    spec = bn.NetworkSpec(width=3, activation="linear", chi=1.0, kappa=0.5)
    d = bn.ising(n_train=6, n_test=3, dim=4, flip=0.2, seed=2)
    ex = bn.sample(spec, d, method="exact", chains=2, draws=30, progress=False)
    nuts = _collapsed(1.0, 0.5)
    for group in ("posterior", "kernel", "observed_data", "constant_data"):
        a, b = ex[group].to_dataset(), nuts[group].to_dataset()
        assert set(a.data_vars) == set(b.data_vars), group
        for k in a.data_vars:
            assert a[k].dims == b[k].dims and a[k].shape == b[k].shape, (group, k)
    assert set(ex["sample_stats"].data_vars) <= set(nuts["sample_stats"].data_vars)
    assert ex.attrs["timing_compile_s"] >= 0 and ex.attrs["timing_sample_s"] > 0
