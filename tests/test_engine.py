"""bayesnet.engine (the chunk loop), the sampler options and the ChEES-HMC kernel.

The engine is driven here by a small exact kernel (independent draws from a known Gaussian, a
valid MCMC kernel), so step counts, chunk boundaries, statistics and interrupts are checked
exactly; ChEES is checked against the exact linear posterior (scale-mixture quadrature) within
Monte-Carlo standard errors.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesnet as bn
from bayesnet import engine, sampling
from bayesnet import scale_mixture as sm

Z_MAX = 4.5


class _State(NamedTuple):
    z: jax.Array  # (C, P) the current draw
    key: jax.Array
    count: jax.Array  # (C,) steps executed


def _gauss_kernel(mean):
    """Independent draws z ~ N(mean, I): an exact kernel whose step count we can read back."""

    def init(keys, z0, d, t):
        return _State(z0["z"], keys[0], jnp.zeros(z0["z"].shape[0], jnp.int32))

    def step(st, d, t, warm):
        key, sub = jax.random.split(st.key)
        z = mean + jax.random.normal(sub, st.z.shape, st.z.dtype)
        return _State(z, key, st.count + 1)

    def info(st):
        return {"n_steps": jnp.ones_like(st.count), "count": st.count}

    return engine.Kernel(init, step, lambda st: {"z": st.z}, info)


def _stats(z, d, t):
    f = z["z"]  # (P,)
    return {
        "f_train": f,
        "K_train": jnp.outer(f, f),
        "K_test_train": jnp.outer(f[:2], f),
        "kernel_target": f @ f,
    }


MEAN = jnp.array([0.5, -1.0, 2.0])
KERNEL = _gauss_kernel(MEAN)


def _run(chains=3, warmup=10, draws=23, chunk=7, progress=None, chain_method="vectorized"):
    cfg = engine.RunConfig(KERNEL, _stats, chains, warmup, chunk)
    keys = jax.random.split(jax.random.PRNGKey(0), chains)
    z0 = {"z": jnp.zeros((chains, 3))}
    return engine.run(cfg, keys, z0, {}, {}, draws, progress, chain_method)


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_engine_executes_exactly_the_steps_asked(chain_method):
    """warmup 10 + draws 23 in chunks of 7: the short last chunks run no discarded steps."""
    r = _run(chain_method=chain_method)
    assert np.all(np.asarray(r.state.count) == 10 + 23)
    assert r.draws["f_train"].shape == (3, 23, 3)
    # the step counter seen at each draw: 11, 12, ..., 33 for every chain
    np.testing.assert_array_equal(r.draws["count"], np.tile(np.arange(11, 34), (3, 1)))
    assert r.timing["n_grad_warmup"] == 3 * 10 and r.timing["n_grad"] == 3 * 23
    # kernel sums over exactly the draws kept, summed on the device
    f = r.draws["f_train"].reshape(-1, 3)
    assert r.ksums[2] == 3 * 23
    np.testing.assert_allclose(r.ksums[0], f.T @ f, rtol=1e-10)


def test_engine_statistics_are_right():
    """The draws are N(MEAN, I): sample means within Z_MAX standard errors (i.i.d.)."""
    r = _run(chains=4, warmup=0, draws=500, chunk=64)
    f = r.draws["f_train"].reshape(-1, 3)
    z = (f.mean(0) - np.asarray(MEAN)) / (1 / np.sqrt(len(f)))
    assert np.all(np.abs(z) < Z_MAX), z


def test_engine_interrupt_keeps_finished_chunks():
    calls = []

    def progress(n, phase):
        calls.append(phase)
        if calls.count("sampling") == 2:
            raise KeyboardInterrupt

    r = _run(progress=progress)  # interrupted after the second chunk of 7 draws was kept
    assert r.timing["interrupted"] and r.draws["f_train"].shape == (3, 14, 3)
    full = _run()
    np.testing.assert_array_equal(r.draws["f_train"], full.draws["f_train"][:, :14])
    assert r.ksums[2] == 3 * 14
    with pytest.raises(KeyboardInterrupt):  # nothing to keep during warmup
        _run(progress=lambda n, phase: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_sampler_options_are_the_one_home_of_the_checks():
    o = sampling.SamplerOptions(chains=8).resolve()
    assert o.chain_method in engine.CHAIN_METHODS and o.target_accept == 0.8
    assert sampling.SamplerOptions(algorithm="chees", chains=8).resolve().chain_method == (
        "vectorized"
    )
    assert sampling.SamplerOptions(algorithm="chees").resolve().target_accept == 0.651
    assert sampling.check_options("full", chains=2).method == "full"  # the old entry point
    for kw, name in (
        ({"chain_method": "parallel"}, "chain_method"),
        ({"algorithm": "mala"}, "algorithm"),
        ({"algorithm": "chees", "chain_method": "sequential"}, "chain_method"),
        ({"method": "exact", "algorithm": "chees"}, "algorithm"),
        ({"chunk": 0}, "chunk"),
        ({"chains": 0}, "chains"),
        ({"chains": 2.5}, "chains"),
        ({"target_accept": 1.0}, "target_accept"),
        ({"dtype": "float16"}, "dtype"),
    ):
        with pytest.raises(ValueError, match=name) as err:  # at creation, in one line
            sampling.SamplerOptions(**kw)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown sampler option 'drawz'"):
        sampling.SamplerOptions.from_dict({"drawz": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        sampling.SamplerOptions().chains = 3  # type: ignore[misc]


def test_algorithm_auto_rule():
    """auto: NUTS on a CPU or with few chains; ChEES from CHEES_MIN_CHAINS on an accelerator."""
    many = sampling.CHEES_MIN_CHAINS
    expect = "nuts" if jax.default_backend() == "cpu" else "chees"
    assert sampling.SamplerOptions(chains=many).resolve().algorithm == expect
    assert sampling.SamplerOptions(chains=4).resolve().algorithm == "nuts"
    assert sampling.SamplerOptions(chains=many, chain_method="sequential").resolve().algorithm == (
        "nuts"
    )
    assert sampling.SamplerOptions(method="exact").resolve().algorithm == "exact"


def test_sample_takes_options_or_keywords():
    spec = bn.NetworkSpec(width=3, activation="linear", kappa=0.5)
    data = bn.ising(n_train=6, n_test=3, dim=4, flip=0.2, seed=2)
    opts = sampling.SamplerOptions(method="exact", chains=2, draws=7)
    a = bn.sample(spec, data, options=opts, progress=False)
    b = bn.sample(spec, data, method="exact", chains=2, draws=7, progress=False)
    c = bn.sample(spec, data, options=opts, draws=5, progress=False)  # keywords override
    np.testing.assert_array_equal(a["posterior"]["f_train"], b["posterior"]["f_train"])
    assert c["posterior"].sizes["draw"] == 5
    with pytest.raises(ValueError, match="unknown sampler option 'drawz'"):
        bn.sample(spec, data, drawz=5)


def test_chees_needs_blackjax_with_a_clear_error(monkeypatch):
    from bayesnet import chees

    monkeypatch.setitem(sys.modules, "blackjax", None)  # import blackjax now fails
    with pytest.raises(ImportError, match="pip install blackjax"):
        chees._blackjax()


def test_chees_matches_exact_linear_posterior():
    """ChEES-HMC (collapsed, 32 chains) vs the exact quadrature within Z_MAX MCSE per output."""
    from arviz_stats import mcse  # BlackJAX and ArviZ are dependencies: never skipped

    data = bn.ising(n_train=10, n_test=4, dim=4, flip=0.2, seed=3)
    spec = bn.NetworkSpec(width=4, activation="linear", chi=4.0, kappa=0.3)
    tree = bn.sample(
        spec, data, algorithm="chees", chains=32, warmup=300, draws=150, seed=0, progress=False
    )
    assert tree.attrs["algorithm"] == "chees" and tree.attrs["chain_method"] == "vectorized"
    f = tree["posterior"]["f_train"]
    se = mcse(f, method="mean").values
    exact = sm.posterior(spec, data)["mean_train"]
    z = (f.mean(("chain", "draw")).values - exact) / se
    assert np.all(np.abs(z) < Z_MAX), z
    steps = tree["sample_stats"]["n_steps"].values
    assert np.all(steps == steps[:1])  # every chain takes the same number of leapfrog steps
