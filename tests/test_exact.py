"""Exact scale-mixture predictions for linear networks (bayesnet.scale_mixture, theory.exact).

Ground truth: the independent numpy blocked-Gibbs sampler in tests/reference.py; tolerances are
multiples of its batch-means Monte-Carlo standard errors.  Closed-form limits (one-loop mode,
NNGP at N -> infinity) are solved here with numpy/scipy, independently of the `theory` package.
"""

from __future__ import annotations

import functools
import pathlib
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import brentq

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from reference import batch_mean_se, gibbs_linear  # noqa: E402

from bayesnet import NetworkSpec, ising, teacher  # noqa: E402
from bayesnet import scale_mixture as sm  # noqa: E402
from theory.exact import predict_exact  # noqa: E402
from theory.schema import MCSE_VARS  # noqa: E402

WIDTH, KAPPA = 16, 0.3
CHIS = (1.0, 4.0, float(WIDTH))  # standard, intermediate, mean-field


@functools.cache
def dataset(name: str, n_train: int = 40, n_test: int = 16, dim: int = 20):
    """Small data sets shared by the tests."""
    if name == "ising":
        return ising(n_train=n_train, n_test=n_test, dim=dim, flip=0.1, seed=3)
    return teacher(n_train=n_train, n_test=n_test, dim=dim, noise=0.1, seed=4)


@functools.cache
def gibbs(name: str, chi: float, sweeps: int = 1200, width: int = WIDTH, kappa: float = KAPPA):
    """Two independent Gibbs chains, concatenated (batches never straddle the two chains)."""
    d = dataset(name)
    runs = [
        gibbs_linear(
            d.X, d.y, d.X_test, width, 1.0, 1.0, chi, kappa, sweeps=sweeps, burn=200, seed=seed
        )
        for seed in (11, 12)
    ]
    out = {k: np.concatenate([r[k] for r in runs]) for k in runs[0] if k != "K_train_mean"}
    out["K_chains"] = [r["K_train_mean"] for r in runs]
    return out


@functools.cache
def exact(name: str, width: int = WIDTH, kappa: float = KAPPA):
    return predict_exact(NetworkSpec(width=width, kappa=kappa), dataset(name), CHIS)


def z_norm(diff, se):
    """||diff|| / sqrt(sum se^2): about 1 when diff is pure Monte-Carlo noise."""
    return float(np.linalg.norm(diff) / np.sqrt(np.sum(se**2)))


def total_var_se(f, v):
    """Posterior variance E[Var f|V] + Var[E f|V] from Rao-Blackwellised draws, and its MCSE."""
    return batch_mean_se(v + (f - f.mean(axis=0)) ** 2)


def one_loop_ubar(prob, spec):
    """One-loop root (docs/rescaling.md): 1/u = 1/g_w + Tr[K(uK+k)^-1]/N - (chi/N) a^T K a."""
    lam, yt = prob.lam, prob.yt

    def F(logu):
        u = np.exp(logu)
        d = u * lam + spec.kappa
        rhs = 1 / spec.g_w + np.sum(lam / d) / spec.width
        return 1 / u - rhs + spec.chi / spec.width * np.sum(lam * yt**2 / d**2)

    return np.exp(brentq(F, -30, 30, xtol=1e-15, rtol=1e-15))


# ------------------------------------------------------------------ against the Gibbs sampler

CASES = [(name, chi) for name in ("ising", "teacher") for chi in CHIS]


@pytest.mark.parametrize("name,chi", CASES)
def test_mean_outputs_match_gibbs(name, chi):
    """Mean train and test outputs within 3 MC standard errors (norm over points)."""
    g, ex = gibbs(name, chi), exact(name).sel(chi=chi)
    for part in ("train", "test"):
        m, se = batch_mean_se(g[f"f_{part}"])
        diff = ex[f"f_{part}"].values - m
        assert z_norm(diff, se) < 3.0, (part, z_norm(diff, se))
        assert np.max(np.abs(diff / se)) < 6.0


@pytest.mark.parametrize("name,chi", CASES)
def test_output_variances_match_gibbs(name, chi):
    """Posterior output variances (E_V GP var + Var_V GP mean) within 3 MC standard errors."""
    g, ex = gibbs(name, chi), exact(name).sel(chi=chi)
    for part in ("train", "test"):
        v, se = total_var_se(g[f"f_{part}"], g[f"var_{part}"])
        assert z_norm(ex[f"var_{part}"].values - v, se) < 3.0, part


