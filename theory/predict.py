"""theory.predict: analytical predictions over a chi grid as an xarray.Dataset (float64)."""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from bayesnet.activations import ACTIVATIONS
from bayesnet.precision import with_float64

from . import adaptive, gp, kernels, rescaling

METHODS = ("nngp", "rescaling_tree", "tree", "one_loop", "exact")
ODD = ("linear", "erf", "tanh")


def check_chis(chis, spec) -> np.ndarray:
    """Validated, ascending-sorted chi grid (float64); one-line ValueError naming `chis`."""
    if chis is None:
        return np.array([spec.chi])
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
    return np.sort(arr)


def _check_method(method: str, activation: str) -> str:
    """Validate the method name and that the activation has a kernel."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation has no kernel: {activation!r}")
    return method


def _kernels(spec, data) -> dict:
    """Prior feature kernels: train (P, P), test-train (P*, P), test diagonal (P*,)."""
    a, g_v = spec.activation, spec.g_v
    return {"K": np.asarray(kernels.kernel(a, data.X, data.X, g_v)),
            "K_tt": np.asarray(kernels.kernel(a, data.X_test, data.X, g_v)),
            "k_test": np.asarray(kernels.kernel_diag(a, data.X_test, g_v))}


def _row(f_train, var_train, f_test, var_test, K_train, K_test_train, ubar=math.nan,
         converged=True, iterations=0, residual=0.0, normalisability=math.nan) -> dict:
    """One chi of the result, as plain numpy."""
    return dict(f_train=np.asarray(f_train), var_train=np.asarray(var_train),
                f_test=np.asarray(f_test), var_test=np.asarray(var_test),
                K_train=np.asarray(K_train), K_test_train=np.asarray(K_test_train),
                ubar=float(ubar), converged=bool(converged), iterations=int(iterations),
                residual=float(residual), normalisability=float(normalisability))


def _nngp(spec, data, chis, kern) -> list:
    """NNGP: GP with kernel g_w K^phi, noise kappa; variances / chi; ubar = g_w."""
    g, kap = spec.g_w, spec.kappa
    m_tr, v_tr, m_te, v_te = gp.gp_train_test(g * kern["K"], g * kern["K_tt"], g * kern["k_test"],
                                              data.y, kap)
    return [_row(m_tr, v_tr / chi, m_te, v_te / chi, kern["K"], kern["K_tt"], ubar=g)
            for chi in chis]


def _spectrum(spec, data, kern):
    """Eigenmodes of the train kernel (thin SVD of X for linear nets)."""
    if spec.activation == "linear":
        return rescaling.linear_spectrum(data.X, data.y, spec.g_v)
    return rescaling.spectrum(kern["K"], data.y)


def _rescaling(spec, data, chis, kern, trace: bool, kernel_mode: str) -> list:
    """Scalar rescaling at every chi; kernel_mode: 'rescaled' (ubar/g_w) K, 'tree' (sec 5.1),
    'one_loop' (sec 5.4)."""
    sp = _spectrum(spec, data, kern)
    B = sp.project(kern["K_tt"])  # (P*, r)
    N, g, kap, y = spec.width, spec.g_w, spec.kappa, data.y
    g_eff = g
    rows = []
    for chi in chis:
        u, it, res = rescaling.solve_ubar(sp, g, N, chi, kap, trace=trace, full_output=True)
        f_tr, v_tr, f_te, v_te = rescaling.rescaled_outputs(sp, B, kern["k_test"], u, chi, kap)
        delta = y - f_tr  # (P,)
        if trace:  # effective readout variance of the one-loop recipe (sec 4.4)
            g_eff = 1.0 / (1.0 / g + np.sum(sp.lam / (u * sp.lam + kap)) / N)
        c = adaptive.tilt_coefficient(g_eff if trace else g, chi, N, kap)
        norm = c * float(delta @ sp.U @ (sp.lam * (sp.U.T @ delta)))
        if kernel_mode == "rescaled":
            K_tr, K_te = (u / g) * kern["K"], (u / g) * kern["K_tt"]
        else:
            if kernel_mode == "one_loop":
                fl_tr, fl_te = rescaling.fluctuation_kernel(sp, B, u, kap)
            else:
                fl_tr, fl_te = np.zeros_like(kern["K"]), np.zeros_like(kern["K_tt"])
            K_tr, K_te = adaptive.linear_posterior_kernel(kern["K"], kern["K_tt"], fl_tr, fl_te,
                                                          f_tr, f_te, u, chi, N)
        rows.append(_row(f_tr, v_tr, f_te, v_te, K_tr, K_te, ubar=u, converged=res < 1e-8,
                         iterations=it, residual=res, normalisability=norm))
    return rows


def _assemble(rows, chis, spec, data, method) -> xr.Dataset:
    """Stack per-chi rows into the Dataset schema shared with theory.exact and analysis."""
    P, Pt = data.n_train, data.n_test
    st = lambda k: np.stack([r[k] for r in rows])  # noqa: E731
    f_tr, f_te = st("f_train"), st("f_test")
    K_tr = st("K_train")  # (chi, P, P)
    yhat = data.y / np.linalg.norm(data.y)
    ds = xr.Dataset(
        {"f_train": (("chi", "train"), f_tr), "f_test": (("chi", "test"), f_te),
         "var_train": (("chi", "train"), st("var_train")),
         "var_test": (("chi", "test"), st("var_test")),
         "discrepancy_train": (("chi", "train"), data.y[None] - f_tr),
         "discrepancy_test": (("chi", "test"), data.y_test[None] - f_te),
         "K_train": (("chi", "train", "train_"), K_tr),
         "K_test_train": (("chi", "test", "train_"), st("K_test_train")),
         "kernel_target": (("chi",), np.einsum("a,cab,b->c", yhat, K_tr, yhat)),
         "kernel_trace": (("chi",), np.trace(K_tr, axis1=1, axis2=2) / P),
         "ubar": (("chi",), st("ubar")), "converged": (("chi",), st("converged").astype(bool)),
         "iterations": (("chi",), st("iterations").astype(np.int64)),
         "residual": (("chi",), st("residual")),
         "normalisability": (("chi",), st("normalisability"))},
        coords={"chi": np.asarray(chis, float), "train": np.arange(P), "test": np.arange(Pt),
                "train_": np.arange(P)})
    attrs = {k: v for k, v in spec.to_attrs().items() if k != "chi"}
    attrs.update(data.to_attrs())
    attrs["method"] = method
    ds.attrs.update(attrs)
    return ds


def _exact(spec, data, chis):
    """Dispatch to theory.exact.predict_exact (written separately), imported lazily."""
    try:
        from .exact import predict_exact
    except ImportError as err:
        raise ValueError(f"method 'exact' is unavailable: theory.exact.predict_exact cannot be "
                         f"imported ({err})") from None
    return predict_exact(spec, data, chis)


@with_float64
def predict(spec, data, chis=None, method: str = "one_loop", **options) -> xr.Dataset:
    """Theory predictions for `spec` on `data` at every chi (float64 xarray.Dataset over `chi`).

    chis: None means [spec.chi]; any order is accepted and the grid is SORTED ascending
    (annealing needs it); values must be finite and > 0.
    method:
      "nngp"           GP with kernel g_w K^phi, noise kappa (chi-independent mean, var / chi).
      "rescaling_tree" scalar kernel rescaling ubar K^phi, tree level (no trace term); reported
                       kernel is the rescaled prior (ubar/g_w) K^phi.
      "tree"           multi-scale adaptive saddle point: linear nets closed form (sec 5.1/5.2),
                       non-linear nets tilted-measure solve f = (g_w/kappa) Q(f)(y - f), annealed.
      "one_loop"       linear nets: rescaling with the trace term (sec 5.3), kernel of sec 5.4;
                       non-linear nets: the tree solve with the effective readout variance
                       g_w,eff of sec 4.4 (proportional-limit approximation, heuristic).
      "exact"          theory.exact.predict_exact.
    Variables: f_train, f_test, var_train, var_test, discrepancy_train/test = y - f, K_train,
    K_test_train (posterior mean hidden kernel (1/N) sum <phi phi^T>), kernel_target,
    kernel_trace, ubar (effective readout scale, g_w for nngp), converged, iterations, residual,
    normalisability (c Delta^T K Delta; NaN for nngp).  options go to the non-linear solver.
    """
    _check_method(method, spec.activation)
    chis = check_chis(chis, spec)
    if method == "exact":
        return _exact(spec, data, chis)
    kern = _kernels(spec, data)
    if method == "nngp":
        rows = _nngp(spec, data, chis, kern)
    elif method == "rescaling_tree":
        rows = _rescaling(spec, data, chis, kern, trace=False, kernel_mode="rescaled")
    elif spec.activation == "linear":
        rows = _rescaling(spec, data, chis, kern, trace=method == "one_loop",
                          kernel_mode="one_loop" if method == "one_loop" else "tree")
    else:
        from . import tilted
        rows = tilted.anneal(spec, data, chis, kern, one_loop=method == "one_loop",
                             odd=spec.activation in ODD, **options)
        ds = _assemble(rows, chis, spec, data, method)
        ds.attrs["ess"] = np.array([r["ess"] for r in rows])  # importance-sampling ESS per chi
        ds.attrs["population_refreshes"] = np.array([r["refreshes"] for r in rows])
        return ds
    return _assemble(rows, chis, spec, data, method)
