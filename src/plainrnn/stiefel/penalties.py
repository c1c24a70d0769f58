"""Soft constraints of the 2017 paper (§3.1, §3.2), usable with any recurrent model.

    orthogonality_penalty(W)   = ‖WᵀW − I‖²_F                       (§3.2; multiply by λ)
    singular_value_prior(s)    = Σ_i (s_i − 1)²                      (a mean-one Gaussian prior, §3.2)
    composite_weight_decay(W)  = ‖W‖²_F of the composite W = U S Vᵀ (§3.1: weight decay applies to W,
                                 not to the factors; for orthogonal U, V it equals Σ s_i²)
"""
from __future__ import annotations

import torch


def orthogonality_penalty(W: torch.Tensor) -> torch.Tensor:
    """‖WᵀW − I‖²_F, the soft orthogonality constraint of the 2017 paper (§3.2); multiply by λ.

    Args:
        W: a square matrix.

    Returns:
        A differentiable scalar.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import orthogonality_penalty
        >>> float(orthogonality_penalty(2 * torch.eye(3)))  # 3 · (4 − 1)²
        27.0
    """
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    return (W.mT @ W - eye).square().sum()


def singular_value_prior(s: torch.Tensor) -> torch.Tensor:
    """Σ_i (s_i − 1)²: the negative log of a mean-one Gaussian prior on the singular values (§3.2).

    Args:
        s: singular values.

    Returns:
        A differentiable scalar.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import singular_value_prior
        >>> float(singular_value_prior(torch.tensor([1.0, 1.5, 0.5])))
        0.5
    """
    return (s - 1).square().sum()


def composite_weight_decay(W: torch.Tensor) -> torch.Tensor:
    """‖W‖²_F of the composite W = U S Vᵀ (§3.1: weight decay on W, not on its factors).

    Args:
        W: the composite recurrent matrix.

    Returns:
        A differentiable scalar; Σ s_i² when U and V are orthogonal.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import composite_weight_decay
        >>> float(composite_weight_decay(torch.diag(torch.tensor([1.0, 2.0]))))
        5.0
    """
    return W.square().sum()


def recurrent_penalty(model, *, orth: float = 0.0, sv_prior: float = 0.0, weight_decay: float = 0.0) -> torch.Tensor | float:
    """λ_orth Σ_l ‖W_lᵀW_l − I‖² + λ_sv Σ_l Σ_i (s_i − 1)² + λ_wd Σ_l ‖W_l‖², over the recurrent
    layers of ``model`` (a :class:`~plainrnn.nets.base.RecurrentModel`). The prior takes
    ``model.singular_values(l)``: eq. 10's s for SpectralRNN, an SVD of W for the others.

    Args:
        model: a recurrent model.
        orth, sv_prior, weight_decay: the three λ (0 leaves a term out).

    Returns:
        The penalty, a differentiable scalar (0.0 when every λ is 0).

    Example::

        >>> import plainrnn as pr
        >>> from plainrnn.stiefel import recurrent_penalty
        >>> model = pr.SpectralRNN(2, 4, 1, margin=0.1)
        >>> recurrent_penalty(model, orth=1.0).item() < 1e-10  # W = U Vᵀ at init: orthogonal
        True
    """
    total = 0.0
    for layer in range(model.recurrent_layers()):
        W = model.recurrent_weight(layer)
        if orth:
            total = total + orth * orthogonality_penalty(W)
        if sv_prior:
            s = model.singular_values(layer)  # eq. 10's s for SpectralRNN, an SVD for the others
            total = total + sv_prior * singular_value_prior(s)
        if weight_decay:
            total = total + weight_decay * composite_weight_decay(W)
    return total
