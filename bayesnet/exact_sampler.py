"""Exact, width-independent sampler of the LINEAR network posterior (`sample(..., method="exact")`).

For phi = identity, f = X V^T w = X u with u = V^T w (D,).  Write rho = |w|^2, w_hat = w/|w| and
r = V^T w_hat.  Under the prior rho ~ (g_w/(chi N)) chi^2_N, r ~ N(0, (g_v/D) I_D), and the part of
V orthogonal to w_hat is independent of both with V_perp^T V_perp ~ Wishart(N-1, (g_v/D) I_D).  The
likelihood depends on u = sqrt(rho) r only, so a posteriori V_perp stays a prior draw and

  1. x = log s, s = chi rho / g_w, has the 1-D posterior
     s^(N/2) e^(-N s/2) N(y; 0, (s g_w/chi) K + kappa/chi)
     (K = (g_v/D) X X^T; docs/exact_linear.md, with the Jacobian of x);
  2. u | rho, y is Gaussian (D-dimensional; diagonal in the right singular basis of X);
  3. S = V^T V = S_perp + r r^T with S_perp ~ Wishart(N-1) drawn by a Bartlett factorisation
     when N-1 >= D (a D x D triangle: chi^2 with N-1, ..., N-D degrees of freedom) and as G^T G with
     G an (N-1) x D Gaussian matrix when N-1 < D (V itself is then small).

Each draw is independent and exact: step 1 is `scale_mixture`'s rejection sampler on its
adaptive grid in log s, steps 2-3 are Gaussian and Wishart draws.  Nothing N-sized is ever
formed: the cost per draw is O(D^3 + P D^2) at every width.

Rao-Blackwellised over everything but s: given s the outputs are Gaussian, so each draw reports
E[f | s, y] and Var[f | s, y] on train and test points (diagonal in the right singular basis of X),
and the hidden-kernel target and trace of E[K | s, y] = X E[S | s, y] X^T / N with
E[S | s, y] = (N-1) (g_v/D) I + E[u u^T | s, y] / rho (closed form); the kernel sums use E[S | s, y]
too.  Only the kernel alignment, not linear in K, is read off a drawn S (steps 2-3).  With
`f_draws=True` the exact draws f = X u, f_* = X_* u are added (`f_train_draw`, `f_test_draw`).
sample_stats holds the drawn log s (`log_s`): there is no acceptance step and no trajectory.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import scale_mixture
from .observables import unit_target
from .precision import with_float64
from .results import progress_bar, to_datatree

if TYPE_CHECKING:
    import xarray as xr

    from .datasets import Dataset
    from .spec import NetworkSpec

# ------------------------------------------------------------------ 1-D posterior of x = log s


def draw_log_s(
    spec: NetworkSpec, data: Dataset, chains: int, draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact i.i.d. draws of x = log s, (chains, draws), and log p(x | y) relative to the mode.

    The density, its adaptive quadrature grid and the rejection sampler are those of
    `scale_mixture` (the same 1-D posterior that `theory.predict(method="exact")` integrates).
    """
    prob = scale_mixture.prepare(spec, data)
    quad = scale_mixture.quadrature(prob)
    x = np.log(scale_mixture.draw_s(prob, quad, chains * draws, rng)).reshape(chains, draws)
    lp = scale_mixture.log_ratio(prob, x.ravel(), quad.mode).reshape(chains, draws)
    return x, lp, {"grid_points": quad.x.size, "grid_lo": quad.x[0], "grid_hi": quad.x[-1]}


# ------------------------------------------------------------------ draws of S given x (JAX)


