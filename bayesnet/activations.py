"""Elementwise activations phi of the hidden layer, by name."""
from __future__ import annotations

import jax.numpy as jnp
import jax.scipy.special as jsp

ACTIVATIONS = {
    "linear": lambda h: h,
    "erf": jsp.erf,
    "relu": lambda h: jnp.maximum(h, 0.0),
    "tanh": jnp.tanh,
}


def check_activation(name: str) -> str:
    """Return `name` if it is a known activation, else raise a one-line ValueError."""
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        )
    return name


def activation_fn(name: str):
    """The jax function phi for an activation name."""
    return ACTIVATIONS[check_activation(name)]
