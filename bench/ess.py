"""Bulk effective sample size without ArviZ (for machines that lack it, e.g. the GPU box).

Rank-normalised split-chain bulk ESS (Vehtari et al. 2021) with Geyer's initial positive and
initial monotone sequences on FFT autocovariances -- the same estimator as
`arviz_stats.ess(x, method="bulk")` (checked in tests/test_bench_tools.py), and the MCSE of a mean
(`mcse_mean`, equal to `arviz_stats.mcse(x, method="mean")`).  numpy + scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata


def autocov(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each row of x (chains, draws) at every lag, via FFT."""
    n = x.shape[1]
    m = 1 << int(np.ceil(np.log2(2 * n)))
    x = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def ess_geyer(x: np.ndarray) -> float:
    """ESS of (chains, draws) with Geyer's initial positive + monotone sequence (no ranking)."""
    x = np.asarray(x, dtype=float)
    if np.ptp(x) < np.finfo(float).resolution:
        return float(x.size)
    n_chain, n_draw = x.shape
    acov = autocov(x)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (n_draw,) combined autocorrelation
    rho[0] = 1.0
    rho_t = np.zeros(n_draw)
    rho_t[:2] = rho[:2]
    even, odd = 1.0, rho[1]
    t = 1
    while t < n_draw - 3 and even + odd > 0.0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            rho_t[t + 1], rho_t[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho_t[max_t + 1] = even
    t = 1
    while t <= max_t - 2:  # initial monotone sequence
        if rho_t[t + 1] + rho_t[t + 2] > rho_t[t - 1] + rho_t[t]:
            rho_t[t + 1] = rho_t[t + 2] = (rho_t[t - 1] + rho_t[t]) / 2.0
        t += 2
    n = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho_t[: max_t + 1]) + np.sum(rho_t[max_t + 1 : max_t + 2])
    tau = max(tau, 1.0 / np.log10(n))
    return float(n / tau)


def ess_bulk(x) -> float:
    """Bulk ESS of draws x with shape (chains, draws) (a 1-D array is one chain)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    half = x.shape[1] // 2
    x = np.vstack([x[:, :half], x[:, -half:]])  # split chains
    r = rankdata(x, method="average").reshape(x.shape)
    z = ndtri((r - 0.375) / (x.size + 0.25))  # Blom rank normalisation
    return ess_geyer(z)


def ess_mean(x) -> float:
    """ESS of the mean of draws x (chains, draws): split chains, no rank normalisation."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    half = x.shape[1] // 2
    return ess_geyer(np.vstack([x[:, :half], x[:, -half:]]))


def mcse_mean(x) -> float:
    """Monte-Carlo standard error of the posterior mean of x (chains, draws): sd / sqrt(ESS)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    return float(np.std(x, ddof=1) / np.sqrt(ess_mean(x)))


def figure_of_merit(wall_s: float, fm, kt) -> dict:
    """ESS, MCSE and cost per unit precision (wall x MCSE^2) of the posterior means of the
    mean train output fm and of yhat^T K yhat kt (both (chains, draws)), with ESS/s beside."""
    e_f, e_k = ess_bulk(fm), ess_bulk(kt)
    m_f, m_k = mcse_mean(fm), mcse_mean(kt)
    return {
        "ess_f": e_f,
        "ess_k": e_k,
        "mcse_f": m_f,
        "mcse_k": m_k,
        "cost_f": wall_s * m_f**2,
        "cost_k": wall_s * m_k**2,
        "ess_per_s": min(e_f, e_k) / wall_s,
    }