def _one_draw(key, x, chi2, d, t, n_perp):
    """Given log s: E[f | s, y], Var[f | s, y], E[kernel scalars | s, y], a drawn S's alignment.

    Returns per-draw statistics and the D x D matrix E[u u^T | s, y] / rho in the basis W (whose
    sum gives the posterior mean kernel).  Everything is D-sized: no N-sized and no P x P array.
    """
    A = d["A"]  # (D, P + P*): W X_all^T, the outputs in the right singular basis of X
    D, P = A.shape[0], d["y"].shape[0]
    dt = A.dtype
    sig2 = t.g_v / D
    noise = t.kappa / t.chi
    N = t.width
    rho = jnp.exp(x) * t.g_w / t.chi  # |w|^2
    # u | rho, y in the basis W: independent Gaussians, precision prior + likelihood
    prec = 1.0 / (rho * sig2) + d["sv2"] / noise  # (D,)
    c_mean = (d["yt"] / noise) / prec  # (D,)
    mean = c_mean @ A  # (P + P*,) E[f | s, y]
    var = (1.0 / prec) @ A**2  # (P + P*,) Var[f | s, y]
    # E[S | s, y] = (N - 1) sig2 I + W^T M W / rho with M = E[c c^T] = c_mean c_mean^T + 1/prec
    b = d["b_yhat"]  # (D,) W X^T y_hat
    target = ((N - 1) * sig2 * d["xty2"] + ((b @ c_mean) ** 2 + b**2 @ (1 / prec)) / rho) / N
    trace = ((N - 1) * sig2 * d["xf2"] + d["sv2"] @ (c_mean**2 + 1 / prec) / rho) / (N * P)
    M = (jnp.outer(c_mean, c_mean) + jnp.diag(1.0 / prec)) / rho  # (D, D)
    # one draw of u and S for the exact f draw and the (nonlinear) kernel alignment
    k_u, k_off = jax.random.split(key)
    c = c_mean + jax.random.normal(k_u, (D,), dt) / jnp.sqrt(prec)
    f_draw = c @ A
    r = d["Wt"].T @ c / jnp.sqrt(rho)  # (D,) V^T w_hat
    if n_perp >= D:  # Bartlett: S_perp = sig2 A A^T, A lower triangular, A_ii^2 ~ chi^2_(N-1-i)
        Bp = (jnp.tril(jax.random.normal(k_off, (D, D), dt), -1) + jnp.diag(jnp.sqrt(chi2))).T
    else:  # N - 1 < D: the part of V orthogonal to w_hat itself, (N-1, D)
        Bp = jax.random.normal(k_off, (n_perp, D), dt)
    B = jnp.concatenate([jnp.sqrt(sig2) * Bp, r[None, :]], axis=0)  # (m, D), B^T B = S
    BXc = B @ d["XcT"]  # (m, P)
    G = BXc @ BXc.T
    align = jnp.sum((B @ d["Xct_yc"]) ** 2) / (jnp.sqrt(jnp.sum(G * G)) * d["yc2"] + 1e-300)
    return {
        "f_train": mean[:P],
        "f_test": mean[P:],
        "var_train": var[:P],
        "var_test": var[P:],
        "f_train_draw": f_draw[:P],
        "f_test_draw": f_draw[P:],
        "kernel_target": target,
        "kernel_trace": trace,
        "kernel_alignment": align,
    }, M


def _build(batch, n_perp, d, t):
    """Compile one call over `batch` independent draws (chains x draws flattened)."""

    def many(keys, xs, c2, d, t, valid):
        out, M = jax.vmap(_one_draw, in_axes=(0, 0, 0, None, None, None))(
            keys, xs, c2, d, t, n_perp
        )
        M_sum = jnp.einsum("b,bij->ij", valid, M)  # sum over the valid draws, basis W
        return out, M_sum

    D = d["A"].shape[0]
    dt = d["A"].dtype
    args = (
        jax.random.split(jax.random.PRNGKey(0), batch),
        jnp.zeros(batch, dt),
        jnp.zeros((batch, D), dt),
        d,
        t,
        jnp.zeros(batch, dt),
    )
    t0 = time.perf_counter()
    comp = jax.jit(many).lower(*args).compile()
    return comp, time.perf_counter() - t0


_CACHE: dict = {}


class Settings(NamedTuple):
    """The traced settings of the exact sampler (a pytree: one compiled program per shape)."""

    g_v: jax.Array
    g_w: jax.Array
    chi: jax.Array
    kappa: jax.Array
    width: jax.Array  # N as a float: the Bartlett degrees of freedom come in as data


def _arrays(spec, data):
    X = np.asarray(data.X, float)
    Xt = np.asarray(data.X_test, float)
    y = np.asarray(data.y, float)
    _, sv, Wt = np.linalg.svd(X, full_matrices=True)
    D = X.shape[1]
    sv2 = np.zeros(D)
    sv2[: sv.size] = sv**2
    y_hat = unit_target(y)
    yc = y_hat - y_hat.mean()
    Xc = X - X.mean(axis=0)
    W = Wt[:D]  # (D, D) right singular basis of X
    d = {
        "A": W @ np.vstack([X, Xt]).T,
        "y": y,
        "Wt": W,
        "sv2": sv2,
        "yt": W @ (X.T @ y),  # X^T y in the basis W
        "b_yhat": W @ (X.T @ y_hat),
        "xty2": np.sum((X.T @ y_hat) ** 2),
        "xf2": np.sum(X**2),
        "XcT": Xc.T,
        "Xct_yc": Xc.T @ yc,
        "yc2": yc @ yc,
    }
    t = Settings(*(jnp.asarray(float(getattr(spec, k)), jnp.float64) for k in Settings._fields))
    return {k: jnp.asarray(v, jnp.float64) for k, v in d.items()}, t


