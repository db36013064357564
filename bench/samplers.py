"""Side-by-side sampler benchmark on one posterior (never a unit test).

Methods, all on the same data and spec, in one process:
  baseline   hand-written NumPyro model over (V, w) non-centred, plain
             MCMC(NUTS(model), chain_method="vectorized", progress_bar=False) -- what a competent
             user writes with default settings;
  full       bayesnet method="full"   (same posterior, bayesnet's chunked engine);
  collapsed  bayesnet method="collapsed" (readout integrated out, NUTS over V);
  exact      bayesnet method="exact" (linear only; independent draws, no N-sized arrays);
  blackjax   BlackJAX window adaptation + NUTS in lax.scan, vmapped over chains, on the same
             (V, w) log density as the baseline (an outside peer).
Per method: compile time, sampling time (warmup + draws, compilation excluded), gradient
evaluations in the sampling phase, bulk ESS of the mean train output and of y_hat^T K y_hat,
ESS per second and the ratio to the baseline.  Further sections: exact-sampler cost vs width,
NUTS per-gradient overhead vs a raw jitted value-and-gradient, peak memory.

    .venv/bin/python bench/samplers.py --quick            # < 3 min on 2 cores
    .venv/bin/python bench/samplers.py --out bench/results_samplers.json
"""
from __future__ import annotations

import argparse
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bayesnet as bn  # noqa: E402
from bayesnet import engine  # noqa: E402
from bayesnet.activations import activation_fn  # noqa: E402
from ess import ess_bulk  # noqa: E402


# ------------------------------------------------------------------ shared pieces

def observables(z_V, z_w, X, y_hat, spec):
    """Mean train output and y_hat^T K y_hat from raw (V, w) draws (C, S, N, D), (C, S, N)."""
    phi = activation_fn(spec.activation)
    D = X.shape[1]

    @jax.jit
    def one(zv, zw):
        H = phi(X @ (zv * jnp.sqrt(spec.g_v / D)).T)  # (P, N)
        f = H @ (zw * jnp.sqrt(spec.readout_var))
        return f.mean(), jnp.sum((y_hat @ H) ** 2) / zv.shape[0]

    f = jax.vmap(jax.vmap(one))
    fm, kt = f(jnp.asarray(z_V), jnp.asarray(z_w))
    return np.asarray(fm), np.asarray(kt)


def log_density(spec, X, y):
    """log p(z_V, z_w | y) of the non-centred (V, w) model, up to a constant; theta traced."""
    phi = activation_fn(spec.activation)
    N, D = spec.width, X.shape[1]

    def logp(z, th):
        f = phi(X @ (z["z_V"] * jnp.sqrt(th["g_v"] / D)).T) @ (
            z["z_w"] * jnp.sqrt(th["g_w"] / (th["chi"] * N)))
        noise = th["kappa"] / th["chi"]
        return (-0.5 * jnp.sum(z["z_V"] ** 2) - 0.5 * jnp.sum(z["z_w"] ** 2)
                - 0.5 * jnp.sum((y - f) ** 2) / noise - 0.5 * y.size * jnp.log(noise))

    return logp


def theta_of(spec):
    return {k: jnp.float64(getattr(spec, k)) for k in ("g_v", "g_w", "chi", "kappa")}


def row(method, compile_s, sample_s, grads, fm, kt):
    e_f, e_k = ess_bulk(fm), ess_bulk(kt)
    return {"method": method, "compile_s": compile_s, "sample_s": sample_s, "grads": int(grads),
            "ess_f": e_f, "ess_k": e_k, "ess_per_s": min(e_f, e_k) / sample_s}


# ------------------------------------------------------------------ methods

def run_baseline(spec, data, chains, warmup, draws, seed):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    phi = activation_fn(spec.activation)
    N, D = spec.width, data.dim

    def model(X, y):
        z_V = numpyro.sample("z_V", dist.Normal(0.0, 1.0).expand([N, D]).to_event(2))
        z_w = numpyro.sample("z_w", dist.Normal(0.0, 1.0).expand([N]).to_event(1))
        f = phi(X @ (z_V * math.sqrt(spec.g_v / D)).T) @ (z_w * math.sqrt(spec.readout_var))
        numpyro.sample("y", dist.Normal(f, math.sqrt(spec.noise_var)), obs=y)

    X, y = jnp.asarray(data.X), jnp.asarray(data.y)
    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method="vectorized", progress_bar=False)
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


def run_bayesnet(method, spec, data, chains, warmup, draws, seed):
    tree = bn.sample(spec, data, method=method, chains=chains, warmup=warmup, draws=draws,
                     seed=seed, progress=False)
    post = tree["posterior"]
    fm = post["f_train"].values.mean(-1)
    kt = post["kernel_target"].values
    st = tree["sample_stats"]
    grads = st["n_steps"].values.sum() if "n_steps" in st else 0
    return row(method, tree.attrs["timing_compile_s"], tree.attrs["timing_sample_s"], grads,
               fm, kt)


