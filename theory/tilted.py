"""Non-linear tree level: expectations under the tilted single-neuron measure and the f-solve.

Tilted measure (docs/one_loop.md, "The tilted saddle point"):
  p(v) ~ N(v; 0, g_v/D I) exp(c (Delta^T phi(X v))^2 / 2),
c = g_w chi / (N kappa^2), Delta = y - f.  Q(f) = <phi(Xv) phi(Xv)^T> (P, P), dimensionless.

Estimator: self-normalised importance sampling over FIXED draws (common random numbers, so f -> Q
is smooth and differentiable).  With prior draws the prior kernel is used as a control variate,
  Q = K^phi + sum_m (w_m - 1/M) phi_m phi_m^T,
which is exact at zero tilt (NNGP limit) and cancels most prior-sampling noise at weak tilt.  For
odd phi the estimator is invariant under v -> -v (even weight, even phi phi^T), so the mirrored
draws are accounted for exactly without being stored; for other phi the mirrored draws -v_m are
added as antithetic variates.  When the effective sample size falls below `ess_min`, the draws are
replaced by a population of short HMC chains of the D-dim tilted measure (population sampler),
which then serve as the proposal of the same importance-sampling estimator.
At each requested chi the solver hands the draws at the solution to the fluctuation corrections
as a `fluctuation.TiltedSample` (`tilted_sample`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesnet import gp
from bayesnet.activations import ACTIVATIONS
from bayesnet.datasets import Dataset
from bayesnet.spec import NetworkSpec

from . import adaptive
from .estimator import cv_diagonal, cv_kernels
from .fluctuation import TiltedSample
from .population import hmc_population
from .schema import PriorKernels, Row
from .solver import newton

HOMOGENEOUS = frozenset({"relu"})  # phi(r h) = r phi(h), r > 0: theory/homogeneous.py


class Draws(NamedTuple):
    """Fixed draws: V (M, D) weights, phi (M, P), phi_test (M, P*), log_q (M,) proposal log-tilt,
    prior=True when drawn from the prior (control variate on)."""

    V: jnp.ndarray
    phi: jnp.ndarray
    phi_test: jnp.ndarray
    log_q: jnp.ndarray
    prior: bool


def features(activation: str, V: jnp.ndarray, X) -> jnp.ndarray:
    """phi(X v_m) for every draw: (M, P)."""
    return ACTIVATIONS[activation](V @ jnp.asarray(X).T)  # (M, P)


def prior_draws(
    activation: str, X, X_test, g_v: float, n_draws: int, seed: int, odd: bool
) -> Draws:
    """M prior draws v ~ N(0, g_v/D I) (plus antithetic mirrors -v for non-odd phi, interleaved
    so that contiguous even-sized batches keep each pair together)."""
    D = X.shape[1]
    V = jax.random.normal(jax.random.PRNGKey(seed), (n_draws, D)) * math.sqrt(g_v / D)  # (M, D)
    if not odd:
        V = jnp.stack([V, -V], axis=1).reshape(2 * n_draws, D)  # (2M, D)
    return Draws(
        V, features(activation, V, X), features(activation, V, X_test), jnp.zeros(V.shape[0]), True
    )


def _weights(phi, log_q, delta, c):
    """Normalised importance weights (M,) and the projections s = phi Delta (M,)."""
    s = phi @ delta  # (M,)
    logw = log_q + 0.5 * c * s * s  # (M,)
    w = jnp.exp(logw - jnp.max(logw))
    return w / jnp.sum(w), s


def _weight_shift(w, prior):
    """Weights of the estimator: w - 1/M with the control variate, w otherwise."""
    return w - 1.0 / w.shape[0] if prior else w


@functools.partial(jax.jit, static_argnames=("prior",))
def residual(
    f: jnp.ndarray,
    phi: jnp.ndarray,
    log_q: jnp.ndarray,
    K: jnp.ndarray,
    y: jnp.ndarray,
    g_w: float,
    kappa: float,
    c: float,
    prior: bool,
) -> jnp.ndarray:
    """Tree equation f - (g_w/kappa) Q(f)(y - f), (P,); c the tilt coefficient."""
    delta = y - f  # (P,)
    w, s = _weights(phi, log_q, delta, c)
    wt = _weight_shift(w, prior)
    Kd = K @ delta if prior else jnp.zeros_like(delta)  # (P,)
    Qd = Kd + (wt * s) @ phi  # (P,)
    return f - (g_w / kappa) * Qd


autodiff_jacobian = jax.jit(jax.jacfwd(residual), static_argnames=("prior",))


@functools.partial(jax.jit, static_argnames=("prior",))
def jacobian(
    f: jnp.ndarray,
    phi: jnp.ndarray,
    log_q: jnp.ndarray,
    K: jnp.ndarray,
    y: jnp.ndarray,
    g_w: float,
    kappa: float,
    c: float,
    prior: bool,
) -> jnp.ndarray:
    """d/df of f - (g/kappa) Q(f) Delta at fixed g, in closed form (P, P): one M P^2 matmul.

    d(Q Delta)/dDelta = K + Phi^T diag(w~ + c w s^2) Phi - c m m^T,  m = sum_m w_m s_m phi_m.
    """
    delta = y - f  # (P,)
    w, s = _weights(phi, log_q, delta, c)
    wt = _weight_shift(w, prior)
    m = (w * s) @ phi  # (P,)
    JQ = (phi * (wt + c * w * s * s)[:, None]).T @ phi - c * jnp.outer(m, m)  # (P, P)
    if prior:
        JQ = JQ + K
    return jnp.eye(f.shape[0]) + (g_w / kappa) * JQ


@functools.partial(jax.jit, static_argnames=("prior",))
def tilted_moments(
    phi: jnp.ndarray,
    phi_test: jnp.ndarray,
    log_q: jnp.ndarray,
    K: jnp.ndarray,
    K_tt: jnp.ndarray,
    k_test: jnp.ndarray,
    delta: jnp.ndarray,
    c: float,
    prior: bool,
) -> tuple:
    """Q train (P, P), test-train (P*, P), test diagonal (P*,), and the ESS of the weights."""
    w, _ = _weights(phi, log_q, delta, c)
    w0 = 1.0 / w.shape[0] if prior else None
    Q, Q_tt = cv_kernels(phi, phi_test, w, w0, K, K_tt)  # (P, P), (P*, P)
    q_test = cv_diagonal(phi_test, w, w0, k_test)  # (P*,)
    return Q, Q_tt, q_test, 1.0 / jnp.sum(w * w)


def population_draws(
    draws: Draws, activation: str, X, X_test, delta, c: float, g_v: float, n_chains: int, seed: int
) -> Draws:
    """Replace the draws by a HMC population of the current tilted measure (proposal log-tilt
    stored so the same importance-sampling estimator applies to nearby f and chi)."""
    key = jax.random.PRNGKey(seed)
    w, _ = _weights(draws.phi, draws.log_q, delta, c)
    idx = jax.random.choice(key, w.shape[0], (n_chains,), p=w)  # resample as chain starts
    V = hmc_population(
        jax.random.fold_in(key, 1),
        draws.V[idx],
        jnp.asarray(X),
        activation,
        jnp.asarray(delta),
        c,
        g_v,
    )
    phi = features(activation, V, X)  # (M', P)
    s = phi @ delta
    return Draws(V, phi, features(activation, V, X_test), -0.5 * c * s * s, False)


class Problem(NamedTuple):
    """Static data of one non-linear solve (arrays float64)."""

    activation: str
    X: np.ndarray
    X_test: np.ndarray
    y: jnp.ndarray
    K: jnp.ndarray
    K_tt: jnp.ndarray
    k_test: jnp.ndarray
    g_w: float
    g_v: float
    kappa: float
    width: float

    def tilt(self, chi: float) -> float:
        """Tilt coefficient c at this chi (adaptive.tilt_coefficient)."""
        return adaptive.tilt_coefficient(self.g_w, chi, self.width, self.kappa)


class TiltedRow(NamedTuple):
    """The tree level at one requested chi: its predict row, the importance-sampling ESS, the
    number of population refreshes (relu: proposal rounds), whatever `at_solution` returned
    (None without it), u_star (relu: max over directions of u = c g_v s^2/D, the measure is
    normalisable iff < 1; NaN for other activations) and a one-line reason when the row did not
    converge ("" otherwise); tree: which tree level (relu: "linearised" or "cavity")."""

    row: Row
    ess: float
    refreshes: int
    extra: object = None
    u_star: float = math.nan
    reason: str = ""
    tree: str = "linearised"


def solve_chi(
    pb: Problem, draws: Draws, chi: float, f0, tol: float, maxiter: int, autodiff: bool = False
) -> tuple[np.ndarray, int, float, bool]:
    """Newton solve of the tree equation at one chi on fixed draws; autodiff=True uses the
    jacfwd Jacobian instead of the closed-form one."""
    args = (draws.phi, draws.log_q, pb.K, pb.y, pb.g_w, pb.kappa, pb.tilt(chi))
    fun = lambda f: residual(f, *args, prior=draws.prior)  # noqa: E731
    jac_fn = autodiff_jacobian if autodiff else jacobian
    jac = lambda f: jac_fn(f, *args, prior=draws.prior)  # noqa: E731
    return newton(fun, jac, f0, tol, maxiter)


def tilted_sample(pb: Problem, draws: Draws, chi: float, f) -> TiltedSample:
    """The draws as a TiltedSample of the tilted measure at train predictor f (P,) and chi:
    normalised weights exp(c (Delta^T phi)^2/2) relative to the draws' proposal."""
    w, _ = _weights(draws.phi, draws.log_q, pb.y - jnp.asarray(f), pb.tilt(chi))
    return TiltedSample(
        phi=draws.phi,
        phi_test=draws.phi_test,
        w=w,
        K=pb.K,
        K_test=pb.K_tt,
        prior=draws.prior,
        y=pb.y,
        g_w=pb.g_w,
        kappa=pb.kappa,
        chi=float(chi),
        width=int(pb.width),
    )


