"""What the 2017 paper plots: the spectrum of W over training (Fig. 3) and ‖∂L_T/∂h_t‖ over t (Fig. 2)."""
from __future__ import annotations

import torch

from ..nets.base import RecurrentModel
from ..stiefel import orthogonality_error


@torch.no_grad()
def spectral_stats(model) -> dict:
    """sv_min, sv_max, sv_mean, sv_std of W's singular values (first recurrent layer) for every model with
    a square transition matrix (SpectralRNN and the plain ReLURNN: Fig. 4 (left) penalizes λ‖WᵀW − I‖²,
    whose size is Σ(s_i² − 1)², so the spectrum shows what a penalty holds), and, for factorized models,
    orth_error, the max over U and V of ‖UᵀU − I‖. Empty for the LSTM (four stacked gate blocks, no
    single W) and for non-recurrent models."""
    if not isinstance(model, RecurrentModel):
        return {}
    W = model.recurrent_weight(0)
    if W.shape[0] != W.shape[1]:
        return {}
    s = torch.linalg.svdvals(W.double())
    stats = dict(sv_min=s.min().item(), sv_max=s.max().item(), sv_mean=s.mean().item(), sv_std=s.std().item())
    factors = model.orthogonal_parameters()
    if factors:
        stats["orth_error"] = max(orthogonality_error(M.double()) for M in factors)
    return stats


def hidden_gradient_norms(model, x: torch.Tensor, y: torch.Tensor, loss_fn) -> list[float]:
    """‖∂L_T/∂h_t‖ for t = 1..T, the 2017 paper's Figure 2: the total derivative of the loss *of the last
    output* with respect to each top-layer state (Frobenius norm over the batch). For a model with an
    output at every step (copy, language models) only y_T's loss counts, as in the paper: the total
    loss would mostly measure each step's own output, not how the signal travels back from T.
    Runs an explicit loop over time (``model.unrolled_states``); ReLURNN and SpectralRNN."""
    if not isinstance(model, RecurrentModel):
        raise TypeError(f"hidden-state gradients need a plainrnn recurrent model, got {type(model).__name__}")
    states = model.unrolled_states(x)
    for h in states:
        h.retain_grad()
    if model.output == "last":
        loss_fn(model.read_out(states[-1]), y).backward()
    else:  # the task's loss on a sequence of one step: the last
        loss_fn(model.read_out(states[-1]).unsqueeze(1), y[:, -1:]).backward()
    return [h.grad.norm().item() for h in states]
