"""theory.predict: analytical predictions over a chi grid as an xarray.Dataset (float64).

The methods, their orders and their names are documented in `predict`'s docstring and in
docs/one_loop.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

from bayesnet import gp
from bayesnet.activations import ODD, check_activation
from bayesnet.datasets import Dataset
from bayesnet.precision import with_float64
from bayesnet.spec import NetworkSpec

from . import adaptive, dressed, fluctuation, kernels, rescaling
from .schema import PriorKernels, Row, assemble, check_chis

METHODS = (
    "nngp",
    "rescaling_tree",
    "rescaling_one_loop",
    "tree",
    "one_loop",
    "laplace_one_loop",
    "exact",
)
LINEAR_ONLY = ("laplace_one_loop", "exact")  # methods that exist for linear networks only
ORDERS = ("dressed", "first")


class Corrected(NamedTuple):
    """A fluctuation correction at one chi: shifts (P,), (P*,) added to the tree level, their
    batch-means standard errors (same shapes; zeros for closed forms), and the tree outputs."""

    shift_train: np.ndarray
    shift_test: np.ndarray
    se_train: np.ndarray
    se_test: np.ndarray
    tree_train: np.ndarray
    tree_test: np.ndarray


def _check(method: str, activation: str, order: str) -> None:
    """One-line ValueErrors naming `method`, `activation` or `order`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    check_activation(activation)
    if method in LINEAR_ONLY and activation != "linear":
        raise ValueError(
            f"method {method!r} exists for linear networks only, got activation={activation!r}"
        )
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")


def _kernels(spec, data) -> PriorKernels:
    """Prior feature kernels: train (P, P), test-train (P*, P), test diagonal (P*,)."""
    a, g_v = spec.activation, spec.g_v
    return PriorKernels(
        np.asarray(kernels.kernel(a, data.X, data.X, g_v)),
        np.asarray(kernels.kernel(a, data.X_test, data.X, g_v)),
        np.asarray(kernels.kernel_diag(a, data.X_test, g_v)),
    )


def _nngp(spec, data, chis, kern: PriorKernels) -> list[Row]:
    """NNGP: GP with kernel g_w K^phi, noise kappa; variances / chi; ubar = g_w."""
    g, kap = spec.g_w, spec.kappa
    m_tr, v_tr, m_te, v_te = gp.gp_train_test(
        g * kern.K, g * kern.K_test_train, g * kern.k_test, data.y, kap
    )
    return [
        Row(
            np.asarray(m_tr),
            np.asarray(v_tr) / chi,
            np.asarray(m_te),
            np.asarray(v_te) / chi,
            kern.K,
            kern.K_test_train,
            ubar=g,
        )
        for chi in chis
    ]


def _spectrum(spec, data, kern: PriorKernels) -> rescaling.Spectrum:
    """Eigenmodes of the train kernel (thin SVD of X for linear nets)."""
    if spec.activation == "linear":
        return rescaling.linear_spectrum(data.X, data.y, spec.g_v)
    return rescaling.spectrum(kern.K, data.y)


def _rescaling(spec, data, chis, kern: PriorKernels, trace: bool, kernel_mode: str) -> list[Row]:
    """Scalar rescaling at every chi; kernel_mode: 'rescaled' (ubar/g_w) K, 'tree' (rank-one
    adapted kernel of the linear tree level), 'one_loop' (linear posterior kernel with the
    fluctuation term)."""
    sp = _spectrum(spec, data, kern)
    B = sp.project(kern.K_test_train)  # (P*, r)
    N, g, kap, y = spec.width, spec.g_w, spec.kappa, data.y
    rows = []
    for chi in chis:
        u, it, res = rescaling.solve_ubar(sp, g, N, chi, kap, trace=trace, full_output=True)
        f_tr, v_tr, f_te, v_te = rescaling.rescaled_outputs(sp, B, kern.k_test, u, chi, kap)
        delta = y - f_tr  # (P,)
        c = adaptive.tilt_coefficient(g, chi, N, kap)
        norm = c * float(delta @ sp.U @ (sp.lam * (sp.U.T @ delta)))
        if kernel_mode == "rescaled":
            K_tr, K_te = (u / g) * kern.K, (u / g) * kern.K_test_train
        else:
            if kernel_mode == "one_loop":
                fl_tr, fl_te = rescaling.fluctuation_kernel(sp, B, u, kap)
            else:
                fl_tr, fl_te = np.zeros_like(kern.K), np.zeros_like(kern.K_test_train)
            K_tr, K_te = adaptive.linear_posterior_kernel(
                kern.K, kern.K_test_train, fl_tr, fl_te, f_tr, f_te, u, chi, N
            )
        rows.append(
            Row(
                f_tr,
                v_tr,
                f_te,
                v_te,
                K_tr,
                K_te,
                ubar=u,
                converged=res < 1e-8,
                iterations=it,
                residual=res,
                normalisability=norm,
            )
        )
    return rows