@pytest.mark.parametrize("name,chi", CASES)
def test_hidden_kernel_matches_gibbs(name, chi):
    """y^T K_post y / |y|^2 within 3 MCSE; the whole P x P kernel within 3x the two-chain noise."""
    g, ex = gibbs(name, chi), exact(name).sel(chi=chi)
    kt, se = batch_mean_se(g["kernel_target"])
    assert abs(float(ex.kernel_target) - kt) < 3.0 * se
    K1, K2 = g["K_chains"]
    noise = 0.5 * np.linalg.norm(K1 - K2)  # ~ ||mean of two chains - truth||
    assert np.linalg.norm(ex.K_train.values - 0.5 * (K1 + K2)) < 3.0 * noise


# ------------------------------------------------------------------ closed-form limits


@pytest.mark.parametrize("name", ["ising", "teacher"])
@pytest.mark.parametrize("width,chi", [(16, 1.0), (16, 16.0), (8, 3.0), (200, 1.0), (200, 200.0)])
def test_mode_is_one_loop_rescaling(name, width, chi):
    """g_w s* (mode of the log-s posterior) solves the one-loop equation (docs/rescaling.md)."""
    spec = NetworkSpec(width=width, chi=chi, kappa=KAPPA, g_w=1.3, g_v=0.8)
    prob = sm.prepare(spec, dataset(name))
    ds = predict_exact(spec, dataset(name), [chi])
    u = one_loop_ubar(prob, spec)
    assert abs(float(ds.ubar[0]) / u - 1) < 1e-8


def test_one_loop_module_agrees():
    """The s-mode equals theory.rescaling's one-loop root (two independent implementations)."""
    from theory import rescaling

    d = dataset("ising")
    for chi in CHIS:
        spec = NetworkSpec(width=WIDTH, chi=chi, kappa=KAPPA, g_w=1.3)
        prob = sm.prepare(spec, d)
        sp = rescaling.spectrum(prob.K, d.y)
        u = float(rescaling.solve_ubar(sp, spec.g_w, spec.width, spec.chi, spec.kappa))
        ds = predict_exact(spec, d, [chi])
        assert abs(float(ds.ubar[0]) / u - 1) < 1e-8


@pytest.mark.parametrize("chi", [1.0, 30.0])
def test_infinite_width_is_nngp(chi):
    """At N = 1e12 the exact posterior is the NNGP posterior (docs/conventions.md) to 1e-8."""
    d = dataset("ising")
    spec = NetworkSpec(width=10**12, chi=chi, kappa=KAPPA, g_w=1.5)
    ds = predict_exact(spec, d, [chi]).isel(chi=0)
    kx = lambda A, B: A @ B.T / d.dim  # noqa: E731
    K, Kst, Kss = kx(d.X, d.X), kx(d.X_test, d.X), kx(d.X_test, d.X_test)
    A = spec.g_w * K + spec.kappa * np.eye(d.n_train)
    mean_tr = spec.g_w * K @ np.linalg.solve(A, d.y)
    mean_te = spec.g_w * Kst @ np.linalg.solve(A, d.y)
    var_tr = (spec.g_w * np.diag(K) - spec.g_w**2 * np.sum(K * np.linalg.solve(A, K), 0)) / chi
    var_te = (
        spec.g_w * np.diag(Kss) - spec.g_w**2 * np.sum(Kst.T * np.linalg.solve(A, Kst.T), 0)
    ) / chi
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert rel(ds.f_train.values, mean_tr) < 1e-8
    assert rel(ds.f_test.values, mean_te) < 1e-8
    assert rel(ds.var_train.values, var_tr) < 1e-8
    assert rel(ds.var_test.values, var_te) < 1e-8
    assert rel(ds.K_train.values, K) < 1e-8
    assert abs(float(ds.s_mean) - 1) < 1e-8 and float(ds.s_std) < 1e-5


def closed_form_kernel(prob, spec):
    """docs/rescaling.md sec 3: K + (chi/(N u)) f f^T - (u/N) K (uK + kappa)^-1 K, one-loop u."""
    u = one_loop_ubar(prob, spec)
    K = prob.K
    A = u * K + spec.kappa * np.eye(K.shape[0])
    f = u * K @ np.linalg.solve(A, prob.y)
    return (
        K
        + spec.chi / (spec.width * u) * np.outer(f, f)
        - u / spec.width * K @ np.linalg.solve(A, K)
    )


