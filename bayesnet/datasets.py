"""Data sets the posteriors are studied on: Ising task, teachers, XOR, real images, user arrays.

Every set is a `Dataset` of float64 numpy arrays X (P, D), y (P,), X_test (P*, D), y_test (P*,).
The real-image tasks (`digits`, `mnist`, `cifar10`) are binary class pairs with labels +1 / -1,
read through scikit-learn (imported lazily: the synthetic sets do not need it).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
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


# ------------------------------------------------------------------ real images, class pairs


def data_home() -> pathlib.Path:
    """Cache folder of the downloaded image sets: $BAYESNET_DATA or ~/.cache/bayesnet/data."""
    env = os.environ.get("BAYESNET_DATA")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache/bayesnet/data"


# name -> (OpenML data set name, number of pixels, number of classes)
OPENML = {"mnist": ("mnist_784", 784, 10), "cifar10": ("CIFAR_10", 3072, 10)}


def _openml_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (n, pixels) uint8 and integer labels (n,) of an OpenML set, cached as .npz.

    The first call downloads through scikit-learn's `fetch_openml` into `data_home()` and keeps
    a compact copy `<openml name>.npz` (arrays X, y) there; later calls read only that file.
    """
    openml_name, n_pix, _ = OPENML[name]
    home = data_home()
    path = home / f"{openml_name}.npz"
    if not path.is_file():
        try:
            from sklearn.datasets import fetch_openml

            home.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # its retry warnings; the error below says it all
                warnings.simplefilter("ignore")
                X, y = fetch_openml(
                    openml_name,
                    version=1,
                    data_home=str(home),
                    return_X_y=True,
                    as_frame=False,
                    n_retries=1,
                    delay=0.5,
                )
            X, y = np.asarray(X, dtype=np.uint8), np.asarray(y).astype(np.int64)
            np.savez_compressed(path, X=X, y=y)
        except Exception as err:  # no network, a firewall, a broken download: say what to do
            reason = " ".join(str(err).split()) or type(err).__name__
            raise FileNotFoundError(
                f"{name}: cannot fetch OpenML '{openml_name}' ({reason[:120]}); put "
                f"{path.name} with arrays X (n, {n_pix}) uint8 and y (n,) int labels into "
                f"{home} (or set BAYESNET_DATA to its folder)"
            ) from None
    with np.load(path, allow_pickle=False) as npz:
        return npz["X"], npz["y"]


def _check_pair(n_train, n_test, dim, pos_class, neg_class, n_classes) -> tuple[int, int, int]:
    """Validate the arguments of a class-pair task (before any download); the three counts."""
    n_train, n_test, dim = _count("n_train", n_train), _count("n_test", n_test), _count("dim", dim)
    for key, c in (("pos_class", pos_class), ("neg_class", neg_class)):
        if isinstance(c, bool) or int(c) != c or not 0 <= int(c) < n_classes:
            raise ValueError(f"{key} must be a class index in 0..{n_classes - 1}, got {c!r}")
    if int(pos_class) == int(neg_class):
        raise ValueError(f"pos_class and neg_class must differ, got {pos_class!r} twice")
    return n_train, n_test, dim


