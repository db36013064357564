"""NUTS posteriors against an independent exact reference (numpy blocked Gibbs), within MCSE."""

import pathlib
import sys

import arviz_stats as azs
import numpy as np
import pytest

import bayesnet as bn
from bayesnet import scale_mixture
from bayesnet.observables import kernel_scalars

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from reference import batch_mean_se, gibbs_linear  # noqa: E402

N = 8
DATA = bn.ising(n_train=12, n_test=6, dim=8, flip=0.2, seed=1)
RUN = dict(chains=4, warmup=500, draws=1000, progress=False)


@pytest.fixture(scope="module")
def runs():
    """Gibbs reference, collapsed and full NUTS at chi = 1 (standard) and chi = N (mean-field)."""
    out = {}
    for chi in (1.0, float(N)):
        spec = bn.NetworkSpec(width=N, chi=chi, kappa=0.5)
        ref = gibbs_linear(
            DATA.X, DATA.y, DATA.X_test, N, 1.0, 1.0, chi, 0.5, sweeps=8000, burn=500, seed=int(chi)
        )
        out[chi] = {"gibbs": ref}
        for method in ("collapsed", "full"):
            out[chi][method] = bn.sample(spec, DATA, method=method, **RUN)
    return out


def _mean_mcse(tree, var):
    post = tree["posterior"].to_dataset()[[var]]
    return post[var].mean(("chain", "draw")).values, azs.mcse(post)[var].values


@pytest.mark.parametrize("chi", [1.0, float(N)])
@pytest.mark.parametrize("method", ["collapsed", "full"])
@pytest.mark.parametrize("var", ["f_train", "f_test", "kernel_target"])
def test_nuts_matches_gibbs(runs, chi, method, var):
    """Posterior means of outputs and of y^T K y agree with exact Gibbs: |z| < 4.5 everywhere."""
    m, se = _mean_mcse(runs[chi][method], var)
    gm, gse = batch_mean_se(runs[chi]["gibbs"][var])
    z = (m - gm) / np.sqrt(se**2 + gse**2)
    print(
        f"chi={chi} {method} {var}: max|z|={np.abs(z).max():.2f} "
        f"rel.err={np.linalg.norm(m - gm) / np.linalg.norm(gm):.2e}"
    )
    assert np.all(np.abs(z) < 4.5)


@pytest.mark.parametrize("chi", [1.0, float(N)])
def test_full_and_collapsed_agree(runs, chi):
    """The two parameterisations of one posterior agree on every output mean within MCSE."""
    m1, s1 = _mean_mcse(runs[chi]["collapsed"], "f_train")
    m2, s2 = _mean_mcse(runs[chi]["full"], "f_train")
    assert np.all(np.abs(m1 - m2) / np.sqrt(s1**2 + s2**2) < 4.5)


@pytest.mark.parametrize("chi", [1.0, float(N)])
def test_posterior_output_variance(runs, chi):
    """Total posterior variance from collapsed draws (E[var|V] + Var[E|V]) matches Gibbs's.

    Both sides are means of a per-draw quantity, var + (f - mean f)^2, so each has a Monte-Carlo
    standard error: ESS-based (arviz) for NUTS, batch means for Gibbs; |z| < 4.5 everywhere.
    """
    post = runs[chi]["collapsed"]["posterior"].to_dataset()
    per_draw = post["var_train"] + (post["f_train"] - post["f_train"].mean(("chain", "draw"))) ** 2
    var_c = per_draw.mean(("chain", "draw")).values
    se_c = azs.mcse(per_draw.to_dataset(name="v"))["v"].values
    g = runs[chi]["gibbs"]
    var_g, se_g = batch_mean_se(g["var_train"] + (g["f_train"] - g["f_train"].mean(0)) ** 2)
    z = (var_c - var_g) / np.sqrt(se_c**2 + se_g**2)
    assert np.all(np.abs(z) < 4.5), np.abs(z).max()


def test_kernel_group_and_stats(runs):
    """The kernel group is the mean of the per-draw kernels; its scalars match the exact K_post.

    Only per-draw scalars are stored (not per-draw P x P kernels), so the comparison with the
    exact posterior kernel (scale mixture, no Monte-Carlo error) runs along ŷ and the trace,
    within 4.5 MCSE of those scalars.
    """
    tree = runs[1.0]["collapsed"]
    K = tree["kernel"]["K_train"].values
    assert K.shape == (12, 12) and np.allclose(K, K.T)
    post = tree["posterior"].to_dataset()
    group = kernel_scalars(K, DATA.y)
    K_exact = scale_mixture.posterior(bn.NetworkSpec(width=N, kappa=0.5), DATA)["K_train"]
    exact = kernel_scalars(K_exact, DATA.y)
    for key in ("kernel_target", "kernel_trace"):
        # the mean kernel's scalar equals the mean of the per-draw scalars ...
        assert group[key] == pytest.approx(float(post[key].mean()), rel=1e-10)
        # ... which is the exact posterior's within Monte-Carlo error
        se = float(azs.mcse(post[[key]])[key])
        assert abs(group[key] - exact[key]) < 4.5 * se, (key, group[key], exact[key], se)
    stats = tree["sample_stats"]
    # A rare divergence can come from round-off on some machine and is harmless; a few percent
    # would mean a geometry NUTS cannot follow (then the MCSE checks above would not be valid).
    assert float(stats["diverging"].mean()) < 0.01
    assert set(stats.data_vars) >= {
        "diverging",
        "tree_depth",
        "step_size",
        "energy",
        "acceptance_rate",
    }
    assert tree.attrs["method"] == "collapsed" and tree.attrs["chi"] == 1.0
    assert bn.NetworkSpec.from_attrs(tree.attrs) == bn.NetworkSpec(width=N, kappa=0.5)