def _outputs(pb: Problem, draws: Draws, chi: float, f) -> tuple[Row, float]:
    """Tree-level row of predict's schema from a solution f (P,), and the ESS of the weights."""
    g = pb.g_w
    delta = pb.y - f  # (P,)
    c = pb.tilt(chi)
    Q, Q_tt, q_test, ess = tilted_moments(
        draws.phi,
        draws.phi_test,
        draws.log_q,
        pb.K,
        pb.K_tt,
        pb.k_test,
        jnp.asarray(delta),
        c,
        prior=draws.prior,
    )
    f_test = (g / pb.kappa) * Q_tt @ delta  # (P*,)
    _, v_tr = gp.gp_posterior(g * Q, g * Q, g * jnp.diag(Q), pb.y, pb.kappa)
    _, v_te = gp.gp_posterior(g * Q, g * Q_tt, g * q_test, pb.y, pb.kappa)
    ubar = g * float(delta @ Q @ delta) / float(delta @ pb.K @ delta)
    norm = c * float(delta @ pb.K @ delta)
    row = Row(
        f_train=np.asarray(f),
        var_train=np.asarray(v_tr) / chi,
        f_test=np.asarray(f_test),
        var_test=np.asarray(v_te) / chi,
        K_train=np.asarray(Q),
        K_test_train=np.asarray(Q_tt),
        ubar=ubar,
        normalisability=norm,
    )
    return row, float(ess)


