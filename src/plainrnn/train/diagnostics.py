"""What the 2017 paper plots: the spectrum of W over training (Fig. 3) and ‖∂L_T/∂h_t‖ over t (Fig. 2)."""
from __future__ import annotations

import torch

from ..stiefel import orthogonality_error


@torch.no_grad()
def spectral_stats(model) -> dict:
    """sv_min, sv_max, sv_mean, sv_std of W's singular values (first recurrent layer) and orth_error,
    the max over U and V of ‖UᵀU − I‖. Empty for models without orthogonal factors."""
    if not hasattr(model, "orthogonal_parameters"):
        return {}
    s = torch.linalg.svdvals(model.recurrent_weight(0).double())
    return dict(sv_min=s.min().item(), sv_max=s.max().item(), sv_mean=s.mean().item(), sv_std=s.std().item(),
                orth_error=max(orthogonality_error(M.double()) for M in model.orthogonal_parameters()))


def hidden_gradient_norms(model, x: torch.Tensor, y: torch.Tensor, loss_fn) -> list[float]:
    """‖∂L/∂h_t‖ for t = 1..T (top-layer states, batch-summed), where L is the loss of the model's
    output. For a "last"-output model this is ‖∂L_T/∂h_t‖ of the paper's Figure 2."""
    states = model.hidden_states(x)
    states.retain_grad()
    out = states[:, -1] if model.output == "last" else states
    out = torch.nn.functional.linear(out, model.weight_out, model.bias_out)
    loss_fn(out, y).backward()
    return states.grad.norm(dim=(0, 2)).tolist()
