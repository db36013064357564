"""bench/ tools: the ArviZ-free ESS used on the GPU machine agrees with arviz_stats."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
from ess import ess_bulk  # noqa: E402


def _ar1(rng, chains, draws, phi):
    x = np.zeros((chains, draws))
    e = rng.standard_normal((chains, draws))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * e[:, t]
    return x


@pytest.mark.parametrize(
    "chains,draws,phi",
    [(4, 1000, 0.0), (4, 500, 0.9), (1, 800, 0.5), (8, 301, -0.3), (2, 200, 0.99)],
)
def test_ess_bulk_matches_arviz_stats(chains, draws, phi):
    import arviz_stats  # a dependency of bayesnet: never skipped

    rng = np.random.default_rng(int(1000 * abs(phi)) + chains)
    x = _ar1(rng, chains, draws, phi) ** 3 + 0.1  # non-Gaussian margin: ranks matter
    ref = float(arviz_stats.ess(x, method="bulk"))
    assert ess_bulk(x) == pytest.approx(ref, rel=1e-9)


def test_ess_bulk_of_ar1_is_near_theory():
    """AR(1) with coefficient phi: ESS/n -> (1 - phi)/(1 + phi)."""
    rng = np.random.default_rng(0)
    x = _ar1(rng, 4, 20000, 0.8)
    assert ess_bulk(x) / x.size == pytest.approx(1 / 9, rel=0.15)


# ------------------------------------------------------------- bench/references.py helpers


def _references():
    import references  # bench/ is on sys.path (above); imports bayesnet lazily

    return references


@pytest.mark.parametrize(
    "chains,draws,phi", [(4, 1000, 0.0), (4, 500, 0.9), (8, 301, -0.3), (2, 200, 0.99)]
)
def test_rhat_rank_matches_arviz_stats(chains, draws, phi):
    import arviz_stats

    rng = np.random.default_rng(int(1000 * abs(phi)) + chains)
    x = _ar1(rng, chains, draws, phi) ** 3 + np.arange(chains)[:, None] * 0.05
    ref = float(arviz_stats.rhat(x, method="rank"))
    assert _references().rhat_rank(x) == pytest.approx(ref, rel=1e-9)


def test_time_guard_with_a_fake_clock():
    now = [100.0]
    g = _references().TimeGuard(160.0, clock=lambda: now[0])
    assert g.left() == 60.0
    assert g.fits(50.0, reserve_s=10.0) and not g.fits(50.1, reserve_s=10.0)
    now[0] = 170.0
    assert g.left() == -10.0 and not g.fits(0.0)


def test_write_json_round_trips_numpy(tmp_path):
    import json

    r = _references()
    obj = {"a": np.arange(3.0), "b": {"c": np.float32(1.5), "d": [np.int64(2), np.nan]}}
    path = tmp_path / "x.json"
    r.write_json(str(path), obj)
    back = json.loads(path.read_text())
    assert back["a"] == [0.0, 1.0, 2.0] and back["b"]["c"] == 1.5 and back["b"]["d"][0] == 2
    assert np.isnan(back["b"]["d"][1])
    assert not (tmp_path / "x.json.tmp").exists()
    r.write_json(None, obj)  # no path: nothing written, no error


def test_case_order_and_chi_ladder():
    r = _references()
    order = r.case_order(("relu", "erf"), ((64, 128), (32,)), ("teacher", "ising"))
    assert order[:3] == [
        (0, "relu", 64, "teacher"),
        (0, "relu", 64, "ising"),
        (0, "relu", 128, "teacher"),
    ]
    assert order[4] == (0, "erf", 64, "teacher") and order[-1] == (1, "erf", 32, "ising")
    assert len(order) == 12
    assert r.chi_ladder(64) == (1.0, 8.0, 64.0)


def test_sampling_cap_shares_the_time_left():
    r = _references()
    # 100 s left, 4 cases, 1 program still to compile (10 s), 5 s warmup each: 17.5 s
    assert r.sampling_cap(100.0, 4, 1, 10.0, 5.0, 1.0, 60.0) == pytest.approx(17.5)
    assert r.sampling_cap(100.0, 1, 0, 10.0, 5.0, 1.0, 60.0) == 60.0  # clipped above
    assert r.sampling_cap(10.0, 4, 1, 10.0, 5.0, 2.0, 60.0) == 2.0  # and below


def _chunks(rng, C, S, P, phi, n_chunks, mu, v):
    """AR(1) draws (S, C, P) around mu with unit stationary variance, cut into chunks."""
    x = np.zeros((S, C, P))
    x[0] = rng.standard_normal((C, P))
    for t in range(1, S):
        x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * rng.standard_normal((C, P))
    f = mu + x
    out = []
    for part in np.array_split(np.arange(S), n_chunks):
        n = part.size
        d = {
            "f_train": f[part],
            "f_test": f[part][..., :2],
            "var_train": np.full((n, C, P), v),
            "var_test": np.full((n, C, 2), v),
            "lp": f[part].mean(-1),
        }
        for k in ("kernel_target", "kernel_trace", "kernel_alignment"):
            d[k] = f[part][..., 0]
        out.append(d)
    return out


def test_accumulator_mcse_of_autocorrelated_chains():
    """Chain-mean MCSE against the exact variance of an AR(1) chain mean; total variance."""
    r = _references()
    rng = np.random.default_rng(1)
    C, S, P, phi, v = 400, 200, 3, 0.8, 0.25
    mu = np.array([1.0, -2.0, 0.5])
    acc = r.Accumulator()
    for d in _chunks(rng, C, S, P, phi, 4, mu, v):
        acc.add(d)
    est = acc.estimates()
    # Var(chain mean) of a stationary AR(1) with unit variance
    var_mean = (1 + phi) / (1 - phi) - 2 * phi * (1 - phi**S) / (S * (1 - phi) ** 2)
    exact_mcse = np.sqrt(var_mean / S / C)
    # the estimate's own relative sd is 1/sqrt(2 (C - 1)): 4.5 of it
    tol = 4.5 / np.sqrt(2 * (C - 1))
    np.testing.assert_allclose(est["f_train_mcse"], exact_mcse, rtol=tol)
    assert np.all(np.abs(est["f_train"] - mu) < 4.5 * exact_mcse)
    # total variance = Var f + E var = 1 + v, within 4.5 of its (delta-method) MCSE
    assert np.all(np.abs(est["var_train"] - (1 + v)) < 4.5 * est["var_train_mcse"])
    assert est["rel_noise_train"] == pytest.approx(
        np.linalg.norm(est["f_train_mcse"]) / np.linalg.norm(est["f_train"])
    )
    assert acc.noise()["train"] == pytest.approx(est["rel_noise_train"])
    # stationary chains: classic split R-hat is sqrt(1 + (tau - 1)/n) for halves of n draws
    # (E s^2 = 1 - Var(half mean), E B/n = Var(half mean)); B from 2C halves: 5% noise on R-1
    n = S // 2
    vh = (1 + phi) / (1 - phi) / n - 2 * phi * (1 - phi**n) / (n * (1 - phi)) ** 2
    W = (1 - vh) * n / (n - 1)
    expected = np.sqrt(((n - 1) / n * W + vh) / W)
    np.testing.assert_allclose(est["rhat_train"], expected, atol=0.25 * (expected - 1))
    # ESS = Var E[f|V] / MCSE^2 near 1 / exact_mcse^2
    np.testing.assert_allclose(est["ess_train"], 1 / exact_mcse**2, rtol=2 * tol)
    assert r.summary(est)["max_rhat"] < 1.05


def test_accumulator_split_rhat_sees_a_drift():
    """Chains that still move (a trend in every chain) give R-hat well above 1."""
    r = _references()
    rng = np.random.default_rng(2)
    C, S, P = 64, 100, 2
    acc = r.Accumulator()
    for i, d in enumerate(_chunks(rng, C, S, P, 0.0, 2, np.zeros(P), 0.1)):
        for k in ("f_train", "f_test"):
            d[k] = d[k] + 3.0 * i  # the second half sits 3 sd higher
        acc.add(d)
    assert np.all(acc.estimates()["rhat_train"] > 1.5)
