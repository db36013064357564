"""`sample`: NUTS on a network posterior, returned as an ArviZ-compatible xarray DataTree."""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import engine
from .datasets import Dataset
from .models import MODELS, Theta
from .precision import float64, with_float64
from .results import progress_bar, to_datatree
from .spec import NetworkSpec

METHODS = ("collapsed", "full", "exact")
CHAIN_METHODS = ("vectorized", "sequential", "parallel")
DTYPES = ("float64", "float32")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def data_arrays(data: Dataset, dtype="float64") -> dict:
    """The traced data arguments of the models: X, y, X_test and the unit target y_hat."""
    y_hat = data.y / np.linalg.norm(data.y)
    return {k: jnp.asarray(v, dtype=dtype) for k, v in
            (("X", data.X), ("y", data.y), ("X_test", data.X_test), ("y_hat", y_hat))}


def theta_arrays(spec: NetworkSpec, dtype="float64") -> Theta:
    """The traced scaling parameters g_v, g_w, chi, kappa."""
    return Theta(*(jnp.asarray(getattr(spec, k), dtype=dtype) for k in Theta._fields))


def _precision(dtype):
    """float32 runs trace with x64 off: under x64 NumPyro promotes its state to float64."""
    return float64(dtype == "float64")


@with_float64
def sample(spec: NetworkSpec, data: Dataset, method: str = "collapsed", chains: int = 4,
           warmup: int = 500, draws: int = 1000, seed: int = 0,
           chain_method: str = "vectorized", progress: bool = True, dtype: str = "float64",
           target_accept: float = 0.8, max_tree_depth: int = 10, chunk: int | None = None,
           desc: str | None = None) -> xr.DataTree:
    """Sample the posterior of `spec` on `data` with NUTS (or exactly, for linear networks).

    method: `collapsed` (readout integrated out, NUTS over V), `full` (NUTS over V and w),
    `exact` (linear networks only: width-independent sampler).  Returns a DataTree with groups
    posterior (chain, draw, train/test), sample_stats, kernel (posterior mean hidden kernel),
    observed_data, constant_data; attributes record the spec, data, method, seed and versions.
    """
    if not isinstance(spec, NetworkSpec):
        raise ValueError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a bayesnet Dataset, got {type(data).__name__}")
    _choice("method", method, METHODS)
    _choice("chain_method", chain_method, CHAIN_METHODS)
    _choice("dtype", dtype, DTYPES)
    chains = _check_int("chains", chains, 1)
    warmup = _check_int("warmup", warmup, 0)
    draws = _check_int("draws", draws, 1)
    _check_int("seed", seed, 0)
    max_tree_depth = _check_int("max_tree_depth", max_tree_depth, 1)
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if method == "exact":
        from .exact import sample_exact
        return sample_exact(spec, data, chains=chains, draws=draws, seed=seed,
                            progress=progress, desc=desc)
    model_fn, stats_fn = MODELS[method]
    N, D = spec.width, data.dim
    if chunk is None:
        # About 20 progress updates per run, but never so short that Python overhead shows.
        chunk = int(min(250, max(25, math.ceil((warmup + draws) / 20))))
    chunk = _check_int("chunk", chunk, 1)
    stats = _bind_stats(stats_fn, N, spec.activation)
    cfg = engine.RunConfig(model_fn(N, spec.activation), stats, chains, warmup, chunk,
                           float(target_accept), max_tree_depth)
    label = desc or f"{method} N={N} {spec.activation} chi={spec.chi:.4g}"
    bar, update = progress_bar(progress, (warmup + draws) * (
        1 if chain_method == "vectorized" else chains), label)
    try:
        with _precision(dtype):
            d_arr, theta = data_arrays(data, dtype), theta_arrays(spec, dtype)
            key_init, key_chain = jax.random.split(jax.random.PRNGKey(seed))
            z0 = {"z_V": jax.random.normal(key_init, (chains, N, D), dtype)}
            if method == "full":
                z0["z_w"] = jax.random.normal(jax.random.fold_in(key_init, 1), (chains, N), dtype)
            keys = jax.random.split(key_chain, chains)
            draws_out, ksums, timing = _run_chains(cfg, chain_method, keys, z0, d_arr, theta,
                                                   draws, update)
    finally:
        if bar is not None:
            bar.close()
    interrupted = bool(timing.pop("interrupted", False))
    if interrupted:
        warnings.warn(f"sampling interrupted: returning the {draws_out['f_train'].shape[1]} "
                      f"draws per chain finished before the interrupt", stacklevel=2)
    return to_datatree(draws_out, ksums, spec, data, method=method, seed=seed, chains=chains,
                       warmup=warmup, draws=int(draws_out["f_train"].shape[1]),
                       chain_method=chain_method, dtype=dtype, target_accept=float(target_accept),
                       max_tree_depth=max_tree_depth, interrupted=interrupted, timing=timing)


