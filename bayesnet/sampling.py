"""`sample`: HMC (NUTS or ChEES) on a network posterior, returned as an xarray DataTree.

`SamplerOptions` is the one home of the sampler options, their defaults and checks (the sweep
configuration derives its [sampler] schema from it); `run_config` and `initial_positions` give
the engine program and start (bench/ uses them).
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from typing import Any

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

MODEL_FORMS = ("collapsed", "full", "exact")  # `method` of sample: the form of the posterior
METHODS = MODEL_FORMS  # backwards-compatible name (theory.METHODS are the theories)
ALGORITHMS = ("auto", "nuts", "chees")
CHAIN_METHODS = ("auto",) + engine.CHAIN_METHODS
DTYPES = ("float64", "float32")
TARGET_ACCEPT = {"nuts": 0.8, "chees": 0.651}  # 0.651: optimal for fixed-length HMC
CHEES_MIN_CHAINS = 16  # algorithm="auto": ChEES from this many chains on an accelerator


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def default_algorithm(chains: int) -> str:
    """algorithm="auto": ChEES-HMC for 16 or more chains on an accelerator, NUTS otherwise.

    ChEES gives every chain of a batch the same number of leapfrog steps, so a batch wastes
    nothing, while vectorized NUTS runs each batch as long as its longest tree.  Measured on an
    H200 (BENCHMARKS.md "GPU run 2", erf P=40, N=64, chi=8): ChEES 5.4x, 9.1x and 9.1x cheaper
    per unit precision than NUTS at 16, 64 and 256 chains once compiled (NUTS lock-step
    efficiency 0.56-0.36), and 3.9-4.8x at 1024 chains on the linear N=1024, P=512 case.  On a
    CPU, NUTS chains run one after another with no lock-step waste, and ChEES's ensemble
    adaptation is noisy with few chains (0.5-0.9x of NUTS at 32-64 chains, compilation
    included): NUTS there.
    """
    if chains >= CHEES_MIN_CHAINS and jax.default_backend() != "cpu":
        return "chees"
    return "nuts"


def default_chain_method(algorithm: str, chains: int) -> str:
    """The faster way to run these chains here (measured, BENCHMARKS.md "chain methods").

    ChEES needs its ensemble in one batch.  NUTS chains run one after another on a CPU (per
    gradient as fast, and no chain waits for another's longer tree) and as one batch on an
    accelerator, whose throughput grows with the batch.
    """
    if algorithm == "chees" or chains == 1 or jax.default_backend() != "cpu":
        return "vectorized"
    return "sequential"


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
    """Settings of `sample`, checked at creation (one-line ValueError naming the field).

    method: the form of the posterior: `collapsed` (readout integrated out, HMC over V), `full`
    (HMC over V and w) or `exact` (linear networks: independent exact draws).  algorithm:
    `nuts`, `chees` or `auto` (see `default_algorithm`).  chain_method: `vectorized` (one
    batch), `sequential` or `auto` (the faster here).  target_accept: None is 0.8 for NUTS,
    0.651 for ChEES.  chunk: steps per compiled call (None: about 20 progress updates).
    The TOML [sampler] table of a sweep accepts exactly these fields: adding an option is one
    line here.  `resolve()` fixes the `auto` and None values for the machine it runs on.
    """

    method: str = "collapsed"
    algorithm: str = "auto"
    chains: int = 4
    warmup: int = 500
    draws: int = 1000
    seed: int = 0
    chain_method: str = "auto"
    dtype: str = "float64"
    target_accept: float | None = None
    max_tree_depth: int = 10
    chunk: int | None = None

    def __post_init__(self):
        _choice("method", self.method, MODEL_FORMS)
        exact = self.method == "exact"
        _choice("algorithm", self.algorithm, ("auto", "exact") if exact else ALGORITHMS)
        _choice("chain_method", self.chain_method, CHAIN_METHODS)
        _choice("dtype", self.dtype, DTYPES)
        for name, minimum in (("chains", 1), ("warmup", 0), ("draws", 1), ("seed", 0)):
            object.__setattr__(self, name, _check_int(name, getattr(self, name), minimum))
        object.__setattr__(
            self, "max_tree_depth", _check_int("max_tree_depth", self.max_tree_depth, 1)
        )
        if self.chunk is not None:
            object.__setattr__(self, "chunk", _check_int("chunk", self.chunk, 1))
        ta = self.target_accept
        if ta is not None:
            if isinstance(ta, bool) or not isinstance(ta, (int, float)) or not 0.0 < ta < 1.0:
                raise ValueError(f"target_accept must be in (0, 1), got {ta!r}")
            object.__setattr__(self, "target_accept", float(ta))
        if self.algorithm == "chees" and self.chain_method == "sequential":
            raise ValueError(
                "chain_method must be 'vectorized' or 'auto' for algorithm='chees' "
                "(it adapts on the ensemble of chains), got 'sequential'"
            )

    @classmethod
    def fields(cls) -> dict[str, type]:
        """{field: the type a config file gives it} (float | None -> float): the TOML schema."""
        hints = typing.get_type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            kinds = [t for t in typing.get_args(hints[f.name]) if t is not type(None)]
            out[f.name] = kinds[0] if kinds else hints[f.name]
        return out

    @classmethod
    def from_dict(cls, settings: dict) -> SamplerOptions:
        """From keyword settings; an unknown key is a one-line ValueError naming it."""
        unknown = sorted(set(settings) - set(cls.fields()))
        if unknown:
            raise ValueError(
                f"unknown sampler option {unknown[0]!r} (allowed: {', '.join(cls.fields())})"
            )
        return cls(**settings)

    def resolve(self) -> SamplerOptions:
        """The same options with `auto` and None replaced by what runs on this machine."""
        if self.method == "exact":
            algorithm = "exact"
        elif self.algorithm == "auto":
            algorithm = (
                "nuts" if self.chain_method == "sequential" else default_algorithm(self.chains)
            )
        else:
            algorithm = self.algorithm
        chain_method = self.chain_method
        if chain_method == "auto":
            chain_method = default_chain_method(algorithm, self.chains)
        target_accept = self.target_accept
        if target_accept is None:
            target_accept = TARGET_ACCEPT.get(algorithm, 0.8)
        chunk = self.chunk
        if chunk is None:  # ~20 progress updates, never so short that Python overhead shows
            chunk = int(min(250, max(25, math.ceil((self.warmup + self.draws) / 20))))
        return dataclasses.replace(
            self,
            algorithm=algorithm,
            chain_method=chain_method,
            target_accept=target_accept,
            chunk=chunk,
        )


def check_options(method: str = "collapsed", **settings: Any) -> SamplerOptions:
    """SamplerOptions from keywords, resolved for this machine (kept for bench/ and old code)."""
    return SamplerOptions.from_dict({"method": method, **settings}).resolve()


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
    options: SamplerOptions | None = None,
    *,
    progress: bool = True,
    desc: str | None = None,
    **settings: Any,
) -> xr.DataTree:
    """Sample the posterior of `spec` on `data` with NUTS or ChEES-HMC (or exactly, if linear).

    Settings: `options=SamplerOptions(...)` and/or its fields as keywords (keywords override
    the options), e.g. `sample(spec, data, method="full", chains=8)`; see `SamplerOptions`.
    Returns a DataTree with groups posterior (chain, draw, train/test), sample_stats, kernel
    (posterior mean hidden kernel), observed_data, constant_data; attributes record the spec,
    data, the resolved options, seed and versions.  Per draw, f_train/f_test are a draw of f
    (`full`) or its Rao-Blackwellised mean E[f | V] (`collapsed`), E[f | s, y] (`exact`): their
    average is the posterior mean, their spread is narrower than the posterior's (see README).
    """
    if not isinstance(spec, NetworkSpec):
        raise ValueError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a bayesnet Dataset, got {type(data).__name__}")
    if options is not None and not isinstance(options, SamplerOptions):
        raise ValueError(f"options must be a SamplerOptions, got {type(options).__name__}")
    base = dataclasses.asdict(options) if options is not None else {}
    opts = SamplerOptions.from_dict({**base, **settings}).resolve()
    method, dtype = opts.method, opts.dtype
    if method == "exact":
        if spec.depth > 1:
            raise ValueError(f"method 'exact' needs depth 1, got depth={spec.depth}")
        from .exact_sampler import sample_exact

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