def _linear_one_loop(spec, data, chis, kern: PriorKernels, order: str) -> tuple[list[Row], list]:
    """Linear nets without Monte Carlo: the closed-form tree level plus, for order="first", the
    Wick closed form of the first-order shift, for order="dressed" the dressed correction on the
    exact Gaussian moments of the tilted measure (dressed.linear_tilted_sample, a cubature)."""
    rows = _rescaling(spec, data, chis, kern, trace=False, kernel_mode="tree")
    K, Kt, y = kern.K, kern.K_test_train, np.asarray(data.y)
    out = []
    for chi, row in zip(chis, rows):
        if order == "first":
            delta = y - row.f_train  # (P,)
            c = adaptive.tilt_coefficient(spec.g_w, chi, spec.width, spec.kappa)
            Q = adaptive.adapted_kernel(K, delta, c)  # (P, P) tilted covariance
            Q_t = adaptive.adapted_cross_kernel(K, Kt, delta, c)  # (P*, P)
            s_tr, s_te = (
                np.asarray(x)
                for x in fluctuation.linear_first_order_shift(
                    Q, Q_t, y, spec.g_w, spec.kappa, spec.width
                )
            )
        else:
            t = dressed.linear_tilted_sample(
                np.asarray(data.X),
                np.asarray(data.X_test),
                y,
                row.f_train,
                spec.g_v,
                spec.g_w,
                spec.kappa,
                chi,
                spec.width,
            )
            _, _, s_tr, s_te = _shift(t, order)
        out.append(
            Corrected(s_tr, s_te, np.zeros_like(s_tr), np.zeros_like(s_te), row.f_train, row.f_test)
        )
    return rows, out


