"""The result of a sampler run: the DataTree schema, its attributes, versions and the progress bar.

Both samplers (`sampling` for NUTS, `exact` for linear networks) build their output here, so
neither imports the other.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import xarray as xr

from .datasets import Dataset
from .spec import NetworkSpec
from .vocabulary import describe

# posterior variables per draw and their dimensions besides (chain, draw)
POSTERIOR_VARS = {
    "f_train": ("train",),
    "f_test": ("test",),
    "var_train": ("train",),
    "var_test": ("test",),
    "kernel_target": (),
    "kernel_trace": (),
    "kernel_alignment": (),
    "layer_kernel_target": ("layer",),  # depth > 1 only: every hidden layer's kernel
    "layer_kernel_trace": ("layer",),
    "layer_kernel_alignment": ("layer",),
}
# what f_train/f_test hold per draw: a draw of f, or its Rao-Blackwellised mean (README)
F_PER_DRAW = {
    "full": "a posterior draw of f",
    "collapsed": "E[f | V], Rao-Blackwellised over the readout: not a draw of f",
    "exact": "E[f | s, y], Rao-Blackwellised given the readout scale: not a draw of f",
}
# per-draw sampler statistics (each sampler reports the ones that are meaningful for it)
STATS_VARS = (
    "diverging",
    "tree_depth",
    "n_steps",
    "step_size",
    "energy",
    "acceptance_rate",
    "lp",
    "log_s",
)


def versions() -> dict[str, str]:
    """Package versions recorded with every result."""
    import numpyro

    from . import __version__

    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "bayesnet": __version__,
    }


def progress_bar(enabled: bool, total: int, desc: str) -> tuple[Any, Callable[[int, str], None]]:
    """A tqdm bar over sampler steps and its update(n, phase); (None, no-op) when disabled.

    Updated per chunk, so it costs nothing inside the compiled sampler.
    """
    if not enabled:
        return None, (lambda n, phase: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def update(n: int, phase: str) -> None:
        bar.set_postfix_str(phase, refresh=False)
        bar.update(n)

    return bar, update


def run_attrs(spec: NetworkSpec, data: Dataset, **extra: Any) -> dict[str, Any]:
    """netCDF-safe root attributes: spec, data, run settings, versions, creation time."""
    attrs = dict(spec.to_attrs())
    attrs.update(data.to_attrs())
    for k, v in extra.items():
        if isinstance(v, dict):
            attrs.update({f"{k}_{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, bool):
            attrs[k] = int(v)
        else:
            attrs[k] = v
    attrs["versions"] = json.dumps(versions())
    attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return attrs


def to_datatree(
    draws_out: Mapping[str, np.ndarray], ksums: tuple, spec: NetworkSpec, data: Dataset, **run: Any
) -> xr.DataTree:
    """Assemble per-draw arrays (chain, draw, ...) and kernel sums into the labelled result tree.

    ksums = (sum of K_train, sum of K_test_train[, number of draws summed]); without the count
    every draw is taken to be in the sums.
    """
    C, S = draws_out["f_train"].shape[:2]
    coords = {
        "chain": np.arange(C),
        "draw": np.arange(S),
        "train": np.arange(data.n_train),
        "test": np.arange(data.n_test),
    }
    if "layer_kernel_target" in draws_out:
        coords["layer"] = np.arange(1, draws_out["layer_kernel_target"].shape[2] + 1)
    post = xr.Dataset(
        {
            k: (("chain", "draw") + dims, draws_out[k])
            for k, dims in POSTERIOR_VARS.items()
            if k in draws_out
        },
        coords=coords,
    )
    if run.get("method") in F_PER_DRAW:  # what a per-draw f_train is, for this sampler
        post.attrs["f_per_draw"] = F_PER_DRAW[run["method"]]
    stats = xr.Dataset(
        {k: (("chain", "draw"), draws_out[k]) for k in STATS_VARS if k in draws_out},
        coords={"chain": coords["chain"], "draw": coords["draw"]},
    )
    n = ksums[2] if len(ksums) > 2 else C * S  # draws summed into the kernel
    kern = xr.Dataset(
        {
            "K_train": (("train", "train_"), np.asarray(ksums[0]) / n),
            "K_test_train": (("test", "train_"), np.asarray(ksums[1]) / n),
        },
        coords={"train": coords["train"], "train_": coords["train"], "test": coords["test"]},
    )
    obs = xr.Dataset(
        {"y": (("train",), data.y), "y_test": (("test",), data.y_test)},
        coords={"train": coords["train"], "test": coords["test"]},
    )
    const = xr.Dataset(
        {"X": (("train", "feature"), data.X), "X_test": (("test", "feature"), data.X_test)},
        coords={"train": coords["train"], "test": coords["test"]},
    )
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "sample_stats": stats,
            "kernel": kern,
            "observed_data": obs,
            "constant_data": const,
        }
    )
    tree.attrs = run_attrs(spec, data, **run)
    return describe(tree)  # long_name/units on every variable (bayesnet/vocabulary.py)
