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
