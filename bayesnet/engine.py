"""A lean NUTS driver over NumPyro's functional `hmc` kernel.

Chains are advanced in chunks of a fixed number of steps inside one `lax.scan`, vmapped over
chains; per-draw statistics are computed inside the scan and the hidden kernel is summed there,
so neither the weights nor a P x P array per draw ever leave the device.  Data and the scaling
parameters are traced arguments: one compiled chunk serves a whole sweep over chi (or kappa, g_w,
data of the same shapes).  Compilation and sampling are timed separately.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.util import potential_energy


class RunConfig(NamedTuple):
    """What fixes the compiled program: model, statistic, sizes and NUTS settings."""

    model: Callable
    stats: Callable
    chains: int
    warmup: int
    chunk: int
    target_accept: float
    max_tree_depth: int


class Compiled(NamedTuple):
    init: Callable  # (keys (C,), z0, data, theta) -> states
    chunk: Callable  # (states, data, theta, n_valid, collect) -> (states, sums, per-draw)
    compile_s: float


def _tree_depth(num_steps):
    """NUTS tree depth from the number of leapfrog steps (2^d - 1 steps at depth d)."""
    return jnp.floor(jnp.log2(jnp.maximum(num_steps, 1))).astype(jnp.int32) + 1


def build(cfg: RunConfig, z0, data, theta) -> Compiled:
    """Trace and compile init and chunk functions for these shapes (AOT, timed)."""
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda d, t: (lambda z: potential_energy(cfg.model, (d, t), {}, z)),
        algo="NUTS",
    )

    def init_one(key, z, d, t):
        return init_kernel(z, cfg.warmup, target_accept_prob=cfg.target_accept,
                           max_tree_depth=cfg.max_tree_depth, model_args=(d, t), rng_key=key)

    def chunk_one(state, d, t, n_valid, collect):
        def body(carry, i):
            st, ksum, ktsum = carry
            new = sample_kernel(st, model_args=(d, t))
            keep = i < n_valid
            st = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, st)
            s = jax.lax.cond(collect, lambda z: cfg.stats(z, d, t),
                             lambda z: jax.tree.map(jnp.zeros_like,
                                                    jax.eval_shape(cfg.stats, z, d, t)), st.z)
            w = (keep & collect).astype(ksum.dtype)
            ksum = ksum + w * s.pop("K_train")
            ktsum = ktsum + w * s.pop("K_test_train")
            s.update(diverging=st.diverging, tree_depth=_tree_depth(st.num_steps),
                     n_steps=st.num_steps, step_size=st.adapt_state.step_size,
                     energy=st.energy, acceptance_rate=st.accept_prob,
                     lp=-st.potential_energy)
            return (st, ksum, ktsum), s

        P, Pt = d["X"].shape[0], d["X_test"].shape[0]
        dt = d["X"].dtype
        zeros = (jnp.zeros((P, P), dt), jnp.zeros((Pt, P), dt))
        (state, ksum, ktsum), draws = jax.lax.scan(body, (state,) + zeros,
                                                   jnp.arange(cfg.chunk))
        return state, (ksum, ktsum), draws

    keys = jax.random.split(jax.random.PRNGKey(0), cfg.chains)
    t0 = time.perf_counter()
    init = jax.jit(jax.vmap(init_one, in_axes=(0, 0, None, None)))
    init_c = init.lower(keys, z0, data, theta).compile()
    states = jax.eval_shape(init, keys, z0, data, theta)
    chunk = jax.jit(jax.vmap(chunk_one, in_axes=(0, None, None, None, None)))
    chunk_c = chunk.lower(states, data, theta, jnp.int32(0), jnp.bool_(True)).compile()
    return Compiled(init_c, chunk_c, time.perf_counter() - t0)


_CACHE: dict = {}


def compiled_for(cfg: RunConfig, z0, data, theta) -> Compiled:
    """The compiled program for this config and these array shapes, built once per process."""
    sig = jax.tree.map(lambda a: (a.shape, str(a.dtype)), (z0, data, theta))
    key = (cfg, str(sig))
    if key not in _CACHE:
        _CACHE[key] = build(cfg, z0, data, theta)
        return _CACHE[key]
    hit = _CACHE[key]
    return Compiled(hit.init, hit.chunk, 0.0)


def run(cfg: RunConfig, keys, z0, data, theta, draws: int, progress=None):
    """Warm up and sample all chains in lock-step.

    Returns (per-draw dict of arrays (C, draws, ...), kernel sums (K_train, K_test_train, count)
    summed over draws and chains, final states, timing dict).  An interrupt during sampling
    returns the draws finished so far (timing["interrupted"] is then True).  `progress(n_steps, phase)` is called
    after every chunk.
    """
    comp = compiled_for(cfg, z0, data, theta)
    t0 = time.perf_counter()
    states = comp.init(keys, z0, data, theta)
    per_draw, ksum, ktsum, interrupted = [], 0.0, 0.0, False
    try:
        for phase, total in (("warmup", cfg.warmup), ("sampling", draws)):
            done = 0
            while done < total:
                n = min(cfg.chunk, total - done)
                states, (ks, kts), out = comp.chunk(states, data, theta, jnp.int32(n),
                                                    jnp.bool_(phase == "sampling"))
                if phase == "sampling":
                    per_draw.append(jax.tree.map(lambda a: np.asarray(a[:, :n]), out))
                    ksum = ksum + np.asarray(ks).sum(0)
                    ktsum = ktsum + np.asarray(kts).sum(0)
                done += n
                if progress is not None:
                    progress(n, phase)
    except KeyboardInterrupt:
        # Keep every finished chunk of draws; an interrupt during warmup has nothing to keep.
        if not per_draw:
            raise
        interrupted = True
    jax.block_until_ready(states)
    sample_s = time.perf_counter() - t0
    draws_out = {k: np.concatenate([c[k] for c in per_draw], axis=1) for k in per_draw[0]}
    timing = {"compile_s": comp.compile_s, "sample_s": sample_s, "interrupted": interrupted}
    count = draws_out["f_train"].shape[0] * draws_out["f_train"].shape[1]
    return draws_out, (ksum, ktsum, count), states, timing
