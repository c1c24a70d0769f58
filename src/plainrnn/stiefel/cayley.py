"""Geodesic steps on the orthogonal group by the Cayley transform (Wen & Yin 2013; Tagare 2011).

For an orthogonal W and the Euclidean gradient G = ∂L/∂W (2017 paper, eq. 9):

    A = G Wᵀ − W Gᵀ                                   (skew-symmetric: Aᵀ = −A)
    W⁺ = (I + η/2·A)⁻¹ (I − η/2·A) W

(I + η/2 A)⁻¹(I − η/2 A) is the Cayley transform of a skew matrix, so it is orthogonal and W⁺ stays
orthogonal for every η. To first order, W⁺ = W − η A W = W − η (G − W Gᵀ W): the Riemannian gradient
step, so for small η the step descends.

Cost. With M = G Wᵀ, A = M − Mᵀ costs one matrix product (W Gᵀ = Mᵀ). And since
(I + B)⁻¹(I − B) = 2(I + B)⁻¹ − I, we get W⁺ = 2Y − W with (I + η/2 A) Y = W: one LU solve, no
inverse and no second product. When η‖A‖ is small enough that a short Neumann series for
(I + B)⁻¹ is exact to rounding, a matrix product replaces the solve (see ``cayley_step``). The convention matters: the A above multiplies W from the left. A
reference implementation built A in this convention but multiplied W on the right, and its "descent"
step sometimes climbed (tests/stiefel checks the descent property).
"""
from __future__ import annotations

import torch


def skew_generator(W: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """A = G Wᵀ − W Gᵀ (2017 paper, eq. 9), the skew-symmetric generator of the Cayley step.

    Args:
        W: an orthogonal matrix (or a batch of them).
        G: ∂L/∂W, the same shape.

    Returns:
        A, skew-symmetric (Aᵀ = −A).

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import skew_generator
        >>> A = skew_generator(torch.eye(3), torch.randn(3, 3))
        >>> bool(torch.allclose(A, -A.T))
        True
    """
    M = G @ W.mT
    return M - M.mT


def cayley_step(W: torch.Tensor, G: torch.Tensor, lr: float, method: str = "auto") -> torch.Tensor:
    """The new orthogonal matrix W⁺ = (I + lr/2·A)⁻¹ (I − lr/2·A) W = 2(I + B)⁻¹W − W, B = lr/2·A.

    ``method="solve"`` always does one LU solve. ``method="auto"`` (default) first bounds b = ‖B‖_F
    (≥ ‖B‖₂): when b^{k+1}/(1 − b) ≤ eps/2 for some k ≤ 3, the Neumann series
    (I + B)⁻¹W = Σ_{j≤k} (−B)^j W is exact to rounding and costs k matrix products instead of a solve
    (k = 1 at the 2017 paper's geodesic lr 1e-6); otherwise it solves. Both give the same W⁺ to the
    working precision, so orthogonality is kept either way.

    Args:
        W: an orthogonal matrix (or a batch of them).
        G: ∂L/∂W, the same shape.
        lr: the geodesic step size η.
        method: "auto" or "solve".

    Returns:
        W⁺, orthogonal, a new tensor.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import cayley_step, orthogonality_error
        >>> W = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
        >>> W2 = cayley_step(W, torch.randn(5, 5, dtype=torch.float64), lr=0.5)
        >>> orthogonality_error(W2) < 1e-12
        True
    """
    if W.shape[-1] != W.shape[-2] or G.shape != W.shape:
        raise ValueError(f"cayley_step needs a square W and a G of the same shape, got {tuple(W.shape)} and {tuple(G.shape)}")
    if method not in ("auto", "solve"):
        raise ValueError(f"method must be 'auto' or 'solve', got {method!r}")
    A = skew_generator(W, G)
    if method == "auto":
        b = lr / 2 * float(torch.linalg.matrix_norm(A).max())  # a batch: the bound of its largest B
        k = series_terms(b, torch.finfo(W.dtype).eps)
        if k is not None:
            Y, term = W.clone(), W
            for _ in range(k):
                term = (A @ term).mul_(-lr / 2)
                Y.add_(term)
            return Y.mul_(2).sub_(W)
    lhs = A.mul_(lr / 2)
    lhs.diagonal(dim1=-2, dim2=-1).add_(1.0)
    Y = torch.linalg.solve(lhs, W)
    return Y.mul_(2).sub_(W)


def series_terms(b: float, eps: float) -> int | None:
    """How many Neumann terms make (I + B)⁻¹ ≈ Σ_{j≤k} (−B)^j exact to rounding, given b ≥ ‖B‖.

    The remainder Σ_{j>k} (−B)^j is at most b^{k+1}/(1 − b) in norm (b < 1), so the fewest k ≤ 3 with
    b^{k+1}/(1 − b) ≤ eps/2 is exact to the working precision eps; more than 3 products would cost
    about as much as the LU solve that replaces them.

    Args:
        b: a bound on ‖B‖₂ (``cayley_step`` passes ‖lr/2 · A‖_F).
        eps: the dtype's machine epsilon.

    Returns:
        k in {1, 2, 3}, or None when the series is not exact within 3 terms (then solve).

    >>> series_terms(1e-9, 2.0 ** -52), series_terms(1e-6, 2.0 ** -52), series_terms(1e-3, 2.0 ** -52)
    (1, 2, None)
    """
    if b >= 1:
        return None
    for k in (1, 2, 3):
        if b ** (k + 1) / (1 - b) <= eps / 2:
            return k
    return None


def orthogonality_error(W: torch.Tensor) -> float:
    """‖WᵀW − I‖ in the max-abs norm: how far W has drifted off the orthogonal group.

    Args:
        W: a square matrix.

    Returns:
        A float.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import orthogonality_error
        >>> orthogonality_error(torch.eye(4)), orthogonality_error(2 * torch.eye(2))
        (0.0, 3.0)
    """
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    return (W.mT @ W - eye).abs().max().item()


@torch.no_grad()
def reorthonormalize_(W: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Pull W back onto the orthogonal group in place, towards its nearest orthogonal matrix (the
    polar factor), by Newton–Schulz iterations W ← W (3I − WᵀW)/2. Near an orthogonal matrix each
    iteration squares the error, so three take a drift of 1e-3 down to float64 rounding.

    Args:
        W: a nearly orthogonal square matrix, overwritten.
        iterations: Newton–Schulz iterations.

    Returns:
        W.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import orthogonality_error, reorthonormalize_
        >>> W = torch.eye(3, dtype=torch.float64) + 1e-3 * torch.randn(3, 3, dtype=torch.float64)
        >>> orthogonality_error(reorthonormalize_(W)) < 1e-12
        True
    """
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    for _ in range(iterations):
        W.copy_(W @ (1.5 * eye - 0.5 * (W.mT @ W)))
    return W
