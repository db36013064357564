"""Elementwise activations phi of the hidden layer, by name, and which of them are odd."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "linear": lambda h: h,
    "erf": jsp.erf,
    "relu": lambda h: jnp.maximum(h, 0.0),
    "tanh": jnp.tanh,
}
# phi(-h) = -phi(h): phi(X v) phi(X v)^T is invariant under v -> -v, so the tilted theory's
# estimator need not store mirrored draws of v
ODD = frozenset({"linear", "erf", "tanh"})


def check_activation(name: str) -> str:
    """Return `name` if it is a known activation, else raise a one-line ValueError."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return name


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The jax function phi for an activation name."""
    return ACTIVATIONS[check_activation(name)]