@pytest.mark.parametrize("ratio", [1.0 / 16, 1.0])  # chi / N
def test_kernel_approaches_closed_form_at_large_width(ratio):
    """Exact K_post - (closed form) is O(1/N) relative to the finite-width change K_post - K.

    With err(N) = c1/N + c2/N^2 + ..., E(N) = N err(N) converges like 1/N: over widths 256, 1024,
    4096 its increments shrink by 4 (next order 1/N^2).  Required: by at least 2 (room for an
    equal-sized third order).  An O(1) error makes E grow 4x per step, O(1/sqrt(N)) 2x.
    """
    d = dataset("ising")
    E = []
    for width in (256, 1024, 4096):
        spec = NetworkSpec(width=width, chi=ratio * width, kappa=KAPPA)
        prob = sm.prepare(spec, d)
        K_ex = sm.posterior(spec, d)["K_train"]
        E.append(
            width
            * np.linalg.norm(K_ex - closed_form_kernel(prob, spec))
            / np.linalg.norm(K_ex - prob.K)
        )
    assert abs(E[2] - E[1]) < 0.5 * abs(E[1] - E[0]), E


def test_test_kernel_consistent_with_train_kernel():
    """Test points that duplicate training points get the training rows of K_post."""
    from bayesnet import from_arrays

    d = dataset("teacher")
    dup = from_arrays(d.X, d.y, d.X[:7], d.y[:7])
    ds = predict_exact(NetworkSpec(width=12, kappa=KAPPA), dup, [1.0, 12.0])
    np.testing.assert_allclose(
        ds.K_test_train.values, ds.K_train.values[:, :7], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(ds.f_test.values, ds.f_train.values[:, :7], rtol=1e-10)
    np.testing.assert_allclose(ds.var_test.values, ds.var_train.values[:, :7], rtol=1e-9)


# ------------------------------------------------------------------ quadrature accuracy


def brute_force(spec, d, n=200_000, span=(-25.0, 5.0)):
    """Posterior moments by a 200k-node trapezoid in log s, log density coded from scratch."""
    K = spec.g_v / d.dim * d.X @ d.X.T
    lam, U = np.linalg.eigh(K)
    lam = np.clip(lam, 0, None)
    yt = U.T @ d.y
    B = spec.g_v / d.dim * d.X_test @ d.X.T @ U  # (P*, P)
    x0 = sm.find_mode(sm.prepare(spec, d))
    x = np.linspace(x0 + span[0], x0 + span[1], n)  # (n,)
    u = spec.g_w * np.exp(x)[:, None]
    a = u * lam + spec.kappa  # (n, P)
    logp = (
        spec.width / 2 * (x - np.exp(x))
        - 0.5 * np.sum(np.log(a), 1)
        - 0.5 * spec.chi * np.sum(yt**2 / a, 1)
    )
    w = np.exp(logp - logp.max())
    w /= w.sum()
    r = u * lam / a  # (n, P)
    Err = (r * w[:, None]).T @ r  # (P, P) E[r r^T]
    var_s = np.einsum("ak,al,k,l,kl->a", U, U, yt, yt, Err - np.outer(w @ r, w @ r))
    return {
        "s": w @ np.exp(x),
        "s2": w @ np.exp(2 * x),
        "m_tr": U @ ((w @ r) * yt),
        "m_te": B @ ((w @ (u / a)) * yt),
        "var_s_tr": var_s,
    }


@pytest.mark.parametrize(
    "width,chi,span",
    [
        (4, 1.0, (-25.0, 5.0)),
        (16, 4.0, (-25.0, 5.0)),
        (64, 64.0, (-25.0, 5.0)),
        (3, 0.01, (-60.0, 8.0)),
    ],
)  # long left tail
def test_quadrature_matches_brute_force(width, chi, span):
    """Adaptive grid (tens to hundreds of nodes) equals a 200k-node trapezoid to 1e-10 relative."""
    d = dataset("ising")
    spec = NetworkSpec(width=width, chi=chi, kappa=KAPPA)
    bf = brute_force(spec, d, span=span)
    prob = sm.prepare(spec, d)
    quad = sm.quadrature(prob)
    mom = sm.output_moments(prob, quad)
    s = np.exp(quad.x)
    assert quad.converged and quad.x.size < 400
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    assert rel(quad.w @ s, bf["s"]) < 1e-10
    assert rel(quad.w @ s**2, bf["s2"]) < 1e-10
    assert rel(mom["mean_train"], bf["m_tr"]) < 1e-10
    assert rel(mom["mean_test"], bf["m_te"]) < 1e-10
    m_s = (
        prob.g_w * s[:, None] * prob.lam / (prob.g_w * s[:, None] * prob.lam + prob.kappa) * prob.yt
    ) @ prob.U.T  # (n, P) GP means on the grid
    assert rel(quad.w @ (m_s - mom["mean_train"]) ** 2, bf["var_s_tr"]) < 1e-8  # Var_s GP mean


def test_log_density_matches_direct_gaussian():
    """Eigen-form log p(log s | y) equals Gamma prior x N(y; 0, (s g_w/chi)K + kappa/chi)."""
    d = dataset("teacher")
    spec = NetworkSpec(width=10, chi=3.0, kappa=KAPPA, g_w=0.7, g_v=1.4)
    prob = sm.prepare(spec, d)
    K = spec.g_v / d.dim * d.X @ d.X.T

    def direct(x):
        s = np.exp(x)
        C = s * spec.g_w / spec.chi * K + spec.kappa / spec.chi * np.eye(d.n_train)
        gam = stats.gamma.logpdf(s, a=spec.width / 2, scale=2 / spec.width) + x  # density of log s
        return gam + stats.multivariate_normal.logpdf(d.y, cov=C)

    xs = np.array([-1.3, -0.2, 0.4, 1.1])
    np.testing.assert_allclose(
        sm.log_ratio(prob, xs, 0.1), [direct(x) - direct(0.1) for x in xs], rtol=1e-9, atol=1e-9
    )
    eps = 1e-5
    num = (sm.log_ratio(prob, xs + eps, 0.0) - sm.log_ratio(prob, xs - eps, 0.0)) / (2 * eps)
    np.testing.assert_allclose(sm.dlog(prob, xs), num, rtol=1e-6, atol=1e-6)
    num2 = (sm.dlog(prob, xs + eps) - sm.dlog(prob, xs - eps)) / (2 * eps)
    np.testing.assert_allclose(sm.d2log(prob, xs), num2, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ exact draws


@pytest.mark.parametrize("chi", [1.0, 16.0])
def test_draws_match_exact_moments(chi):
    """Sample mean/variance of i.i.d. draws equal predict_exact within 3 standard errors."""
    n = 40_000
    d = dataset("ising")
    spec = NetworkSpec(width=WIDTH, chi=chi, kappa=KAPPA)
    dr = sm.draw_outputs(spec, d, n, seed=5)
    ex = exact("ising").sel(chi=chi)
    assert dr.f_train.shape == (n, d.n_train) and dr.f_test.shape == (n, d.n_test)
    for part, f in (("train", dr.f_train), ("test", dr.f_test)):
        m = f.mean(0)
        assert z_norm(m - ex[f"f_{part}"].values, f.std(0) / np.sqrt(n)) < 3.0, part
        dev2 = (f - m) ** 2
        assert z_norm(dev2.mean(0) - ex[f"var_{part}"].values, dev2.std(0) / np.sqrt(n)) < 3.0
    se = dr.s.std() / np.sqrt(n)
    assert abs(dr.s.mean() - float(ex.s_mean)) < 3 * se
    # standard error of a sample std for any law with kurtosis k: (std / 2) sqrt((k - 1) / n)
    dev = dr.s - dr.s.mean()
    kurt = np.mean(dev**4) / np.mean(dev**2) ** 2
    assert abs(dr.s.std() / float(ex.s_std) - 1) < 3 * 0.5 * np.sqrt((kurt - 1) / n)


@pytest.mark.parametrize("width,chi", [(6, 2.0), (3, 0.01)])  # skewed; long left tail
def test_s_draws_follow_quadrature_cdf(width, chi):
    """Kolmogorov-Smirnov test of exact s draws against the CDF of the quadrature density."""
    d = dataset("teacher")
    spec = NetworkSpec(width=width, chi=chi, kappa=KAPPA)
    prob = sm.prepare(spec, d)
    quad = sm.quadrature(prob)
    s = sm.draw_s(prob, quad, 20_000, np.random.default_rng(9))
    xf = np.linspace(quad.x[0], quad.x[-1], 200_001)
    pdf = np.exp(sm.log_ratio(prob, xf, quad.mode))
    cdf = np.concatenate([[0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]))])
    cdf /= cdf[-1]
    res = stats.kstest(np.log(s), lambda t: np.interp(t, xf, cdf))
    assert res.pvalue > 1e-3


