"""The prediction schema shared by every theory method: chi validation, per-chi rows, Dataset.

`theory.predict` (approximate methods) and `theory.exact` (exact linear results) both build their
xarray.Dataset here, so the variables, dimensions and attributes have one definition.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import xarray as xr

from bayesnet.datasets import Dataset
from bayesnet.observables import kernel_scalars
from bayesnet.spec import NetworkSpec
from bayesnet.vocabulary import describe

LONG_NAMES = {
    "f_train": "posterior mean output, train points",
    "f_test": "posterior mean output, test points",
    "var_train": "posterior output variance, train points",
    "var_test": "posterior output variance, test points",
    "discrepancy_train": "y - f_train",
    "discrepancy_test": "y_test - f_test",
    "K_train": "posterior mean hidden kernel (1/N) sum <phi phi^T>, train block",
    "K_test_train": "posterior mean hidden kernel, test-train block",
    "kernel_target": "yhat^T K_train yhat (target alignment of the hidden kernel)",
    "kernel_trace": "tr K_train / P",
    "ubar": "effective readout scale",
    "converged": "solver converged",
    "iterations": "solver iterations",
    "residual": "solver residual (max abs)",
    "normalisability": "c Delta^T K Delta (linear tilt normalisable iff < 1)",
    "status": "'converged', or why the solve did not converge (its outputs are then NaN)",
}
OUTPUTS = ("f_train", "var_train", "f_test", "var_test", "K_train", "K_test_train", "ubar")
CONVERGED = "converged"  # the status of a row whose numbers are valid
# the theory's own Monte-Carlo error is reported for these (docs/one_loop.md)
MCSE_VARS = ("f_train", "f_test", "var_train", "var_test", "kernel_target", "kernel_trace")


class PriorKernels(NamedTuple):
    """Prior feature kernels K^phi: train K (P, P), test-train K_test_train (P*, P), test
    diagonal k_test (P*,); dimensionless."""

    K: np.ndarray
    K_test_train: np.ndarray
    k_test: np.ndarray


class Row(NamedTuple):
    """One chi of a prediction, numpy: outputs (units of y), variances (y^2), kernels."""

    f_train: np.ndarray
    var_train: np.ndarray
    f_test: np.ndarray
    var_test: np.ndarray
    K_train: np.ndarray
    K_test_train: np.ndarray
    ubar: float = math.nan
    converged: bool = True
    iterations: int = 0
    residual: float = 0.0
    normalisability: float = math.nan
    status: str = CONVERGED


def not_converged(row: Row, reason: str) -> Row:
    """The row with every output NaN (shapes kept), converged=False and status=reason; the
    solver diagnostics (iterations, residual, normalisability) are kept."""
    nan = {k: np.full(np.shape(getattr(row, k)), np.nan) for k in OUTPUTS}
    nan["ubar"] = math.nan
    return row._replace(converged=False, status=reason, **nan)


def reason(row: Row, ess: float | None = None, ess_min: float | None = None) -> str:
    """Why a row did not converge, in one line (normalisability, ESS, residual)."""
    out = []
    if np.isfinite(row.normalisability) and row.normalisability >= 1:
        out.append(f"normalisability {row.normalisability:.3g} >= 1")
    if ess is not None and ess_min is not None and ess < ess_min:
        out.append(f"importance-sampling ESS {ess:.0f} < ess_min {ess_min:.0f}")
    if not out or row.residual > 1e-8:
        out.append(f"residual {row.residual:.1e} after {row.iterations} iterations")
    return "; ".join(out)


def finalise(rows: list[Row], chis, method: str, normalisability: bool = False) -> list[Row]:
    """Rows that did not converge (or have non-finite outputs, or with normalisability=True a
    linear tilt c Delta^T K Delta >= 1, i.e. no normalisable measure) become NaN with their
    status; one RuntimeWarning line per such chi naming the method, chi and the reason."""
    out = []
    for chi, r in zip(chis, rows):
        finite = all(np.all(np.isfinite(getattr(r, k))) for k in OUTPUTS[:-1])
        if r.converged and not finite:
            r = r._replace(converged=False, status="non-finite outputs")
        if r.converged and normalisability and r.normalisability >= 1:
            r = r._replace(converged=False, status=f"normalisability {r.normalisability:.3g} >= 1")
        if not r.converged:
            why = r.status if r.status != CONVERGED else reason(r)
            warnings.warn(
                f"theory.predict: {method} did not converge at chi={float(chi):g}: {why}; "
                "its outputs are NaN",
                RuntimeWarning,
                stacklevel=3,
            )
            r = not_converged(r, why)
        out.append(r)
    return out


def mcse_vars(rows: list[Row], mcse: dict | None = None) -> dict:
    """assemble's `extra` entries <v>_mcse for v in MCSE_VARS: the given (n_chi, ...) standard
    errors, zeros for closed forms (mcse=None); NaN where a row did not converge."""
    bad = np.array([not r.converged for r in rows])
    out = {}
    for k in MCSE_VARS:
        dims = ("train",) if k.endswith("_train") else ("test",) if k.endswith("_test") else ()
        shape = (len(rows),) + (np.shape(getattr(rows[0], k)) if dims else ())
        arr = np.zeros(shape) if mcse is None else np.array(mcse[k], float).reshape(shape)
        arr[bad] = np.nan
        out[f"{k}_mcse"] = (dims, arr, f"the theory's own Monte-Carlo standard error of {k}")
    return out


def check_chis(chis, default: float, sort: bool = True) -> np.ndarray:
    """Validated, ascending chi grid (float64); None means [default].

    One-line ValueError naming `chis` for anything that is not a non-empty 1-D finite positive
    sequence of numbers; sort=False requires the grid to be ascending already instead of sorting.
    """
    if chis is None:
        return np.array([float(default)])
    try:
        arr = np.atleast_1d(np.asarray(chis, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"chis must be a sequence of numbers, got {chis!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"chis must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"chis must be finite (no NaN/inf), got {arr.tolist()}")
    if np.any(arr <= 0):
        raise ValueError(f"chis must all be > 0, got {arr.tolist()}")
    if not sort and np.any(np.diff(arr) < 0):
        raise ValueError(f"chis must be sorted ascending, got {arr.tolist()}")
    return np.sort(arr)


def spec_attrs(spec: NetworkSpec) -> dict:
    """The spec's netCDF attributes without chi (chi is the Dataset's coordinate)."""
    return spec.to_attrs(chi=False)


def assemble(
    rows: list[Row], chis, spec: NetworkSpec, data: Dataset, method: str, extra: dict | None = None
) -> xr.Dataset:
    """Stack per-chi rows into the prediction Dataset over `chi`.

    extra: name -> (dims without chi, (n_chi, ...) array, long_name) for method-specific
    variables (exact s moments, correction sizes and Monte-Carlo errors, ...).  A row that did
    not converge has NaN outputs (`not_converged`): its kernel scalars are NaN too.
    """
    P, Pt = data.n_train, data.n_test
    st = lambda k: np.stack([np.asarray(getattr(r, k)) for r in rows])  # noqa: E731
    f_tr, f_te = st("f_train"), st("f_test")
    K_tr = st("K_train")  # (chi, P, P)
    scalars = kernel_scalars(K_tr, np.asarray(data.y))  # (chi,) each
    variables = {
        "f_train": (("chi", "train"), f_tr),
        "f_test": (("chi", "test"), f_te),
        "var_train": (("chi", "train"), st("var_train")),
        "var_test": (("chi", "test"), st("var_test")),
        "discrepancy_train": (("chi", "train"), np.asarray(data.y)[None] - f_tr),
        "discrepancy_test": (("chi", "test"), np.asarray(data.y_test)[None] - f_te),
        "K_train": (("chi", "train", "train_"), K_tr),
        "K_test_train": (("chi", "test", "train_"), st("K_test_train")),
        "kernel_target": (("chi",), scalars["kernel_target"]),
        "kernel_trace": (("chi",), scalars["kernel_trace"]),
        "ubar": (("chi",), st("ubar").astype(np.float64)),
        "converged": (("chi",), st("converged").astype(bool)),
        "iterations": (("chi",), st("iterations").astype(np.int64)),
        "residual": (("chi",), st("residual").astype(np.float64)),
        "normalisability": (("chi",), st("normalisability").astype(np.float64)),
        "status": (("chi",), np.array([str(r.status) for r in rows], dtype=str)),
    }
    long_names = dict(LONG_NAMES)
    for name, (dims, arr, long_name) in (extra or {}).items():
        variables[name] = (("chi",) + tuple(dims), np.asarray(arr))
        long_names[name] = long_name
    ds = xr.Dataset(
        variables,
        coords={
            "chi": np.asarray(chis, float),
            "train": np.arange(P),
            "test": np.arange(Pt),
            "train_": np.arange(P),
        },
    )
    for name, long_name in long_names.items():
        ds[name].attrs["long_name"] = long_name
    ds.attrs.update(spec_attrs(spec))
    ds.attrs.update(data.to_attrs())
    ds.attrs["method"] = method
    return describe(ds)  # units and coordinate names (bayesnet/vocabulary.py)