def _shift(
    t: fluctuation.TiltedSample, order: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tree train, tree test, shift train, shift test) of one correction on one sample."""
    if order == "first":
        return tuple(np.asarray(x) for x in fluctuation.first_order_shift(t))
    Q, Q_t = fluctuation.tilted_kernels(t)
    _, a = fluctuation.gp_algebra(Q, t.g_w, t.kappa, t.y)
    tr, te = np.asarray(t.g_w * Q @ a), np.asarray(t.g_w * Q_t @ a)
    f_tr, f_te = dressed.dressed_correction(t)
    return tr, te, np.asarray(f_tr) - tr, np.asarray(f_te) - te


def _sampled_correction(order: str, n_batches: int):
    """at_solution callback of tilted.anneal: the correction on all draws, and its standard
    error from batch means over n_batches disjoint batches of the draws (0: no error)."""

    def correct(t: fluctuation.TiltedSample) -> Corrected:
        tr, te, s_tr, s_te = _shift(t, order)
        se_tr, se_te = np.full_like(s_tr, np.nan), np.full_like(s_te, np.nan)
        if n_batches >= 2:
            parts = [_shift(b, order)[2:] for b in fluctuation.batches(t, n_batches)]
            b_tr, b_te = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
            se_tr = np.std(b_tr, axis=0, ddof=1) / np.sqrt(n_batches)  # (P,)
            se_te = np.std(b_te, axis=0, ddof=1) / np.sqrt(n_batches)  # (P*,)
        return Corrected(s_tr, s_te, se_tr, se_te, tr, te)

    return correct


def _correction_vars(corr: list[Corrected]) -> dict:
    """Per-chi correction variables for the Dataset: shifts, relative sizes and MC errors."""
    n = lambda x: float(np.linalg.norm(x))  # noqa: E731
    st = lambda k: np.stack([getattr(c, k) for c in corr])  # noqa: E731
    rel = lambda k, ref: np.array([n(getattr(c, k)) / n(getattr(c, ref)) for c in corr])  # noqa
    return {
        "correction_train": (
            ("train",),
            st("shift_train"),
            "fluctuation correction f - f_tree, train points",
        ),
        "correction_test": (
            ("test",),
            st("shift_test"),
            "fluctuation correction f - f_tree, test points",
        ),
        "correction_size_train": (
            (),
            rel("shift_train", "tree_train"),
            "|f - f_tree| / |f_tree|, train points",
        ),
        "correction_size_test": (
            (),
            rel("shift_test", "tree_test"),
            "|f - f_tree| / |f_tree|, test points",
        ),
        "correction_mcse_train": (
            (),
            rel("se_train", "tree_train"),
            "|Monte-Carlo standard error of the correction| / |f_tree|, "
            "train points (batch means over the draws; 0 closed form)",
        ),
        "correction_mcse_test": (
            (),
            rel("se_test", "tree_test"),
            "|Monte-Carlo standard error of the correction| / |f_tree|, "
            "test points (batch means over the draws; 0 closed form)",
        ),
    }


def _nan_correction(row: Row) -> Corrected:
    """The correction of a row that did not converge (no tilted sample): NaN shifts."""
    nan = lambda a: np.full_like(np.asarray(a, float), np.nan)  # noqa: E731
    f_tr, f_te = row.f_train, row.f_test
    return Corrected(nan(f_tr), nan(f_te), nan(f_tr), nan(f_te), f_tr, f_te)


def _apply(rows: list[Row], corr: list[Corrected]) -> list[Row]:
    """Tree-level rows with the corrected means (variances and kernels stay tree level)."""
    return [
        r._replace(f_train=r.f_train + c.shift_train, f_test=r.f_test + c.shift_test)
        for r, c in zip(rows, corr)
    ]


def _laplace(spec, data, chis, kern: PriorKernels) -> tuple[list[Row], list[Corrected]]:
    """Linear nets: Laplace one-loop in the scale s; variances and kernel at ubar = g_w s*."""
    sp = _spectrum(spec, data, kern)
    B = sp.project(kern.K_test_train)  # (P*, r)
    N, g, kap, y = spec.width, spec.g_w, spec.kappa, np.asarray(data.y)
    rows, corr = [], []
    for chi in chis:
        lp = fluctuation.laplace_one_loop(sp.lam, sp.U, B, y, g, N, chi, kap)
        u = g * lp.s_mode
        _, v_tr, _, v_te = rescaling.rescaled_outputs(sp, B, kern.k_test, u, chi, kap)
        fl_tr, fl_te = rescaling.fluctuation_kernel(sp, B, u, kap)
        K_tr, K_te = adaptive.linear_posterior_kernel(
            kern.K, kern.K_test_train, fl_tr, fl_te, lp.f_train, lp.f_test, u, chi, N
        )
        delta = y - lp.f_train
        c = adaptive.tilt_coefficient(g, chi, N, kap)
        norm = c * float(delta @ sp.U @ (sp.lam * (sp.U.T @ delta)))
        rows.append(
            Row(lp.f_train, v_tr, lp.f_test, v_te, K_tr, K_te, ubar=u, normalisability=norm)
        )
        s_tr, s_te = lp.f_train - lp.f_mode_train, lp.f_test - lp.f_mode_test
        corr.append(
            Corrected(
                s_tr,
                s_te,
                np.zeros_like(s_tr),
                np.zeros_like(s_te),
                lp.f_mode_train,
                lp.f_mode_test,
            )
        )
    return rows, corr


def _tilted(spec, data, chis, kern: PriorKernels, correct, options: dict):
    """Non-linear (or sampled linear) tree level over the chi grid; returns (rows, extras,
    attrs)."""
    from . import tilted

    res = tilted.anneal(
        spec, data, chis, kern, odd=spec.activation in ODD, at_solution=correct, **options
    )
    attrs = {
        "ess": np.array([r.ess for r in res]),  # importance-sampling ESS per chi
        "population_refreshes": np.array([r.refreshes for r in res]),
    }
    return [r.row for r in res], [r.extra for r in res], attrs


@with_float64
def tilted_samples(
    spec: NetworkSpec, data: Dataset, chis=None, **options
) -> list[fluctuation.TiltedSample]:
    """The tree level's tilted single-neuron draws at the solution for each chi (sorted), as
    TiltedSamples for any correction (options as for the non-linear solver)."""
    check_activation(spec.activation)
    chis = check_chis(chis, spec.chi)
    _, extras, _ = _tilted(spec, data, chis, _kernels(spec, data), lambda t: t, options)
    return extras


@with_float64
def predict(
    spec: NetworkSpec,
    data: Dataset,
    chis=None,
    method: str = "one_loop",
    order: str = "dressed",
    **options,
) -> xr.Dataset:
    """Theory predictions for `spec` on `data` at every chi (float64 xarray.Dataset over `chi`).

    chis: None means [spec.chi]; any order is accepted and the grid is SORTED ascending
    (annealing needs it); values must be finite and > 0.
    method (docs/one_loop.md):
      "nngp"               GP with kernel g_w K^phi, noise kappa (chi-independent mean, var / chi).
      "rescaling_tree"     scalar kernel rescaling ubar K^phi without the trace term; reported
                           kernel is the rescaled prior (ubar/g_w) K^phi.
      "rescaling_one_loop" scalar rescaling with the trace term (Li-Sompolinsky generalised to
                           chi), any activation with K^phi; the kernel is the linear posterior
                           kernel for linear nets, the rescaled prior otherwise.
      "tree"               multi-scale adaptive (tilted) saddle point: linear nets in closed form,
                           non-linear nets by importance sampling f = (g_w/kappa) Q(f)(y - f),
                           annealed over chi.
      "one_loop"           the tree level plus its fluctuation correction, any activation, train
                           and test points.  order="dressed" (default): kernel-space Laplace with
                           the dressed propagator and tadpoles (theory/dressed.py);
                           order="first": first order in 1/N around the tilted saddle, built
                           from the tree level's draws with the control variate.  Linear nets
                           need no Monte Carlo: order="first" is the Wick closed form,
                           order="dressed" uses exact Gaussian moments (closed_form=False runs
                           the sampled path with phi = identity instead).
      "laplace_one_loop"   linear nets only: Laplace one-loop of the exact scale mixture in the
                           scale s, O(1/N^2) at every chi.
      "exact"              linear nets only: theory.exact.predict_exact.
    Variables: f_train, f_test, var_train, var_test, discrepancy_train/test = y - f, K_train,
    K_test_train (posterior mean hidden kernel (1/N) sum <phi phi^T>), kernel_target,
    kernel_trace, ubar (effective readout scale, g_w for nngp), converged, iterations, residual,
    normalisability (c Delta^T K Delta).  one_loop and laplace_one_loop add correction_train/
    test (the shift of the mean from its saddle), correction_size_train/test (|shift|/|saddle|)
    and correction_mcse_train/test (batch-means standard error of the shift / |saddle|; it leaves
    out the tree level's own importance-sampling noise, which at mean field dominates test
    outputs at the default n_draws: raise n_draws to see it fall like 1/sqrt(M)).
    Variances (var_*) and kernels of one_loop are the tree level's: their error is O(1/N)
    relative (and O(chi/N) for the kernel's target direction at strong tilt).
    options: closed_form (linear one_loop without Monte Carlo, default True), n_batches
    (batches for the correction's Monte-Carlo error, default 8; 0 skips it), and the non-linear
    solver's options (n_draws, seed, ess_min, n_chains, tol, maxiter, max_ratio, max_refresh).
    """
    _check(method, spec.activation, order)
    chis = check_chis(chis, spec.chi)
    if method == "exact":
        from .exact import predict_exact

        return predict_exact(spec, data, chis)
    closed_form = bool(options.pop("closed_form", True))
    n_batches = int(options.pop("n_batches", 8))
    kern = _kernels(spec, data)
    linear = spec.activation == "linear"
    attrs, corr = {}, None
    if method == "nngp":
        rows = _nngp(spec, data, chis, kern)
    elif method == "rescaling_tree":
        rows = _rescaling(spec, data, chis, kern, trace=False, kernel_mode="rescaled")
    elif method == "rescaling_one_loop":
        rows = _rescaling(
            spec, data, chis, kern, trace=True, kernel_mode="one_loop" if linear else "rescaled"
        )
    elif method == "laplace_one_loop":
        rows, corr = _laplace(spec, data, chis, kern)
    elif method == "tree" and linear:
        rows = _rescaling(spec, data, chis, kern, trace=False, kernel_mode="tree")
    elif method == "tree":
        rows, _, attrs = _tilted(spec, data, chis, kern, None, options)
    elif linear and closed_form:
        rows, corr = _linear_one_loop(spec, data, chis, kern, order)
        rows = _apply(rows, corr)
    else:
        rows, corr, attrs = _tilted(
            spec, data, chis, kern, _sampled_correction(order, n_batches), options
        )
        corr = [_nan_correction(r) if c is None else c for r, c in zip(rows, corr)]
        rows = _apply(rows, corr)
    ds = assemble(
        rows, chis, spec, data, method, extra=None if corr is None else _correction_vars(corr)
    )
    ds.attrs.update(attrs)
    if method == "one_loop":
        ds.attrs["order"] = order
    return ds
