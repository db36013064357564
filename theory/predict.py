"""theory.predict: analytical predictions over a chi grid as an xarray.Dataset (float64).

The methods, their orders and their names are documented in `predict`'s docstring and in
docs/one_loop.md.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import xarray as xr

from bayesnet import gp
from bayesnet.activations import ODD, check_activation
from bayesnet.datasets import Dataset
from bayesnet.observables import kernel_scalars
from bayesnet.precision import with_float64
from bayesnet.spec import NetworkSpec

from . import adaptive, dressed, fluctuation, kernels, moments, rescaling
from .schema import (
    CONVERGED,
    MCSE_VARS,
    PriorKernels,
    Row,
    assemble,
    check_chis,
    finalise,
    mcse_vars,
    reason,
)

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
LINEAR_TILT = ("tree", "one_loop")  # linear methods that solve the (linear) tilted measure
REPLICAS = 8  # independent full solves whose scatter is the error bar (t with R-1 = 7 dof)
SEED_STRIDE = 100_003  # seed offset between replicas (population seeds use seed + 1000 k)
N_DRAWS_START = 16384  # n_draws="auto": first total number of draws, grown until rtol
N_DRAWS_MAX = 262144  # n_draws="auto": the cap; hitting it warns with the achieved error
RTOL = 5e-4  # n_draws="auto": target relative error, ~ a quarter of a default sample MCSE
POOLED = ("f_train", "var_train", "f_test", "var_test", "K_train", "K_test_train")


class Corrected(NamedTuple):
    """A fluctuation correction at one chi: shifts (P,), (P*,) added to the tree level, their
    replica standard errors (same shapes; zeros for closed forms), the tree outputs, and the
    one-loop posterior mean kernel (P, P) and output variance (P,) on train points where the
    correction has them (dressed order; None keeps the tree level's)."""

    shift_train: np.ndarray
    shift_test: np.ndarray
    se_train: np.ndarray
    se_test: np.ndarray
    tree_train: np.ndarray
    tree_test: np.ndarray
    K_train: np.ndarray | None = None
    var_train: np.ndarray | None = None


SAMPLED_OPTIONS = ("n_draws", "replicas", "rtol", "n_draws_max")  # _sampled's own options


def method_options(method: str, activation: str) -> frozenset:
    """The options `predict` accepts for a method and activation: the replica/auto options and
    the tilted solver's keyword arguments for sampled theories, closed_form for linear
    one_loop, none for closed forms."""
    if method not in ("tree", "one_loop") or (method == "tree" and activation == "linear"):
        return frozenset()
    import inspect

    from . import tilted

    internal = {"spec", "data", "chis", "kern", "odd", "at_solution"}
    solver = set(inspect.signature(tilted.anneal).parameters) - internal
    extra = {"closed_form"} if method == "one_loop" and activation == "linear" else set()
    return frozenset(solver | set(SAMPLED_OPTIONS) | extra)


def _check_options(method: str, activation: str, options: dict) -> None:
    """One-line ValueError naming the first unknown option and the method (same for all)."""
    allowed = method_options(method, activation)
    for key in options:
        if key not in allowed:
            have = ", ".join(sorted(allowed)) or "none"
            raise ValueError(
                f"method {method!r} ({activation}) has no option {key!r}; its options: {have}"
            )


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


def _laplace_s(spec, data, chi, kern, sp, B) -> fluctuation.LaplaceOneLoop:
    """The Laplace one-loop in the scale s of a linear net at one chi."""
    return fluctuation.laplace_one_loop(
        sp.lam, sp.U, B, np.asarray(data.y), spec.g_w, spec.width, chi, spec.kappa
    )


def _second_moments(spec, chi, kern, sp, B, lp) -> moments.SecondMoments:
    """Linear nets: variances and the mean hidden kernel to one loop in s (theory/moments.py)."""
    return moments.linear_second_moments(
        sp, B, kern.k_test, kern.K, kern.K_test_train, spec.g_w, spec.width, chi, spec.kappa, lp
    )


def _linear_one_loop(spec, data, chis, kern: PriorKernels, order: str) -> tuple[list[Row], list]:
    """Linear nets without Monte Carlo: the closed-form tree level plus, for order="first", the
    Wick closed form of the first-order shift, for order="dressed" the dressed correction on the
    exact Gaussian moments of the tilted measure (dressed.linear_tilted_sample, a cubature).
    Variances and kernels are the one-loop second moments in the scale s (theory/moments.py)."""
    rows = _rescaling(spec, data, chis, kern, trace=False, kernel_mode="tree")
    K, Kt, y = kern.K, kern.K_test_train, np.asarray(data.y)
    sp = _spectrum(spec, data, kern)
    B = sp.project(Kt)  # (P*, r)
    out, new_rows = [], []
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
            # second moments: the Laplace ones below
            _, _, s_tr, s_te, _, _ = _shift(t, order, gaussian=True)
        out.append(
            Corrected(s_tr, s_te, np.zeros_like(s_tr), np.zeros_like(s_te), row.f_train, row.f_test)
        )
        sm = _second_moments(spec, chi, kern, sp, B, _laplace_s(spec, data, chi, kern, sp, B))
        new_rows.append(row._replace(**sm._asdict()))
    return new_rows, out


def _shift(t: fluctuation.TiltedSample, order: str, gaussian: bool = False) -> tuple:
    """(tree train, tree test, shift train, shift test, one-loop mean kernel train (P, P) or
    None, one-loop output variance train (P,) or None) of one correction on one sample.
    gaussian=True: the features are Gaussian (linear cubature), where dressed.wick_correction is
    exact at O(M P^2) instead of O(M d^2); its second moments are left to the caller.  Beyond
    dressed.VECH_P the dressed means come from the draw-space path, averaged over batches of
    dressed.DRAW_BATCH draws (M^3 cost), and the second moments stay tree level."""
    if order == "first":
        return tuple(np.asarray(x) for x in fluctuation.first_order_shift(t)) + (None, None)
    Q, Q_t = fluctuation.tilted_kernels(t)
    _, a = fluctuation.gp_algebra(Q, t.g_w, t.kappa, t.y)
    tr, te = np.asarray(t.g_w * Q @ a), np.asarray(t.g_w * Q_t @ a)
    if gaussian:
        f_tr, f_te = dressed.wick_correction(t)
        return tr, te, np.asarray(f_tr) - tr, np.asarray(f_te) - te, None, None
    M, P = t.phi.shape
    if P > dressed.VECH_P:
        parts = [dressed.draw_space_correction(b) for b in _batches(t, dressed.DRAW_BATCH)]
        f_tr = np.mean([np.asarray(x[0]) for x in parts], axis=0)  # (P,)
        f_te = np.mean([np.asarray(x[1]) for x in parts], axis=0)  # (P*,)
        return tr, te, f_tr - tr, f_te - te, None, None
    f_tr, f_te, K, v = dressed.dressed_moments(t)
    return tr, te, np.asarray(f_tr) - tr, np.asarray(f_te) - te, np.asarray(K), np.asarray(v)


def _batches(t: fluctuation.TiltedSample, size: int) -> list[fluctuation.TiltedSample]:
    """The draws split into disjoint batches of about `size` (an even number, so antithetic
    pairs stay together), weights renormalised per batch: the large-P dressed path's
    correction is the mean of its batches' corrections (each O(size^3))."""
    M = int(t.phi.shape[0])
    n = max(1, M // size)
    step = 2 * (M // (2 * n))
    out = []
    for b in range(n):
        sl = slice(b * step, (b + 1) * step)
        w = t.w[sl]
        out.append(t._replace(phi=t.phi[sl], phi_test=t.phi_test[sl], w=w / w.sum()))
    return out


def _sampled_correction(order: str):
    """at_solution callback of tilted.anneal: the correction on all draws (its Monte-Carlo error
    comes from independent replicas, `_replicated`)."""

    def correct(t: fluctuation.TiltedSample) -> Corrected:
        tr, te, s_tr, s_te, K, v = _shift(t, order)
        return Corrected(s_tr, s_te, np.zeros_like(s_tr), np.zeros_like(s_te), tr, te, K, v)

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
            "train points (independent replicas; 0 closed form)",
        ),
        "correction_mcse_test": (
            (),
            rel("se_test", "tree_test"),
            "|Monte-Carlo standard error of the correction| / |f_tree|, "
            "test points (independent replicas; 0 closed form)",
        ),
    }


def _nan_correction(row: Row) -> Corrected:
    """The correction of a row that did not converge (no tilted sample): NaN shifts."""
    nan = lambda a: np.full_like(np.asarray(a, float), np.nan)  # noqa: E731
    f_tr, f_te = row.f_train, row.f_test
    return Corrected(nan(f_tr), nan(f_te), nan(f_tr), nan(f_te), f_tr, f_te)


def _apply(rows: list[Row], corr: list[Corrected]) -> list[Row]:
    """Tree-level rows with the corrected means and, where the correction has them, the
    one-loop mean kernel and output variance on train points (test variances and the test-train
    kernel stay tree level)."""
    out = []
    for r, c in zip(rows, corr):
        r = r._replace(f_train=r.f_train + c.shift_train, f_test=r.f_test + c.shift_test)
        r = r if c.K_train is None else r._replace(K_train=c.K_train)
        out.append(r if c.var_train is None else r._replace(var_train=c.var_train))
    return out


def _laplace(spec, data, chis, kern: PriorKernels) -> tuple[list[Row], list[Corrected]]:
    """Linear nets: Laplace one-loop in the scale s for the means, variances and kernels."""
    sp = _spectrum(spec, data, kern)
    B = sp.project(kern.K_test_train)  # (P*, r)
    N, g, kap, y = spec.width, spec.g_w, spec.kappa, np.asarray(data.y)
    rows, corr = [], []
    for chi in chis:
        lp = _laplace_s(spec, data, chi, kern, sp, B)
        sm = _second_moments(spec, chi, kern, sp, B, lp)
        delta = y - lp.f_train
        c = adaptive.tilt_coefficient(g, chi, N, kap)
        norm = c * float(delta @ sp.U @ (sp.lam * (sp.U.T @ delta)))
        rows.append(
            Row(
                lp.f_train,
                sm.var_train,
                lp.f_test,
                sm.var_test,
                sm.K_train,
                sm.K_test_train,
                ubar=g * lp.s_mode,
                normalisability=norm,
            )
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
    """Non-linear (or sampled linear) tree level over the chi grid, one solve; returns (rows,
    extras, attrs)."""
    from . import tilted

    res = tilted.anneal(
        spec, data, chis, kern, odd=spec.activation in ODD, at_solution=correct, **options
    )
    n_eff = int(options.get("n_draws", 32768)) * (1 if spec.activation in ODD else 2)
    ess_min = options.get("ess_min") or n_eff / 100
    rows, extras = [], []
    for r in res:
        row = r.row
        if not row.converged and row.status == CONVERGED:  # the solver may give its own reason
            row = row._replace(status=r.reason or reason(row, r.ess, ess_min))
        rows.append(row)
        # a row that did not converge has no tilted sample: its correction is NaN
        extras.append(_nan_correction(row) if correct is not None and r.extra is None else r.extra)
    attrs = {
        "ess": np.array([r.ess for r in res]),  # importance-sampling ESS per chi
        "population_refreshes": np.array([r.refreshes for r in res]),
        # relu: max over directions of u (normalisable iff < 1); NaN for other activations
        "u_star": np.array([r.u_star for r in res], dtype=float),
    }
    return rows, extras, attrs


class Replicated(NamedTuple):
    """R independent solves pooled: mean rows and corrections, per-chi MCSE variables
    (name -> (R-1 dof) standard error of the replica mean), attributes."""

    rows: list
    corr: list | None
    mcse: dict
    attrs: dict


def _replicated(run, options: dict, n_draws: int, R: int, y: np.ndarray) -> Replicated:
    """R independent full solves with n_draws // R draws each and seeds seed + k SEED_STRIDE:
    the replica mean, and sd / sqrt(R) as its Monte-Carlo error (every noise source of the
    estimator included: tree importance sampling, population refreshes, the correction).
    With corrections the pooled rows are the corrected outputs already."""
    per = max(int(n_draws) // R, 2)
    seed = int(options.get("seed", 0))
    reps = [run({**options, "n_draws": per, "seed": seed + SEED_STRIDE * k}) for k in range(R)]
    has_corr = reps[0][1][0] is not None
    if has_corr:  # each replica's corrected outputs: the error bar covers tree + correction
        reps = [(_apply(rows, c), c, a) for rows, c, a in reps]
    n_chi = len(reps[0][0])
    rows, corr, mcse = [], [] if has_corr else None, {}
    se = lambda x: np.std(x, axis=0, ddof=1) / math.sqrt(R)  # noqa: E731
    for i in range(n_chi):
        rr = [rep[0][i] for rep in reps]
        stack = {k: np.stack([np.asarray(getattr(r, k), float) for r in rr]) for k in POOLED}
        bad = [f"replica {k}: {r.status}" for k, r in enumerate(rr) if not r.converged]
        row = rr[0]._replace(
            **{k: v.mean(axis=0) for k, v in stack.items()},
            ubar=float(np.mean([r.ubar for r in rr])),
            converged=not bad,
            iterations=max(r.iterations for r in rr),
            residual=max(r.residual for r in rr),
            normalisability=float(np.mean([r.normalisability for r in rr])),
            status=bad[0] if bad else CONVERGED,
        )
        rows.append(row)
        sc = kernel_scalars(stack["K_train"], y)  # (R,) each
        vals = {k: stack[k] for k in ("f_train", "f_test", "var_train", "var_test")} | sc
        for k in MCSE_VARS:
            mcse.setdefault(k, []).append(se(vals[k]))
        if corr is not None:
            cc = [rep[1][i] for rep in reps]
            st = {k: np.stack([getattr(c, k) for c in cc]) for k in Corrected._fields[:6]}
            mean = {k: v.mean(axis=0) for k, v in st.items()}
            corr.append(
                Corrected(
                    mean["shift_train"],
                    mean["shift_test"],
                    se(st["shift_train"]),
                    se(st["shift_test"]),
                    mean["tree_train"],
                    mean["tree_test"],
                )
            )
    attrs = {}
    for k in reps[0][2]:  # per-chi solver attributes: ESS summed, refreshes max, others mean
        vals = np.array([rep[2][k] for rep in reps], dtype=float)  # (R, chi)
        pool = {"ess": np.sum, "population_refreshes": np.max}.get(k, np.mean)
        attrs[k] = pool(vals, axis=0)
    attrs.update(replicas=R, n_draws=per * R)
    return Replicated(rows, corr, {k: np.stack(v) for k, v in mcse.items()}, attrs)


def relative_error(rows: list[Row], mcse: dict) -> float:
    """The theory's relative Monte-Carlo error: max over chi and train/test of
    |f_mcse| / |f| (what n_draws="auto" drives below rtol); NaN-safe (inf for NaN rows)."""
    out = 0.0
    for i, r in enumerate(rows):
        for side in ("train", "test"):
            f = np.asarray(getattr(r, f"f_{side}"))
            e = float(np.linalg.norm(mcse[f"f_{side}"][i]) / np.linalg.norm(f))
            out = max(out, e if np.isfinite(e) else math.inf)
    return out


def _sampled(run, options: dict, y: np.ndarray, label: str) -> Replicated:
    """A sampled theory with its error bar: fixed n_draws, or n_draws="auto" (from N_DRAWS_START
    total draws, grow M (at least doubling, to the power of 2 that the 1/sqrt(M) fall of the
    error predicts for rtol) until the relative error is below rtol; at the cap n_draws_max warn
    and report the achieved error)."""
    opts = dict(options)
    n = opts.pop("n_draws", "auto")
    R = int(opts.pop("replicas", REPLICAS))
    rtol = float(opts.pop("rtol", RTOL))
    cap = int(opts.pop("n_draws_max", N_DRAWS_MAX))
    if R < 2:
        raise ValueError(f"replicas must be >= 2 (the error bar needs a scatter), got {R}")
    if n != "auto":
        if isinstance(n, str) or int(n) < 2 * R:
            raise ValueError(f"n_draws must be 'auto' or an integer >= 2 * replicas, got {n!r}")
        out = _replicated(run, opts, int(n), R, y)
        out.attrs["relative_mcse"] = relative_error(out.rows, out.mcse)
        return out
    if not rtol > 0:
        raise ValueError(f"rtol must be > 0, got {rtol}")
    M = min(N_DRAWS_START, cap)
    while True:
        out = _replicated(run, opts, M, R, y)
        err = relative_error(out.rows, out.mcse)
        if err <= rtol or M >= cap or not np.isfinite(err):
            break
        # the error falls like 1/sqrt(M): jump to the M that should reach rtol (at least 2M)
        want = M * (err / rtol) ** 2 * 1.2
        M = int(min(cap, max(2 * M, 2 ** math.ceil(math.log2(want)))))
    out.attrs.update(relative_mcse=err, rtol=rtol)
    if np.isfinite(err) and err > rtol:
        warnings.warn(
            f"theory.predict: {label} n_draws='auto' stopped at the cap n_draws_max={cap} with "
            f"relative theory error {err:.2e} > rtol={rtol:.2e}",
            RuntimeWarning,
            stacklevel=4,
        )
    return out


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
    normalisability (c Delta^T K Delta), status ("converged" or the reason it did not).
    A chi whose solve did not converge (or whose measure is not normalisable) has NaN for every
    output, converged=False, its reason in `status`, and one RuntimeWarning line naming the
    method, chi and the reason.
    Every method carries <v>_mcse for v in MCSE_VARS: the theory's own Monte-Carlo error (0 for
    closed forms).  Sampled theories (non-linear tree and one_loop, linear one_loop with
    closed_form=False) run `replicas` (default REPLICAS = 8) independent full solves with
    n_draws // replicas draws each and report their mean and sd / sqrt(replicas): the whole
    estimator's error (tree importance sampling, population refreshes and correction together;
    a t-distributed error with replicas - 1 degrees of freedom).  n_draws="auto" (default)
    starts at N_DRAWS_START total draws and grows them (at least doubling, to what the 1/sqrt(M)
    fall of the error predicts) until the relative error max |f_mcse|/|f|
    (train and test) is below rtol (default RTOL = 5e-4, about a quarter of the default sample
    runs' relative MCSE of 2e-3 to 5e-3; 1e-4 costs about 25x more draws, docs/one_loop.md), or
    warns at n_draws_max (default N_DRAWS_MAX) with the error it reached; the attributes
    n_draws, replicas and relative_mcse say what was used.
    one_loop and laplace_one_loop add correction_train/test (the shift of the mean from its
    saddle), correction_size_train/test (|shift|/|saddle|) and correction_mcse_train/test
    (replica standard error of the shift / |saddle|).
    Variances and kernels: linear one_loop and laplace_one_loop report the one-loop second
    moments in the scale s (theory/moments.py, O(1/N^2) relative at chi = 1); non-linear
    one_loop with order="dressed" reports the one-loop train variances and train kernel
    (dressed.dressed_moments; O(1/N^2) at chi = 1, O(1/N) relative at chi = N) and the tree
    level's test variances and test-train kernel; tree and order="first" report the tree
    level's (relative error O(1/N), O(1) for variances at chi = N).
    options: closed_form (linear one_loop without Monte Carlo, default True), n_draws, replicas,
    rtol, n_draws_max, and the non-linear solver's options (seed, ess_min, n_chains, tol,
    maxiter, max_ratio, max_refresh); `method_options(method, activation)` lists them, and any
    other key is a one-line ValueError naming the key and the method (closed forms take none).
    """
    if spec.depth > 1:  # deep networks: theory/deep.py (docs/deep.md)
        from . import deep

        return deep.predict(spec, data, chis, method, order, **options)
    _check(method, spec.activation, order)
    _check_options(method, spec.activation, options)
    chis = check_chis(chis, spec.chi)
    if method == "exact":
        from .exact import predict_exact

        return predict_exact(spec, data, chis)
    closed_form = bool(options.pop("closed_form", True))
    kern = _kernels(spec, data)
    linear = spec.activation == "linear"
    y = np.asarray(data.y)
    attrs, corr, mcse = {}, None, None
    sampled = method in ("tree", "one_loop") and not linear
    sampled |= method == "one_loop" and linear and not closed_form
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
    elif linear and closed_form:
        rows, corr = _linear_one_loop(spec, data, chis, kern, order)
        rows = _apply(rows, corr)
    else:
        correct = None if method == "tree" else _sampled_correction(order)
        rep = _sampled(lambda o: _tilted(spec, data, chis, kern, correct, o), options, y, method)
        rows, corr, mcse, attrs = rep.rows, rep.corr, rep.mcse, rep.attrs
    rows = finalise(rows, chis, method, normalisability=linear and method in LINEAR_TILT)
    extra = {} if corr is None else _correction_vars(corr)
    extra |= mcse_vars(rows, mcse)
    bad = np.array([not r.converged for r in rows])
    for k in [k for k in extra if k.startswith("correction")]:
        extra[k][1][bad] = np.nan
    ds = assemble(rows, chis, spec, data, method, extra=extra)
    ds.attrs.update(attrs)
    if method == "one_loop":
        ds.attrs["order"] = order
    return ds
