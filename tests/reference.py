"""Independent exact reference for the linear network: blocked Gibbs in numpy (no JAX/NumPyro).

w | V is Gaussian; V | w is Gaussian along w_hat = w/|w| and a prior draw orthogonal to it
(the rotation argument of docs/exact_linear.md sec. 1).  Outputs are Rao-Blackwellised:
E[f | V] and Var[f | V].
"""

from __future__ import annotations

import numpy as np


def _gauss(rng, prec, lin):
    """Draw from N(prec^-1 lin, prec^-1) via a Cholesky of the precision."""
    L = np.linalg.cholesky(prec)
    mean = np.linalg.solve(L.T, np.linalg.solve(L, lin))
    return mean + np.linalg.solve(L.T, rng.standard_normal(lin.shape[0]))


def gibbs_linear(X, y, X_test, width, g_v, g_w, chi, kappa, sweeps=4000, burn=500, seed=0, thin=1):
    """Blocked Gibbs for the linear net.  Returns dict of per-sweep arrays (after burn-in):

    f_train (S, P), f_test (S, P*): E[f | V]; var_train, var_test: Var[f | V];
    kernel_target (S,): y_hat^T K y_hat with K = X V^T V X^T / N; K_train_mean (P, P).
    """
    rng = np.random.default_rng(seed)
    P, D = X.shape
    N = width
    s_w = g_w / (chi * N)  # readout prior variance
    noise = kappa / chi
    XtX = X.T @ X  # (D, D)
    Xty = X.T @ y  # (D,)
    yhat = y / np.linalg.norm(y)
    V = rng.standard_normal((N, D)) * np.sqrt(g_v / D)
    out = {k: [] for k in ("f_train", "f_test", "var_train", "var_test", "kernel_target")}
    Ksum = np.zeros((P, P))
    count = 0
    for it in range(sweeps + burn):
        H = X @ V.T  # (P, N)
        prec_w = np.eye(N) / s_w + H.T @ H / noise  # (N, N)
        w = _gauss(rng, prec_w, H.T @ y / noise)
        if it >= burn and (it - burn) % thin == 0:
            Lw = np.linalg.cholesky(prec_w)
            wbar = np.linalg.solve(Lw.T, np.linalg.solve(Lw, H.T @ y / noise))
            Ht = X_test @ V.T  # (P*, N)
            A = np.linalg.solve(Lw, H.T)  # (N, P)
            At = np.linalg.solve(Lw, Ht.T)  # (N, P*)
            out["f_train"].append(H @ wbar)
            out["f_test"].append(Ht @ wbar)
            out["var_train"].append(np.sum(A * A, axis=0))
            out["var_test"].append(np.sum(At * At, axis=0))
            K = H @ H.T / N
            out["kernel_target"].append(yhat @ K @ yhat)
            Ksum += K
            count += 1
        wn = np.linalg.norm(w)
        what = w / wn  # (N,)
        prec_r = np.eye(D) * D / g_v + wn**2 * XtX / noise  # (D, D)
        r = _gauss(rng, prec_r, wn * Xty / noise)  # (D,)
        Vp = rng.standard_normal((N, D)) * np.sqrt(g_v / D)
        V = Vp - np.outer(what, what @ Vp) + np.outer(what, r)
    res = {k: np.asarray(v) for k, v in out.items()}
    res["K_train_mean"] = Ksum / count
    return res


def batch_mean_se(x, n_batches=20):
    """Mean over axis 0 and its standard error from batch means (robust to autocorrelation)."""
    x = np.asarray(x)
    n = (x.shape[0] // n_batches) * n_batches
    b = x[:n].reshape((n_batches, n // n_batches) + x.shape[1:]).mean(axis=1)
    return x.mean(axis=0), b.std(axis=0, ddof=1) / np.sqrt(n_batches)
