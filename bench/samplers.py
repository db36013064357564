"""Side-by-side sampler benchmark on one posterior (never a unit test).

Figure of merit: **cost per unit precision** = wall time x MCSE^2 of a posterior mean (seconds x
variance: the wall time that buys an estimate with standard error 1), for the two posterior
means every sampler reports: the train outputs' mean f-bar and the kernel target y_hat^T K y_hat.
Lower is better; "gain" = baseline cost / method cost.  ESS/s is printed beside it, but it ranks
samplers wrongly when their per-draw estimators differ (a Rao-Blackwellised E[f | V] has less
variance per draw than a draw of f, so fewer effective draws can give a more precise mean).

Methods, all on the same data and spec, in one process:
  baseline   hand-written NumPyro model over (V, w) non-centred, plain
             MCMC(NUTS(model), chain_method="vectorized", progress_bar=False) -- what a competent
             user writes with default settings;
  full / collapsed / exact   bayesnet.sample (NUTS over (V, w) / over V with w integrated out /
             independent draws for linear networks, Rao-Blackwellised given s);
  chees      bayesnet.sample(method="collapsed", algorithm="chees") (BlackJAX ChEES-HMC);
  blackjax   BlackJAX window adaptation + NUTS, vmapped, on the baseline's (V, w) log density.
Wall = compile + warmup + draws (the baseline recompiles at every chi; bayesnet does not).

Sections: comparison (the table above), pergrad (engine vs NumPyro's MCMC per gradient, runs
alternated in one process), chains (NUTS vs ChEES at 4, 64, 256 chains), scaling (time per raw
gradient against N and P with FLOP counts and fitted exponents), exact (cost against the width),
memory (peak RSS in a subprocess).

    .venv/bin/python bench/samplers.py --quick                       # a few minutes on 2 cores
    .venv/bin/python bench/samplers.py --sections pergrad --out r.json
    .venv/bin/python bench/samplers.py --markdown r.json             # tables for BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from ess import figure_of_merit

import bayesnet as bn
from bayesnet import engine, sampling
from bayesnet.activations import activation_fn
from bayesnet.gp import gp_given_features
from bayesnet.models import MODELS

bn.enable_float64()  # the hand-written baseline runs in float64, like bayesnet.sample


# ------------------------------------------------------------------ figure of merit


def row(method, compile_s, sample_s, grads, fm, kt, **extra):
    """One result: wall, gradients, ESS, MCSE and cost per unit precision of f-bar and yKy."""
    wall = compile_s + sample_s
    merit = figure_of_merit(wall, fm, kt)
    return {
        "method": method,
        "compile_s": compile_s,
        "sample_s": sample_s,
        "wall_s": wall,
        "grads": int(grads),
        **merit,
        "cost_f_run": sample_s * merit["mcse_f"] ** 2,
        "cost_k_run": sample_s * merit["mcse_k"] ** 2,
        "mean_f": float(np.mean(fm)),
        "mean_k": float(np.mean(kt)),
        **extra,
    }


def observables(z_V, z_w, X, y_hat, spec):
    """Mean train output and y_hat^T K y_hat from raw (V, w) draws (C, S, N, D), (C, S, N)."""
    phi = activation_fn(spec.activation)
    D = X.shape[1]

    @jax.jit
    def one(zv, zw):
        H = phi(X @ (zv * jnp.sqrt(spec.g_v / D)).T)  # (P, N)
        f = H @ (zw * jnp.sqrt(spec.readout_var))
        return f.mean(), jnp.sum((y_hat @ H) ** 2) / zv.shape[0]

    fm, kt = jax.vmap(jax.vmap(one))(jnp.asarray(z_V), jnp.asarray(z_w))
    return np.asarray(fm), np.asarray(kt)


def baseline_model(spec, data):
    """The hand-written NumPyro model over (V, w), non-centred, constants closed over."""
    import numpyro
    import numpyro.distributions as dist

    phi = activation_fn(spec.activation)
    N, D = spec.width, data.dim

    def model(X, y):
        z_V = numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([N, D]).to_event(2))
        z_w = numpyro.sample("z_w", dist.Normal(0.0, 1.0).expand([N]).to_event(1))
        f = phi(X @ (z_V * math.sqrt(spec.g_v / D)).T) @ (z_w * math.sqrt(spec.readout_var))
        numpyro.sample("y", dist.Normal(f, math.sqrt(spec.noise_var)), obs=y)

    return model


# ------------------------------------------------------------------ methods


def run_baseline(spec, data, chains, warmup, draws, seed):
    from numpyro.infer import MCMC, NUTS

    X, y = jnp.asarray(data.X), jnp.asarray(data.y)
    mcmc = MCMC(
        NUTS(baseline_model(spec, data)),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed + 1), X, y, extra_fields=("num_steps",))
    jax.block_until_ready(mcmc.get_samples())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()  # same MCMC object: compiled program reused, fresh warmup + draws
    mcmc.run(jax.random.PRNGKey(seed), X, y, extra_fields=("num_steps",))
    s = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(s)
    sample_s = time.perf_counter() - t0
    grads = np.asarray(mcmc.get_extra_fields()["num_steps"]).sum()
    y_hat = jnp.asarray(data.y / np.linalg.norm(data.y))
    fm, kt = observables(s["z_V"], s["z_w"], X, y_hat, spec)
    return row("baseline", max(first - sample_s, 0.0), sample_s, grads, fm, kt)


def run_bayesnet(method, spec, data, chains, warmup, draws, seed, **kw):
    tree = bn.sample(
        spec,
        data,
        method=method,
        chains=chains,
        warmup=warmup,
        draws=draws,
        seed=seed,
        progress=False,
        **kw,
    )
    post = tree["posterior"]
    name = method if kw.get("algorithm", "nuts") == "nuts" else kw["algorithm"]
    grads = tree.attrs.get("timing_n_grad", 0)
    return row(
        name,
        tree.attrs["timing_compile_s"],
        tree.attrs["timing_run_s"],
        grads,
        post["f_train"].values.mean(-1),
        post["kernel_target"].values,
        chain_method=tree.attrs["chain_method"],
    )


_BJ_CACHE: dict = {}


def run_blackjax(spec, data, chains, warmup, draws, seed):
    """BlackJAX window adaptation + NUTS on the baseline's (V, w) density (an outside peer)."""
    import blackjax

    X, y = jnp.asarray(data.X), jnp.asarray(data.y)
    N, D = spec.width, data.dim
    phi = activation_fn(spec.activation)

    def logp(z, th):
        f = phi(X @ (z["z_V"] * jnp.sqrt(th[0] / D)).T) @ (z["z_w"] * jnp.sqrt(th[1] / (th[2] * N)))
        noise = th[3] / th[2]
        return (
            -0.5 * jnp.sum(z["z_V"] ** 2)
            - 0.5 * jnp.sum(z["z_w"] ** 2)
            - 0.5 * jnp.sum((y - f) ** 2) / noise
            - 0.5 * y.size * jnp.log(noise)
        )

    th = jnp.array([spec.g_v, spec.g_w, spec.chi, spec.kappa])
    key = (spec.width, spec.activation, X.shape, chains, warmup, draws)
    if key not in _BJ_CACHE:

        def run(rng, z0, th):
            ld = lambda z: logp(z, th)  # noqa: E731

            def one_chain(k, z):
                k1, k2 = jax.random.split(k)
                adapt = blackjax.window_adaptation(blackjax.nuts, ld)
                (state, params), _ = adapt.run(k1, z, num_steps=warmup)
                kernel = blackjax.nuts(ld, **params)

                def step(st, kk):
                    st, info = kernel.step(kk, st)
                    return st, (st.position, info.num_integration_steps)

                _, (pos, nsteps) = jax.lax.scan(step, state, jax.random.split(k2, draws))
                return pos, nsteps

            return jax.vmap(one_chain)(jax.random.split(rng, chains), z0)

        z0 = {"z_V": jnp.zeros((chains, N, D)), "z_w": jnp.zeros((chains, N))}
        t0 = time.perf_counter()
        comp = jax.jit(run).lower(jax.random.PRNGKey(0), z0, th).compile()
        _BJ_CACHE[key] = (comp, time.perf_counter() - t0)
        compile_s = _BJ_CACHE[key][1]
    else:
        compile_s = 0.0
    comp = _BJ_CACHE[key][0]
    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(seed), 3)
    z0 = {"z_V": jax.random.normal(k0, (chains, N, D)), "z_w": jax.random.normal(k1, (chains, N))}
    t0 = time.perf_counter()
    pos, nsteps = comp(k2, z0, th)
    jax.block_until_ready(pos)
    sample_s = time.perf_counter() - t0
    y_hat = jnp.asarray(data.y / np.linalg.norm(data.y))
    fm, kt = observables(pos["z_V"], pos["z_w"], X, y_hat, spec)
    return row("blackjax", compile_s, sample_s, np.asarray(nsteps).sum(), fm, kt)