def anneal(
    spec: NetworkSpec,
    data: Dataset,
    chis,
    kern: PriorKernels,
    odd: bool = True,
    n_draws: int = 32768,
    ess_min: float | None = None,
    n_chains: int = 512,
    seed: int = 0,
    tol: float = 1e-10,
    maxiter: int = 50,
    max_ratio: float = 2.0,
    max_refresh: int = 3,
    autodiff: bool = False,
    at_solution: Callable[[TiltedSample], object] | None = None,
    relu_tree: str = "linearised",
) -> list[TiltedRow]:
    """Algorithm 1: NNGP start at the smallest chi of a ladder, each solution starts the next
    chi; population draws replace the prior draws when ESS < ess_min (default M/100).

    Returns one TiltedRow per requested chi (sorted), with converged/iterations/residual in the
    row.  at_solution(t) is called with the TiltedSample at each requested chi's solution (e.g. a
    fluctuation correction); its result is the row's `extra`.
    relu (positively homogeneous) goes to theory/homogeneous.py (exact radial integral, direction
    proposal around the maxima of the tilt, u* guard); n_draws is then the number of directions
    (rounded up to a power of 2, default 65536) and the HMC population options do not apply.
    relu_tree: "linearised" (default: the tilted saddle; validated against NUTS up to its
    frontier in chi, beyond which rows are not converged with the reason), "cavity" (the exact
    one-neuron tilt, theory/cavity.py: converges at every chi but is NOT validated at strong tilt,
    docs/homogeneous.md; no correction exists on it) or "auto" (linearised where it converges,
    else cavity; with at_solution the cavity rows are not converged, extra None).
    """
    if spec.activation in HOMOGENEOUS:
        opts = dict(seed=seed, tol=tol, maxiter=maxiter, max_ratio=max_ratio)
        return _homogeneous(
            spec, data, chis, kern, n_draws, at_solution, relu_tree, n_draws == 32768, opts
        )
    pb = Problem(
        spec.activation,
        np.asarray(data.X),
        np.asarray(data.X_test),
        jnp.asarray(data.y),
        jnp.asarray(kern.K),
        jnp.asarray(kern.K_test_train),
        jnp.asarray(kern.k_test),
        spec.g_w,
        spec.g_v,
        spec.kappa,
        float(spec.width),
    )
    draws = prior_draws(pb.activation, pb.X, pb.X_test, pb.g_v, n_draws, seed, odd)
    ess_min = draws.phi.shape[0] / 100 if ess_min is None else ess_min
    f = np.asarray(
        gp.gp_posterior(
            spec.g_w * pb.K, spec.g_w * pb.K, spec.g_w * jnp.diag(pb.K), pb.y, pb.kappa
        )[0]
    )  # NNGP start
    ladder, index = adaptive.chi_ladder(chis, spec.width, max_ratio)
    wanted = set(int(i) for i in index)
    sols = {}
    for k, chi in enumerate(ladder):
        refresh = 0
        while True:
            f_new, it, res, ok = solve_chi(pb, draws, chi, f, tol, maxiter, autodiff)
            row, ess = _outputs(pb, draws, chi, f_new)
            if ess >= ess_min or refresh >= max_refresh:
                break
            draws = population_draws(
                draws,
                pb.activation,
                pb.X,
                pb.X_test,
                jnp.asarray(pb.y - f_new),
                pb.tilt(chi),
                pb.g_v,
                n_chains,
                seed + 1000 * (k + 1) + refresh,
            )
            refresh += 1
        f = f_new
        if k in wanted:
            extra = None if at_solution is None else at_solution(tilted_sample(pb, draws, chi, f))
            row = row._replace(converged=ok and ess >= ess_min, iterations=it, residual=res)
            sols[k] = TiltedRow(row, ess, refresh, extra)
    return [sols[int(i)] for i in index]