class _bind_stats:
    """Hashable per-(width, activation) binding of a statistics function (a cache key part)."""

    def __init__(self, fn, width, activation):
        self.fn, self.width, self.activation = fn, width, activation

    def __call__(self, z, d, t):
        return self.fn(z, d, t, self.width, self.activation)

    def __eq__(self, other):
        return isinstance(other, _bind_stats) and (self.fn, self.width, self.activation) == (
            other.fn, other.width, other.activation)

    def __hash__(self):
        return hash((self.fn, self.width, self.activation))


def _run_chains(cfg, chain_method, keys, z0, d_arr, theta, draws, update):
    """Run chains vectorized (one program), one after another, or across devices."""
    if chain_method == "parallel" and jax.local_device_count() < cfg.chains:
        warnings.warn(f"chain_method='parallel' needs {cfg.chains} devices, found "
                      f"{jax.local_device_count()}; running chains sequentially", stacklevel=3)
        chain_method = "sequential"
    if chain_method == "vectorized":
        out, ks, _, timing = engine.run(cfg, keys, z0, d_arr, theta, draws, update)
        return out, ks, timing
    if chain_method == "parallel":
        return _run_parallel(cfg, keys, z0, d_arr, theta, draws, update)
    one = cfg._replace(chains=1)
    parts, ksum, ktsum, count = [], 0.0, 0.0, 0
    timing = {"compile_s": 0.0, "sample_s": 0.0}
    for c in range(cfg.chains):
        zc = jax.tree.map(lambda a, c=c: a[c:c + 1], z0)
        try:
            out, (k, kt, n), _, t = engine.run(one, keys[c:c + 1], zc, d_arr, theta, draws,
                                               update)
        except KeyboardInterrupt:
            if not parts:
                raise
            timing["interrupted"] = True
            break
        parts.append(out)
        ksum, ktsum, count = ksum + k, ktsum + kt, count + n
        timing.update({k2: timing[k2] + t[k2] for k2 in ("compile_s", "sample_s")})
        if t.get("interrupted"):
            timing["interrupted"] = True
            break
    n = min(p["f_train"].shape[1] for p in parts)  # chains must have equal draws
    out = {k: np.concatenate([p[k][:, :n] for p in parts], axis=0) for k in parts[0]}
    return out, (ksum, ktsum, count), timing


def _run_parallel(cfg, keys, z0, d_arr, theta, draws, update):
    """One chain per device, each device running the vectorized program on its own chain."""
    import concurrent.futures as cf

    devices = jax.local_devices()[: cfg.chains]
    one = cfg._replace(chains=1)

    def job(c):
        with jax.default_device(devices[c]):
            zc = jax.tree.map(lambda a: jax.device_put(a[c:c + 1], devices[c]), z0)
            dd = jax.device_put(d_arr, devices[c])
            tt = jax.device_put(theta, devices[c])
            return engine.run(one, jax.device_put(keys[c:c + 1], devices[c]), zc, dd, tt,
                              draws, None)

    with cf.ThreadPoolExecutor(len(devices)) as pool:
        results = list(pool.map(job, range(cfg.chains)))
    update((cfg.warmup + draws) * cfg.chains, "done")
    out = {k: np.concatenate([r[0][k] for r in results], axis=0) for k in results[0][0]}
    ksum = sum(r[1][0] for r in results)
    ktsum = sum(r[1][1] for r in results)
    count = sum(r[1][2] for r in results)
    timing = {"compile_s": max(r[3]["compile_s"] for r in results),
              "sample_s": max(r[3]["sample_s"] for r in results)}
    return out, (ksum, ktsum, count), timing