# ------------------------------------------------------------------ schema and errors


def test_schema():
    d = dataset("ising")
    ds = predict_exact(NetworkSpec(width=8, kappa=KAPPA), d, [1.0, 2.0, 8.0])
    P, Ps = d.n_train, d.n_test
    dims = {
        "f_train": ("chi", "train"),
        "f_test": ("chi", "test"),
        "var_train": ("chi", "train"),
        "var_test": ("chi", "test"),
        "discrepancy_train": ("chi", "train"),
        "discrepancy_test": ("chi", "test"),
        "K_train": ("chi", "train", "train_"),
        "K_test_train": ("chi", "test", "train_"),
    }
    for v in (
        "kernel_target",
        "kernel_trace",
        "ubar",
        "converged",
        "iterations",
        "residual",
        "normalisability",
        "s_mean",
        "s_std",
        "s_mode",
        "quad_error",
        "status",
    ):
        dims[v] = ("chi",)
    for v in MCSE_VARS:  # closed form: the theory's own Monte-Carlo error is 0
        dims[f"{v}_mcse"] = dims[v]
        assert float(abs(ds[f"{v}_mcse"]).max()) == 0.0, v
    assert set(ds.data_vars) == set(dims)
    for v, dd in dims.items():
        assert ds[v].dims == dd, v
    assert ds.sizes == {"chi": 3, "train": P, "test": Ps, "train_": P}
    np.testing.assert_array_equal(ds.train_.values, np.arange(P))
    assert ds.converged.dtype == bool and bool(ds.converged.all())
    assert np.issubdtype(ds.iterations.dtype, np.integer)
    assert bool(np.isnan(ds.normalisability).all())
    assert ds.attrs["method"] == "exact" and ds.attrs["width"] == 8
    assert ds.attrs["data_name"] == "ising"
    np.testing.assert_allclose(ds.discrepancy_train, d.y - ds.f_train)
    np.testing.assert_allclose(ds.kernel_trace, np.trace(ds.K_train, axis1=1, axis2=2) / P)
    assert np.all(ds.var_train > 0) and np.all(ds.var_test > 0)


