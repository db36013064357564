"""Dressed one-loop: a Laplace expansion in kernel space around the tilted saddle, with tadpoles.

The exact posterior mean output is an average over the empirical kernel K^ = (1/N) sum_i phi_i
phi_i^T (train points; K^_* = (1/N) sum_i phi_*i phi_i^T on test points) of the GP mean for the
kernel g_w K^, weighted by exp(L(K^)) with L the GP log marginal likelihood,
  L(K) = -chi/2 y^T B^-1 y - 1/2 log det B,   B = g_w K + kappa I.
Each neuron is drawn from the tree-level tilted measure (weight exp(g_w chi (a^T phi)^2 / (2N)),
the part of L linear in K^ that grows with chi), so K^ = Q + eps with eps a mean of N i.i.d.
centred neuron terms.  In vech coordinates (d = P(P+1)/2 pairs p = (alpha <= beta), z_p =
phi_alpha phi_beta, K = sum_p x_p E_p with E_p = c_p (e_alpha e_beta^T + e_beta e_alpha^T),
c_p = 1/2 on the diagonal and 1 off it), what is left of L is expanded to third order:
  residual gradient  g_p = -(g_w/2) tr(E_p M)           (the log-det part the tree tilt leaves),
  Hessian            H_pq = -chi g_w^2 (E_p a)^T M (E_q a) + 1/2 g_w^2 tr(M E_p M E_q),
  third derivative   (L3:G)_p = chi g_w^3 (2 a^T E_p M S a + tr(E_p M EA G EA^T M))
                                - g_w^3 tr(E_p M S M),   S = sum_qr G_qr E_q M E_r,
with M = B^-1 and a = M y at the tree level (kernel Q of `tilted_kernels`, control variate on),
(EA)_{:,p} = E_p a.  Under the tilted measure Sigma = Cov_t(z) (eps has covariance Sigma/N and
third cumulant kappa3/N^2).  The Gaussian part of the neuron sum combined with H gives the dressed
propagator G = Sigma (N - H Sigma)^-1 (-> Sigma/N, the first-order correction, as H -> 0); with
W = (N - H Sigma)^-1 and A = W H (symmetric), the cumulant expansion (Stein identities) gives
  <eps> = G g + 1/2 W^T E_t[zb (zb^T A zb)] + 1/2 G (L3:G),   zb = z - E_t z,
  <a>   = a - g_w M EA <eps> + g_w^2 M S a,        train:  <f> = y - kappa <a>,
  test:  <f_*> = g_w [Q_* <a> + C_u W (g + 1/2 L3:G)
                      + (1/2N)(Cov_t(u, q) + C_u A E_t[zb q]) - g_w b],
u = phi_* (phi^T a) (P*,), C_u = Cov_t(u, z) (P*, d), q = zb^T A zb, Y = W (M EA)^T (d, P),
b_t = E_t[phi_*t phi^T Y^T zb].  With test = train the test formula is the train one exactly.
Terms dropped are O(1/N^2) at fixed chi/N (fourth cumulants, two loops).  For linear phi the
tilted measure is Gaussian and `linear_tilted_sample` gives exact moments (a degree-7 Gaussian
cubature), so the code path can be checked against the exact linear posterior.

Cost: two passes of O(M d^2) over the draws in blocks (memory O(d^2 + block d)) plus O(d^3)
dense algebra; see `P_MAX`.  Large P (docs/one_loop.md, "Large P"): the same formulas in the
space of the draws (`draw_space_correction`, Woodbury, O(M^2 P + M^3)), run on batches of
DRAW_BATCH draws by theory.predict; and, exact for Gaussian (linear) features only, the
Wick-dressed eigenbasis form (`wick_correction`, O(M P^2 + P^3)).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from bayesnet.precision import with_float64

from .fluctuation import TiltedSample, gp_algebra, tilted_kernels

P_MAX = 80  # vech path up to here: d = 3240, measured 52 s CPU and 1.6 GB per call at M = 32768
BLOCK = 2048  # draws per block in the passes over the draws
VECH_P = 48  # theory.predict: vech path up to here, batches of the draw-space path beyond
DRAW_BATCH = 1024  # beyond VECH_P: draws per batch of the draw-space path (theory.predict)
DRAW_MAX = 4096  # beyond P_MAX: most draws in one draw-space call (M^2 memory, M^3 time)


def vech_index(P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs p = (alpha <= beta): row index (d,), column index (d,), c_p (1/2 diagonal, else 1)."""
    ia, ib = np.triu_indices(P)
    return ia, ib, np.where(ia == ib, 0.5, 1.0)


def _grad(A: jnp.ndarray, ia, ib, c) -> jnp.ndarray:
    """tr(E_p A) for every pair p: the vech gradient of K -> tr(K A) (d,)."""
    return c * (A[ia, ib] + A[ib, ia])


