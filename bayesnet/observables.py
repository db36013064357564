"""Scalar observables of a hidden kernel K (P, P): the one definition for samplers and theory.

ŷ = y / |y| is the unit target.  kernel_target = ŷᵀ K ŷ (the kernel along the labels),
kernel_trace = tr K / P (its mean eigenvalue), kernel_alignment = the centred kernel-target
alignment <K_c, ŷ_c ŷ_cᵀ>_F / (|K_c|_F |ŷ_c|²).  All are dimensionless for a dimensionless K
(docs/conventions.md).  Written with array methods only, so numpy and jax arrays (also traced
ones, and stacks (..., P, P)) go through the same code without converting between the two.
"""

from __future__ import annotations

from typing import Any

Array = Any  # numpy or jax array


def unit_target(y: Array) -> Array:
    """ŷ = y / |y| along the last axis, shape of y."""
    return y / ((y * y).sum(axis=-1, keepdims=True) ** 0.5)


def kernel_scalars(K: Array, y: Array) -> dict[str, Array]:
    """{kernel_target: ŷᵀKŷ, kernel_trace: tr K / P} of K (..., P, P), each of shape (...)."""
    yh = unit_target(y)  # (P,)
    target = ((K @ yh) * yh).sum(axis=-1)
    trace = K.diagonal(axis1=-2, axis2=-1).sum(axis=-1) / K.shape[-1]
    return {"kernel_target": target, "kernel_trace": trace}


def kernel_alignment(K: Array, y: Array) -> Array:
    """Centred kernel-target alignment of K (..., P, P) with y (P,), in [-1, 1]; shape (...)."""
    yh = unit_target(y)
    yc = yh - yh.mean()  # H ŷ with H the centring projector: H ŷŷᵀ H = yc ycᵀ
    Kc = (
        K
        - K.mean(axis=-2, keepdims=True)
        - K.mean(axis=-1, keepdims=True)
        + K.mean(axis=(-2, -1), keepdims=True)
    )  # H K H
    norm = ((Kc * Kc).sum(axis=(-2, -1))) ** 0.5
    return ((Kc @ yc) * yc).sum(axis=-1) / (norm * (yc @ yc) + 1e-300)


def factored_kernel_scalars(G: Array, y: Array) -> dict[str, Array]:
    """The three scalars of K = Gᵀ G from a factor G (m, P), without forming K (P, P).

    ŷᵀKŷ = |G ŷ|², tr K = |G|²_F and, with G_c = G H, |K_c|_F = |G_c G_cᵀ|_F (m x m): the cost
    is O(m² P), which is what the exact linear sampler needs at small m = min(N, D + 1).
    """
    yh = unit_target(y)  # (P,)
    yc = yh - yh.mean()
    Gc = G - G.mean(axis=-1, keepdims=True)  # (m, P)
    M = Gc @ Gc.T  # (m, m)
    Gy = G @ yh  # (m,)
    Gyc = Gc @ yc  # (m,)
    return {
        "kernel_target": Gy @ Gy,
        "kernel_trace": (G * G).sum() / G.shape[-1],
        "kernel_alignment": (Gyc @ Gyc) / (((M * M).sum()) ** 0.5 * (yc @ yc) + 1e-300),
    }
