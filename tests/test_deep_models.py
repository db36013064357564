"""Deep (L > 1) samplers against a hand-written NumPyro model of the same depth-2 network.

The reference below is its own code: centred weights, NumPyro's MCMC driver, kernels formed in
numpy afterwards.  Both sides are compared within their Monte-Carlo standard errors,
|z| = |m1 - m2| / sqrt(se1^2 + se2^2) < Z_TOL (z from both MCSEs).
"""

from __future__ import annotations

import arviz_stats as azs
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from numpyro.infer import MCMC, NUTS

import bayesnet as bn

N, P, D, CHI, KAPPA = 6, 6, 3, 2.0, 0.5
CHAINS, WARMUP, DRAWS = 2, 500, 1500
Z_TOL = 4.0  # a handful of comparisons: 4 sigma fails by chance with p ~ 1e-4 each


def _data():
    rng = np.random.default_rng(3)
    X, Xt = rng.standard_normal((P, D)), rng.standard_normal((3, D))
    y = np.sign(X[:, 0] + 0.3 * X[:, 1])
    return bn.from_arrays(X, y, Xt, np.sign(Xt[:, 0] + 0.3 * Xt[:, 1]))


def _hand_model(X, Xt, y):
    """Two erf hidden layers, centred weights, readout and noise in the chi convention."""
    V = numpyro.sample("V", dist.Normal(0.0, np.sqrt(1.0 / D)).expand([N, D]).to_event(2))
    U = numpyro.sample("U", dist.Normal(0.0, np.sqrt(1.0 / N)).expand([N, N]).to_event(2))
    w = numpyro.sample("w", dist.Normal(0.0, np.sqrt(1.0 / (CHI * N))).expand([N]).to_event(1))
    h1 = jax.scipy.special.erf(X @ V.T)  # (P, N)
    h2 = jax.scipy.special.erf(h1 @ U.T)  # (P, N)
    numpyro.deterministic(
        "f_test", jax.scipy.special.erf(jax.scipy.special.erf(Xt @ V.T) @ U.T) @ w
    )
    numpyro.deterministic("h1", h1)
    numpyro.deterministic("h2", h2)
    numpyro.sample("y", dist.Normal(h2 @ w, np.sqrt(KAPPA / CHI)).to_event(1), obs=y)


@pytest.fixture(scope="module")
def runs():
    d = _data()
    mcmc = MCMC(
        NUTS(_hand_model),
        num_warmup=WARMUP,
        num_samples=DRAWS,
        num_chains=CHAINS,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(11), jnp.asarray(d.X), jnp.asarray(d.X_test), jnp.asarray(d.y))
    s = mcmc.get_samples(group_by_chain=True)
    yh = d.y / np.linalg.norm(d.y)
    ref = {"f_test": (("chain", "draw", "test"), np.asarray(s["f_test"]))}
    for layer, key in ((1, "h1"), (2, "h2")):
        H = np.asarray(s[key])  # (C, S, P, N)
        K = H @ H.swapaxes(-1, -2) / N  # (C, S, P, P)
        ref[f"kt{layer}"] = (("chain", "draw"), np.einsum("a,csab,b->cs", yh, K, yh))
        ref[f"tr{layer}"] = (("chain", "draw"), np.trace(K, axis1=-2, axis2=-1) / P)
    spec = bn.NetworkSpec(width=N, activation="erf", chi=CHI, kappa=KAPPA, depth=2)
    ours = {
        m: bn.sample(
            spec, d, method=m, chains=CHAINS, warmup=WARMUP, draws=DRAWS, seed=5, progress=False
        )
        for m in ("full", "collapsed")
    }
    return xr.Dataset(ref), ours


def _mean_se(ds, var):
    return ds[var].mean(("chain", "draw")).values, azs.mcse(ds[[var]])[var].values


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "collapsed"])
def test_deep_samplers_match_hand_written_model(runs, method):
    ref, ours = runs
    post = ours[method].posterior.to_dataset()
    pairs = [("f_test", "f_test")]
    for layer in (1, 2):
        post[f"kt{layer}"] = post["layer_kernel_target"].sel(layer=layer)
        post[f"tr{layer}"] = post["layer_kernel_trace"].sel(layer=layer)
        pairs += [(f"kt{layer}", f"kt{layer}"), (f"tr{layer}", f"tr{layer}")]
    for a, b in pairs:
        m1, s1 = _mean_se(post, a)
        m2, s2 = _mean_se(ref, b)
        z = (m1 - m2) / np.sqrt(s1**2 + s2**2)
        assert np.all(np.abs(z) < Z_TOL), (method, a, z, m1, m2)


@pytest.mark.slow
def test_last_layer_statistics_are_the_last_layer(runs):
    _, ours = runs
    post = ours["collapsed"].posterior
    np.testing.assert_allclose(
        post["kernel_target"].values, post["layer_kernel_target"].sel(layer=2).values, rtol=1e-12
    )
    np.testing.assert_allclose(
        post["kernel_alignment"].values,
        post["layer_kernel_alignment"].sel(layer=2).values,
        rtol=1e-12,
    )
    assert ours["collapsed"].attrs["depth"] == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_depth_validated(bad):
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        bn.NetworkSpec(width=4, depth=bad)


def test_depth_in_records_only_when_deep():
    s1 = bn.NetworkSpec(width=4)
    assert "depth" not in s1.to_dict() and s1.depth == 1
    s3 = bn.NetworkSpec(width=4, depth=np.int64(3))
    assert s3.to_dict()["depth"] == 3 and isinstance(s3.depth, int)
    assert bn.NetworkSpec.from_attrs(s3.to_attrs()) == s3
    assert bn.NetworkSpec.from_attrs(s1.to_attrs()) == s1


def test_exact_rejects_depth():
    spec = bn.NetworkSpec(width=4, depth=2)
    with pytest.raises(ValueError, match="depth"):
        bn.sample(spec, _data(), method="exact", progress=False)
