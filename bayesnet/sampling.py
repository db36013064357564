"""`sample`: HMC (NUTS or ChEES) on a network posterior, returned as an xarray DataTree.

`check_options` is the one home of the sampler option checks (the configuration loader uses it
too); `run_config` and `initial_positions` give the engine program and start (bench/ uses them).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import engine
from .datasets import Dataset
from .models import MODELS, Theta
from .observables import unit_target
from .precision import float64, with_float64
from .results import progress_bar, to_datatree
from .spec import NetworkSpec

METHODS = ("collapsed", "full", "exact")
ALGORITHMS = ("nuts", "chees")
CHAIN_METHODS = ("auto",) + engine.CHAIN_METHODS
DTYPES = ("float64", "float32")
TARGET_ACCEPT = {"nuts": 0.8, "chees": 0.651}  # 0.651: optimal for fixed-length HMC


class SamplerOptions(NamedTuple):
    """Checked sampler settings, with every default resolved."""

    method: str
    algorithm: str  # "nuts" or "chees" ("exact" for method="exact")
    chains: int
    warmup: int
    draws: int
    seed: int
    chain_method: str  # "vectorized" or "sequential" ("auto" resolved)
    dtype: str
    target_accept: float
    max_tree_depth: int
    chunk: int


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def default_chain_method(algorithm: str, chains: int) -> str:
    """The faster way to run these chains here (measured, BENCHMARKS.md "chain methods").

    ChEES needs its ensemble in one batch.  NUTS chains run one after another on a CPU (per
    gradient as fast, and no chain waits for another's longer tree) and as one batch on an
    accelerator, whose throughput grows with the batch.
    """
    if algorithm == "chees" or chains == 1 or jax.default_backend() != "cpu":
        return "vectorized"
    return "sequential"


def check_options(
    method: str = "collapsed",
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    chain_method: str = "auto",
    dtype: str = "float64",
    target_accept: float | None = None,
    max_tree_depth: int = 10,
    chunk: int | None = None,
    algorithm: str = "nuts",
    **ignored: Any,
) -> SamplerOptions:
    """Check sampler settings (one-line ValueError naming the parameter) and resolve defaults.

    The one home of these checks: `sample` and the configuration loader both call it.  Keywords
    that are not sampler settings (progress, desc) are ignored.
    """
    _choice("method", method, METHODS)
    _choice("algorithm", algorithm, ALGORITHMS)
    _choice("chain_method", chain_method, CHAIN_METHODS)
    _choice("dtype", dtype, DTYPES)
    chains = _check_int("chains", chains, 1)
    warmup = _check_int("warmup", warmup, 0)
    draws = _check_int("draws", draws, 1)
    seed = _check_int("seed", seed, 0)
    max_tree_depth = _check_int("max_tree_depth", max_tree_depth, 1)
    if method == "exact":
        if algorithm != "nuts":
            raise ValueError(
                f"algorithm must be left at its default for method='exact' (it "
                f"draws independently), got {algorithm!r}"
            )
        algorithm = "exact"
    if target_accept is None:
        target_accept = TARGET_ACCEPT.get(algorithm, 0.8)
    if (
        isinstance(target_accept, bool)
        or not isinstance(target_accept, (int, float))
        or not (0.0 < float(target_accept) < 1.0)
    ):
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if algorithm == "chees" and chain_method == "sequential":
        raise ValueError(
            "chain_method must be 'vectorized' or 'auto' for algorithm='chees' "
            "(it adapts on the ensemble of chains), got 'sequential'"
        )
    if chain_method == "auto":
        chain_method = default_chain_method(algorithm, chains)
    if chunk is None:
        # About 20 progress updates per run, but never so short that Python overhead shows.
        chunk = int(min(250, max(25, math.ceil((warmup + draws) / 20))))
    chunk = _check_int("chunk", chunk, 1)
    return SamplerOptions(
        method,
        algorithm,
        chains,
        warmup,
        draws,
        seed,
        chain_method,
        dtype,
        float(target_accept),
        max_tree_depth,
        chunk,
    )


def data_arrays(data: Dataset, dtype="float64") -> dict:
    """The traced data arguments of the models: X, y, X_test and the unit target y_hat."""
    y_hat = unit_target(np.asarray(data.y))
    return {
        k: jnp.asarray(v, dtype=dtype)
        for k, v in (("X", data.X), ("y", data.y), ("X_test", data.X_test), ("y_hat", y_hat))
    }


def theta_arrays(spec: NetworkSpec, dtype="float64") -> Theta:
    """The traced scaling parameters g_v, g_w, chi, kappa."""
    return Theta(*(jnp.asarray(getattr(spec, k), dtype=dtype) for k in Theta._fields))


def run_config(spec: NetworkSpec, opts: SamplerOptions) -> engine.RunConfig:
    """The engine program for this network and these options (equal inputs, equal config)."""
    model_fn, stats_fn = MODELS[opts.method]
    model = model_fn(spec.width, spec.activation, spec.depth)
    if opts.algorithm == "chees":
        from .chees import chees

        kernel = chees(model, opts.warmup, opts.target_accept)
    else:
        kernel = engine.nuts(model, opts.warmup, opts.target_accept, opts.max_tree_depth)
    return engine.RunConfig(
        kernel,
        _bind_stats(stats_fn, spec.width, spec.activation, spec.depth),
        opts.chains,
        opts.warmup,
        opts.chunk,
    )


def initial_positions(
    spec: NetworkSpec, data: Dataset, opts: SamplerOptions, dtype: str = "float64"
) -> tuple[jax.Array, dict]:
    """Chain keys (C,) and prior draws of the unit-normal weights z_V (C, N, D)
    [, z_U (C, L-1, N, N) for depth L > 1] [, z_w (C, N)]."""
    key_init, key_chain = jax.random.split(jax.random.PRNGKey(opts.seed))
    C, N, D = opts.chains, spec.width, data.dim
    z0 = {"z_V": jax.random.normal(key_init, (C, N, D), dtype)}
    if opts.method == "full":
        z0["z_w"] = jax.random.normal(jax.random.fold_in(key_init, 1), (C, N), dtype)
    if spec.depth > 1:
        shape = (C, spec.depth - 1, N, N)
        z0["z_U"] = jax.random.normal(jax.random.fold_in(key_init, 2), shape, dtype)
    return jax.random.split(key_chain, C), z0


def _precision(dtype):
    """float32 runs trace with x64 off: under x64 NumPyro promotes its state to float64."""
    return float64(dtype == "float64")


@with_float64
def sample(
    spec: NetworkSpec,
    data: Dataset,
    method: str = "collapsed",
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    chain_method: str = "auto",
    progress: bool = True,
    dtype: str = "float64",
    target_accept: float | None = None,
    max_tree_depth: int = 10,
    chunk: int | None = None,
    desc: str | None = None,
    algorithm: str = "nuts",
) -> xr.DataTree:
    """Sample the posterior of `spec` on `data` with NUTS or ChEES-HMC (or exactly, if linear).

    method: `collapsed` (readout integrated out, HMC over V), `full` (HMC over V and w),
    `exact` (linear networks only: width-independent sampler).  algorithm: `nuts` (NumPyro's
    NUTS) or `chees` (BlackJAX's ChEES-HMC, built for many chains: all chains take the same
    number of leapfrog steps).  chain_method `auto` picks the faster of `vectorized` (one batch)
    and `sequential` on this machine.  target_accept defaults to 0.8 (NUTS), 0.651 (ChEES).
    Returns a DataTree with groups posterior (chain, draw, train/test), sample_stats, kernel
    (posterior mean hidden kernel), observed_data, constant_data; attributes record the spec,
    data, method, seed and versions.
    """
    if not isinstance(spec, NetworkSpec):
        raise ValueError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a bayesnet Dataset, got {type(data).__name__}")
    opts = check_options(
        method,
        chains,
        warmup,
        draws,
        seed,
        chain_method,
        dtype,
        target_accept,
        max_tree_depth,
        chunk,
        algorithm,
    )
    if method == "exact":
        if spec.depth > 1:
            raise ValueError(f"method 'exact' needs depth 1, got depth={spec.depth}")
        from .exact import sample_exact

        return sample_exact(
            spec,
            data,
            chains=opts.chains,
            draws=opts.draws,
            seed=opts.seed,
            progress=progress,
            desc=desc,
        )
    cfg = run_config(spec, opts)
    label = desc or f"{method} N={spec.width} {spec.activation} chi={spec.chi:.4g}"
    bar, update = progress_bar(
        progress,
        (opts.warmup + opts.draws) * (opts.chains if opts.chain_method == "sequential" else 1),
        label,
    )
    try:
        with _precision(dtype):
            d_arr, theta = data_arrays(data, dtype), theta_arrays(spec, dtype)
            keys, z0 = initial_positions(spec, data, opts, dtype)
            res = engine.run(cfg, keys, z0, d_arr, theta, opts.draws, update, opts.chain_method)
    finally:
        if bar is not None:
            bar.close()
    timing = dict(res.timing)
    interrupted = bool(timing.pop("interrupted", False))
    n_draws = int(res.draws["f_train"].shape[1])
    if interrupted:
        warnings.warn(
            f"sampling interrupted: returning the {n_draws} draws per chain finished "
            f"before the interrupt",
            stacklevel=2,
        )
    return to_datatree(
        res.draws,
        res.ksums,
        spec,
        data,
        method=method,
        algorithm=opts.algorithm,
        seed=opts.seed,
        chains=opts.chains,
        warmup=opts.warmup,
        draws=n_draws,
        chain_method=opts.chain_method,
        dtype=dtype,
        target_accept=opts.target_accept,
        max_tree_depth=opts.max_tree_depth,
        interrupted=interrupted,
        timing=timing,
    )


class _bind_stats:
    """Hashable per-(width, activation, depth) binding of a statistics function (a cache key
    part)."""

    def __init__(self, fn, width, activation, depth=1):
        self.fn, self.width, self.activation, self.depth = fn, width, activation, depth

    def __call__(self, z, d, t):
        return self.fn(z, d, t, self.width, self.activation, self.depth)

    def _key(self):
        return (self.fn, self.width, self.activation, self.depth)

    def __eq__(self, other):
        return isinstance(other, _bind_stats) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())
