"""bayesnet: finite-width Bayesian network posteriors under parameterised scaling.

Exports are lazy (PEP 562), so `from bayesnet import NetworkSpec` loads neither NumPyro nor the
samplers, and importing never changes JAX's precision (see `bayesnet.precision`).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("bayesnet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "ACTIVATIONS": "activations",
    "activation_fn": "activations",
    "Dataset": "datasets",
    "from_arrays": "datasets",
    "ising": "datasets",
    "teacher": "datasets",
    "xor": "datasets",
    "digits": "datasets",
    "mnist": "datasets",
    "cifar10": "datasets",
    "NetworkSpec": "spec",
    "float64": "precision",
    "enable_float64": "precision",
    "load": "io",
    "save": "io",
    "sample": "sampling",
    "SamplerOptions": "sampling",
    "draw_outputs": "scale_mixture",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # submodules, e.g. bayesnet.sampling after a plain `import bayesnet`
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'bayesnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