def _pair_task(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    n_train: int,
    n_test: int,
    dim: int,
    pos_class: int,
    neg_class: int,
    seed: int,
) -> Dataset:
    """Binary task of two classes: y = +1 for `pos_class`, -1 for `neg_class`, balanced.

    Disjoint train and test points are drawn with `seed`.  Standardisation uses the training
    images only: pixels are centred, projected onto the top `dim` principal directions, and
    scaled by one number so that the mean squared training norm is `dim` (the input kernel
    (g_v/D) x.x then has mean diagonal g_v, as for the synthetic sets).  One global scale, not
    one per pixel, keeps the decaying spectrum of real images and leaves rare pixels small.
    """
    n_train, n_test, dim = _check_pair(n_train, n_test, dim, pos_class, neg_class, n_classes)
    rng = np.random.default_rng(seed)
    n_pos_tr, n_pos_te = -(-n_train // 2), -(-n_test // 2)
    picks = []
    for c, n_tr, n_te in (
        (pos_class, n_pos_tr, n_pos_te),
        (neg_class, n_train - n_pos_tr, n_test - n_pos_te),
    ):
        idx = np.flatnonzero(labels == int(c))
        if n_tr + n_te > idx.size:
            raise ValueError(
                f"n_train + n_test = {n_train + n_test} needs {n_tr + n_te} images of class "
                f"{c} in {name}, which has {idx.size}"
            )
        idx = rng.permutation(idx)
        picks.append((idx[:n_tr], idx[n_tr : n_tr + n_te]))
    tr = rng.permutation(np.concatenate([picks[0][0], picks[1][0]]))
    te = rng.permutation(np.concatenate([picks[0][1], picks[1][1]]))
    y_of = lambda ix: np.where(labels[ix] == int(pos_class), 1.0, -1.0)
    X = np.asarray(images[tr], dtype=np.float64)  # (P, pixels)
    Xt = np.asarray(images[te], dtype=np.float64)  # (P*, pixels)
    mu = X.mean(axis=0)  # (pixels,)
    X, Xt = X - mu, Xt - mu
    _, s, Vt = np.linalg.svd(X, full_matrices=False)  # Vt (r, pixels)
    rank = int(np.sum(s > 1e-8 * s[0]))
    if dim > rank:
        raise ValueError(
            f"dim must be <= {rank} (rank of the {n_train} centred training images of "
            f"{name}), got {dim}"
        )
    X, Xt = X @ Vt[:dim].T, Xt @ Vt[:dim].T  # (P, D), (P*, D)
    scale = np.sqrt(dim / np.mean(np.sum(X**2, axis=1)))
    params = (
        ("pos_class", int(pos_class)),
        ("neg_class", int(neg_class)),
        ("seed", int(seed)),
    )
    return Dataset(scale * X, y_of(tr), scale * Xt, y_of(te), name=name, params=params)


def digits(
    n_train: int = 100,
    n_test: int = 100,
    dim: int = 32,
    pos_class: int = 1,
    neg_class: int = 7,
    seed: int = 0,
) -> Dataset:
    """8x8 handwritten digits (scikit-learn's bundled copy, offline), two classes, +1 / -1.

    About 180 images per class; inputs centred, projected to `dim` principal directions and
    scaled (see `_pair_task`).
    """
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)  # (1797, 64), (1797,)
    return _pair_task(
        "digits", images, labels, 10, n_train, n_test, dim, pos_class, neg_class, seed
    )


def mnist(
    n_train: int = 500,
    n_test: int = 500,
    dim: int = 50,
    pos_class: int = 1,
    neg_class: int = 7,
    seed: int = 0,
) -> Dataset:
    """MNIST (OpenML 'mnist_784', 70000 images 28x28), two classes, +1 / -1, projected to `dim`.

    Downloaded once into `data_home()`; offline, a one-line FileNotFoundError says which file to
    put where.
    """
    _check_pair(n_train, n_test, dim, pos_class, neg_class, 10)
    images, labels = _openml_arrays("mnist")
    return _pair_task("mnist", images, labels, 10, n_train, n_test, dim, pos_class, neg_class, seed)


def cifar10(
    n_train: int = 500,
    n_test: int = 500,
    dim: int = 50,
    pos_class: int = 3,
    neg_class: int = 5,
    seed: int = 0,
) -> Dataset:
    """CIFAR-10 (OpenML 'CIFAR_10', 60000 colour images 32x32x3), two classes (default cat 3 vs
    dog 5), +1 / -1, projected to `dim`.  Downloaded once into `data_home()` like `mnist`."""
    _check_pair(n_train, n_test, dim, pos_class, neg_class, 10)
    images, labels = _openml_arrays("cifar10")
    return _pair_task(
        "cifar10", images, labels, 10, n_train, n_test, dim, pos_class, neg_class, seed
    )


DATASETS = {
    "ising": ising,
    "teacher": teacher,
    "xor": xor,
    "digits": digits,
    "mnist": mnist,
    "cifar10": cifar10,
}


def make(name: str, **kwargs: Any) -> Dataset:
    """Build a named data set (`ising`, `teacher`, `xor`, `digits`, `mnist`, `cifar10`)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](**kwargs)
