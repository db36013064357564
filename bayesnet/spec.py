"""NetworkSpec: L hidden layers of width N under parameterised scaling.

Conventions (shared with `theory`, docs/conventions.md): first-layer weights N(0, g_v/D),
hidden-to-hidden weights N(0, g_v/N), readout w_i ~ N(0, g_w/(chi N)), y ~ N(f(x), kappa/chi).
chi = 1 is standard (NTK/NNGP) scaling, chi = N mean-field; depth L = 1 (the default) is the
one-hidden-layer network.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any

from .activations import check_activation


def _positive(name: str, value: Any) -> float:
    """Validate a strictly positive finite number; one-line error naming the parameter."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Finite-width network of `depth` hidden layers and its posterior.

    width: N hidden units per layer; activation: phi name; g_v, g_w: prior gains;
    chi: scaling (readout variance g_w/(chi N), noise kappa/chi); kappa: noise scale;
    depth: L hidden layers (1 by default).
    """

    width: int
    activation: str = "linear"
    g_v: float = 1.0
    g_w: float = 1.0
    chi: float = 1.0
    kappa: float = 1.0
    depth: int = 1

    def __post_init__(self) -> None:
        w = self.width
        if (
            isinstance(w, bool)
            or not isinstance(w, (int,))
            and not (isinstance(w, float) and w.is_integer())
        ):
            raise ValueError(f"width must be a positive integer, got {w!r}")
        if int(w) < 1:
            raise ValueError(f"width must be a positive integer >= 1, got {w!r}")
        object.__setattr__(self, "width", int(w))
        L = self.depth
        if isinstance(L, bool) or not isinstance(L, numbers.Integral) or L < 1:
            raise ValueError(f"depth must be an integer >= 1, got {L!r}")
        object.__setattr__(self, "depth", int(L))
        object.__setattr__(self, "activation", check_activation(self.activation))
        for name in ("g_v", "g_w", "chi", "kappa"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))

    @classmethod
    def from_gamma(cls, width: int, gamma: float, **kwargs: Any) -> NetworkSpec:
        """Spec with readout variance g_w/N^gamma, i.e. chi = N^(gamma - 1)."""
        g = float(gamma)
        if not math.isfinite(g):
            raise ValueError(f"gamma must be a finite number, got {gamma!r}")
        spec = cls(width=width, chi=1.0, **kwargs)
        return spec.replace(chi=float(spec.width) ** (g - 1.0))

    @property
    def readout_var(self) -> float:
        """Prior variance of one readout weight, g_w/(chi N)."""
        return self.g_w / (self.chi * self.width)

    @property
    def noise_var(self) -> float:
        """Likelihood noise variance kappa/chi."""
        return self.kappa / self.chi

    @property
    def gamma(self) -> float:
        """Exponent gamma with chi = N^(gamma - 1) (1 = standard, 2 = mean-field)."""
        return 1.0 + (math.log(self.chi) / math.log(self.width) if self.width > 1 else 0.0)

    def replace(self, **changes: Any) -> NetworkSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (depth only when > 1, so depth-1 records are unchanged)."""
        d = dataclasses.asdict(self)
        if d["depth"] == 1:
            del d["depth"]
        return d

    def to_attrs(self, prefix: str = "", chi: bool = True) -> dict[str, Any]:
        """netCDF-safe attributes: each field plus the whole spec as JSON.

        chi=False leaves chi out of both (for results that run over a chi dimension, where one
        spec stands for the whole sweep; `from_attrs` then gives chi = 1).
        """
        d = self.to_dict()
        if not chi:
            del d["chi"]
        out = {f"{prefix}{k}": v for k, v in d.items()}
        out[f"{prefix}spec"] = json.dumps(d)
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], prefix: str = "") -> NetworkSpec:
        """The spec stored by `to_attrs` (under the same prefix)."""
        return cls(**json.loads(attrs[f"{prefix}spec"]))