def _print(r, prefix=""):
    print(
        f"{prefix}{r['method']:9s} wall {r['wall_s']:7.2f}s (compile {r['compile_s']:5.1f}) "
        f"grads {r['grads']:9d} ESS f {r['ess_f']:7.1f} K {r['ess_k']:7.1f} ESS/s "
        f"{r['ess_per_s']:8.2f} | cost f {r['cost_f']:.2e} K {r['cost_k']:.2e} | gain f "
        f"{r.get('gain_f', float('nan')):8.1f} K {r.get('gain_k', float('nan')):8.1f}",
        flush=True,
    )


def _gains(rows):
    base = rows[0]  # the baseline, or the first method with --no-baseline
    for r in rows:
        r["gain_f"], r["gain_k"] = base["cost_f"] / r["cost_f"], base["cost_k"] / r["cost_k"]


# ------------------------------------------------------------------ sections


def comparison(args):
    out = []
    data = bn.ising(n_train=args.P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
    for act in args.activations:
        for N in args.widths:
            for chi_name in ("1", "N"):
                spec = bn.NetworkSpec(
                    width=N, activation=act, chi=1.0 if chi_name == "1" else N, kappa=args.kappa
                )
                kw = dict(chains=args.chains, warmup=args.warmup, draws=args.draws, seed=1)
                rows = [] if args.no_baseline else [run_baseline(spec, data, **kw)]
                for m in ("full", "collapsed"):
                    rows.append(run_bayesnet(m, spec, data, **kw))
                if not args.no_chees:
                    rows.append(run_bayesnet("collapsed", spec, data, algorithm="chees", **kw))
                if act == "linear":
                    rows.append(run_bayesnet("exact", spec, data, **kw))
                if not args.no_blackjax:
                    rows.append(run_blackjax(spec, data, **kw))
                _gains(rows)
                for r in rows:
                    r.update(activation=act, width=N, chi=chi_name)
                    _print(r, f"{act:6s} N={N:5d} chi={chi_name:1s} ")
                out.extend(rows)
    return out


def per_gradient(args):
    """Engine vs NumPyro's MCMC per gradient (warmup + draws), alternated in one process.

    Full model: the hand-written baseline; collapsed: bayesnet's model run by MCMC(NUTS).  Both
    chain methods.  Seconds per gradient = wall of a warm run (compiled) / leapfrog steps.
    """
    from numpyro.infer import MCMC, NUTS

    out = []
    for N, P in args.pergrad_sizes:
        data = bn.ising(n_train=P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
        for method in args.pergrad_methods:
            spec = bn.NetworkSpec(width=N, activation="erf", chi=1.0, kappa=args.kappa)
            for cm in ("vectorized", "sequential"):
                opts = sampling.check_options(
                    method,
                    chains=args.chains,
                    warmup=args.pg_warmup,
                    draws=args.pg_draws,
                    chain_method=cm,
                )
                cfg = sampling.run_config(spec, opts)
                d, th = sampling.data_arrays(data), sampling.theta_arrays(spec)
                keys, z0 = sampling.initial_positions(spec, data, opts)
                if method == "full":
                    model = baseline_model(spec, data)
                    margs = (jnp.asarray(data.X), jnp.asarray(data.y))
                else:  # bayesnet's collapsed model with data and settings closed over, by hand
                    model = functools.partial(MODELS[method][0](N, "erf"), d, th)
                    margs = ()
                mcmc = MCMC(
                    NUTS(model),
                    num_warmup=opts.warmup,
                    num_samples=opts.draws,
                    num_chains=opts.chains,
                    chain_method=cm,
                    progress_bar=False,
                )
                init = z0 if opts.chains > 1 else jax.tree.map(lambda a: a[0], z0)

                def run_mcmc(rep, mcmc=mcmc, init=init, margs=margs):
                    t0 = time.perf_counter()
                    mcmc.warmup(
                        jax.random.PRNGKey(rep),
                        *margs,
                        init_params=init,
                        extra_fields=("num_steps",),
                        collect_warmup=True,
                    )
                    g = np.asarray(mcmc.get_extra_fields()["num_steps"]).sum()
                    mcmc.run(jax.random.PRNGKey(rep + 1), *margs, extra_fields=("num_steps",))
                    jax.block_until_ready(mcmc.get_samples())
                    g += np.asarray(mcmc.get_extra_fields()["num_steps"]).sum()
                    return (time.perf_counter() - t0) / g

                def run_engine(rep, cfg=cfg, keys=keys, z0=z0, d=d, th=th, cm=cm, opts=opts):
                    t0 = time.perf_counter()
                    r = engine.run(cfg, keys, z0, d, th, opts.draws, chain_method=cm)
                    wall = time.perf_counter() - t0 - r.timing["compile_s"]
                    return wall / (r.timing["n_grad_warmup"] + r.timing["n_grad"])

                run_mcmc(0), run_engine(0)  # compile both
                a, b = [], []
                for rep in range(1, args.reps + 1):
                    a.append(run_mcmc(rep))
                    b.append(run_engine(rep))
                ratio = np.array(b) / np.array(a)
                r = {
                    "width": N,
                    "P": P,
                    "method": method,
                    "chain_method": cm,
                    "chains": opts.chains,
                    "mcmc_us_per_grad": 1e6 * float(np.median(a)),
                    "engine_us_per_grad": 1e6 * float(np.median(b)),
                    "ratio_median": float(np.median(ratio)),
                    "ratio_min": float(ratio.min()),
                    "ratio_max": float(ratio.max()),
                    "load": os.getloadavg()[0],
                }
                print(
                    f"pergrad N={N} P={P} {method:9s} {cm:10s}: engine/MCMC per gradient "
                    f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] "
                    f"({r['engine_us_per_grad']:.0f} vs {r['mcmc_us_per_grad']:.0f} us, "
                    f"load {r['load']:.1f})",
                    flush=True,
                )
                out.append(r)
    return out


def marginal(args):
    """Execution per gradient without compilation: (t(long) - t(short)) / (g(long) - g(short)).

    NumPyro's `MCMC.run` recompiles two programs at every call (counted with jax_log_compiles),
    so per-run times charge it compilation; the difference of a long and a short sampling run
    (same warmed-up state, alternated `--reps` times) leaves only execution.  Full model, the
    hand-written baseline, vectorized chains.
    """
    from numpyro.infer import MCMC, NUTS

    out = []
    for N, P in args.pergrad_sizes:
        data = bn.ising(n_train=P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
        spec = bn.NetworkSpec(width=N, activation="erf", chi=1.0, kappa=args.kappa)
        short, long = args.pg_draws, 4 * args.pg_draws
        X, y = jnp.asarray(data.X), jnp.asarray(data.y)
        mc = {}
        for S in (short, long):
            m = MCMC(
                NUTS(baseline_model(spec, data)),
                num_warmup=args.pg_warmup,
                num_samples=S,
                num_chains=args.chains,
                chain_method="vectorized",
                progress_bar=False,
            )
            m.warmup(jax.random.PRNGKey(0), X, y)
            mc[S] = (m, m.post_warmup_state)
        opts = {
            S: sampling.check_options(
                "full",
                chains=args.chains,
                warmup=args.pg_warmup,
                draws=S,
                chain_method="vectorized",
            )
            for S in (short, long)
        }
        d, th = sampling.data_arrays(data), sampling.theta_arrays(spec)
        keys, z0 = sampling.initial_positions(spec, data, opts[short])
        cfg = sampling.run_config(spec, opts[short])

        def t_mcmc(S, rep, mc=mc, X=X, y=y):
            m, st = mc[S]
            m.post_warmup_state = st
            t0 = time.perf_counter()
            m.run(jax.random.PRNGKey(rep), X, y, extra_fields=("num_steps",))
            jax.block_until_ready(m.get_samples())
            return time.perf_counter() - t0, np.asarray(m.get_extra_fields()["num_steps"]).sum()

        def t_engine(S, rep, cfg=cfg, keys=keys, z0=z0, d=d, th=th):
            r = engine.run(cfg, keys, z0, d, th, S)
            return r.timing["draws_s"], r.timing["n_grad"]

        for S in (short, long):
            t_mcmc(S, 0), t_engine(S, 0)
        a, b = [], []
        for rep in range(1, args.reps + 1):
            (ts, gs), (tl, gl) = t_mcmc(short, rep), t_mcmc(long, rep)
            a.append((tl - ts) / (gl - gs))
            (ts, gs), (tl, gl) = t_engine(short, rep), t_engine(long, rep)
            b.append((tl - ts) / (gl - gs))
        ratio = np.array(b) / np.array(a)
        r = {
            "width": N,
            "P": P,
            "chains": args.chains,
            "mcmc_us_per_grad": 1e6 * np.median(a),
            "engine_us_per_grad": 1e6 * np.median(b),
            "ratio_median": float(np.median(ratio)),
            "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max()),
            "load": os.getloadavg()[0],
        }
        print(
            f"marginal N={N} P={P}: engine/MCMC execution per gradient {r['ratio_median']:.2f}"
            f" [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] ({r['engine_us_per_grad']:.0f} vs "
            f"{r['mcmc_us_per_grad']:.0f} us, load {r['load']:.1f})",
            flush=True,
        )
        out.append(r)
    return out


def many_chains(args):
    """Collapsed NUTS vs ChEES-HMC: cost per unit precision at several chain counts."""
    out = []
    data = bn.ising(n_train=args.P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
    spec = bn.NetworkSpec(
        width=args.chains_width, activation="erf", chi=float(args.chains_width), kappa=args.kappa
    )
    for C in args.chain_counts:
        draws = max(args.chains_min_draws, args.chains_total_draws // C)
        kw = dict(chains=C, warmup=args.warmup, draws=draws, seed=2)
        rows = [
            run_bayesnet("collapsed", spec, data, chain_method="vectorized", **kw),
            run_bayesnet("collapsed", spec, data, algorithm="chees", **kw),
        ]
        if C <= 8:
            rows.insert(1, run_bayesnet("collapsed", spec, data, chain_method="sequential", **kw))
            rows[1]["method"] = "collapsed-seq"
        _gains(rows)
        for r in rows:
            r.update(chains=C, draws=draws, load=os.getloadavg()[0])
            _print(r, f"chains C={C:4d} x {draws:4d} ")
        out.extend(rows)
    return out


def _time_grad(fn, z, reps_target_s=0.3):
    """Seconds per call of a jitted value-and-gradient (reps inside one program, no dispatch)."""
    vg = jax.value_and_grad(fn)

    def loop(z, reps):
        def body(i, carry):
            z, acc = carry
            v, g = vg(z)
            return jax.tree.map(lambda a, b: a + 1e-30 * b, z, g), acc + v

        return jax.lax.fori_loop(0, reps, body, (z, 0.0))

    loop = jax.jit(loop, static_argnums=1)
    jax.block_until_ready(loop(z, 1))
    t0 = time.perf_counter()
    jax.block_until_ready(loop(z, 1))
    reps = int(max(2, min(200, reps_target_s / max(time.perf_counter() - t0, 1e-6))))
    jax.block_until_ready(loop(z, reps))
    t0 = time.perf_counter()
    jax.block_until_ready(loop(z, reps))
    return (time.perf_counter() - t0) / reps


def _loglik_space(Phi, y, s, noise, space):
    """Collapsed log-likelihood in weight space (N x N) or function space (P x P) on purpose
    (bayesnet.gp.gp_given_features with its branch forced; one test row, not timed apart)."""
    return gp_given_features(Phi, Phi[:1], y, s, noise, space=space)[0]


def _flops(method, N, P, D):
    """Forward-pass floating-point operations of one log density (a gradient is ~3x this)."""
    feat = 2 * P * D * N
    if method == "full":
        return feat + 2 * P * N
    if method == "weight" or (method == "collapsed" and N < P):
        return feat + 2 * P * N * N + N**3 / 3 + 2 * N * N
    return feat + 2 * P * P * N + P**3 / 3 + 2 * P * P


def scaling(args):
    """Time per raw gradient against N and P (erf), interleaved passes, best of passes.

    Each gradient is held against its FLOP count (3 x the forward count: the reverse pass of a
    matrix product costs two products).  The exact sampler's cost per draw is on P only.
    """
    from numpyro.infer.util import potential_energy

    D, kappa = args.D_scaling, args.kappa
    cases = [(N, 64) for N in args.scaling_N] + [(256, P) for P in args.scaling_P if P != 64]
    cases += [(N, 64) for N in (16, 32, 128) if N not in args.scaling_N]  # weight/function switch
    fns = []
    for N, P in cases:
        data = bn.ising(n_train=P, n_test=8, dim=D, flip=0.1, seed=0)
        spec = bn.NetworkSpec(width=N, activation="erf", chi=1.0, kappa=kappa)
        d, th = sampling.data_arrays(data), sampling.theta_arrays(spec)
        z = {
            "z_V": jax.random.normal(jax.random.PRNGKey(0), (N, D)),
            "z_w": jax.random.normal(jax.random.PRNGKey(1), (N,)),
        }
        for method in ("full", "collapsed"):
            model = MODELS[method][0](N, "erf")
            zz = z if method == "full" else {"z_V": z["z_V"]}
            fns.append(
                (
                    (method, N, P),
                    (lambda zz, model=model, d=d, th=th: potential_energy(model, (d, th), {}, zz)),
                    zz,
                )
            )
        if abs(np.log2(N / P)) <= 2:  # both collapsed branches near the switch N = P
            for space in ("weight", "function"):

                def pot(zz, d=d, th=th, N=N, space=space):
                    Phi = jax.scipy.special.erf(d["X"] @ (zz["z_V"] * jnp.sqrt(1.0 / D)).T)
                    return -_loglik_space(Phi, d["y"], 1.0 / N, kappa, space)

                fns.append(((space, N, P), pot, {"z_V": z["z_V"]}))
    best: dict = {}
    for _ in range(args.scaling_passes):
        for key, fn, zz in fns:
            best[key] = min(best.get(key, np.inf), _time_grad(fn, zz))
    out = []
    for (method, N, P), sec in sorted(best.items(), key=lambda kv: kv[0]):
        fl = 3 * _flops(method, N, P, D)
        out.append(
            {
                "method": method,
                "width": N,
                "P": P,
                "D": D,
                "us_per_grad": 1e6 * sec,
                "gflop": fl / 1e9,
                "gflops_per_s": fl / sec / 1e9,
            }
        )
        print(
            f"scaling {method:9s} N={N:5d} P={P:4d}: {1e6 * sec:9.1f} us/grad, "
            f"{fl / 1e6:9.2f} Mflop, {fl / sec / 1e9:6.2f} Gflop/s",
            flush=True,
        )
    for P in args.scaling_P:  # exact: cost per draw, width-independent
        data = bn.ising(n_train=P, n_test=8, dim=D, flip=0.1, seed=0)
        spec = bn.NetworkSpec(width=256, activation="linear", chi=1.0, kappa=kappa)
        r = run_bayesnet("exact", spec, data, chains=4, warmup=0, draws=500, seed=3)
        r = run_bayesnet("exact", spec, data, chains=4, warmup=0, draws=500, seed=4)
        out.append(
            {
                "method": "exact",
                "width": 256,
                "P": P,
                "D": D,
                "us_per_draw": 1e6 * r["sample_s"] / 2000,
                "cost_f": r["cost_f_run"],
                "cost_k": r["cost_k_run"],
            }
        )
        print(f"scaling exact P={P}: {out[-1]['us_per_draw']:.1f} us/draw", flush=True)
    # exponents: log-log least squares of time per gradient along each axis
    fits = {}
    for method in ("full", "collapsed"):
        for axis, fixed, values in (
            ("N", ("P", 64), args.scaling_N),
            ("P", ("width", 256), args.scaling_P),
        ):
            pts = [
                (x["width"] if axis == "N" else x["P"], x["us_per_grad"])
                for x in out
                if x["method"] == method
                and x[fixed[0]] == fixed[1]
                and (x["width"] if axis == "N" else x["P"]) in values
            ]
            if len(pts) >= 2:
                a = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
                fits[f"{method}_{axis}"] = float(a)
                print(f"scaling exponent {method} in {axis}: {a:.2f}", flush=True)
    return {"rows": out, "exponents": fits}


def exact_scaling(args):
    """Exact sampler: cost per unit precision against the width."""
    data = bn.ising(n_train=args.P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
    out = []
    for N in (64, 1024, 16384, 10**6):
        for chi in (1.0, float(N)):
            spec = bn.NetworkSpec(width=N, activation="linear", chi=chi, kappa=args.kappa)
            r = run_bayesnet(
                "exact", spec, data, chains=4, warmup=0, draws=args.exact_draws, seed=2
            )
            r.update(width=N, chi="1" if chi == 1.0 else "N")
            print(
                f"exact N={N:8d} chi={r['chi']} wall {r['wall_s']:.3f}s ESS f "
                f"{r['ess_f']:.0f} K {r['ess_k']:.0f} cost f {r['cost_f']:.2e} K "
                f"{r['cost_k']:.2e}",
                flush=True,
            )
            out.append(r)
    return out


def memory(args):
    """Peak resident memory of runs with N = 1024, P = 512, 4 chains (subprocess)."""
    out = []
    for method, warmup, draws in (
        ("exact", 0, 1000),
        ("collapsed", args.memory_warmup, args.memory_draws),
    ):
        code = (
            "import resource, bayesnet as bn;"
            "d = bn.ising(n_train=512, n_test=64, dim=32, flip=0.1, seed=0);"
            "s = bn.NetworkSpec(width=1024, activation='linear', chi=1024.0, kappa=1.0);"
            f"t = bn.sample(s, d, method='{method}', chains=4, warmup={warmup}, draws={draws},"
            f" max_tree_depth={args.memory_depth}, progress=False);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
        )
        t0 = time.perf_counter()
        try:
            res = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=args.memory_timeout,
            )
        except subprocess.TimeoutExpired:
            print(f"memory {method}: over the {args.memory_timeout} s budget", flush=True)
            out.append({"method": method, "timeout_s": args.memory_timeout})
            continue
        if res.returncode != 0:
            print(res.stderr[-2000:])
            continue
        mb = float(res.stdout.strip().splitlines()[-1])
        r = {
            "method": method,
            "peak_rss_mb": mb,
            "wall_s": time.perf_counter() - t0,
            "warmup": warmup,
            "draws": draws,
            "max_tree_depth": args.memory_depth,
        }
        print(f"memory {method}: peak RSS {mb:.0f} MB ({r['wall_s']:.0f} s)", flush=True)
        out.append(r)
    return out


def machine():
    import numpyro

    info = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "numpy": np.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "device": str(jax.devices()[0]),
        "load_avg_start": os.getloadavg(),
    }
    try:
        import blackjax

        info["blackjax"] = blackjax.__version__
    except ImportError:
        pass
    return info


# ------------------------------------------------------------------ markdown


def markdown(path):
    """Markdown tables from a results JSON written by --out (for BENCHMARKS.md)."""
    with open(path) as f:
        r = json.load(f)
    lines = [f"Command: `{r['command']}`", ""]
    head = (
        "| method | wall s | grads | ESS f̄ | ESS ŷKŷ | ESS/s | MCSE f̄ | MCSE ŷKŷ | cost f̄ | "
        "cost ŷKŷ | gain f̄ | gain ŷKŷ |"
    )

    def cells(x):
        return (
            f"{x['method']} | {x['wall_s']:.1f} | {x['grads']} | {x['ess_f']:.0f} | "
            f"{x['ess_k']:.0f} | {x['ess_per_s']:.1f} | {x['mcse_f']:.1e} | "
            f"{x['mcse_k']:.1e} | {x['cost_f']:.1e} | {x['cost_k']:.1e} | "
            f"{x['gain_f']:.3g} | {x['gain_k']:.3g} |"
        )

    if "comparison" in r:
        lines += ["| activation | N | χ " + head, "|" + "---|" * 15]
        for x in r["comparison"]:
            lines.append(f"| {x['activation']} | {x['width']} | {x['chi']} | " + cells(x))
        lines.append("")
    if "pergrad" in r:
        lines += [
            "| N | P | model | chains | engine µs/grad | MCMC µs/grad | engine/MCMC median "
            "[min, max] | load |",
            "|" + "---|" * 8,
        ]
        for x in r["pergrad"]:
            lines.append(
                f"| {x['width']} | {x['P']} | {x['method']} | {x['chains']} "
                f"{x['chain_method']} | {x['engine_us_per_grad']:.0f} | "
                f"{x['mcmc_us_per_grad']:.0f} | {x['ratio_median']:.2f} "
                f"[{x['ratio_min']:.2f}, {x['ratio_max']:.2f}] | {x['load']:.1f} |"
            )
        lines.append("")
    if "chains" in r:
        lines += [
            "| chains × draws " + head + " cost f̄ w/o compile | cost ŷKŷ w/o compile |",
            "|" + "---|" * 15,
        ]
        for x in r["chains"]:
            run_f, run_k = x["sample_s"] * x["mcse_f"] ** 2, x["sample_s"] * x["mcse_k"] ** 2
            lines.append(
                f"| {x['chains']} × {x['draws']} | " + cells(x) + f" {run_f:.1e} | {run_k:.1e} |"
            )
        lines.append("")
    if "scaling" in r:
        lines += [
            "| model | N | P | µs per gradient (or per exact draw) | Mflop per gradient |"
            " Gflop/s |",
            "|" + "---|" * 6,
        ]
        for x in r["scaling"]["rows"]:
            if "us_per_grad" in x:
                lines.append(
                    f"| {x['method']} | {x['width']} | {x['P']} | "
                    f"{x['us_per_grad']:.0f} | {1e3 * x['gflop']:.2f} | "
                    f"{x['gflops_per_s']:.2f} |"
                )
            else:
                lines.append(
                    f"| exact | any | {x['P']} | {x['us_per_draw']:.1f} per draw | – | – |"
                )
        lines += [
            "",
            "Fitted exponents (time per gradient ∝ size^a): "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["scaling"]["exponents"].items()),
            "",
        ]
    if "exact_scaling" in r:
        lines += ["| N | χ | wall s | ESS f̄ | ESS ŷKŷ | cost f̄ | cost ŷKŷ |", "|" + "---|" * 7]
        for x in r["exact_scaling"]:
            lines.append(
                f"| {x['width']} | {x['chi']} | {x['wall_s']:.3f} | {x['ess_f']:.0f} |"
                f" {x['ess_k']:.0f} | {x['cost_f']:.1e} | {x['cost_k']:.1e} |"
            )
        lines.append("")
    if "memory" in r:
        lines += ["| method | warmup + draws | peak RSS MB | wall s |", "|---|---|---|---|"]
        for x in r["memory"]:
            if "peak_rss_mb" in x:
                lines.append(
                    f"| {x['method']} | {x['warmup']} + {x['draws']} | "
                    f"{x['peak_rss_mb']:.0f} | {x['wall_s']:.0f} |"
                )
    print("\n".join(lines))


def scaling_figure(path, png):
    """Log-log figure of the time per raw gradient against N (P = 64) and P (N = 256)."""
    import matplotlib

    matplotlib.use("Agg")  # a script writing a file: no display needed
    import matplotlib.pyplot as plt

    with open(path) as f:
        rows = json.load(f)["scaling"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, axis, fixed in ((axes[0], "width", ("P", 64)), (axes[1], "P", ("width", 256))):
        for method in ("full", "collapsed", "weight", "function"):
            pts = sorted(
                (x[axis], x["us_per_grad"], x["gflop"])
                for x in rows
                if x["method"] == method and x[fixed[0]] == fixed[1]
            )
            if len(pts) > 1:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
        ax.set_xlabel("N (P = 64)" if axis == "width" else "P (N = 256)")
        ax.set_ylabel("µs per gradient")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a few minutes on 2 cores")
    p.add_argument("--out", default=None, help="write all results as JSON here")
    p.add_argument(
        "--markdown",
        default=None,
        metavar="JSON",
        help="print the markdown tables of a results JSON and exit",
    )
    p.add_argument(
        "--figure",
        nargs=2,
        default=None,
        metavar=("JSON", "PNG"),
        help="draw the scaling figure of a results JSON and exit",
    )
    p.add_argument("--sections", default="comparison,pergrad,marginal,chains,scaling,exact,memory")
    p.add_argument("--no-blackjax", action="store_true", help="leave out the BlackJAX NUTS peer")
    p.add_argument("--no-chees", action="store_true")
    p.add_argument("--no-baseline", action="store_true", help="gains then relative to full")
    p.add_argument("--widths", default=None, help="comma-separated N (default 64,256)")
    p.add_argument("--activations", default=None, help="default linear,erf (quick: linear)")
    p.add_argument("--P", type=int, default=None, help="training points (default 32; quick 16)")
    p.add_argument("--D", type=int, default=None, help="input dimension (default 16; quick 8)")
    p.add_argument("--kappa", type=float, default=0.5)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--reps", type=int, default=3, help="alternations per per-gradient ratio")
    p.add_argument(
        "--pergrad-sizes",
        default=None,
        help="N:P pairs (default 128:64,1024:64,128:512; quick 64:16)",
    )
    p.add_argument("--pergrad-methods", default="full,collapsed")
    p.add_argument("--chain-counts", default=None, help="default 4,64,256 (quick 4,32)")
    p.add_argument(
        "--scaling-N",
        default=None,
        help="widths at P = 64 (default 64,256,1024,4096; quick 64,256)",
    )
    p.add_argument(
        "--scaling-P",
        default=None,
        help="training set sizes at N = 256 (default 32,128,512; quick 32,128)",
    )
    p.add_argument("--scaling-passes", type=int, default=2)
    p.add_argument("--memory-draws", type=int, default=1000)
    p.add_argument("--memory-warmup", type=int, default=20)
    p.add_argument("--memory-timeout", type=int, default=900)
    args = p.parse_args(argv)
    if args.markdown:
        markdown(args.markdown)
        return
    if args.figure:
        scaling_figure(*args.figure)
        return
    q = args.quick
    args.activations = (args.activations or ("linear" if q else "linear,erf")).split(",")
    args.widths = [int(w) for w in (args.widths or ("64" if q else "64,256")).split(",")]
    args.P = args.P or (16 if q else 32)
    args.D = args.D or (8 if q else 16)
    args.P_test = max(4, args.P // 2)
    args.warmup = args.warmup or (100 if q else 500)
    args.draws = args.draws or (100 if q else 1000)
    args.pg_warmup, args.pg_draws = (30, 30) if q else (60, 60)
    args.pergrad_sizes = [
        tuple(int(v) for v in s.split(":"))
        for s in (args.pergrad_sizes or ("64:16" if q else "128:64,1024:64,128:512")).split(",")
    ]
    args.pergrad_methods = args.pergrad_methods.split(",")
    args.chain_counts = [
        int(c) for c in (args.chain_counts or ("4,32" if q else "4,64,256")).split(",")
    ]
    args.chains_width = 16 if q else 32
    args.chains_total_draws, args.chains_min_draws = (1600, 50) if q else (8000, 100)
    args.exact_draws = 250 if q else 2500
    args.memory_depth = 4
    args.D_scaling = 32
    args.scaling_N = [
        int(n) for n in (args.scaling_N or ("64,256" if q else "64,256,1024,4096")).split(",")
    ]
    args.scaling_P = [
        int(n) for n in (args.scaling_P or ("32,128" if q else "32,128,512")).split(",")
    ]
    sections = args.sections.split(",")
    if q:
        sections = [s for s in sections if s != "memory"]
    res = {
        "machine": machine(),
        "command": " ".join(["python"] + sys.argv),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
    }
    t0 = time.perf_counter()
    for name, fn in (
        ("comparison", comparison),
        ("pergrad", per_gradient),
        ("marginal", marginal),
        ("chains", many_chains),
        ("scaling", scaling),
        ("exact", exact_scaling),
        ("memory", memory),
    ):
        if name in sections:
            res["exact_scaling" if name == "exact" else name] = fn(args)
    res["total_s"] = time.perf_counter() - t0
    res["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["load_avg_end"] = os.getloadavg()
    print(f"total {res['total_s']:.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, default=float)


if __name__ == "__main__":
    main()
