"""What the 2017 paper plots: the spectrum of W over training (Fig. 3) and ‖∂L_T/∂h_t‖ over t (Fig. 2)."""
from __future__ import annotations

import torch

from ..nets.base import RecurrentModel
from ..stiefel import orthogonality_error


@torch.no_grad()
def spectral_stats(model) -> dict:
    """sv_min, sv_max, sv_mean, sv_std of W's singular values (first recurrent layer) and orth_error,
    the max over U and V of ‖UᵀU − I‖. Empty for models without orthogonal factors."""
    factors = model.orthogonal_parameters() if isinstance(model, RecurrentModel) else []
    if not factors:
        return {}
    s = torch.linalg.svdvals(model.recurrent_weight(0).double())
    return dict(sv_min=s.min().item(), sv_max=s.max().item(), sv_mean=s.mean().item(), sv_std=s.std().item(),
                orth_error=max(orthogonality_error(M.double()) for M in factors))


def hidden_gradient_norms(model, x: torch.Tensor, y: torch.Tensor, loss_fn) -> list[float]:
    """‖∂L/∂h_t‖ for t = 1..T: the total derivative of the loss with respect to each top-layer state
    (Frobenius norm over the batch). For a "last"-output model this is ‖∂L_T/∂h_t‖ of the 2017 paper's
    Figure 2. Runs an explicit loop over time (``model.unrolled_states``); ReLURNN and SpectralRNN."""
    if not isinstance(model, RecurrentModel):
        raise TypeError(f"hidden-state gradients need a plainrnn recurrent model, got {type(model).__name__}")
    states = model.unrolled_states(x)
    for h in states:
        h.retain_grad()
    top = states[-1] if model.output == "last" else torch.stack(states, 1)
    loss_fn(model.read_out(top), y).backward()
    return [h.grad.norm().item() for h in states]