_BJ_CACHE: dict = {}


def run_blackjax(spec, data, chains, warmup, draws, seed):
    import blackjax

    X, y = jnp.asarray(data.X), jnp.asarray(data.y)
    N, D = spec.width, data.dim
    key = (spec.width, spec.activation, X.shape, chains, warmup, draws)
    if key not in _BJ_CACHE:
        def run(rng, z0, X, y, th):
            logp = log_density(spec, X, y)
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
        comp = jax.jit(run).lower(jax.random.PRNGKey(0), z0, X, y, theta_of(spec)).compile()
        _BJ_CACHE[key] = (comp, time.perf_counter() - t0)
        compile_s = _BJ_CACHE[key][1]
    else:
        compile_s = 0.0
    comp = _BJ_CACHE[key][0]
    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(seed), 3)
    z0 = {"z_V": jax.random.normal(k0, (chains, N, D)), "z_w": jax.random.normal(k1, (chains, N))}
    t0 = time.perf_counter()
    pos, nsteps = comp(k2, z0, X, y, theta_of(spec))
    jax.block_until_ready(pos)
    sample_s = time.perf_counter() - t0
    y_hat = jnp.asarray(data.y / np.linalg.norm(data.y))
    fm, kt = observables(pos["z_V"], pos["z_w"], X, y_hat, spec)
    return row("blackjax", compile_s, sample_s, np.asarray(nsteps).sum(), fm, kt)


# ------------------------------------------------------------------ sections