def _pair_sum(X: jnp.ndarray, rows, cols, P: int) -> jnp.ndarray:
    """(P, P) matrix R with R[gamma, nu] = sum of X[q, r] over rows[q] = gamma, cols[r] = nu."""
    Orow = jax.nn.one_hot(rows, P, dtype=X.dtype)  # (d, P)
    Ocol = jax.nn.one_hot(cols, P, dtype=X.dtype)  # (d, P)
    return Orow.T @ X @ Ocol


def _contract_EME(G: jnp.ndarray, M: jnp.ndarray, ia, ib, c, P: int) -> jnp.ndarray:
    """S = sum_qr G_qr E_q M E_r (P, P) for symmetric G (d, d)."""
    Gc = G * jnp.outer(c, c)  # (d, d)
    S = (
        _pair_sum(Gc * M[ib][:, ia], ia, ib, P)
        + _pair_sum(Gc * M[ib][:, ib], ia, ia, P)
        + _pair_sum(Gc * M[ia][:, ia], ib, ib, P)
        + _pair_sum(Gc * M[ia][:, ib], ib, ia, P)
    )
    return S


@functools.partial(jax.jit, static_argnames=("P",))
def _pass_moments(phi, phi_test, w, a, ia, ib, P):
    """One block: sums of w z z^T (d, d), w z (d,), w u z^T (P*, d), w u (P*,)."""
    z = phi[:, ia] * phi[:, ib]  # (B, d)
    u = phi_test * (phi @ a)[:, None]  # (B, P*)
    wz = z * w[:, None]  # (B, d)
    return wz.T @ z, jnp.sum(wz, axis=0), (u * w[:, None]).T @ z, w @ u


@functools.partial(jax.jit, static_argnames=("P",))
def _pass_cubic(phi, phi_test, w, a, z_mean, u_mean, A, Y, ia, ib, P):
    """One block: sums of w zb q (d,), w (u - <u>) q (P*,), w phi_* (phi . zb Y) (P*,)."""
    zb = phi[:, ia] * phi[:, ib] - z_mean  # (B, d)
    q = jnp.sum((zb @ A) * zb, axis=1)  # (B,)
    ub = phi_test * (phi @ a)[:, None] - u_mean  # (B, P*)
    s = jnp.sum(phi * (zb @ Y), axis=1)  # (B,)
    return (w * q) @ zb, (w * q) @ ub, (w * s) @ phi_test


