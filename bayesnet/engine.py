"""The chunked MCMC driver: any kernel over many chains, statistics on the device.

A sampler is a `Kernel`: pure `init`/`step` functions over the state of ALL chains (a pytree with
a leading chain axis), so a kernel may couple its chains (ChEES adapts on the ensemble) or vmap a
single-chain kernel (NUTS).  `run` advances the chains in chunks: one compiled `while_loop` of at
most `chunk` steps, which executes exactly the steps asked for (a short last chunk does no wasted
work).  Inside it the per-draw statistics are computed and the hidden kernel is summed over draws
and chains, so neither the weights nor a P x P array per draw ever leave the device.  Data and the
scaling parameters are traced arguments: one compiled program serves a whole sweep over chi (or
kappa, g_w, data of the same shapes).  Between chunks Python reports progress, and an interrupt
keeps the finished draws.  Compilation and sampling are timed separately.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

CHAIN_METHODS = ("vectorized", "sequential")

# Set by a Ctrl-C handler (analysis.executor) and honoured between chunks: a KeyboardInterrupt
# raised inside a garbage-collection callback or finaliser is printed and dropped by Python, so
# the exception alone can be lost; the flag is not.
_INTERRUPT = threading.Event()


def request_interrupt() -> None:
    """Ask every running `run` to stop after its current chunk (as on KeyboardInterrupt)."""
    _INTERRUPT.set()


def interrupt_requested() -> bool:
    """Whether an interrupt was requested and not yet cleared."""
    return _INTERRUPT.is_set()


def clear_interrupt() -> None:
    _INTERRUPT.clear()


class Kernel(NamedTuple):
    """An MCMC kernel as pure functions over the state of all chains (leading axis = chain)."""

    init: Callable  # (keys (C,), z0 {site: (C, ...)}, data, theta) -> state
    step: Callable  # (state, data, theta, warm: bool[]) -> state
    position: Callable  # state -> {site: (C, ...)}, the unconstrained position
    info: Callable  # state -> {name: (C,)} statistics of the last step, with "n_steps" (gradients)


class RunConfig(NamedTuple):
    """What fixes the compiled program: kernel, statistics, sizes."""

    kernel: Kernel
    stats: Callable  # (z of one chain, data, theta) -> dict with K_train, K_test_train, scalars
    chains: int
    warmup: int
    chunk: int


class Compiled(NamedTuple):
    init: Callable  # (keys (C,), z0, data, theta) -> state
    chunk: Callable  # (state, data, theta, n, collect) -> (state, K sums, per-draw, counts)
    compile_s: float


def _tree_depth(num_steps):
    """NUTS tree depth from the number of leapfrog steps (2^d - 1 steps at depth d)."""
    return jnp.floor(jnp.log2(jnp.maximum(num_steps, 1))).astype(jnp.int32) + 1


@functools.cache
def nuts(model: Callable, warmup: int, target_accept: float, max_tree_depth: int) -> Kernel:
    """NumPyro's NUTS (`hmc(algo="NUTS")`, default adaptation) vmapped over chains.

    Cached, so that equal settings give the same Kernel (part of the compile-cache key).
    NumPyro's `sample_kernel` reads settings that its `init_kernel` stores in a closure, so
    `init` is always traced before `step` (as `build` does).
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import potential_energy

    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda d, t: lambda z: potential_energy(model, (d, t), {}, z),
        algo="NUTS",
    )

    def init_one(key, z, d, t):
        return init_kernel(
            z,
            warmup,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            model_args=(d, t),
            rng_key=key,
        )

    def init(keys, z0, d, t):
        return jax.vmap(init_one, in_axes=(0, 0, None, None))(keys, z0, d, t)

    def step(state, d, t, warm):
        # NUTS counts its own warmup steps (state.i): `warm` is not needed
        return jax.vmap(lambda s: sample_kernel(s, model_args=(d, t)))(state)

    def info(st):
        return {
            "diverging": st.diverging,
            "tree_depth": _tree_depth(st.num_steps),
            "n_steps": st.num_steps,
            "step_size": st.adapt_state.step_size,
            "energy": st.energy,
            "acceptance_rate": st.accept_prob,
            "lp": -st.potential_energy,
        }

    return Kernel(init, step, lambda st: st.z, info)


def build(cfg: RunConfig, z0, data, theta) -> Compiled:
    """Trace and compile the init and chunk programs for these shapes (AOT, timed)."""
    kern = cfg.kernel

    def draw_stats(st, d, t):
        """Per-draw statistics of every chain; the hidden kernels summed over chains."""
        s = jax.vmap(cfg.stats, in_axes=(0, None, None))(kern.position(st), d, t)
        return s, s.pop("K_train").sum(0), s.pop("K_test_train").sum(0)

    def chunk(state, d, t, n, collect):
        shapes = jax.eval_shape(draw_stats, state, d, t)
        zeros = lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)  # noqa: E731
        per_draw = (shapes[0], jax.eval_shape(kern.info, state))
        buf = jax.tree.map(lambda a: jnp.zeros((cfg.chunk,) + a.shape, a.dtype), per_draw)
        _, ks0, kts0 = zeros()

        def body(carry):
            i, st, ks, kts, buf, counts = carry
            st = kern.step(st, d, t, jnp.logical_not(collect))
            # statistics only while collecting; `collect` is one traced flag for all chains, so
            # this stays a real branch under the chain batch (no select of both sides)
            s, K, Kt = jax.lax.cond(
                collect, lambda st: draw_stats(st, d, t), lambda st: zeros(), st
            )
            info = kern.info(st)
            buf = jax.tree.map(
                lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, i, 0), buf, (s, info)
            )
            steps = info["n_steps"].astype(counts.dtype)  # (C,)
            counts = counts + jnp.stack([steps.sum(dtype=counts.dtype), steps.max()])
            return i + 1, st, ks + K, kts + Kt, buf, counts

        # exactly n steps (n <= chunk): a short last chunk executes no discarded work
        init = (jnp.int32(0), state, ks0, kts0, buf, jnp.zeros(2, jnp.int32))
        _, state, ks, kts, buf, counts = jax.lax.while_loop(lambda c: c[0] < n, body, init)
        return state, (ks, kts), buf, counts

    keys = jax.random.split(jax.random.PRNGKey(0), cfg.chains)
    t0 = time.perf_counter()
    init = jax.jit(kern.init)
    init_c = init.lower(keys, z0, data, theta).compile()
    states = jax.eval_shape(init, keys, z0, data, theta)
    chunk_c = jax.jit(chunk).lower(states, data, theta, jnp.int32(0), jnp.bool_(True)).compile()
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


