"""The recurrence h_t = φ(W h_{t−1} + d_t) for the nonlinearities that PyTorch's fused RNN kernels lack.

SpectralRNN runs relu and tanh in ``torch._VF.rnn_relu``/``rnn_tanh``. For the 2017 paper's copy task
(no nonlinearity), OPLU and PReLU, autograd through a Python loop records 3T nodes and replays them one
by one; this custom function keeps the loop but not the graph, so both passes cost T matrix products
each, like the fused kernel's:

    forward:   z_t = d_t + h_{t−1} Wᵀ,   h_t = φ(z_t),                        h_0 = 0
    backward:  ∂z_t = φ'(z_t) ⊙ (∂h_t + ∂z_{t+1} W),                          ∂z_{T+1} = 0
               ∂d_t = ∂z_t,   ∂W = Σ_t ∂z_tᵀ h_{t−1}  (one (T·B)×H product),   ∂a = Σ_{z<0} ∂h ⊙ z

(rows are batch entries, so h_{t−1} Wᵀ is W h_{t−1} per row). φ is the identity ("none"), OPLU
(each pair of units (a, b) ↦ (max(a, b), min(a, b)): its Jacobian permutes the pair), or PReLU
with slope a (learnable or not).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

ACTIVATIONS = ("none", "oplu", "prelu")


def _forward_activation(kind: str, z: torch.Tensor, slope: torch.Tensor | None, out: torch.Tensor) -> None:
    if kind == "oplu":
        a, b = z[..., 0::2], z[..., 1::2]
        out[..., 0::2] = torch.maximum(a, b)
        out[..., 1::2] = torch.minimum(a, b)
    else:
        out.copy_(torch.nn.functional.prelu(z, slope.reshape(1)))  # one fused kernel


def _backward_activation(kind: str, z: torch.Tensor, grad_h: torch.Tensor, slope: torch.Tensor | None) -> torch.Tensor:
    """φ'(z)ᵀ grad_h."""
    if kind == "none":
        return grad_h
    if kind == "oplu":
        a, b = z[..., 0::2], z[..., 1::2]
        g_max, g_min = grad_h[..., 0::2], grad_h[..., 1::2]
        first_is_max = a >= b
        grad_z = torch.empty_like(grad_h)
        grad_z[..., 0::2] = torch.where(first_is_max, g_max, g_min)
        grad_z[..., 1::2] = torch.where(first_is_max, g_min, g_max)
        return grad_z
    return torch.where(z >= 0, grad_h, grad_h * slope)


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, drive: torch.Tensor, weight: torch.Tensor, slope: torch.Tensor | None, kind: str):
        B, T, H = drive.shape
        weight_t = weight.t()
        pre = torch.empty(T, B, H, dtype=drive.dtype, device=drive.device) if kind != "none" else None
        states = torch.empty(T, B, H, dtype=drive.dtype, device=drive.device)
        h = drive.new_zeros(B, H)
        for t in range(T):
            if pre is None:  # the identity: the pre-activation is the state
                torch.addmm(drive[:, t], h, weight_t, out=states[t])
            else:
                _forward_activation(kind, torch.addmm(drive[:, t], h, weight_t, out=pre[t]), slope, states[t])
            h = states[t]
        ctx.kind = kind
        ctx.save_for_backward(weight, states, pre, slope)
        return states.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        weight, states, pre, slope = ctx.saved_tensors
        kind = ctx.kind
        grad_states = grad_out.transpose(0, 1)  # T × B × H
        T, B, H = grad_states.shape
        grad_pre = torch.empty_like(states)
        slope_grad_wanted = slope is not None and ctx.needs_input_grad[2]
        grad_states_full = torch.empty_like(states) if slope_grad_wanted else None  # ∂h_t with the carry
        carry = None
        for t in reversed(range(T)):
            grad_h = grad_states[t] if carry is None else grad_states[t] + carry
            if grad_states_full is not None:
                grad_states_full[t] = grad_h
            grad_pre[t] = grad_h if pre is None else _backward_activation(kind, pre[t], grad_h, slope)
            carry = grad_pre[t] @ weight
        grad_weight = None
        if ctx.needs_input_grad[1] and T > 1:
            grad_weight = grad_pre[1:].reshape(-1, H).t() @ states[:-1].reshape(-1, H)
        elif ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight)
        grad_slope = None
        if slope_grad_wanted:  # ∂a = Σ_{z<0} ∂h ⊙ z
            grad_slope = (grad_states_full * pre.clamp(max=0)).sum().reshape(slope.shape)
        return grad_pre.transpose(0, 1), grad_weight, grad_slope, None


def recurrence(drive: torch.Tensor, weight: torch.Tensor, kind: str = "none",
               slope: torch.Tensor | None = None) -> torch.Tensor:
    """h_1 … h_T (B × T × H) of h_t = φ(W h_{t−1} + d_t), h_0 = 0, for ``drive`` d (B × T × H).

    Args:
        drive: the input drive W_in x_t + b of every step, B × T × H.
        weight: the H × H transition W.
        kind: φ: "none", "oplu" (H even) or "prelu".
        slope: PReLU's slope a (a 0-d tensor, learnable or not); only with kind="prelu".

    Returns:
        The hidden states, B × T × H, with gradients for drive, weight and slope.

    Example::

        >>> import torch
        >>> from plainrnn.nets.recurrence import recurrence
        >>> d = torch.randn(2, 5, 4)
        >>> recurrence(d, torch.eye(4))[:, -1].allclose(d.sum(1), atol=1e-6)
        True
    """
    if kind not in ACTIVATIONS:
        raise ValueError(f"kind must be one of {', '.join(ACTIVATIONS)}, got {kind!r}")
    if (slope is None) != (kind != "prelu"):
        raise ValueError("slope is PReLU's: give it with kind='prelu' and only then")
    return _Recurrence.apply(drive, weight, slope, kind)
