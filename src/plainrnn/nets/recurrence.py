"""Recurrences h_t = φ(W h_{t−1} + d_t), h_0 = 0, with explicit forward and backward loops.

Two autograd functions keep the loop but not the graph, so each pass costs T small matrix products
and the weight gradients one large product each, where autograd through a Python loop records 3T
nodes and replays them one by one:

    forward:   z_t = d_t + h_{t−1} Wᵀ,   h_t = φ(z_t),                        h_0 = 0
    backward:  ∂z_t = φ'(z_t) ⊙ (∂h_t + ∂z_{t+1} W),                          ∂z_{T+1} = 0
               ∂d_t = ∂z_t,   ∂W = Σ_t ∂z_tᵀ h_{t−1}  (one (T·B)×H product),   ∂a = Σ_{z<0} ∂h ⊙ z

(rows are batch entries, so h_{t−1} Wᵀ is W h_{t−1} per row).

* :func:`rnn_layer` (φ = ReLU or tanh): one layer with its input product, d_t = W_in x_t + b, time-major.
  It replaces torch's fused ``_VF.rnn_relu``/``rnn_tanh`` on the CPU, whose backward is autograd over
  every step's ops: the drive is one (T·B)×I product, each step an in-place ``addmm_`` and an in-place
  activation, the backward the same two per step (torch's own ``threshold_backward``/``tanh_backward``,
  the derivatives torch's relu and tanh use, so the numbers equal torch's to rounding), then ∂W, ∂W_in
  and ∂b as one product or sum each over all T·B rows. ReLU's φ' is read from h (h > 0), tanh's as
  1 − h², so only the states are kept. On the CPU both loops run in plainrnn's C++ extension
  (:mod:`plainrnn.native`, ``csrc/recurrence.cpp``): the same ATen product per step and the same
  activation arithmetic, without Python's dispatch of 2T small ops per pass; the same numbers.
* :func:`recurrence` (φ = identity, OPLU, PReLU, and ReLU/tanh from a given drive): the nonlinearities
  torch has no fused kernel for. OPLU maps each pair of units (a, b) to (max(a, b), min(a, b)) (its
  Jacobian permutes the pair); PReLU has slope a (learnable or not).
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..native import kernel

ACTIVATIONS = ("none", "oplu", "prelu")
FUSED = ("relu", "tanh")  # the ones rnn_layer runs (torch has fused kernels for these two)
# torch's own derivatives of relu (threshold_backward(grad, result, 0)) and tanh (tanh_backward(grad,
# result)), as out= variants: each step's backward writes into its own row of the gradient in place.
_relu_backward = torch.ops.aten.threshold_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


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


def _compiled(*tensors: torch.Tensor):
    """plainrnn's C++ extension when it runs these tensors (CPU, float32 or float64), else None: the
    same loops then run from Python (the same ATen product per step: the same numbers, bit for bit)."""
    if all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors):
        return kernel()
    return None


def _forward_steps(states: torch.Tensor, weight: torch.Tensor, kind: str) -> None:
    """In place: ``states`` (T × B × H) holds the drives d_t on entry and h_t = φ(d_t + h_{t−1} Wᵀ) on exit."""
    if (module := _compiled(states, weight)) is not None:  # the loop without Python's dispatch per op
        module.recurrence_forward_(states, weight.t(), kind == "relu")
        return
    activation = torch.relu_ if kind == "relu" else torch.tanh_
    steps, weight_t = states.unbind(0), weight.t()  # unbind: T views at once, not T indexing calls
    activation(steps[0])
    for previous, step in zip(steps, steps[1:]):
        step.addmm_(previous, weight_t)
        activation(step)


def _backward_steps(grad: torch.Tensor, states: torch.Tensor, weight: torch.Tensor, kind: str) -> None:
    """In place: ``grad`` holds ∂h_t from above on entry and ∂z_t = φ'(z_t) ⊙ (∂h_t + ∂z_{t+1} W) on exit."""
    if (module := _compiled(grad, states, weight)) is not None:
        module.recurrence_backward_(grad, states, weight, kind == "relu")
        return
    grads, steps = grad.unbind(0), states.unbind(0)
    for t in reversed(range(len(steps))):
        if t + 1 < len(steps):
            grads[t].addmm_(grads[t + 1], weight)
        if kind == "relu":
            _relu_backward(grads[t], steps[t], 0, grad_input=grads[t])
        else:
            _tanh_backward(grads[t], steps[t], grad_input=grads[t])


