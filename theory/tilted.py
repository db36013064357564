"""Non-linear tree level: expectations under the tilted single-neuron measure and the f-solve.

Tilted measure (shared/theory.md sec 4.2, 6):  p(v) ~ N(v; 0, g_v/D I) exp(c (Delta^T phi(X v))^2 / 2),
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
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from bayesnet.activations import ACTIVATIONS

from . import adaptive, gp


@dataclasses.dataclass
class Draws:
    """Fixed draws: V (M, D) weights, phi (M, P), phi_test (M, P*), log_q (M,) proposal log-tilt,
    prior=True when drawn from the prior (control variate on)."""

    V: jnp.ndarray
    phi: jnp.ndarray
    phi_test: jnp.ndarray
    log_q: jnp.ndarray
    prior: bool


def features(activation, V, X):
    """phi(X v_m) for every draw: (M, P)."""
    return ACTIVATIONS[activation](V @ jnp.asarray(X).T)  # (M, P)


def prior_draws(activation, X, X_test, g_v, n_draws, seed, odd) -> Draws:
    """M prior draws v ~ N(0, g_v/D I) (plus antithetic mirrors -v for non-odd phi)."""
    D = X.shape[1]
    V = jax.random.normal(jax.random.PRNGKey(seed), (n_draws, D)) * math.sqrt(g_v / D)  # (M, D)
    if not odd:
        V = jnp.concatenate([V, -V])  # (2M, D)
    return Draws(V, features(activation, V, X), features(activation, V, X_test),
                 jnp.zeros(V.shape[0]), True)


def _weights(phi, log_q, delta, c):
    """Normalised importance weights (M,) and the projections s = phi Delta (M,)."""
    s = phi @ delta  # (M,)
    logw = log_q + 0.5 * c * s * s  # (M,)
    w = jnp.exp(logw - jnp.max(logw))
    return w / jnp.sum(w), s


def _weight_shift(w, prior):
    """Weights of the estimator: w - 1/M with the control variate, w otherwise."""
    return w - 1.0 / w.shape[0] if prior else w


def _unpack(z, one_loop, g_w):
    """Unknowns -> (f (P,), g_eff)."""
    return (z[:-1], jnp.exp(z[-1])) if one_loop else (z, g_w)


@functools.partial(jax.jit, static_argnames=("one_loop", "prior"))
def residual(z, phi, log_q, K, lam, y, g_w, kappa, chi_over_N, width, one_loop, prior):
    """Tree equation f - (g/kappa) Q(f)(y - f) (P,); one_loop adds the g_eff equation (sec 4.4)."""
    f, g = _unpack(z, one_loop, g_w)
    delta = y - f  # (P,)
    c = g * chi_over_N / kappa ** 2
    w, s = _weights(phi, log_q, delta, c)
    wt = _weight_shift(w, prior)
    Kd = K @ delta if prior else jnp.zeros_like(delta)  # (P,)
    Qd = Kd + (wt * s) @ phi  # (P,)
    r = f - (g / kappa) * Qd
    if not one_loop:
        return r
    dQd = delta @ Qd
    ubar = g * dQd / (delta @ K @ delta)  # Rayleigh-quotient effective scale
    inv_g = 1.0 / g_w + jnp.sum(lam / (ubar * lam + kappa)) / width
    return jnp.concatenate([r, jnp.atleast_1d(z[-1] + jnp.log(inv_g))])


autodiff_jacobian = jax.jit(jax.jacfwd(residual), static_argnames=("one_loop", "prior"))


def _tree_jacobian(f, g, phi, log_q, K, y, kappa, chi_over_N, prior):
    """d/df of f - (g/kappa) Q(f) Delta at fixed g, in closed form (P, P): one M P^2 matmul.

    d(Q Delta)/dDelta = K + Phi^T diag(w~ + c w s^2) Phi - c m m^T,  m = sum_m w_m s_m phi_m.
    """
    delta = y - f  # (P,)
    c = g * chi_over_N / kappa ** 2
    w, s = _weights(phi, log_q, delta, c)
    wt = _weight_shift(w, prior)
    m = (w * s) @ phi  # (P,)
    JQ = (phi * (wt + c * w * s * s)[:, None]).T @ phi - c * jnp.outer(m, m)  # (P, P)
    if prior:
        JQ = JQ + K
    return jnp.eye(f.shape[0]) + (g / kappa) * JQ


@functools.partial(jax.jit, static_argnames=("one_loop", "prior"))
def jacobian(z, phi, log_q, K, lam, y, g_w, kappa, chi_over_N, width, one_loop, prior):
    """Jacobian of `residual`: the f-block in closed form, the g_eff row/column by autodiff."""
    f, g = _unpack(z, one_loop, g_w)
    J = _tree_jacobian(f, g, phi, log_q, K, y, kappa, chi_over_N, prior)  # (P, P)
    if not one_loop:
        return J
    res = lambda zz: residual(zz, phi, log_q, K, lam, y, g_w, kappa, chi_over_N, width,  # noqa
                              one_loop=True, prior=prior)
    col = jax.jvp(res, (z,), (jnp.zeros_like(z).at[-1].set(1.0),))[1]  # (P+1,)
    row = jax.grad(lambda zz: res(zz)[-1])(z)  # (P+1,)
    top = jnp.concatenate([J, col[:-1, None]], axis=1)  # (P, P+1)
    return jnp.concatenate([top, row[None, :]], axis=0)  # (P+1, P+1)


@functools.partial(jax.jit, static_argnames=("prior",))
def tilted_moments(phi, phi_test, log_q, K, K_tt, k_test, delta, c, prior):
    """Q train (P, P), test-train (P*, P), test diagonal (P*,), and the ESS of the weights."""
    w, _ = _weights(phi, log_q, delta, c)
    wt = _weight_shift(w, prior)
    base = (K, K_tt, k_test) if prior else (0.0, 0.0, 0.0)
    Q = base[0] + (phi * wt[:, None]).T @ phi  # (P, P)
    Q_tt = base[1] + (phi_test * wt[:, None]).T @ phi  # (P*, P)
    q_test = base[2] + wt @ (phi_test * phi_test)  # (P*,)
    return Q, Q_tt, q_test, 1.0 / jnp.sum(w * w)


_solve = jax.jit(jnp.linalg.solve)  # XLA's LU: avoids BLAS thread contention with JAX


def newton(fun, jac, z0, tol, maxiter=50, reuse=0.25):
    """Damped Newton with backtracking on max|F|; the Jacobian (the O(M P^2) part) is reused
    while each step still cuts max|F| by the factor `reuse` (chord steps).

    Returns (z, iterations, max|F|, success).
    """
    z = np.asarray(z0, float)
    F = np.asarray(fun(z))
    nrm = float(np.max(np.abs(F)))
    it, J = 0, None
    while nrm > tol and it < maxiter:
        if J is None:
            J = jac(z)
        step = np.asarray(_solve(J, -F))
        t = 1.0
        while True:
            z_new = z + t * step
            F_new = np.asarray(fun(z_new))
            n_new = float(np.max(np.abs(F_new)))
            if (np.isfinite(n_new) and n_new < (1 - 1e-4 * t) * nrm) or t < 1e-3:
                break
            t *= 0.5
        it += 1
        if not np.isfinite(n_new):
            break
        if n_new > reuse * nrm:
            J = None  # slow progress: fresh Jacobian next step
        z, F, nrm = z_new, F_new, n_new
    return z, it, nrm, bool(nrm <= tol)


def _log_density(v, X, activation, delta, c, g_v):
    """Unnormalised log density of the tilted single-neuron measure at v (D,)."""
    s = ACTIVATIONS[activation](X @ v) @ delta
    return -0.5 * v.shape[0] * (v @ v) / g_v + 0.5 * c * s * s


@functools.partial(jax.jit, static_argnames=("activation", "n_warm", "n_keep", "thin",
                                             "n_leap"))
def hmc_population(key, V0, X, activation, delta, c, g_v, n_warm=60, n_keep=32, thin=2,
                   n_leap=6):
    """Population of HMC chains (one per row of V0 (C, D)); returns kept states (C*n_keep, D)."""
    logp = lambda v: _log_density(v, X, activation, delta, c, g_v)  # noqa: E731
    grad = jax.vmap(jax.value_and_grad(logp))
    C, D = V0.shape

    def step(carry, key):
        V, eps = carry
        k1, k2 = jax.random.split(key)
        p0 = jax.random.normal(k1, V.shape)  # (C, D), unit mass
        lp0, g0 = grad(V)
        e = eps * jnp.exp(0.2 * jax.random.uniform(k2, (C, 1)) - 0.1)  # jittered step

        def leap(_, s):
            q, p, g = s
            p = p + 0.5 * e * g
            q = q + e * p
            _, g = grad(q)
            return q, p + 0.5 * e * g, g

        q, p, _ = jax.lax.fori_loop(0, n_leap, leap, (V, p0, g0))
        lp1, _ = grad(q)
        log_acc = lp1 - lp0 - 0.5 * jnp.sum(p * p - p0 * p0, axis=1)  # (C,)
        acc = jnp.log(jax.random.uniform(k1, (C,))) < log_acc
        V = jnp.where(acc[:, None], q, V)
        return (V, eps), jnp.mean(acc)

    def warm(carry, key):
        (V, eps), rate = step(carry, key)
        return (V, eps * jnp.exp(rate - 0.7)), rate  # adapt towards 70% acceptance

    keys = jax.random.split(key, n_warm + n_keep * thin)
    eps0 = 0.5 * jnp.sqrt(g_v / D) / jnp.sqrt(n_leap)
    carry, _ = jax.lax.scan(warm, (V0, eps0), keys[:n_warm])

    def keep(carry, ks):
        carry, _ = jax.lax.scan(step, carry, ks)
        return carry, carry[0]

    _, kept = jax.lax.scan(keep, carry, keys[n_warm:].reshape(n_keep, thin, 2))
    return kept.reshape(-1, D)  # (n_keep*C, D)


def population_draws(draws, activation, X, X_test, delta, c, g_v, n_chains, seed) -> Draws:
    """Replace the draws by a HMC population of the current tilted measure (proposal log-tilt
    stored so the same importance-sampling estimator applies to nearby f and chi)."""
    key = jax.random.PRNGKey(seed)
    w, _ = _weights(draws.phi, draws.log_q, delta, c)
    idx = jax.random.choice(key, w.shape[0], (n_chains,), p=w)  # resample as chain starts
    V = hmc_population(jax.random.fold_in(key, 1), draws.V[idx], jnp.asarray(X), activation,
                       jnp.asarray(delta), c, g_v)
    phi = features(activation, V, X)  # (M', P)
    s = phi @ delta
    return Draws(V, phi, features(activation, V, X_test), -0.5 * c * s * s, False)


@dataclasses.dataclass
class Problem:
    """Static data of one non-linear solve (arrays float64)."""

    activation: str
    X: np.ndarray
    X_test: np.ndarray
    y: np.ndarray
    K: jnp.ndarray
    K_tt: jnp.ndarray
    k_test: jnp.ndarray
    lam: jnp.ndarray
    g_w: float
    g_v: float
    kappa: float
    width: float


def solve_chi(pb: Problem, draws: Draws, chi, z0, one_loop, tol, maxiter, autodiff=False):
    """Newton solve of the tree (or one-loop recipe) equations at one chi on fixed draws;
    autodiff=True uses the full jacfwd Jacobian instead of the closed-form f-block."""
    args = (draws.phi, draws.log_q, pb.K, pb.lam, pb.y, pb.g_w, pb.kappa, chi / pb.width,
            pb.width)
    kw = dict(one_loop=one_loop, prior=draws.prior)
    fun = lambda z: residual(z, *args, **kw)  # noqa: E731
    jac_fn = autodiff_jacobian if autodiff else jacobian
    jac = lambda z: jac_fn(z, *args, **kw)  # noqa: E731
    return newton(fun, jac, z0, tol, maxiter)


def _outputs(pb: Problem, draws: Draws, chi, f, g):
    """Row of predict's schema from a solution f (P,) with readout variance g."""
    delta = pb.y - f  # (P,)
    c = g * chi / (pb.width * pb.kappa ** 2)
    Q, Q_tt, q_test, ess = tilted_moments(draws.phi, draws.phi_test, draws.log_q, pb.K, pb.K_tt,
                                          pb.k_test, jnp.asarray(delta), c, prior=draws.prior)
    f_test = (g / pb.kappa) * Q_tt @ delta  # (P*,)
    _, v_tr = gp.gp_posterior(g * Q, g * Q, g * jnp.diag(Q), pb.y, pb.kappa)
    _, v_te = gp.gp_posterior(g * Q, g * Q_tt, g * q_test, pb.y, pb.kappa)
    ubar = g * float(delta @ Q @ delta) / float(delta @ pb.K @ delta)
    norm = c * float(delta @ pb.K @ delta)
    return dict(f_train=f, var_train=np.asarray(v_tr) / chi, f_test=np.asarray(f_test),
                var_test=np.asarray(v_te) / chi, K_train=np.asarray(Q),
                K_test_train=np.asarray(Q_tt), ubar=ubar, normalisability=norm), float(ess)


