"""Geodesic steps on the orthogonal group by the Cayley transform (Wen & Yin 2013; Tagare 2011).

For an orthogonal W and the Euclidean gradient G = ∂L/∂W (2017 paper, eq. 9):

    A = G Wᵀ − W Gᵀ                                   (skew-symmetric: Aᵀ = −A)
    W⁺ = (I + η/2·A)⁻¹ (I − η/2·A) W

(I + η/2 A)⁻¹(I − η/2 A) is the Cayley transform of a skew matrix, so it is orthogonal and W⁺ stays
orthogonal for every η. To first order, W⁺ = W − η A W = W − η (G − W Gᵀ W): the Riemannian gradient
step, so for small η the step descends.

Cost. With M = G Wᵀ, A = M − Mᵀ costs one matrix product (W Gᵀ = Mᵀ). And since
(I + B)⁻¹(I − B) = 2(I + B)⁻¹ − I, we get W⁺ = 2Y − W with (I + η/2 A) Y = W: one LU solve, no
inverse and no second product. The convention matters: the A above multiplies W from the left. A
reference implementation built A in this convention but multiplied W on the right, and its "descent"
step sometimes climbed (tests/stiefel checks the descent property).
"""
from __future__ import annotations

import torch


def skew_generator(W: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """A = G Wᵀ − W Gᵀ (eq. 9)."""
    M = G @ W.mT
    return M - M.mT


def cayley_step(W: torch.Tensor, G: torch.Tensor, lr: float) -> torch.Tensor:
    """The new orthogonal matrix W⁺ = (I + lr/2·A)⁻¹ (I − lr/2·A) W, by one linear solve."""
    if W.shape[-1] != W.shape[-2] or G.shape != W.shape:
        raise ValueError(f"cayley_step needs a square W and a G of the same shape, got {tuple(W.shape)} and {tuple(G.shape)}")
    lhs = skew_generator(W, G).mul_(lr / 2)
    lhs.diagonal(dim1=-2, dim2=-1).add_(1.0)
    Y = torch.linalg.solve(lhs, W)
    return Y.mul_(2).sub_(W)


def orthogonality_error(W: torch.Tensor) -> float:
    """‖WᵀW − I‖ in the max-abs norm: how far W has drifted off the orthogonal group."""
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    return (W.mT @ W - eye).abs().max().item()


@torch.no_grad()
def reorthonormalize_(W: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Pull W back onto the orthogonal group in place, towards its nearest orthogonal matrix (the
    polar factor), by Newton–Schulz iterations W ← W (3I − WᵀW)/2. Near an orthogonal matrix each
    iteration squares the error, so three take a drift of 1e-3 down to float64 rounding."""
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    for _ in range(iterations):
        W.copy_(W @ (1.5 * eye - 0.5 * (W.mT @ W)))
    return W
