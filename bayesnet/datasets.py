"""Data sets the posteriors are studied on: Ising task, teachers, XOR, user arrays.

Every set is a `Dataset` of float64 numpy arrays X (P, D), y (P,), X_test (P*, D), y_test (P*,).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def _as_array(name: str, a: ArrayLike, ndim: int) -> np.ndarray:
    """Validate rank and finiteness; one-line error naming the array and its shape."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(a).__name__}") from None
    if arr.ndim != ndim:
        want = "(P, D)" if ndim == 2 else "(P,)"
        raise ValueError(f"{name} must have shape {want}, got shape {arr.shape}")
    if arr.shape[0] == 0 or (ndim == 2 and arr.shape[1] == 0):
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN/inf entries (shape {arr.shape})")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test data: X (P, D), y (P,), X_test (P*, D), y_test (P*,), float64."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str = "arrays"
    params: tuple = ()

    def __post_init__(self) -> None:
        X = _as_array("X", self.X, 2)
        y = _as_array("y", self.y, 1)
        Xt = _as_array("X_test", self.X_test, 2)
        yt = _as_array("y_test", self.y_test, 1)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have length P={X.shape[0]} to match X, got shape {y.shape}")
        if yt.shape[0] != Xt.shape[0]:
            raise ValueError(
                f"y_test must have length {Xt.shape[0]} to match X_test, got shape {yt.shape}"
            )
        if Xt.shape[1] != X.shape[1]:
            raise ValueError(
                f"X_test must have D={X.shape[1]} columns like X, got shape {Xt.shape}"
            )
        for k, v in (("X", X), ("y", y), ("X_test", Xt), ("y_test", yt)):
            v.setflags(write=False)
            object.__setattr__(self, k, v)

    @property
    def n_train(self) -> int:
        """Number of training points P."""
        return self.X.shape[0]

    @property
    def n_test(self) -> int:
        """Number of test points P*."""
        return self.X_test.shape[0]

    @property
    def dim(self) -> int:
        """Input dimension D."""
        return self.X.shape[1]

    def to_attrs(self) -> dict[str, Any]:
        """netCDF-safe description of the data set."""
        out = {
            "data_name": self.name,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "dim": self.dim,
        }
        out.update({f"data_{k}": v for k, v in self.params})
        return out


def from_arrays(
    X: ArrayLike, y: ArrayLike, X_test: ArrayLike, y_test: ArrayLike, name: str = "arrays"
) -> Dataset:
    """Wrap the user's own arrays, validated (finite, 2-D X, matching lengths and dims)."""
    return Dataset(X, y, X_test, y_test, name=name)


def _count(name: str, n: Any, minimum: int = 1) -> int:
    """Validate a count; one-line error naming the parameter."""
    if isinstance(n, bool) or int(n) != n or int(n) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def ising(
    n_train: int = 64, n_test: int = 64, dim: int = 32, flip: float = 0.1, seed: int = 0
) -> Dataset:
    """Linearly separable Ising task: noisy copies of a domain-wall spin pattern or its negative.

    Prototype: +1 on the first half of the D spins, -1 on the second; label y = +1 for it and
    -1 for its negative; every spin of a sample flips independently with probability `flip`.
    """
    n_train, n_test = _count("n_train", n_train), _count("n_test", n_test)
    dim = _count("dim", dim, 2)
    if not 0.0 <= float(flip) < 0.5:
        raise ValueError(f"flip must be in [0, 0.5), got {flip!r}")
    rng = np.random.default_rng(seed)
    proto = np.where(np.arange(dim) < dim // 2, 1.0, -1.0)  # (D,)

    def draw(n):
        labels = rng.permutation(np.resize([1.0, -1.0], n))  # balanced classes
        flips = np.where(rng.random((n, dim)) < flip, -1.0, 1.0)  # (n, D)
        return labels[:, None] * proto[None, :] * flips, labels

    X, y = draw(n_train)
    Xt, yt = draw(n_test)
    return Dataset(X, y, Xt, yt, name="ising", params=(("flip", float(flip)), ("seed", int(seed))))


def teacher(
    n_train: int = 64,
    n_test: int = 64,
    dim: int = 32,
    activation: str = "linear",
    noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Gaussian inputs x ~ N(0, I_D), labels y = phi(u.x/sqrt(D)) + noise*N(0,1), u ~ N(0, I_D)."""
    from .activations import ACTIVATIONS, check_activation
    from .precision import float64

    n_train, n_test, dim = _count("n_train", n_train), _count("n_test", n_test), _count("dim", dim)
    check_activation(activation)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(dim)  # (D,)
    phi = ACTIVATIONS[activation]

    def draw(n):
        X = rng.standard_normal((n, dim))  # (n, D)
        with float64():  # phi is a jax function: labels must not depend on JAX's precision
            h = np.asarray(phi(X @ u / np.sqrt(dim)), dtype=float)  # (n,)
        return X, h + noise * rng.standard_normal(n)

    X, y = draw(n_train)
    Xt, yt = draw(n_test)
    return Dataset(
        X,
        y,
        Xt,
        yt,
        name="teacher",
        params=(("activation", activation), ("noise", float(noise)), ("seed", int(seed))),
    )


def xor(
    n_train: int = 64,
    n_test: int = 64,
    dim: int = 16,
    separation: float = 2.0,
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """XOR Gaussian mixture: x = separation*(s1 e1 + s2 e2) + noise*N(0, I_D), y = s1*s2.

    Not linearly separable: a linear network cannot fit it beyond the noise, a non-linear one can.
    """
    n_train, n_test = _count("n_train", n_train), _count("n_test", n_test)
    dim = _count("dim", dim, 2)
    if not np.isfinite(separation) or separation <= 0:
        raise ValueError(f"separation must be a finite number > 0, got {separation!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)

    def draw(n):
        s = rng.choice([-1.0, 1.0], size=(n, 2))  # (n, 2)
        X = noise * rng.standard_normal((n, dim))  # (n, D)
        X[:, :2] += separation * s
        return X, s[:, 0] * s[:, 1]

    X, y = draw(n_train)
    Xt, yt = draw(n_test)
    return Dataset(
        X,
        y,
        Xt,
        yt,
        name="xor",
        params=(("separation", float(separation)), ("noise", float(noise)), ("seed", int(seed))),
    )


DATASETS = {"ising": ising, "teacher": teacher, "xor": xor}


def make(name: str, **kwargs: Any) -> Dataset:
    """Build a named data set (`ising`, `teacher`, `xor`) from keyword parameters."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](**kwargs)
