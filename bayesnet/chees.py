"""ChEES-HMC (Hoffman, Radul & Sountsov 2021) from BlackJAX as an engine `Kernel` for many chains.

Every chain takes the same number of leapfrog steps per transition (a jittered trajectory length
shared by the ensemble), so batched chains do no lock-step waste, unlike vmapped NUTS whose chains
wait for the longest tree.  During warmup the step size is tuned by dual averaging on the harmonic
mean acceptance of all chains and the trajectory length by Adam on the ChEES criterion (the
change in the ensemble's expected squared distance); after warmup both are frozen at their moving
averages.  The metric is the identity: the models are non-centred (unit-normal priors).

BlackJAX is imported only when the kernel is built, with a one-line error when it is missing.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from .engine import Kernel

TARGET_ACCEPT = 0.651  # optimal for HMC with a fixed trajectory (Beskos et al. 2013)
LEARNING_RATE = 0.025  # Adam on log trajectory length (BlackJAX's documented choice)
DECAY_RATE = 0.5  # weight of recent warmup steps in the moving averages
INITIAL_STEP_SIZE = 0.1  # unit-normal priors: dual averaging corrects it within tens of steps
HALTON_BITS = 24  # jitter sequence period 2^24 transitions


class ChEESState(NamedTuple):
    """State of all chains: per-chain HMC states and the shared adaptation."""

    hmc: Any  # blackjax DynamicHMCState, leading chain axis
    adapt: Any  # ChEESAdaptationState, shared by the ensemble
    key: jax.Array
    n_steps: jax.Array  # (C,) leapfrog steps of the last transition
    acceptance_rate: jax.Array  # (C,)
    diverging: jax.Array  # (C,)
    step_size: jax.Array  # (C,) step size of the last transition


def _blackjax():
    try:
        import blackjax  # noqa: F401
        import optax
        from blackjax.adaptation import chees_adaptation
        from blackjax.mcmc import dynamic_hmc
    except ImportError:
        raise ImportError("algorithm='chees' needs BlackJAX: pip install blackjax") from None
    return chees_adaptation, dynamic_hmc, optax


@functools.cache
def chees(
    model, warmup: int, target_accept: float = TARGET_ACCEPT, max_leapfrog_steps: int = 1000
) -> Kernel:
    """ChEES-HMC on the posterior of a NumPyro `model(data, theta)`, all chains in one batch."""
    from numpyro.infer.util import potential_energy

    chees_adaptation, dynamic_hmc, optax = _blackjax()

    def jitter(i):
        return dynamic_hmc.halton_sequence(i, HALTON_BITS)

    def n_steps_fn(arg, mean_steps):
        return jnp.ceil(jitter(arg) * mean_steps).astype(jnp.int32)

    next_arg = lambda i: i + 1  # noqa: E731
    step_fn = dynamic_hmc.build_kernel(next_random_arg_fn=next_arg, integration_steps_fn=n_steps_fn)
    base_params = inspect.signature(chees_adaptation.base).parameters
    extra = (
        {"max_leapfrog_steps": max_leapfrog_steps} if "max_leapfrog_steps" in base_params else {}
    )
    adapt_init, adapt_update = chees_adaptation.base(
        jitter, next_arg, optax.adam(LEARNING_RATE), target_accept, DECAY_RATE, **extra
    )
    update_takes_metric = "inverse_mass_matrix" in inspect.signature(adapt_update).parameters

    def logdensity(d, t):
        return lambda z: -potential_energy(model, (d, t), {}, z)

    def init(keys, z0, d, t):
        C = keys.shape[0]
        hmc = jax.vmap(lambda z: dynamic_hmc.init(z, logdensity(d, t), jnp.int32(0)))(z0)
        dt = hmc.logdensity.dtype
        adapt = adapt_init(jnp.int32(0), jnp.asarray(INITIAL_STEP_SIZE, dt))
        return ChEESState(
            hmc,
            adapt,
            keys[0],
            jnp.zeros(C, jnp.int32),
            jnp.zeros(C, dt),
            jnp.zeros(C, bool),
            jnp.zeros(C, dt),
        )

    def step(state, d, t, warm):
        a = state.adapt
        dim = sum(x[0].size for x in jax.tree.leaves(state.hmc.position))
        dt = state.hmc.logdensity.dtype
        imm = jnp.ones(dim, dt)
        # warmup: the current adapted values; sampling: their frozen moving averages
        log_eps = jnp.where(warm, jnp.log(a.step_size), a.log_step_size_moving_average)
        log_len = jnp.where(
            warm, jnp.log(a.trajectory_length), a.log_trajectory_length_moving_average
        )
        eps = jnp.exp(log_eps)
        mean_steps = jnp.clip(jnp.exp(log_len - log_eps), 1.0, max_leapfrog_steps)
        key, sub = jax.random.split(state.key)
        C = state.n_steps.shape[0]
        new, info = jax.vmap(lambda k, s: step_fn(k, s, logdensity(d, t), eps, imm, (mean_steps,)))(
            jax.random.split(sub, C), state.hmc
        )
        metric = (imm,) if update_takes_metric else ()
        flat = jax.vmap(lambda z: jax.flatten_util.ravel_pytree(z)[0])  # (C, dim): ChEES's layout
        adapt = jax.lax.cond(
            warm,
            lambda a: adapt_update(
                a,
                flat(info.proposal.position),
                flat(info.proposal.momentum),
                flat(state.hmc.position),
                info.acceptance_rate,
                info.is_divergent,
                *metric,
            ),
            lambda a: a,
            a,
        )
        n = n_steps_fn(state.hmc.random_generator_arg[0], mean_steps)
        return ChEESState(
            new,
            adapt,
            key,
            jnp.full(C, n, jnp.int32),
            info.acceptance_rate.astype(dt),
            info.is_divergent,
            jnp.full(C, eps, dt),
        )

    def info(st):
        return {
            "n_steps": st.n_steps,
            "acceptance_rate": st.acceptance_rate,
            "diverging": st.diverging,
            "step_size": st.step_size,
            "lp": st.hmc.logdensity,
        }

    return Kernel(init, step, lambda st: st.hmc.position, info)