def _homogeneous(
    spec, data, chis, kern, n_draws, at_solution, relu_tree, default_draws, opts
) -> list[TiltedRow]:
    """relu tree level as TiltedRows (relu_tree: see `anneal`); rows that did not converge hold
    NaN, converged=False and the reason; u_star is the linearised tilt's (NaN for cavity rows)."""
    from . import cavity, homogeneous

    if relu_tree not in ("auto", "linearised", "cavity"):
        raise ValueError(
            f"relu_tree must be one of ['auto', 'linearised', 'cavity'], got {relu_tree!r}"
        )
    if default_draws or n_draws == "auto":
        n_dirs = 65536
    elif isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 2:
        raise ValueError(f"n_draws must be an integer >= 2 or 'auto', got {n_draws!r}")
    else:
        n_dirs = int(n_draws)
    n_dirs = 1 << max(1, int(math.ceil(math.log2(n_dirs))))
    pb = homogeneous.problem(spec, data, kern)
    chis = np.sort(np.asarray(chis, float))
    out: list[TiltedRow | None] = [None] * len(chis)
    if relu_tree != "cavity":
        res = homogeneous.anneal(pb, chis, n_draws=n_dirs, at_solution=at_solution, **opts)
        for i, (row, sol, extra) in enumerate(res):
            if sol.converged or relu_tree == "linearised":
                out[i] = TiltedRow(
                    row, sol.ess, sol.rounds, extra, sol.u_star, sol.reason, "linearised"
                )
    todo = [i for i, r in enumerate(out) if r is None]
    if todo:
        c_opts = dict(seed=opts["seed"], max_ratio=opts["max_ratio"])
        res = cavity.anneal(pb, chis[todo], n_draws=n_dirs, **c_opts)
        for i, (row, sol) in zip(todo, res):
            reason = sol.reason
            if at_solution is not None and sol.converged:
                reason = (
                    "the linearised tilt has no normalisable fixed point here and no one-loop "
                    "correction exists on the cavity tree (use method='tree', relu_tree='cavity')"
                )
                row = homogeneous.nan_row(row)._replace(converged=False)
            out[i] = TiltedRow(row, sol.ess, 0, None, math.nan, reason, "cavity")
    return out