def comparison(args):
    out = []
    for act in args.activations:
        for N in args.widths:
            for chi_name in ("1", "N"):
                spec = bn.NetworkSpec(width=N, activation=act, chi=1.0 if chi_name == "1" else N,
                                      kappa=args.kappa)
                data = bn.ising(n_train=args.P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
                kw = dict(chains=args.chains, warmup=args.warmup, draws=args.draws, seed=1)
                rows = [] if args.no_baseline else [run_baseline(spec, data, **kw)]
                for m in ("full", "collapsed"):
                    rows.append(run_bayesnet(m, spec, data, **kw))
                if act == "linear":
                    rows.append(run_bayesnet("exact", spec, data, **kw))
                if not args.no_blackjax:
                    rows.append(run_blackjax(spec, data, **kw))
                base = rows[0]["ess_per_s"]  # the baseline, or bayesnet full with --no-baseline
                for r in rows:
                    r.update(activation=act, width=N, chi=chi_name, ratio=r["ess_per_s"] / base)
                    print(f"{act:6s} N={N:5d} chi={chi_name:1s} {r['method']:9s} "
                          f"compile {r['compile_s']:6.2f}s sample {r['sample_s']:7.2f}s "
                          f"grads {r['grads']:9d} ESS f {r['ess_f']:7.1f} K {r['ess_k']:7.1f} "
                          f"ESS/s {r['ess_per_s']:9.2f} x{r['ratio']:8.2f}", flush=True)
                out.extend(rows)
    return out


def exact_scaling(args):
    """Exact sampler: cost per effective sample against the width."""
    data = bn.ising(n_train=args.P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
    out = []
    for N in (64, 1024, 16384, 10**6):
        for chi in (1.0, float(N)):
            spec = bn.NetworkSpec(width=N, activation="linear", chi=chi, kappa=args.kappa)
            r = run_bayesnet("exact", spec, data, chains=4, warmup=0, draws=args.exact_draws,
                             seed=2)
            r.update(width=N, chi="1" if chi == 1.0 else "N",
                     ms_per_ess=1e3 * r["sample_s"] / min(r["ess_f"], r["ess_k"]))
            print(f"exact N={N:8d} chi={r['chi']} sample {r['sample_s']:.3f}s "
                  f"ESS f {r['ess_f']:.0f} K {r['ess_k']:.0f} ms/ESS {r['ms_per_ess']:.3f}",
                  flush=True)
            out.append(r)
    return out


def _timed_chunks(cfg, keys, z0, d, th, draws):
    """Engine sampling phase only: seconds and n_steps (C, draws) after a full warmup."""
    comp = engine.compiled_for(cfg, z0, d, th)
    states = comp.init(keys, z0, d, th)
    done = 0
    while done < cfg.warmup:
        n = min(cfg.chunk, cfg.warmup - done)
        states, _, _ = comp.chunk(states, d, th, jnp.int32(n), jnp.bool_(False))
        done += n
    jax.block_until_ready(states)
    t0, steps, done = time.perf_counter(), [], 0
    while done < draws:
        n = min(cfg.chunk, draws - done)
        states, _, out = comp.chunk(states, d, th, jnp.int32(n), jnp.bool_(True))
        steps.append(np.asarray(out["n_steps"][:, :n]))
        done += n
    jax.block_until_ready(states)
    return time.perf_counter() - t0, np.concatenate(steps, axis=1)


def _raw_grad_s(pot, z, d, th, reps=200):
    """Seconds per chain-gradient of a jitted, vmapped value_and_grad, `reps` in one program."""
    vg = jax.vmap(jax.value_and_grad(pot), in_axes=(0, None, None))

    @jax.jit
    def loop(z, d, th):
        def body(i, carry):
            z, acc = carry
            v, g = vg(z, d, th)
            return jax.tree.map(lambda a, b: a + 1e-30 * b, z, g), acc + v.sum()
        return jax.lax.fori_loop(0, reps, body, (z, 0.0))

    jax.block_until_ready(loop(z, d, th))
    t0 = time.perf_counter()
    jax.block_until_ready(loop(z, d, th))
    C = jax.tree.leaves(z)[0].shape[0]
    return (time.perf_counter() - t0) / (reps * C)


def overhead(args):
    """Time per gradient inside NUTS vs a raw jitted value-and-gradient of the same potential."""
    from numpyro.infer.util import potential_energy

    from bayesnet.models import MODELS
    from bayesnet.sampling import _bind_stats, data_arrays, theta_arrays

    out = []
    data = bn.ising(n_train=args.P, n_test=args.P_test, dim=args.D, flip=0.1, seed=0)
    for act in args.activations:
        for N in args.widths[:2]:
            for method in ("full", "collapsed"):
                for chains in args.overhead_chains:
                    spec = bn.NetworkSpec(width=N, activation=act, chi=float(N), kappa=args.kappa)
                    model_fn, stats_fn = MODELS[method]
                    model = model_fn(N, act)
                    chunk = int(min(250, max(25, math.ceil((args.warmup + args.draws) / 20))))
                    cfg = engine.RunConfig(model, _bind_stats(stats_fn, N, act), chains,
                                           args.warmup, chunk, 0.8, 10)
                    d, th = data_arrays(data), theta_arrays(spec)
                    k0 = jax.random.PRNGKey(0)
                    z0 = {"z_V": jax.random.normal(k0, (chains, N, data.dim))}
                    if method == "full":
                        z0["z_w"] = jax.random.normal(k0, (chains, N))
                    keys = jax.random.split(k0, chains)
                    secs, steps = _timed_chunks(cfg, keys, z0, d, th, args.draws)
                    pot = lambda z, d, t, model=model: potential_energy(model, (d, t), {}, z)  # noqa: E731,E501
                    raw = _raw_grad_s(pot, z0, d, th)
                    per_grad = secs / steps.sum()
                    lockstep = steps.sum() / (chains * steps.max(axis=0).sum())
                    r = {"activation": act, "width": N, "method": method, "chains": chains,
                         "nuts_us_per_grad": 1e6 * per_grad, "raw_us_per_grad": 1e6 * raw,
                         "ratio": per_grad / raw, "lockstep_efficiency": lockstep,
                         "ratio_per_lockstep_grad": per_grad * lockstep / raw}
                    print(f"overhead {act} N={N} {method:9s} C={chains:4d}: NUTS "
                          f"{r['nuts_us_per_grad']:.2f} us/grad, raw {r['raw_us_per_grad']:.2f}"
                          f" -> x{r['ratio']:.2f} (lock-step efficiency {lockstep:.2f}, x"
                          f"{r['ratio_per_lockstep_grad']:.2f} per executed gradient)",
                          flush=True)
                    out.append(r)
    return out


def memory(args):
    """Peak resident memory of runs with N = 1024, P = 512, 4 chains x 1000 draws (subprocess)."""
    out = []
    for method, warmup, depth in (("exact", 0, 10), ("collapsed", 20, args.memory_depth)):
        code = (
            "import resource, bayesnet as bn;"
            "d = bn.ising(n_train=512, n_test=64, dim=32, flip=0.1, seed=0);"
            "s = bn.NetworkSpec(width=1024, activation='linear', chi=1024.0, kappa=1.0);"
            f"t = bn.sample(s, d, method='{method}', chains=4, warmup={warmup}, draws=1000,"
            f" max_tree_depth={depth}, progress=False);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if res.returncode != 0:
            print(res.stderr[-2000:])
            continue
        mb = float(res.stdout.strip().splitlines()[-1])
        r = {"method": method, "peak_rss_mb": mb, "wall_s": time.perf_counter() - t0,
             "max_tree_depth": depth}
        print(f"memory {method}: peak RSS {mb:.0f} MB ({r['wall_s']:.0f} s)", flush=True)
        out.append(r)
    return out


def machine():
    import numpyro
    info = {"python": platform.python_version(), "jax": jax.__version__,
            "numpyro": numpyro.__version__, "numpy": np.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "device": str(jax.devices()[0])}
    try:
        import blackjax
        info["blackjax"] = blackjax.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if "model name" in l)
        info["load_avg_start"] = os.getloadavg()
    except (OSError, StopIteration):
        pass
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, < 3 minutes on 2 cores")
    p.add_argument("--out", default=None, help="write all results as JSON here")
    p.add_argument("--sections", default="comparison,exact,overhead,memory")
    p.add_argument("--no-blackjax", action="store_true")
    p.add_argument("--no-baseline", action="store_true", help="ratios then relative to full")
    p.add_argument("--widths", default=None, help="comma-separated N (default 64,256,1024)")
    p.add_argument("--activations", default=None, help="default linear,erf (quick: linear)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--draws", type=int, default=None)
    p.add_argument("--overhead-chains", default=None, help="comma-separated (default 4 / 4,64)")
    args = p.parse_args(argv)
    q = args.quick
    args.activations = (args.activations or ("linear" if q else "linear,erf")).split(",")
    args.widths = [int(w) for w in (args.widths or ("64" if q else "64,256,1024")).split(",")]
    args.P, args.P_test, args.D = (16, 8, 8) if q else (32, 16, 16)
    args.kappa = 0.5
    args.chains = 4
    args.warmup = args.warmup or (100 if q else 500)
    args.draws = args.draws or (100 if q else 1000)
    args.exact_draws = 250 if q else 2500
    args.overhead_chains = [int(c) for c in (args.overhead_chains or ("4" if q else "4,64")
                                             ).split(",")]
    args.memory_depth = 4
    sections = args.sections.split(",")
    if q:
        sections = [s for s in sections if s != "memory"]
    res = {"machine": machine(), "command": " ".join(["python"] + sys.argv),
           "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}}
    t0 = time.perf_counter()
    if "comparison" in sections:
        res["comparison"] = comparison(args)
    if "exact" in sections:
        res["exact_scaling"] = exact_scaling(args)
    if "overhead" in sections:
        res["overhead"] = overhead(args)
    if "memory" in sections:
        res["memory"] = memory(args)
    res["total_s"] = time.perf_counter() - t0
    res["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"total {res['total_s']:.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, default=float)




def markdown(path):
    """Markdown tables from a results JSON written by --out (for BENCHMARKS.md)."""
    r = json.load(open(path))
    lines = [f"Machine: {r['machine']}", "", f"Command: `{r['command']}`", ""]
    if "comparison" in r:
        lines += ["| activation | N | χ | method | compile s | sample s | grads | ESS f̄ | ESS ŷKŷ |"
                  " ESS/s | × baseline |", "|" + "---|" * 11]
        for x in r["comparison"]:
            lines.append(f"| {x['activation']} | {x['width']} | {x['chi']} | {x['method']} | "
                         f"{x['compile_s']:.1f} | {x['sample_s']:.2f} | {x['grads']} | "
                         f"{x['ess_f']:.0f} | {x['ess_k']:.0f} | {x['ess_per_s']:.1f} | "
                         f"{x['ratio']:.1f} |")
        lines.append("")
    if "exact_scaling" in r:
        lines += ["| N | χ | sample s | ESS f̄ | ESS ŷKŷ | ms per ESS |", "|" + "---|" * 6]
        for x in r["exact_scaling"]:
            lines.append(f"| {x['width']} | {x['chi']} | {x['sample_s']:.3f} | {x['ess_f']:.0f} |"
                         f" {x['ess_k']:.0f} | {x['ms_per_ess']:.3f} |")
        lines.append("")
    if "overhead" in r:
        lines += ["| activation | N | method | chains | NUTS µs/grad | raw µs/grad | ratio |"
                  " lock-step eff. | ratio per executed grad |", "|" + "---|" * 9]
        for x in r["overhead"]:
            lines.append(f"| {x['activation']} | {x['width']} | {x['method']} | {x['chains']} | "
                         f"{x['nuts_us_per_grad']:.1f} | {x['raw_us_per_grad']:.1f} | "
                         f"{x['ratio']:.2f} | {x['lockstep_efficiency']:.2f} | "
                         f"{x['ratio_per_lockstep_grad']:.2f} |")
        lines.append("")
    if "memory" in r:
        lines += ["| method | peak RSS MB | wall s |", "|---|---|---|"]
        for x in r["memory"]:
            lines.append(f"| {x['method']} | {x['peak_rss_mb']:.0f} | {x['wall_s']:.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        markdown(sys.argv[2])
    else:
        main()