def anneal(spec, data, chis, kern, one_loop=False, odd=True, n_draws=32768, ess_min=None,
           n_chains=512, seed=0, tol=1e-10, maxiter=50, max_ratio=2.0, max_refresh=3,
           autodiff=False) -> list:
    """Algorithm 1 (sec 8): NNGP start at the smallest chi of a ladder, each solution starts the
    next chi; population draws replace the prior draws when ESS < ess_min (default M/100).

    Returns predict rows (dicts) at the requested chis, with converged/iterations/residual and
    the ESS of the final weights under key 'ess'.
    """
    pb = Problem(spec.activation, np.asarray(data.X), np.asarray(data.X_test),
                 jnp.asarray(data.y), jnp.asarray(kern["K"]), jnp.asarray(kern["K_tt"]),
                 jnp.asarray(kern["k_test"]), jnp.asarray(np.linalg.eigvalsh(kern["K"]).clip(0)),
                 spec.g_w, spec.g_v, spec.kappa, float(spec.width))
    draws = prior_draws(pb.activation, pb.X, pb.X_test, pb.g_v, n_draws, seed, odd)
    ess_min = draws.phi.shape[0] / 100 if ess_min is None else ess_min
    f = np.asarray(gp.gp_posterior(spec.g_w * pb.K, spec.g_w * pb.K, spec.g_w * jnp.diag(pb.K),
                                   pb.y, pb.kappa)[0])  # NNGP start
    ladder, index = adaptive.chi_ladder(chis, spec.width, max_ratio)
    z = np.append(f, math.log(spec.g_w)) if one_loop else f
    sols = []
    for k, chi in enumerate(ladder):
        refresh = 0
        while True:
            z_new, it, res, ok = solve_chi(pb, draws, chi, z, one_loop, tol, maxiter, autodiff)
            f, g = (z_new[:-1], math.exp(z_new[-1])) if one_loop else (z_new, spec.g_w)
            row, ess = _outputs(pb, draws, chi, f, g)
            if ess >= ess_min or refresh >= max_refresh:
                break
            draws = population_draws(draws, pb.activation, pb.X, pb.X_test, jnp.asarray(pb.y - f),
                                     g * chi / (pb.width * pb.kappa ** 2), pb.g_v, n_chains,
                                     seed + 1000 * (k + 1) + refresh)
            refresh += 1
        z = z_new
        row.update(converged=ok and ess >= ess_min, iterations=it, residual=res, ess=ess,
                   refreshes=refresh)
        sols.append(row)
    return [sols[i] for i in index]
