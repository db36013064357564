"""One statistical-tolerance rule: when do two estimates with Monte-Carlo errors agree?

Used by `analysis.comparison.compare` (the report's verdicts) and by the tests that compare a
theory with a sampler or a sampled theory with a closed form.  Two ingredients:

1. Statistical part.  z = (a - b) / sqrt(se_a^2 + se_b^2): the MC standard errors of BOTH sides
   in quadrature (sample MCSE and the theory's own `<v>_mcse`).  When n such z values are judged
   together (every point and observable of one theory at one chi, about 60-200 values), the
   threshold is the two-sided Sidak critical value for a family-wise false-alarm probability
   ALPHA: z_crit(n) = Phi^-1(1 - p/2), p = 1 - (1 - ALPHA)^(1/n).  Sidak is exact for independent
   z and conservative for the positively correlated ones a posterior produces (e.g. f and y - f).
   ALPHA = 0.01: z_crit(1) = 2.58, z_crit(60) = 3.76, z_crit(200) = 4.05.

2. Bias part (tests of a theory's accuracy only).  A theory of order k in 1/N (tree level k = 1,
   one loop k = 2: the first neglected term of the expansion) may differ from the truth by
   bias_bound = BIAS_C |f| (n_eff/N)^k per value, with |f| the size of the compared quantity
   (`size`: its rms over points, so that points where f crosses 0 get the same bound) and
   n_eff = 1, or n_eff = P where the theory's remainder is known to carry powers of P (the
   one-loop at chi = 1: O(P^2/N^2)); the test states which.  BIAS_C = 1 states that the
   expansion coefficients are O(1) in units of the quantity itself (labels y = +-1,
   unit-normalised kernels); it is not fitted.  A failure means the theory is off by more than
   its stated order, which is what a test should report.
   `compare` uses no bias bound: its question is whether a theory can be told apart from the
   samples at their MC error, whatever the theory's order.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

ALPHA = 0.01  # family-wise false-alarm probability of one verdict (Sidak over its z values)
BIAS_C = 1.0  # bias bound coefficient: |bias| <= BIAS_C |f| / N^order
ORDERS = {  # the order k in 1/N of each theory's first neglected term (mean outputs)
    "nngp": 0,
    "rescaling_tree": 1,
    "rescaling_one_loop": 1,
    "tree": 1,
    "one_loop": 2,
    "laplace_one_loop": 2,
}


def z_threshold(n: int = 1, alpha: float = ALPHA, dof: float = math.inf) -> float:
    """Two-sided Sidak critical |z| for n comparisons judged together at family-wise level
    alpha (n = 1: the plain two-sided quantile).  dof: degrees of freedom of the error estimate
    when it dominates (a theory's replica error alone: replicas - 1), Student-t quantile;
    inf (default): normal, for MCSEs from long chains."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = -math.expm1(math.log1p(-alpha) / n)  # 1 - (1 - alpha)^(1/n), accurate for large n
    if math.isinf(dof):
        return float(scipy.stats.norm.isf(p / 2))
    return float(scipy.stats.t.isf(p / 2, dof))


def combined_se(se_a, se_b=0.0):
    """sqrt(se_a^2 + se_b^2): the error of a - b for independent estimates (NaN-propagating)."""
    return np.sqrt(np.square(se_a) + np.square(se_b))


def z_score(a, b, se_a, se_b=0.0):
    """(a - b) / sqrt(se_a^2 + se_b^2); NaN where either side is NaN."""
    return (np.asarray(a) - np.asarray(b)) / combined_se(se_a, se_b)


def size(x) -> float:
    """The rms of x over all its values: the scale |f| of a bias bound."""
    return float(np.sqrt(np.mean(np.square(np.asarray(x, float)))))


def bias_bound(scale, width: float, order: float, c: float = BIAS_C, n_eff: float = 1.0):
    """c |f| (n_eff / N)^order, elementwise: the stated bias of a theory of that order (module
    docstring); scale is |f| (`size(f)`, or per point); order = inf gives 0 (exact).  n_eff = 1 for
    a remainder O(1/N^k); n_eff = P where the remainder is known to grow with the number of
    training points (the one-loop at chi = 1 leaves O(P^2/N^2), docs/one_loop.md)."""
    if math.isinf(order):
        return np.zeros_like(np.asarray(scale, float))
    return c * np.abs(np.asarray(scale, float)) * (float(n_eff) / float(width)) ** order


def tolerance(se_a, se_b=0.0, n: int = 1, bias=0.0, alpha: float = ALPHA, dof=math.inf):
    """Largest allowed |a - b| per value: z_crit(n) sqrt(se_a^2 + se_b^2) + bias."""
    return z_threshold(n, alpha, dof) * combined_se(se_a, se_b) + np.asarray(bias, float)


def excess(a, b, se_a, se_b=0.0, bias=0.0, alpha: float = ALPHA, dof=math.inf) -> float:
    """max over the values of |a - b| / tolerance, the a.size values judged as one Sidak family
    (<= 1: they agree); NaN anywhere gives inf (a NaN never agrees)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(int(np.size(a)), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.abs(a - b)
        r = np.where(d == 0, 0.0, d / tolerance(se_a, se_b, n=n, bias=bias, alpha=alpha, dof=dof))
    return float(np.max(r)) if np.all(np.isfinite(r)) else math.inf


def agree(a, b, se_a, se_b=0.0, bias=0.0, alpha: float = ALPHA, dof=math.inf) -> bool:
    """Whether every |a - b| is within the rule (`excess` <= 1)."""
    return excess(a, b, se_a, se_b, bias, alpha, dof) <= 1.0