def test_sweep_reuses_compiled_sampler(runs):
    """The second chi of a sweep costs no compilation (chi is a traced argument)."""
    assert runs[float(N)]["collapsed"].attrs["timing_compile_s"] == 0.0
    a = runs[1.0]["collapsed"]["posterior"]["f_train"].values
    b = runs[float(N)]["collapsed"]["posterior"]["f_train"].values
    assert not np.allclose(a, b)


def test_reproducible(runs):
    spec = bn.NetworkSpec(width=N, chi=1.0, kappa=0.5)
    again = bn.sample(spec, DATA, method="collapsed", **RUN)
    np.testing.assert_array_equal(
        again["posterior"]["f_train"].values, runs[1.0]["collapsed"]["posterior"]["f_train"].values
    )
    other = bn.sample(spec, DATA, method="collapsed", **dict(RUN, seed=1))
    assert not np.allclose(
        other["posterior"]["f_train"].values, again["posterior"]["f_train"].values
    )


def test_sequential_chains_match_vectorized_law(runs):
    spec = bn.NetworkSpec(width=N, chi=1.0, kappa=0.5)
    seq = bn.sample(
        spec, DATA, method="collapsed", chain_method="sequential", **dict(RUN, chains=2)
    )
    assert seq["posterior"].sizes["chain"] == 2
    m1, s1 = _mean_mcse(seq, "f_train")
    m2, s2 = _mean_mcse(runs[1.0]["collapsed"], "f_train")
    assert np.all(np.abs(m1 - m2) / np.sqrt(s1**2 + s2**2) < 4.5)


def test_save_load_roundtrip(runs, tmp_path):
    tree = runs[1.0]["collapsed"]
    path = bn.save(tree, tmp_path / "r.nc")
    back = bn.load(path)
    np.testing.assert_array_equal(
        back["posterior"]["f_train"].values, tree["posterior"]["f_train"].values
    )
    np.testing.assert_array_equal(
        back["kernel"]["K_train"].values, tree["kernel"]["K_train"].values
    )
    assert back.attrs["spec"] == tree.attrs["spec"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]  # no temporary left behind
    with pytest.raises(ValueError, match="does not exist"):
        bn.save(tree, tmp_path / "missing" / "r.nc")
    with pytest.raises(ValueError, match="no result file"):
        bn.load(tmp_path / "nope.nc")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "gibbs"}, "method"),
        ({"chains": 0}, "chains"),
        ({"draws": 0}, "draws"),
        ({"warmup": -1}, "warmup"),
        ({"chain_method": "threads"}, "chain_method"),
        ({"dtype": "float16"}, "dtype"),
        ({"target_accept": 1.5}, "target_accept"),
    ],
)
def test_sample_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bn.sample(bn.NetworkSpec(width=4), DATA, **kwargs)


def test_sample_rejects_wrong_types():
    with pytest.raises(ValueError, match="spec"):
        bn.sample({"width": 4}, DATA)
    with pytest.raises(ValueError, match="data"):
        bn.sample(bn.NetworkSpec(width=4), (DATA.X, DATA.y))


def test_interrupt_keeps_finished_draws(runs, monkeypatch):
    """Ctrl-C during sampling returns the finished chunks of draws, labelled as interrupted."""
    import bayesnet.sampling as sampling

    calls = []

    def fake_bar(enabled, total, desc):
        def update(n, phase):
            calls.append(phase)
            if calls.count("sampling") == 2:
                raise KeyboardInterrupt

        return None, update

    monkeypatch.setattr(sampling, "progress_bar", fake_bar)
    spec = bn.NetworkSpec(width=N, chi=1.0, kappa=0.5)
    with pytest.warns(UserWarning, match="interrupted"):
        tree = bn.sample(spec, DATA, method="collapsed", **dict(RUN, progress=True))
    full = runs[1.0]["collapsed"]["posterior"]["f_train"].values
    part = tree["posterior"]["f_train"].values
    assert tree.attrs["interrupted"] == 1 and part.shape[1] == tree.attrs["draws"] < 1000
    np.testing.assert_array_equal(part, full[:, : part.shape[1]])  # same chain, cut short
    yh = DATA.y / np.linalg.norm(DATA.y)
    assert yh @ tree["kernel"]["K_train"].values @ yh == pytest.approx(
        float(tree["posterior"]["kernel_target"].mean()), rel=1e-10
    )


def test_float32_matches_float64(runs):
    """dtype='float32' (the GPU option) samples the same posterior: outputs agree within MCSE."""
    spec = bn.NetworkSpec(width=N, chi=1.0, kappa=0.5)
    tree = bn.sample(spec, DATA, method="collapsed", dtype="float32", **RUN)
    assert tree["posterior"]["f_train"].dtype == np.float32
    m1, s1 = _mean_mcse(tree, "f_train")
    m2, s2 = _mean_mcse(runs[1.0]["collapsed"], "f_train")
    assert np.all(np.abs(m1 - m2) / np.sqrt(s1**2 + s2**2) < 4.5)
    import jax.numpy as jnp

    assert jnp.ones(1).dtype == jnp.float64  # x64 restored for everything else
