"""Float64 where bayesnet needs it, without flipping JAX's global precision at import time.

Rule (docs/layout.md): importing `bayesnet` or `theory` never changes `jax_enable_x64`.  The public
entry points that need float64 (`bayesnet.sample`, `theory.predict`, the exact sampler) run their
body under `float64()`; a user who calls internal functions directly, or wants x64 for the whole
process, calls `enable_float64()` once.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

import jax

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def float64(enabled: bool = True) -> Iterator[None]:
    """Context in which JAX creates float64 arrays (enabled=False: float32); restores on exit."""
    state = getattr(jax, "enable_x64", None)
    if callable(state):
        ctx = state(enabled)  # jax >= 0.5: a config State usable as a context manager
    else:  # pragma: no cover - older jax
        from jax.experimental import disable_x64, enable_x64

        ctx = enable_x64() if enabled else disable_x64()
    with ctx:
        yield


def with_float64(fn: F) -> F:
    """Decorator: run `fn` under `float64()`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with float64():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def enable_float64() -> None:
    """Switch JAX to float64 for the whole process (explicit, documented opt-in)."""
    jax.config.update("jax_enable_x64", True)
