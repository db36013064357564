"""Long reference posteriors for the theory's validation (issue 16): many vectorised chains.

The project's collapsed sampler (`engine` program of `sampling.run_config`, ChEES-HMC by default,
NUTS with --algorithm nuts), all chains in one batch on one device, float64.  Cases in priority
order (the time guard skips what no longer fits, and every finished case is written at once):
widths (64, 128) before (32, 256); within a tier ReLU, erf, tanh; per width the teacher task
(ReLU teacher: a target with an odd and an even part; P=48, D=20, kappa=0.2) and the Ising task
(P=40, D=30, kappa=0.3); g_v = g_w = 1; chi in {1, sqrt(N), N}.  chi is a traced setting
(`models.Theta`), so the three chi of one (activation, data, N) share one compiled program.

Per case: warmup, then sampling in chunks until the relative noise of the mean outputs on train
and test, |MCSE|_2 / |mean|_2, is below --target (3e-4), or the case's time cap or the deadline.
MCSE of every mean from the spread of the chain means (chains are independent, so this is exact
whatever the autocorrelation); the posterior output variance by the law of total variance
(Var E[f|V] + E Var[f|V]) with a delta-method MCSE.  Per point split R-hat (two halves of every
chain) and ESS = posterior variance of E[f|V] / MCSE^2; rank-normalised split R-hat and bulk ESS
(bench/ess.py, no ArviZ) of the scalars on the first 256 chains.  The mean hidden kernels
K_train, K_test_train too.

    PYTHONPATH=.:bench python bench/references.py --out $OUT/references.json --deadline EPOCH_S
    PYTHONPATH=$PWD .venv/bin/python bench/references.py --quick --out /tmp/ref.json  # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from ess import ess_bulk
from scipy.special import ndtri
from scipy.stats import rankdata

import bayesnet as bn
from bayesnet import engine, sampling

# the two data sets of issue 16 (kappa belongs to the task)
DATA = {
    "teacher": {
        "kind": "teacher",
        "n_train": 48,
        "n_test": 32,
        "dim": 20,
        "activation": "relu",
        "noise": 0.0,
        "seed": 0,
        "kappa": 0.2,
    },
    "ising": {
        "kind": "ising",
        "n_train": 40,
        "n_test": 32,
        "dim": 30,
        "flip": 0.1,
        "seed": 0,
        "kappa": 0.3,
    },
}
ACTIVATIONS = ("relu", "erf", "tanh")
WIDTH_TIERS = ((64, 128), (32, 256))
SCALARS = ("kernel_target", "kernel_trace", "kernel_alignment")
DIAG_CHAINS = 256  # rank R-hat and bulk ESS of the scalars on the first chains (host time)


# ----------------------------------------------------------------------------- pure helpers


class TimeGuard:
    """A wall-clock deadline (seconds since the epoch) shared by the scripts of one GPU run."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.time):
        self.deadline, self.clock = float(deadline), clock

    def left(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return self.deadline - self.clock()

    def fits(self, predicted_s: float, reserve_s: float = 0.0) -> bool:
        """Whether work predicted to take predicted_s ends reserve_s before the deadline."""
        return self.left() - reserve_s >= predicted_s


def jsonable(x):
    """Nested dicts/lists of numpy arrays and scalars as plain JSON types (NaN stays NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(x).tolist()
    return x


def write_json(path: str | None, obj) -> None:
    """Write obj as JSON atomically (a reader never sees half a file); no-op without a path."""
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(jsonable(obj), f, separators=(",", ":"))
    os.replace(tmp, path)


def case_order(
    activations: Iterable[str], tiers: Iterable[Iterable[int]], datasets: Iterable[str]
) -> list[tuple[int, str, int, str]]:
    """(tier, activation, width, data set) groups in priority order: tier, activation, width,
    data.  One group = one compiled program, run at every chi of the ladder."""
    datasets = list(datasets)
    return [
        (t, a, n, d)
        for t, tier in enumerate(tiers)
        for a in activations
        for n in tier
        for d in datasets
    ]


def sampling_cap(
    left_s: float,
    cases: int,
    compiles: int,
    compile_s: float,
    warmup_s: float,
    min_s: float,
    max_s: float,
) -> float:
    """Sampling seconds for the next case: an equal share of the time left among the `cases`
    still to run in its block (same tier and activation), after `compiles` programs still to
    build and every case's warmup; clipped to [min_s, max_s]."""
    share = (left_s - compiles * compile_s) / max(cases, 1) - warmup_s
    return float(min(max(share, min_s), max_s))


def chi_ladder(width: int) -> tuple[float, float, float]:
    """chi in {1, sqrt(N), N}."""
    return (1.0, math.sqrt(width), float(width))


def _rhat(x: np.ndarray) -> float:
    """Classic R-hat of x (chains, draws)."""
    n = x.shape[1]
    w = x.var(axis=1, ddof=1).mean()
    b = n * x.mean(axis=1).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * w + b / n) / w))


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalised values (Blom), same shape."""
    r = rankdata(x, method="average").reshape(x.shape)
    return ndtri((r - 0.375) / (x.size + 0.25))


def rhat_rank(x) -> float:
    """Rank-normalised split R-hat of draws x (chains, draws): max of bulk and folded (Vehtari
    et al. 2021), equal to `arviz_stats.rhat(x, method="rank")`."""
    x = np.asarray(x, dtype=float)
    half = x.shape[1] // 2
    xs = np.vstack([x[:, :half], x[:, -half:]])
    bulk = _rhat(_z_scale(xs))
    folded = _rhat(_z_scale(np.abs(xs - np.median(xs))))
    return max(bulk, folded)


class Accumulator:
    """Per-chain sums of the collapsed draws, chunk by chunk, and the estimates they give.

    `add` takes a chunk of per-draw arrays with leading axes (draws, chains); what is kept is per
    chain sums (C, ...) per chunk (for split halves) and the per-draw scalars of the first
    DIAG_CHAINS chains (C', draws).
    """

    TRACED = ("fbar_train", "fbar_test", "kernel_target", "kernel_trace", "lp")

    def __init__(self) -> None:
        self.chunks: list[tuple[int, dict[str, np.ndarray]]] = []
        self.traces: dict[str, list[np.ndarray]] = {k: [] for k in self.TRACED}

    @property
    def draws(self) -> int:
        """Draws per chain so far."""
        return sum(n for n, _ in self.chunks)

    def add(self, d: dict[str, np.ndarray]) -> None:
        """Add a chunk: f_train, f_test, var_train, var_test (n, C, P), scalars and lp (n, C)."""
        n = d["f_train"].shape[0]
        s = {}
        for side in ("train", "test"):
            f = np.asarray(d[f"f_{side}"], dtype=float)  # (n, C, P)
            s[f"f_{side}"] = f.sum(0)
            s[f"f2_{side}"] = (f * f).sum(0)
            s[f"v_{side}"] = np.asarray(d[f"var_{side}"], dtype=float).sum(0)
            self.traces[f"fbar_{side}"].append(f[:, :DIAG_CHAINS].mean(-1).T)  # (C', n)
        for k in SCALARS:
            x = np.asarray(d[k], dtype=float)  # (n, C)
            s[k] = x.sum(0)
        for k in ("kernel_target", "kernel_trace", "lp"):
            self.traces[k].append(np.asarray(d[k], dtype=float)[:, :DIAG_CHAINS].T)
        self.chunks.append((n, s))

    def _means(self, chunks) -> dict[str, np.ndarray]:
        """Per-chain means (C, ...) over the given chunks."""
        n = sum(c[0] for c in chunks)
        return {k: sum(c[1][k] for c in chunks) / n for k in chunks[0][1]}

    def noise(self) -> dict[str, float]:
        """Relative noise |MCSE|_2 / |mean|_2 of the mean outputs, train and test."""
        m = self._means(self.chunks)
        out = {}
        for side in ("train", "test"):
            f = m[f"f_{side}"]  # (C, P)
            mcse = f.std(0, ddof=1) / np.sqrt(f.shape[0])
            out[side] = float(np.linalg.norm(mcse) / np.linalg.norm(f.mean(0)))
        return out

    def estimates(self) -> dict:
        """Posterior means, MCSEs, variances, R-hat and ESS (see the module docstring)."""
        m = self._means(self.chunks)
        C = m["f_train"].shape[0]
        out: dict = {}
        k = len(self.chunks) // 2
        halves = (self._means(self.chunks[:k]), self._means(self.chunks[k:])) if k else None
        for side in ("train", "test"):
            f, f2, v = m[f"f_{side}"], m[f"f2_{side}"], m[f"v_{side}"]  # (C, P)
            mu = f.mean(0)
            mcse = f.std(0, ddof=1) / np.sqrt(C)
            var_cond = f2.mean(0) - mu**2  # Var E[f|V]
            g = f2 - 2 * mu * f + v  # per-chain influence of the total variance
            out[f"f_{side}"], out[f"f_{side}_mcse"] = mu, mcse
            out[f"var_{side}"] = var_cond + v.mean(0)
            out[f"var_{side}_mcse"] = g.std(0, ddof=1) / np.sqrt(C)
            out[f"ess_{side}"] = var_cond / np.maximum(mcse**2, 1e-300)
            out[f"rel_noise_{side}"] = float(np.linalg.norm(mcse) / np.linalg.norm(mu))
            if halves is not None:
                n = self.draws / 2
                hm = np.concatenate([h[f"f_{side}"] for h in halves])  # (2C, P)
                h2 = np.concatenate([h[f"f2_{side}"] for h in halves])
                w = (h2 - hm**2) * n / (n - 1)  # within-half variances
                W, B = w.mean(0), n * hm.var(0, ddof=1)
                out[f"rhat_{side}"] = np.sqrt(((n - 1) / n * W + B / n) / W)
        for key in SCALARS:
            x = m[key]  # (C,)
            out[key], out[f"{key}_mcse"] = float(x.mean()), float(x.std(ddof=1) / np.sqrt(C))
        scal = {}
        for key, parts in self.traces.items():
            x = np.concatenate(parts, axis=1)  # (C', draws), C' = min(C, DIAG_CHAINS)
            scal[key] = {"rhat": rhat_rank(x), "ess_bulk": ess_bulk(x)}
        out["scalar_diagnostics"] = scal
        return out


def summary(est: dict) -> dict:
    """One line of diagnostics: worst R-hat and smallest ESS over points and scalars."""
    rh = [np.max(est[f"rhat_{s}"]) for s in ("train", "test") if f"rhat_{s}" in est]
    rh += [d["rhat"] for d in est["scalar_diagnostics"].values()]
    ess = [np.min(est[f"ess_{s}"]) for s in ("train", "test")]
    ess += [d["ess_bulk"] for d in est["scalar_diagnostics"].values()]
    return {
        "max_rhat": float(np.max(rh)),
        "min_ess": float(np.min(ess)),
        "rel_noise_train": est["rel_noise_train"],
        "rel_noise_test": est["rel_noise_test"],
    }


# ----------------------------------------------------------------------------- runs


def make_data(name: str, quick: bool = False) -> tuple[bn.Dataset, float]:
    """The data set of a case and its kappa."""
    cfg = dict(DATA[name])
    kind, kappa = cfg.pop("kind"), cfg.pop("kappa")
    if quick:
        cfg.update(n_train=12, n_test=6, dim=6)
    return getattr(bn, kind)(**cfg), kappa


def _sample(comp, state, d, th, args, guard, cap_s, t_warm, acc, info, grads) -> str:
    """Sampling chunks into `acc` (kernel sums in acc.ksums) until a stop rule; its name."""
    acc.ksums = (0.0, 0.0, 0)  # sums of K_train, K_test_train over chain-draws, their number
    while acc.draws < args.max_draws:
        n = args.chunk
        state, (k1, k2), (s, inf), counts = comp.chunk(state, d, th, jnp.int32(n), jnp.bool_(True))
        grads += np.asarray(counts)
        keep = ("n_steps", "diverging", "step_size", "acceptance_rate")
        info.append({k: np.asarray(inf[k][:n]) for k in keep})
        acc.ksums = (acc.ksums[0] + np.asarray(k1), acc.ksums[1] + np.asarray(k2), acc.ksums[2] + n)
        acc.add({**{k: np.asarray(v[:n]) for k, v in s.items()}, "lp": inf["lp"][:n]})
        t_chunk = (time.perf_counter() - t_warm) / len(acc.chunks)
        if not guard.fits(t_chunk, args.reserve):
            return "deadline"
        if len(acc.chunks) % 2 or acc.draws < args.min_draws:
            continue  # the other rules only after an even number of chunks (equal halves)
        if max(acc.noise().values()) <= args.target:
            return "target"
        if time.perf_counter() - t_warm + 2 * t_chunk > cap_s:
            return "case_cap"
    return "max_draws"


def run_case(spec, data, args, guard: TimeGuard, seed: int, cap_s: float) -> dict:
    """Warm up, then sample chunk by chunk until the noise target, the cap or the deadline."""
    opts = sampling.check_options(
        "collapsed",
        chains=args.chains,
        warmup=args.warmup,
        draws=args.chunk,
        seed=seed,
        chain_method="vectorized",
        dtype=args.dtype,
        max_tree_depth=args.max_tree_depth,
        chunk=args.chunk,
        algorithm=args.algorithm,
    )
    cfg = sampling.run_config(spec, opts)
    with sampling._precision(args.dtype):
        d, th = sampling.data_arrays(data, args.dtype), sampling.theta_arrays(spec, args.dtype)
        keys, z0 = sampling.initial_positions(spec, data, opts, args.dtype)
        comp = engine.compiled_for(cfg, z0, d, th)
        t0 = time.perf_counter()
        state = comp.init(keys, z0, d, th)
        grads = np.zeros(2, np.int64)
        done = 0
        while done < args.warmup:
            n = min(args.chunk, args.warmup - done)
            state, _, _, counts = comp.chunk(state, d, th, jnp.int32(n), jnp.bool_(False))
            grads += np.asarray(counts)
            done += n
            if not guard.fits(0.0, args.reserve):
                raise TimeoutError(f"deadline reached during warmup ({done} of {args.warmup})")
        jax.block_until_ready(state)
        t_warm = time.perf_counter()
        grads_warmup, grads = int(grads[0]), np.zeros(2, np.int64)
        acc, info = Accumulator(), []
        try:
            stop = _sample(comp, state, d, th, args, guard, cap_s, t_warm, acc, info, grads)
        except KeyboardInterrupt:  # `timeout -s INT`: keep the draws of the finished chunks
            if len(acc.chunks) < 2:
                raise
            stop = "interrupted"
    ks, kts, k_draws = acc.ksums
    t1 = time.perf_counter()
    est = acc.estimates()
    t2 = time.perf_counter()
    nsum = max(k_draws, 1) * args.chains
    steps = np.concatenate([i["n_steps"] for i in info[: len(acc.chunks)]])
    res = {
        "activation": spec.activation,
        "width": spec.width,
        "chi": spec.chi,
        "kappa": spec.kappa,
        "spec": spec.to_dict(),
        "algorithm": opts.algorithm,
        "dtype": args.dtype,
        "chains": args.chains,
        "warmup": args.warmup,
        "draws": acc.draws,
        "seed": seed,
        "stop": stop,
        "compile_s": comp.compile_s,
        "warmup_s": t_warm - t0,
        "sampling_s": t1 - t_warm,
        "estimate_s": t2 - t1,
        "wall_s": comp.compile_s + t2 - t0,
        "n_grad_warmup": grads_warmup,
        "n_grad": int(grads[0]),
        "grads_per_s": float(grads[0] / max(t1 - t_warm, 1e-9)),
        "lockstep_efficiency": float(grads[0] / max(grads[1] * args.chains, 1)),
        "mean_steps": float(steps.mean()),
        "divergences": int(sum(i["diverging"].sum() for i in info)),
        "acceptance_rate": float(np.mean([i["acceptance_rate"].mean() for i in info])),
        "step_size": float(info[-1]["step_size"].mean()),
        "K_train": np.asarray(ks) / nsum,
        "K_test_train": np.asarray(kts) / nsum,
        **est,
    }
    res["summary"] = summary(est)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    p.add_argument("--out", default=None, help="JSON file, rewritten after every case")
    p.add_argument("--deadline", type=float, default=None, help="epoch seconds to end by")
    p.add_argument("--budget", type=float, default=420.0, help="seconds, if no --deadline")
    p.add_argument("--reserve", type=float, default=5.0, help="seconds kept before the deadline")
    p.add_argument("--activations", default=",".join(ACTIVATIONS))
    p.add_argument("--tiers", default="64,128;32,256", help="width tiers, in priority order")
    p.add_argument("--datasets", default="teacher,ising")
    p.add_argument("--algorithm", default="chees", choices=sampling.ALGORITHMS)
    p.add_argument("--chains", type=int, default=4096)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--chunk", type=int, default=50, help="draws per chunk")
    p.add_argument("--min-draws", type=int, default=200)
    p.add_argument("--max-draws", type=int, default=4000)
    p.add_argument("--target", type=float, default=3e-4, help="relative noise of mean outputs")
    p.add_argument("--case-cap", type=float, default=60.0, help="most sampling s per case")
    p.add_argument("--case-min", type=float, default=4.0, help="least sampling s per case")
    p.add_argument("--first-compile", type=float, default=15.0, help="guess, s")
    p.add_argument("--first-warmup", type=float, default=8.0, help="guess, s")
    p.add_argument("--max-tree-depth", type=int, default=8, help="NUTS only")
    p.add_argument("--dtype", default="float64", choices=sampling.DTYPES)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.chains, args.warmup, args.chunk = 8, 20, 10
        args.min_draws, args.max_draws, args.case_cap, args.case_min = 20, 40, 5.0, 0.5
        args.tiers = "8"
        args.activations = args.activations if "--activations" in (argv or sys.argv) else "relu"
    if args.algorithm == "chees":
        try:
            import blackjax  # noqa: F401
        except ImportError:
            print("BlackJAX missing: NUTS instead of ChEES", flush=True)
            args.algorithm = "nuts"
    guard = TimeGuard(args.deadline if args.deadline else time.time() + args.budget)
    tiers = [[int(n) for n in t.split(",")] for t in args.tiers.split(";")]
    groups = case_order(args.activations.split(","), tiers, args.datasets.split(","))
    res = {
        "machine": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "devices": [str(dv) for dv in jax.devices()],
            "backend": jax.default_backend(),
        },
        "command": " ".join(["python"] + (argv or sys.argv)),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "datasets": {},
        "cases": [],
        "skipped": [],
    }
    print(res["machine"], f"{guard.left():.0f} s left", flush=True)
    t_start = time.perf_counter()
    seen_compile, seen_warmup = args.first_compile, args.first_warmup
    ladders = {w: chi_ladder(w) for _, _, w, _ in groups}
    for gi, (tier, act, width, dname) in enumerate(groups):
        data, kappa = make_data(dname, args.quick)
        if dname not in res["datasets"]:
            res["datasets"][dname] = {
                **data.to_attrs(),
                "kappa": kappa,
                "X": data.X,
                "y": data.y,
                "X_test": data.X_test,
                "y_test": data.y_test,
            }
        block = [g for g in groups[gi + 1 :] if g[:2] == (tier, act)]  # later groups, same block
        new_group = True
        for ci, chi in enumerate(ladders[width]):
            label = f"{act} {dname} N={width} chi={chi:.4g}"
            compile_now = seen_compile if new_group else 0.0
            predicted = compile_now + seen_warmup + args.case_min
            if not guard.fits(predicted, args.reserve):
                print(f"skip {label}: ~{predicted:.0f} s > {guard.left():.0f} s left", flush=True)
                res["skipped"].append({"case": label, "predicted_s": predicted})
                continue
            cases = len(ladders[width]) - ci + sum(len(ladders[g[2]]) for g in block)
            cap = sampling_cap(
                guard.left() - args.reserve - compile_now,
                cases,
                len(block),
                seen_compile,
                seen_warmup,
                args.case_min,
                args.case_cap,
            )
            spec = bn.NetworkSpec(width=width, activation=act, chi=chi, kappa=kappa)
            try:
                r = run_case(spec, data, args, guard, args.seed + 10 * gi + ci, cap)
            except KeyboardInterrupt:
                print(f"{label}: interrupted before two chunks of draws", flush=True)
                res["skipped"].append({"case": label, "error": "interrupted"})
                break
            except Exception as e:  # noqa: BLE001  (e.g. out of device memory: keep going)
                print(f"{label}: failed {e!r}"[:500], flush=True)
                res["skipped"].append({"case": label, "error": repr(e)[:500]})
                continue
            r.update(dataset=dname, case=label, sampling_cap_s=cap)
            if new_group:
                seen_compile = max(r["compile_s"], 1.0)
            new_group = False
            seen_warmup = r["warmup_s"] + r["estimate_s"]
            res["cases"].append(r)
            sm = r["summary"]
            print(
                f"{label}: compile {r['compile_s']:.1f}s warmup {r['warmup_s']:.1f}s sampling "
                f"{r['sampling_s']:.1f}s of {cap:.0f} ({r['draws']} draws x {r['chains']} chains, "
                f"stop {r['stop']}), steps {r['mean_steps']:.1f}, div {r['divergences']}, noise "
                f"train {sm['rel_noise_train']:.2e} test {sm['rel_noise_test']:.2e}, max R-hat "
                f"{sm['max_rhat']:.4f}, min ESS {sm['min_ess']:.0f}",
                flush=True,
            )
            res["total_s"] = time.perf_counter() - t_start
            write_json(args.out, res)
            if r["stop"] == "interrupted":
                break
        else:
            continue
        break  # interrupted: write what there is and end
    res["total_s"] = time.perf_counter() - t_start
    write_json(args.out, res)
    print(
        f"references: {len(res['cases'])} cases, {len(res['skipped'])} skipped, "
        f"{res['total_s']:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