class _Layer(torch.autograd.Function):
    """h_1 … h_T (T × B × H) of h_t = φ(W_in x_t + b + W h_{t−1}); ``weight_ih`` None: x is the drive."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight_ih: torch.Tensor | None, bias: torch.Tensor | None,
                weight_hh: torch.Tensor, kind: str):
        T, B = x.shape[:2]
        H = weight_hh.shape[0]
        if weight_ih is None:
            states = x.clone(memory_format=torch.contiguous_format)
            if bias is not None:
                states.add_(bias)
            rows = None
        else:
            rows = x.reshape(T * B, x.shape[2])  # a copy only for a strided x (the first layer's, I small)
            states = torch.empty(T, B, H, dtype=x.dtype, device=x.device)
            if bias is None:
                torch.mm(rows, weight_ih.t(), out=states.view(T * B, H))
            else:
                torch.addmm(bias, rows, weight_ih.t(), out=states.view(T * B, H))
        _forward_steps(states, weight_hh, kind)
        ctx.kind, ctx.input_shape = kind, x.shape
        ctx.save_for_backward(rows, weight_ih, weight_hh, states)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: torch.Tensor):
        rows, weight_ih, weight_hh, states = ctx.saved_tensors
        T, B, H = states.shape
        grad = grad_states.clone(memory_format=torch.contiguous_format)  # overwritten with ∂z in place
        _backward_steps(grad, states, weight_hh, ctx.kind)
        flat = grad.view(T * B, H)
        grad_x = grad_ih = grad_b = grad_hh = None
        if ctx.needs_input_grad[0]:
            grad_x = grad if weight_ih is None else (flat @ weight_ih).view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_ih = (rows.t() @ flat).t()  # Iₓ(T·B) · (T·B)×H: the faster orientation of the same sums
        if ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        if ctx.needs_input_grad[3]:
            grad_hh = ((states[:-1].reshape(-1, H).t() @ grad[1:].reshape(-1, H)).t() if T > 1
                       else torch.zeros_like(weight_hh))
        return grad_x, grad_ih, grad_b, grad_hh, None


def rnn_layer(x: torch.Tensor, weight_ih: torch.Tensor | None, bias: torch.Tensor | None,
              weight_hh: torch.Tensor, kind: str = "relu") -> torch.Tensor:
    """One ReLU or tanh layer, time-major: h_t = φ(W_in x_t + b + W_hh h_{t−1}), h_0 = 0.

    Args:
        x: the inputs x_1 … x_T, T × B × I (any strides); with ``weight_ih=None``, the drives d_t
            (T × B × H), to which ``bias`` is added.
        weight_ih: W_in, H × I, or None (x is already the drive).
        bias: b (H) or None.
        weight_hh: W_hh, H × H (a parameter, or a matrix computed from some, as SpectralRNN's).
        kind: φ, "relu" or "tanh".

    Returns:
        h_1 … h_T, T × B × H (contiguous), differentiable in x, W_in, b and W_hh (once: no double
        backward). Equal to ``torch._VF.rnn_relu``/``rnn_tanh`` (and so ``nn.RNN``) to rounding.

    Example::

        >>> import torch
        >>> from plainrnn.nets.recurrence import rnn_layer
        >>> x, w_in, w = torch.randn(5, 2, 3), torch.randn(4, 3), 0.5 * torch.eye(4)
        >>> rnn = torch.nn.RNN(3, 4, nonlinearity="relu", bias=False)
        >>> with torch.no_grad():
        ...     _ = rnn.weight_ih_l0.copy_(w_in), rnn.weight_hh_l0.copy_(w)
        >>> torch.allclose(rnn_layer(x, w_in, None, w), rnn(x)[0], atol=1e-6)
        True
    """
    if kind not in FUSED:
        raise ValueError(f"kind must be one of {', '.join(FUSED)}, got {kind!r}")
    if x.dim() != 3:
        raise ValueError(f"x must be T × B × features, got shape {tuple(x.shape)}")
    return _Layer.apply(x, weight_ih, bias, weight_hh, kind)


def recurrence(drive: torch.Tensor, weight: torch.Tensor, kind: str = "none",
               slope: torch.Tensor | None = None) -> torch.Tensor:
    """h_1 … h_T (B × T × H) of h_t = φ(W h_{t−1} + d_t), h_0 = 0, for ``drive`` d (B × T × H).

    Args:
        drive: the input drive W_in x_t + b of every step, B × T × H.
        weight: the H × H transition W.
        kind: φ: "none", "oplu" (H even), "prelu", or "relu"/"tanh" (through :func:`rnn_layer`).
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
    if kind in FUSED and slope is None:
        return rnn_layer(drive.transpose(0, 1), None, None, weight, kind).transpose(0, 1)
    if kind not in ACTIVATIONS + FUSED:
        raise ValueError(f"kind must be one of {', '.join(ACTIVATIONS + FUSED)}, got {kind!r}")
    if (slope is None) != (kind != "prelu"):
        raise ValueError("slope is PReLU's: give it with kind='prelu' and only then")
    return _Recurrence.apply(drive, weight, slope, kind)
