"""analysis: diagnostics, sample-versus-theory comparison, sweeps, figures, reports and the CLI.

Exports are lazy (PEP 562): `from analysis.cli import main` loads neither xarray nor ArviZ, so
the `bayesnet` command starts at once and a Ctrl-C while it imports is handled like any other.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "against_reference": "comparison",
    "compare": "comparison",
    "sample_estimates": "comparison",
    "sweep_estimates": "comparison",
    "diagnose": "diagnostics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