@with_float64
def sample_exact(
    spec: NetworkSpec,
    data: Dataset,
    chains: int = 4,
    draws: int = 1000,
    seed: int = 0,
    progress: bool = False,
    desc: str | None = None,
    f_draws: bool = False,
    chunk: int | None = None,
) -> xr.DataTree:
    """Independent exact posterior draws for a linear network; same DataTree as `sample`.

    `f_draws=True` adds per-draw exact samples of f (`f_train_draw`, `f_test_draw`) to the
    posterior group.  Timing: compile_s (XLA compilation, 0 when cached), draws_s = run_s
    (no warm-up: warmup_s = 0).
    """
    scale_mixture.check_linear(spec, remedy="use method='collapsed' or 'full'")
    N, D = spec.width, data.dim
    P, Pt = data.n_train, data.n_test
    n_perp = min(N - 1, D)
    d, t = _arrays(spec, data)
    m = n_perp + 1
    if chunk is None:  # draws per chain per call: bounded memory (~64 MB of m x (P+P*) blocks)
        chunk = int(max(1, min(draws, 250, 2**23 // (chains * m * (P + Pt + m)))))
    batch = chains * chunk
    key = (batch, n_perp, str(jax.tree.map(lambda a: a.shape, d)))
    if key not in _CACHE:
        _CACHE[key] = _build(batch, n_perp, d, t)
        compile_s = _CACHE[key][1]
    else:
        compile_s = 0.0
    fn = _CACHE[key][0]
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    x, _, grid = draw_log_s(spec, data, chains, draws, rng)
    base = jax.random.PRNGKey(seed)
    label = desc or f"exact N={N} linear chi={spec.chi:.4g}"
    bar, update = progress_bar(progress, draws, label)
    parts, M_sum = [], np.zeros((D, D))
    # Bartlett diagonal: chi^2_(N-1), ..., chi^2_(N-D)
    dof = np.maximum(N - 1.0 - np.arange(D), 1.0)
    try:
        for start in range(0, draws, chunk):
            n = min(chunk, draws - start)
            xc = np.zeros((chains, chunk))
            xc[:, :n] = x[:, start : start + n]
            valid = np.zeros((chains, chunk))
            valid[:, :n] = 1.0
            keys = jax.random.split(jax.random.fold_in(base, start), batch)
            c2 = rng.chisquare(dof, (batch, D))
            out, Ss = fn(
                keys,
                jnp.asarray(xc.reshape(-1)),
                jnp.asarray(c2),
                d,
                t,
                jnp.asarray(valid.reshape(-1)),
            )
            parts.append(
                {
                    k: np.asarray(v).reshape((chains, chunk) + v.shape[1:])[:, :n]
                    for k, v in out.items()
                }
            )
            M_sum += np.asarray(Ss)
            update(n, "sampling")
    finally:
        if bar is not None:
            bar.close()
    out = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
    X, Xt = np.asarray(data.X, float), np.asarray(data.X_test, float)
    n_done = out["f_train"].shape[0] * out["f_train"].shape[1]
    W = np.asarray(d["Wt"])
    # sum over draws of E[S | s, y] = (N - 1) (g_v/D) I + W^T M W, and of K = X S X^T / N
    S_sum = n_done * (N - 1) * spec.g_v / D * np.eye(D) + W.T @ M_sum @ W
    ksums = (X @ S_sum @ X.T / N, Xt @ S_sum @ X.T / N, n_done)
    run_s = time.perf_counter() - t0
    out["log_s"] = x
    draws_f = {k: out.pop(k) for k in ("f_train_draw", "f_test_draw")}
    tree = to_datatree(
        out,
        ksums,
        spec,
        data,
        method="exact",
        seed=seed,
        chains=chains,
        warmup=0,
        draws=draws,
        chain_method="vectorized",
        dtype="float64",
        timing={"compile_s": compile_s, "warmup_s": 0.0, "draws_s": run_s, "run_s": run_s},
        exact=grid,
    )
    if f_draws:
        post = tree["posterior"].to_dataset()
        post["f_train_draw"] = (("chain", "draw", "train"), draws_f["f_train_draw"])
        post["f_test_draw"] = (("chain", "draw", "test"), draws_f["f_test_draw"])
        tree["posterior"] = post
    return tree