def test_nonlinear_activation_raises():
    d = dataset("ising")
    spec = NetworkSpec(width=8, activation="erf")
    with pytest.raises(ValueError, match="exact results exist for linear networks only"):
        predict_exact(spec, d, [1.0])
    with pytest.raises(ValueError, match="activation='erf'"):
        sm.draw_outputs(spec, d, 10, seed=0)


def test_bad_chis_raise():
    d = dataset("ising")
    with pytest.raises(ValueError, match="ascending"):
        predict_exact(NetworkSpec(width=8), d, [2.0, 1.0])
    with pytest.raises(ValueError, match="> 0"):
        predict_exact(NetworkSpec(width=8), d, [0.0, 1.0])


# ------------------------------------------------------------------ long statistical checks


@pytest.mark.slow
@pytest.mark.parametrize("chi", [1.0, 6.0, 32.0])
def test_gibbs_long_run_larger_net(chi):
    """Longer chains, P=48, D=24, N=32, kappa=0.2: means, variances, kernel."""
    d = ising(n_train=48, n_test=24, dim=24, flip=0.1, seed=7)
    runs = [
        gibbs_linear(d.X, d.y, d.X_test, 32, 1.0, 1.0, chi, 0.2, sweeps=10_000, burn=500, seed=s)
        for s in (21, 22)
    ]
    g = {
        k: np.concatenate([r[k] for r in runs])
        for k in ("f_train", "f_test", "var_train", "kernel_target")
    }
    ex = predict_exact(NetworkSpec(width=32, kappa=0.2), d, [chi]).isel(chi=0)
    for part in ("train", "test"):
        m, se = batch_mean_se(g[f"f_{part}"])
        assert z_norm(ex[f"f_{part}"].values - m, se) < 3.0
    v, se = total_var_se(g["f_train"], g["var_train"])
    assert z_norm(ex.var_train.values - v, se) < 3.0
    kt, se = batch_mean_se(g["kernel_target"])
    assert abs(float(ex.kernel_target) - kt) < 3.0 * se
    K1, K2 = (r["K_train_mean"] for r in runs)
    assert np.linalg.norm(ex.K_train.values - 0.5 * (K1 + K2)) < 3.0 * 0.5 * np.linalg.norm(K1 - K2)