def _blocks(t: TiltedSample, block: int):
    """The draws in blocks of fixed size (the last padded with zero weight)."""
    M = t.phi.shape[0]
    n = -(-M // block)
    pad = n * block - M
    phi = jnp.pad(jnp.asarray(t.phi, jnp.float64), ((0, pad), (0, 0)))
    phi_t = jnp.pad(jnp.asarray(t.phi_test, jnp.float64), ((0, pad), (0, 0)))
    w = jnp.pad(jnp.asarray(t.w, jnp.float64), (0, pad))
    for k in range(n):
        sl = slice(k * block, (k + 1) * block)
        yield phi[sl], phi_t[sl], w[sl]


class _Setup(NamedTuple):
    """What every dressed path starts from: the draws in float64, the scalars, the tilted
    kernels Q (P, P), Q_test (P*, P), the targets y (P,), M = (g_w Q + kappa)^-1 and a = M y."""

    t: TiltedSample
    g: float
    kap: float
    chi: float
    N: float
    Q: jnp.ndarray
    Q_test: jnp.ndarray
    y: jnp.ndarray
    M: jnp.ndarray
    a: jnp.ndarray


def _setup(t: TiltedSample) -> _Setup:
    """The tilted saddle's GP algebra on float64 draws (shared by every dressed path)."""
    g, kap, chi, N = float(t.g_w), float(t.kappa), float(t.chi), float(t.width)
    t = t._replace(
        phi=jnp.asarray(t.phi, jnp.float64),
        phi_test=jnp.asarray(t.phi_test, jnp.float64),
        w=jnp.asarray(t.w, jnp.float64),
    )
    Q, Q_test = tilted_kernels(t)
    Q, Q_test = jnp.asarray(Q, jnp.float64), jnp.asarray(Q_test, jnp.float64)
    y = jnp.asarray(t.y, jnp.float64)
    M, a = gp_algebra(Q, g, kap, y)  # (P, P), (P,)
    return _Setup(t, g, kap, chi, N, Q, Q_test, y, M, a)


def check_size(P: int, M: int) -> None:
    """One-line ValueError when neither the vech path (P <= P_MAX) nor the draw-space path
    (M <= DRAW_MAX draws) fits; theory.predict splits the draws into batches instead."""
    if P > P_MAX and M > DRAW_MAX:
        raise ValueError(
            f"P={P} train points with M={M} draws is beyond the dressed one-loop's limits "
            f"(vech path P <= {P_MAX}, draw-space path M <= {DRAW_MAX}); split the draws "
            f"into batches and average, as theory.predict does"
        )


@with_float64
def dressed_correction(t: TiltedSample, block: int = BLOCK) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Dressed one-loop posterior mean outputs (f_train (P,), f_test (P*,)), units of y.

    t: tilted single-neuron draws at the tree-level saddle (tree tilt, lambda = 0).  Formulas in
    the module docstring; memory O(d^2 + block d), time O(M d^2 + d^3), d = P(P+1)/2.  Beyond
    P_MAX the same numbers come from `draw_space_correction` (at most DRAW_MAX draws).
    """
    f_train, f_test, _, _ = dressed_moments(t, block)
    return f_train, f_test


@with_float64
def dressed_moments(t: TiltedSample, block: int = BLOCK):
    """`dressed_correction`'s outputs, the one-loop posterior mean hidden kernel on train
    points, Q + <eps> (P, P) (K^ = Q + eps; <eps> of the module docstring, unvech'd), and the
    one-loop posterior output variance on train points (P,), units y^2: with the GP variance
    v(K) = (kappa/chi) diag(1 - kappa M) and mean m(K) = y - kappa a(K) expanded in eps,
      Var f = v(Q) + (kappa^2 g_w/chi) diag(M <eps> M) - (kappa^2 g_w^2/chi) diag(M S M)
              + diag(J G J^T),   J = dm/dx = kappa g_w M EA (P, d)
    (E[v(K^)] to one loop plus Var[m(K^)]; docs/one_loop.md)."""
    P = int(t.phi.shape[1])
    check_size(P, int(t.phi.shape[0]))
    if P > P_MAX:  # no pair-space objects: means only, second moments left to the caller
        return (*draw_space_correction(t), None, None)
    t, g, kap, chi, N, Q, Q_test, y, M, a = _setup(t)  # (P, P), (P,)
    ia_np, ib_np, c_np = vech_index(P)
    ia, ib, c = jnp.asarray(ia_np), jnp.asarray(ib_np), jnp.asarray(c_np)
    d = ia_np.size

    # pass 1: Sigma = Cov_t(z), C_u = Cov_t(u, z)
    Szz, sz, Suz, su = 0.0, 0.0, 0.0, 0.0
    for ph, pt, wb in _blocks(t, block):
        r = _pass_moments(ph, pt, wb, a, ia, ib, P)
        Szz, sz, Suz, su = Szz + r[0], sz + r[1], Suz + r[2], su + r[3]
    wsum = jnp.sum(jnp.asarray(t.w, jnp.float64))
    sz, su, Szz, Suz = sz / wsum, su / wsum, Szz / wsum, Suz / wsum
    Sigma = Szz - jnp.outer(sz, sz)  # (d, d)
    Sigma = 0.5 * (Sigma + Sigma.T)
    C_u = Suz - jnp.outer(su, sz)  # (P*, d)

    # vech algebra of L: gradient residual, Hessian, propagator
    EA = jax.nn.one_hot(ia, P).T * (c * a[ib]) + jax.nn.one_hot(ib, P).T * (c * a[ia])  # (P, d)
    Mi, Mj = M[ia], M[ib]  # (d, P)
    H = -chi * g * g * (EA.T @ M @ EA) + g * g * jnp.outer(c, c) * (
        Mi[:, ia] * Mj[:, ib] + Mi[:, ib] * Mj[:, ia]
    )  # (d, d)
    H = 0.5 * (H + H.T)
    gres = -0.5 * g * _grad(M, ia, ib, c)  # (d,)
    W = jnp.linalg.inv(N * jnp.eye(d) - H @ Sigma)  # (d, d)
    G = Sigma @ W
    G = 0.5 * (G + G.T)
    A = W @ H
    A = 0.5 * (A + A.T)
    S = _contract_EME(G, M, ia, ib, c, P)  # (P, P)
    MSa = M @ (S @ a)  # (P,)
    L3G = chi * g**3 * (
        2.0 * EA.T @ MSa + _grad(M @ (EA @ G @ EA.T) @ M, ia, ib, c)
    ) - g**3 * _grad(M @ S @ M, ia, ib, c)  # (d,)
    Y = W @ (M @ EA).T  # (d, P)

    # pass 2: third-cumulant (tadpole) contractions and the test cross term b
    k3A, uq, b = 0.0, 0.0, 0.0
    for ph, pt, wb in _blocks(t, block):
        r = _pass_cubic(ph, pt, wb, a, sz, su, A, Y, ia, ib, P)
        k3A, uq, b = k3A + r[0], uq + r[1], b + r[2]
    k3A, uq, b = k3A / wsum, uq / wsum, b / wsum

    src = gres + 0.5 * L3G  # (d,)
    eps = G @ src + 0.5 * W.T @ k3A  # (d,) <eps>
    a_mean = a - g * M @ (EA @ eps) + g * g * MSa  # (P,)
    f_train = y - kap * a_mean
    f_test = g * (
        Q_test @ a_mean + C_u @ (W @ src) + (0.5 / N) * (uq + C_u @ (A @ k3A)) - g * b
    )  # (P*,)
    E = jnp.zeros((P, P)).at[ia, ib].set(eps)  # (P, P) upper triangle of <eps>
    K_mean = Q + E + jnp.triu(E, 1).T  # (P, P) symmetric
    J = kap * g * (M @ EA)  # (P, d)
    dK = E + jnp.triu(E, 1).T  # (P, P) <eps> as a matrix
    var_train = (kap / chi) * (
        1.0 - kap * jnp.diag(M) + kap * g * jnp.diag(M @ dK @ M) - kap * g * g * jnp.diag(M @ S @ M)
    ) + jnp.sum((J @ G) * J, axis=1)  # (P,)
    return f_train, f_test, K_mean, var_train


# ------------------------------------------------------------------ exact Gaussian moments


def gaussian_cubature7(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points (K, n) and weights (K,) integrating every polynomial of degree <= 7 exactly
    against N(0, I_n) (n >= 3): fully symmetric spherical rule on the orbits of e_i,
    (e_i +- e_j)/sqrt 2, (e_i +- e_j +- e_k)/sqrt 3, times a 2-node Gauss rule in r^2 ~ chi2_n.
    Some weights may be negative."""
    if n < 3:
        raise ValueError(f"n must be >= 3 for the degree-7 cubature, got {n}")
    # orbit weights from the sphere moments 1, E u1^4 = 3/(n(n+2)), E u1^6 = 15/(n(n+2)(n+4))
    Amat = np.array([[1.0, 1.0, 1.0], [1.0, 0.5, 1.0 / 3.0], [1.0, 0.25, 1.0 / 9.0]])
    rhs = np.array([1.0, 3.0 / (n + 2), 15.0 / ((n + 2) * (n + 4))])
    wA, wB, wC = np.linalg.solve(Amat, rhs)
    eye = np.eye(n)
    orbA = np.concatenate([eye, -eye])  # (2n, n)
    i, j = np.triu_indices(n, 1)
    orbB = np.concatenate([s1 * eye[i] + s2 * eye[j] for s1 in (1, -1) for s2 in (1, -1)])
    orbB = orbB / math.sqrt(2.0)
    trip = np.array([(p, q, r) for p in range(n) for q in range(p + 1, n) for r in range(q + 1, n)])
    orbC = np.concatenate(
        [
            s1 * eye[trip[:, 0]] + s2 * eye[trip[:, 1]] + s3 * eye[trip[:, 2]]
            for s1 in (1, -1)
            for s2 in (1, -1)
            for s3 in (1, -1)
        ]
    )
    orbC = orbC / math.sqrt(3.0)
    U = np.concatenate([orbA, orbB, orbC])  # (K0, n) on the unit sphere
    wU = np.concatenate(
        [
            np.full(len(orbA), wA / len(orbA)),
            np.full(len(orbB), wB / len(orbB)),
            np.full(len(orbC), wC / len(orbC)),
        ]
    )
    x, wx = scipy.special.roots_genlaguerre(2, n / 2.0 - 1.0)  # r^2 = 2x ~ chi2_n
    wx = wx / wx.sum()
    pts = np.concatenate([math.sqrt(2.0 * xk) * U for xk in x])
    wts = np.concatenate([wk * wU for wk in wx])
    return pts, wts


def linear_tilted_sample(
    X: np.ndarray,
    X_test: np.ndarray,
    y: np.ndarray,
    f_train: np.ndarray,
    g_v: float,
    g_w: float,
    kappa: float,
    chi: float,
    width: int,
) -> TiltedSample:
    """TiltedSample with exact Gaussian moments (to degree 7) for linear phi at train predictor
    f_train (P,): v ~ N(0, g_v/D I) tilted by exp(c (Delta^T X v)^2 / 2) is Gaussian with
    precision D/g_v I - c X^T Delta Delta^T X, c = g_w chi/(N kappa^2), Delta = y - f_train."""
    D = X.shape[1]
    c = g_w * chi / (width * kappa**2)
    u = X.T @ (np.asarray(y) - np.asarray(f_train))  # (D,)
    prec = (D / g_v) * np.eye(D) - c * np.outer(u, u)  # (D, D)
    L = np.linalg.cholesky(np.linalg.inv(prec))  # (D, D)
    pts, wts = gaussian_cubature7(D)
    V = pts @ L.T  # (K, D)
    phi, phi_t = V @ X.T, V @ X_test.T  # (K, P), (K, P*)
    Kx = (g_v / D) * X @ X.T
    return TiltedSample(
        phi=jnp.asarray(phi),
        phi_test=jnp.asarray(phi_t),
        w=jnp.asarray(wts),
        K=jnp.asarray(Kx),
        K_test=jnp.asarray((g_v / D) * X_test @ X.T),
        prior=False,
        y=jnp.asarray(y),
        g_w=g_w,
        kappa=kappa,
        chi=chi,
        width=int(width),
    )


# ------------------------------------------------------------------ large P: Wick dressing


class Wick(NamedTuple):
    """The Wick-dressed algebra in the eigenbasis of the tree kernel Q = U diag(lam) U^T.

    m = eigenvalues of M, t = lam m, Kk_ij = 1/(N - g^2 t_i t_j) (the Hadamard inverse of
    N - g^2 T (x) T), a and b = Q a in the eigenbasis, Cmat the (P, P) inverse that the rank-P
    chi part of H needs (Woodbury in the P-vector c = T V b), Ymat its output vectors.
    """

    U: jnp.ndarray
    lam: jnp.ndarray
    m: jnp.ndarray
    t: jnp.ndarray
    Kk: jnp.ndarray
    a: jnp.ndarray
    b: jnp.ndarray
    Cmat: jnp.ndarray
    Ymat: jnp.ndarray
    g: float
    chi: float
    N: float


def _sym(X):
    return 0.5 * (X + X.T)


def wick_setup(Q, g, kap, chi, N, y) -> Wick:
    """Eigen-decomposition of Q (P, P) and the O(P^3) pieces of W_G = (N - H Sigma_G)^-1."""
    lam, U = jnp.linalg.eigh(_sym(Q))  # (P,), (P, P)
    m = 1.0 / (g * lam + kap)  # (P,)
    t = lam * m
    Kk = 1.0 / (N - g * g * jnp.outer(t, t))  # (P, P)
    a = m * (U.T @ y)  # (P,)  a = M y in the eigenbasis
    b = lam * a  # (P,)  Q a
    L = 0.5 * (t * a)[:, None] * Kk * b[None, :] + jnp.diag(0.5 * t * (Kk @ (a * b)))  # (P, P)
    Cmat = jnp.linalg.inv(jnp.eye(lam.size) + 2.0 * chi * g * g * L)  # (P, P)
    Ymat = -2.0 * chi * g * g * jnp.outer(lam * a, lam) * Kk  # (P, P) columns y_l
    return Wick(U, lam, m, t, Kk, a, b, Cmat, Ymat, g, chi, N)


def _W(w: Wick, F):
    """W_G F = (N - H Sigma_G)^-1 on a dual symmetric matrix F (eigenbasis)."""
    kF = w.Kk * F
    c = w.Cmat @ (w.t * (kF @ w.b))  # (P,)
    return kF - 2.0 * w.chi * w.g**2 * w.Kk * _sym(jnp.outer(w.a, c))


def _Wt(w: Wick, X):
    """The adjoint W_G^T X = (N - Sigma_G H)^-1 on a primal symmetric matrix X (eigenbasis)."""
    kX = w.Kk * X
    v = w.Cmat.T @ (kX @ w.a)  # (P,)
    return kX - 2.0 * w.chi * w.g**2 * w.Kk * _sym(jnp.outer(w.t * v, w.b))


def _H(w: Wick, X):
    """Hessian of L on a primal symmetric matrix: -chi g^2 sym(a (M X a)^T) + g^2/2 M X M."""
    g = w.g
    return -w.chi * g * g * _sym(jnp.outer(w.a, w.m * (X @ w.a))) + 0.5 * g * g * (
        w.m[:, None] * X * w.m[None, :]
    )


def _Gwick(w: Wick, F):
    """Sigma_G W_G F with Sigma_G V = 2 Q V Q (the Gaussian part of Cov_t(z))."""
    return 2.0 * w.lam[:, None] * _W(w, F) * w.lam[None, :]


def _R(w: Wick, Xl):
    """Rows l: sum_p Xl[l, p] sym(F_l)[p, :], (F_l)_ij = Cmat_li t_i Kk_ij b_j (P, P)."""
    first = (((Xl * w.Cmat) * w.t[None, :]) @ w.Kk) * w.b[None, :]
    second = (w.Cmat * w.t[None, :]) * ((Xl * w.b[None, :]) @ w.Kk)
    return 0.5 * (first + second)


def _contract(w: Wick, X):
    """sum_qr (Sigma_G W_G)_qr E_q X E_r for a symmetric X (eigenbasis), (P, P)."""
    k1 = 2.0 * jnp.outer(w.lam, w.lam) * w.Kk  # (P, P)
    part1 = 0.5 * (k1 * X + jnp.diag(k1 @ jnp.diag(X)))
    return part1 + w.Ymat @ _R(w, X) + _R(w, w.Ymat.T @ X)


@jax.jit
def _wick_pass1(phi, w, M, a):
    """One block: sums of w phi phi^T, w (phi.M.phi) phi phi^T, w (phi.a)^2 phi phi^T."""
    sM = jnp.sum((phi @ M) * phi, axis=1)  # (B,)
    sa = phi @ a  # (B,)
    wp = phi * w[:, None]  # (B, P)
    return wp.T @ phi, (wp * sM[:, None]).T @ phi, (wp * (sa * sa)[:, None]).T @ phi


def _kX(phi, Y, Kk, kz):
    """Rows of (Kk o (phi phi^T - zbar)) y_m for every draw: phi o ((phi o Y) Kk) - Y kz."""
    return phi * ((phi * Y) @ Kk) - Y @ kz


@jax.jit
def _wick_pass2(phi, phi_test, w, ws: Wick, z, src, Wsrc):
    """One block in the eigenbasis: Sigma(src), C_u W src, k3 (q), u q, and b."""
    g, chi, Kk, m, a, b = ws.g, ws.chi, ws.Kk, ws.m, ws.a, ws.b
    kz = Kk * z  # (P, P)
    sa = phi @ a  # (B,)
    s1 = jnp.sum((phi @ src) * phi, axis=1) - jnp.sum(z * src)  # (B,)
    s2 = jnp.sum((phi @ Wsrc) * phi, axis=1) - jnp.sum(z * Wsrc)  # (B,)
    # q = zb^T A zb = <zb, W_G H zb> per draw (module docstring; A = W_G H)
    r = phi * sa[:, None] - (z @ a)[None, :]  # (B, P)  Zb a
    v = m[None, :] * r  # (B, P)  M Zb a
    t1 = -chi * g * g * jnp.sum(a[None, :] * _kX(phi, v, Kk, kz), axis=1)
    pm = phi * phi * m[None, :]  # (B, P)
    kmm = kz * jnp.outer(m, m)
    t2 = (
        0.5
        * g
        * g
        * (
            jnp.sum((pm @ Kk) * pm, axis=1)
            - 2.0 * jnp.sum((phi @ kmm) * phi, axis=1)
            + jnp.sum(kmm * z)
        )
    )
    mb = jnp.broadcast_to(m * b, phi.shape)
    e = -0.5 * chi * g * g * (a[None, :] * ((v * b[None, :]) @ Kk) + v * (Kk @ (a * b))[None, :])
    e = e + 0.5 * g * g * m[None, :] * _kX(phi, mb, Kk, kz)  # (B, P)  Kk o (H Zb) b
    c = (e * ws.t[None, :]) @ ws.Cmat.T  # (B, P)
    t3 = -2.0 * chi * g * g * jnp.sum(a[None, :] * _kX(phi, c, Kk, kz), axis=1)
    q = t1 + t2 + t3  # (B,)
    # s = phi^T M W_G^T(Zb) a per draw (the test cross term b)
    rho = _kX(phi, jnp.broadcast_to(a, phi.shape), Kk, kz)  # (B, P)  Kk o Zb a
    tv = ws.t[None, :] * (rho @ ws.Cmat)  # (B, P)
    inner = rho - chi * g * g * (tv * (Kk @ (a * b))[None, :] + b[None, :] * ((tv * a) @ Kk))
    s = jnp.sum(phi * m[None, :] * inner, axis=1)  # (B,)
    wq = w * q
    return (
        (phi * (w * s1)[:, None]).T @ phi,
        phi_test.T @ (w * sa * s2),
        (phi * wq[:, None]).T @ phi,
        jnp.sum(wq),
        phi_test.T @ (wq * sa),
        phi_test.T @ (w * s),
    )


@jax.jit
def _wick_pass3(phi, phi_test, w, a, z, V):
    """One block: sum of w u (phi^T V phi - tr(zbar V)), i.e. C_u V (P*,)."""
    s = jnp.sum((phi @ V) * phi, axis=1) - jnp.sum(z * V)  # (B,)
    return phi_test.T @ (w * (phi @ a) * s)


@with_float64
def wick_correction(t: TiltedSample, block: int = BLOCK) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Dressed one-loop for Gaussian (linear) tilted features at any P (f_train (P,), f_test
    (P*,)), units of y: the formulas of `dressed_correction` with the propagator dressed by the
    Gaussian (Wick) part of the feature covariance, Sigma_G V = 2 Q V Q; the rest of Sigma
    enters undressed, G = Sigma_G W_G + (Sigma - Sigma_G)/N, A = W_G H.  Equal to
    `dressed_correction` when the features are Gaussian (the linear cubature); NOT a valid
    approximation for bounded features such as erf (docs/one_loop.md, "Large P").  Memory
    O(P^2 + block P), time O(M P^2 + P^3): three passes over the draws.
    """
    t, g, kap, chi, N, Q, Q_test, y, M, a0 = _setup(t)  # (P, P), (P,)
    ws = wick_setup(Q, g, kap, chi, N, y)
    U = ws.U
    block = max(block, (1 << 21) // Q.shape[0])  # few large blocks when P is small (cubature)
    wsum = jnp.sum(t.w)
    # pass 1: zbar, E[Zb M Zb], E[Zb a a^T Zb] (original basis), then the eigenbasis
    Sz, SzMz, Saa, su = 0.0, 0.0, 0.0, 0.0
    for ph, pt, wb in _blocks(t, block):
        r = _wick_pass1(ph, wb, M, a0)
        Sz, SzMz, Saa = Sz + r[0], SzMz + r[1], Saa + r[2]
        su = su + pt.T @ (wb * (ph @ a0))
    Sz, SzMz, Saa, su = Sz / wsum, SzMz / wsum, Saa / wsum, su / wsum
    za = Sz @ a0
    EZMZ = U.T @ (SzMz - Sz @ M @ Sz) @ U  # (P, P)
    EZaZ = U.T @ (Saa - jnp.outer(za, za)) @ U  # (P, P)
    z = _sym(U.T @ Sz @ U)  # (P, P)  zbar in the eigenbasis
    lam, m, tt, a, b = ws.lam, ws.m, ws.t, ws.a, ws.b
    S = _contract(ws, jnp.diag(m)) + (EZMZ - jnp.diag(lam * tt + jnp.sum(tt) * lam)) / N
    Xi = (
        _contract(ws, jnp.outer(a, a))
        + (EZaZ - jnp.outer(b, b) - jnp.dot(a, b) * jnp.diag(lam)) / N
    )
    S, Xi = _sym(S), _sym(Xi)
    MSa = m * (S @ a)  # (P,)
    L3G = chi * g**3 * (2.0 * _sym(jnp.outer(a, MSa)) + m[:, None] * Xi * m[None, :]) - g**3 * (
        m[:, None] * S * m[None, :]
    )
    src = -0.5 * g * jnp.diag(m) + 0.5 * L3G  # (P, P) dual
    Wsrc = _W(ws, src)
    # pass 2 (eigenbasis): Sigma src, C_u W src, k3 A, u q, b
    Ssrc, CuW, K3, sq, uq, bt = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for ph, pt, wb in _blocks(t, block):
        r = _wick_pass2(ph @ U, pt, wb, ws, z, src, Wsrc)
        Ssrc, CuW, K3, sq, uq, bt = (x + y_ for x, y_ in zip((Ssrc, CuW, K3, sq, uq, bt), r))
    Ssrc, CuW, K3, sq, uq, bt = (x / wsum for x in (Ssrc, CuW, K3, sq, uq, bt))
    K3 = K3 - z * sq  # (P, P)  E[q Zb]
    uq = uq - su * sq  # (P*,)  E[(u - <u>) q]
    Gsrc = _Gwick(ws, src) + (Ssrc - 2.0 * lam[:, None] * src * lam[None, :]) / N
    AK3 = _W(ws, _H(ws, K3))  # (P, P) dual
    CuA = 0.0
    for ph, pt, wb in _blocks(t, block):
        CuA = CuA + _wick_pass3(ph @ U, pt, wb, a, z, AK3)
    CuA = CuA / wsum
    E = Gsrc + 0.5 * _Wt(ws, K3)  # (P, P) primal: <eps>
    a_mean = U @ (a - g * m * (E @ a) + g * g * MSa)  # (P,)
    f_train = y - kap * a_mean
    f_test = g * (Q_test @ a_mean + CuW + (0.5 / N) * (uq + CuA) - g * bt)  # (P*,)
    return f_train, f_test


# ------------------------------------------------------------------ large P: draw space


@jax.jit
def _draw_space(phi, phi_test, w, z, su, M, a, g, kap, chi, N):
    """Body of `draw_space_correction` (one compilation per shape); w sums to 1."""
    sa = phi @ a  # (m,)  phi.a
    R = phi * sa[:, None] - (z @ a)[None, :]  # (m, P)  rows r_m = Zb_m a
    PM = phi @ M  # (m, P)
    Gm = PM @ phi.T  # (m, m)  phi_m^T M phi_n
    zM = z @ M  # (P, P)
    h = jnp.sum((PM @ z) * PM, axis=1)  # (m,)  phi^T M z M phi
    c0 = jnp.sum(zM * zM.T)  # tr(M z M z)
    trMZMZ = Gm * Gm - h[:, None] - h[None, :] + c0  # (m, m)
    GH = -chi * g * g * (R @ M @ R.T) + 0.5 * g * g * trMZMZ  # (m, m)  Z H Z^T
    GH = 0.5 * (GH + GH.T)
    Gam = jnp.linalg.solve(N * jnp.eye(w.size) - w[:, None] * GH, jnp.diag(w))  # (m, m)
    Gam = 0.5 * (Gam + Gam.T)  # (N - D GH)^-1 D, symmetric
    GamGH = Gam @ GH  # (m, m)
    # S = sum_mn Gam_mn Zb_m M Zb_n, Xi = sum_mn Gam_mn r_m r_n^T
    gr = jnp.sum(Gam, axis=1)  # (m,)
    S = (
        phi.T @ ((Gam * Gm) @ phi)
        - (phi.T * gr[None, :]) @ PM @ z
        - z @ PM.T @ (phi * gr[:, None])
        + jnp.sum(Gam) * (z @ M @ z)
    )
    S = 0.5 * (S + S.T)
    Xi = R.T @ Gam @ R  # (P, P)
    MSa = M @ (S @ a)  # (P,)
    L3G = chi * g**3 * (jnp.outer(a, MSa) + jnp.outer(MSa, a) + M @ Xi @ M) - g**3 * (M @ S @ M)
    src = -0.5 * g * M + 0.5 * L3G  # (P, P) dual
    sig = jnp.sum((phi @ src) * phi, axis=1) - jnp.sum(z * src)  # (m,)  Z src
    zt = lambda x: (phi.T * x[None, :]) @ phi - jnp.sum(x) * z  # noqa: E731  Z^T x (P, P)
    Gsrc = zt(Gam @ sig)  # (P, P) primal: G src
    q = (jnp.diag(GH) + jnp.sum(GH * GamGH.T, axis=1)) / N  # (m,)  zb^T A zb
    K3 = zt(w * q)  # (P, P)  E[zb q]
    HK3 = -chi * g * g * 0.5 * (
        jnp.outer(a, M @ K3 @ a) + jnp.outer(M @ K3 @ a, a)
    ) + 0.5 * g * g * (M @ K3 @ M)  # (P, P) dual
    zHK3 = jnp.sum((phi @ HK3) * phi, axis=1) - jnp.sum(z * HK3)  # (m,)
    WtK3 = (K3 + zt(w * jnp.linalg.solve((N * jnp.eye(w.size) - w[:, None] * GH).T, zHK3))) / N
    E = Gsrc + 0.5 * WtK3  # (P, P) primal: <eps>
    a_mean = a - g * M @ (E @ a) + g * g * MSa  # (P,)
    # test: u = phi_* (phi.a), C_u v = sum_m w_m (u_m - <u>) (Z v)_m
    ub = phi_test * sa[:, None] - su[None, :]  # (m, P*)
    ZWsrc = (sig + GH @ (Gam @ sig)) / N  # (m,)  Z W src
    zeta = (zHK3 + GH @ (Gam @ zHK3)) / N  # (m,)  Z A k3A
    s = (jnp.sum(PM * R, axis=1) + jnp.sum((PM @ R.T) * GamGH.T, axis=1)) / N  # (m,)
    f_test_parts = ub.T @ (w * ZWsrc) + (0.5 / N) * (ub.T @ (w * q) + ub.T @ (w * zeta))
    return a_mean, f_test_parts, phi_test.T @ (w * s)


@with_float64
def draw_space_correction(t: TiltedSample) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`dressed_correction` computed in the space of the M draws instead of the d = P(P+1)/2
    pairs: Sigma = Z^T D Z has rank M, so (N - H Sigma)^-1 follows from Woodbury with the
    (M, M) matrix N - D Z H Z^T, whose entries are P-space products of the draws
    (docs/one_loop.md, "Large P").  Same numbers as `dressed_correction` for the same draws;
    memory O(M^2 + M P + P^2), time O(M^2 P + M^3 + M P^2)."""
    t, g, kap, chi, N, Q, Q_test, y, M, a = _setup(t)  # (P, P), (P,)
    w = t.w / jnp.sum(t.w)  # (m,)
    z = (t.phi * w[:, None]).T @ t.phi  # (P, P)  E_t[phi phi^T]
    su = (t.phi_test * w[:, None]).T @ (t.phi @ a)  # (P*,)  E_t[u]
    a_mean, parts, bt = _draw_space(t.phi, t.phi_test, w, z, su, M, a, g, kap, chi, N)
    f_train = y - kap * a_mean
    f_test = g * (Q_test @ a_mean + parts - g * bt)
    if not (bool(jnp.all(jnp.isfinite(f_train))) and bool(jnp.all(jnp.isfinite(f_test)))):
        warnings.warn(
            f"dressed one-loop at chi={chi:g}: N - D Z H Z^T is singular (the propagator does "
            f"not exist); returning NaN",
            stacklevel=2,
        )
        return jnp.full_like(f_train, jnp.nan), jnp.full_like(f_test, jnp.nan)
    return f_train, f_test