class Result(NamedTuple):
    """What `run` returns: per-draw arrays (C, draws, ...), kernel sums, final state, timing."""

    draws: dict[str, np.ndarray]  # per-draw statistics and sampler info, (chains, draws, ...)
    ksums: tuple  # (sum of K_train, sum of K_test_train, number of chain-draws summed)
    state: Any  # final kernel state (the last chain's, for sequential chains)
    timing: dict[str, Any]  # compile_s, warmup_s, draws_s, run_s, gradients, interrupted


def run(
    cfg: RunConfig,
    keys,
    z0,
    data,
    theta,
    draws: int,
    progress=None,
    chain_method: str = "vectorized",
) -> Result:
    """Warm up and sample all chains: in one batch (`vectorized`) or one chain at a time.

    `sequential` advances each chain by one chunk in turn with the compiled one-chain program, so
    all chains always hold the same number of draws.  An interrupt during sampling returns the
    rounds of chunks finished by every chain (timing["interrupted"] is then True).
    `progress(n_steps, phase)` is called after every round (steps summed over the batches).
    Timing: compile_s, warmup_s, draws_s (the kept draws only), run_s = warmup_s + draws_s
    (compilation excluded; older results called run_s `sample_s`), n_grad_warmup
    and n_grad (gradients summed over chains), n_grad_lockstep (what lock-step batches execute).
    """
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {list(CHAIN_METHODS)}, got {chain_method!r}")
    if chain_method == "vectorized":
        batches = [(keys, z0)]
    else:
        cfg = cfg._replace(chains=1)
        batches = [
            (keys[c : c + 1], jax.tree.map(lambda a, c=c: a[c : c + 1], z0))
            for c in range(keys.shape[0])
        ]
    comp = compiled_for(cfg, batches[0][1], data, theta)
    t0 = time.perf_counter()
    states = [comp.init(k, z, data, theta) for k, z in batches]
    rounds, ksum, ktsum, interrupted = [], 0.0, 0.0, False
    grads = {"warmup": np.zeros(2, np.int64), "sampling": np.zeros(2, np.int64)}
    t_warm = t0
    try:
        for phase, total in (("warmup", cfg.warmup), ("sampling", draws)):
            done, collect = 0, jnp.bool_(phase == "sampling")
            while done < total:
                n = min(cfg.chunk, total - done)
                parts, ks_round, kts_round, g_round = [], 0.0, 0.0, np.zeros(2, np.int64)
                for b in range(len(states)):
                    states[b], (ks, kts), (s, info), counts = comp.chunk(
                        states[b], data, theta, jnp.int32(n), collect
                    )
                    g_round += np.asarray(counts)
                    if phase == "sampling":
                        out = {**s, **info}
                        parts.append(
                            {k: np.swapaxes(np.asarray(v[:n]), 0, 1) for k, v in out.items()}
                        )
                        ks_round, kts_round = ks_round + np.asarray(ks), kts_round + np.asarray(kts)
                # a round counts once every batch has finished it
                grads[phase] += g_round
                if phase == "sampling":
                    rounds.append(
                        {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
                    )
                    ksum, ktsum = ksum + ks_round, ktsum + kts_round
                done += n
                if progress is not None:
                    progress(n * len(states), phase)
                if _INTERRUPT.is_set():
                    raise KeyboardInterrupt
            if phase == "warmup":
                jax.block_until_ready(states)
                t_warm = time.perf_counter()
    except KeyboardInterrupt:
        # Keep every finished round of draws; an interrupt during warmup has nothing to keep.
        if not rounds:
            raise
        interrupted = True
    jax.block_until_ready(states)
    t1 = time.perf_counter()
    out = {k: np.concatenate([r[k] for r in rounds], axis=1) for k in rounds[0]}
    g_all, g_max = grads["sampling"]
    # lock-step: a batch executes as many steps as its longest chain (sequential: batches of 1)
    lockstep = int(g_all) if chain_method == "sequential" else int(g_max) * cfg.chains
    timing = {
        "compile_s": comp.compile_s,
        "warmup_s": t_warm - t0,
        "draws_s": t1 - t_warm,
        "run_s": t1 - t0,
        "n_grad_warmup": int(grads["warmup"][0]),
        "n_grad": int(g_all),
        "n_grad_lockstep": lockstep,
        "interrupted": interrupted,
    }
    n_summed = out["n_steps"].shape[0] * out["n_steps"].shape[1]
    return Result(out, (ksum, ktsum, n_summed), states[-1], timing)
