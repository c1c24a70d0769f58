"""The plain recurrent network of the 2016 Path-SGD paper (its Table 1).

For layers i = 1..d and steps t = 1..T, with h_0^i = 0 and h_t^0 = x_t:

    h_t^i = σ(W_in^i h_t^{i−1} + W_rec^i h_{t−1}^i + b^i)        (Table 1)
    y_t   = W_out h_t^d + b_out

σ is ReLU (the paper's model), tanh (its baseline) or the identity ("none": the linear Elman network
of the 2017 paper's copy experiments, Fig. 4 left). Each layer has one bias b^i, an edge from a
constant-1 node (footnote 1), so the path norm counts it exactly once.

The ReLU and tanh recurrences run in :func:`plainrnn.nets.recurrence.rnn_layer` (``recurrence=
"plainrnn"``, the default): explicit forward and backward loops of one in-place product and one
activation per step, with the weight gradients as one product over all steps, which take about half
the time of PyTorch's fused CPU kernel (``plainrnn bench --only relu_recurrence_vs_fused``) and equal
it to rounding. ``recurrence="torch"`` runs that fused kernel (``torch._VF.rnn_relu`` / ``rnn_tanh``,
the one ``torch.nn.RNN`` uses, cuDNN's on a GPU), as every run made before the default changed did;
it wants two biases per layer, so we hand it our single bias plus a zero buffer, which changes nothing
numerically and keeps one bias per layer as a parameter. The linear recurrence always runs in
:func:`~plainrnn.nets.recurrence.recurrence`.

Token inputs (``vocab_size=V``): the input is a [B, T] tensor of token ids and the first layer's input
weight W_in^1 is H×V, so that token k enters as the k-th column of W_in^1 – exactly a one-hot input,
without ever building the one-hot batch.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import RecurrentModel, check_choice
from .recurrence import recurrence, rnn_layer

NONLINEARITIES = ("relu", "tanh", "none")
RECURRENCES = ("plainrnn", "torch")  # whose ReLU/tanh kernel: ours (rnn_layer) or torch's fused one


class ReLURNN(RecurrentModel):
    """Plain (Elman) RNN with ReLU or tanh units and a linear read-out.

    Args:
        input_size: features per step; ignored when ``vocab_size`` is given.
        hidden_size: H, units per layer.
        output_size: size of y_t.
        num_layers: d, stacked recurrent layers.
        nonlinearity: ``"relu"``, ``"tanh"`` or ``"none"`` (a linear recurrence).
        bias: whether layers and the read-out carry a bias.
        output: ``"last"`` returns y_T as [B, output_size]; ``"all"`` returns y_1..y_T as [B, T, output_size].
        vocab_size: if set, inputs are token ids [B, T] and W_in^1 has one column per token.
        recurrence: the ReLU/tanh kernel, ``"plainrnn"`` (ours) or ``"torch"`` (the fused one); the
            same numbers to rounding (module docstring).

    Parameters are named ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_l{k}`` (k = 0..d−1),
    ``weight_out`` and ``bias_out``.

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.ReLURNN(input_size=2, hidden_size=16, output_size=1)   # IRNN init
        >>> tuple(model(torch.rand(4, 10, 2)).shape)
        (4, 1)
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int = 1,
                 nonlinearity: str = "relu", bias: bool = True, output: str = "last",
                 vocab_size: int | None = None, recurrence: str = "plainrnn"):
        super().__init__(input_size, hidden_size, output_size, num_layers, output, vocab_size)
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        check_choice("recurrence", recurrence, RECURRENCES)
        self.nonlinearity, self.bias, self.recurrence = nonlinearity, bias, recurrence
        input_size = self.input_size
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(hidden_size, fan_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(hidden_size, hidden_size)))
            if bias:
                self.register_parameter(f"bias_l{k}", nn.Parameter(torch.zeros(hidden_size)))
        self.weight_out = nn.Parameter(torch.empty(output_size, hidden_size))
        self.bias_out = nn.Parameter(torch.zeros(output_size)) if bias else None
        # The fused kernel's second bias, always zero (see the module docstring).
        self.register_buffer("_zero_bias", torch.zeros(hidden_size), persistent=False)
        if vocab_size is not None:
            # In token mode the first layer's input product is done by an embedding lookup, and the
            # fused kernel sees the looked-up columns through an identity input matrix.
            self.register_buffer("_eye", torch.eye(hidden_size), persistent=False)
        self.reset_parameters()

    # ----------------------------------------------------------------------------------- structure
    def reset_parameters(self) -> None:
        """The 2016 paper's default: every weight from U[−0.01, 0.01], identity recurrence, zero bias."""
        from .init import init_rnn_
        init_rnn_(self, recurrent="identity", nonrecurrent_scale=0.01)

    def weight_ih(self, layer: int) -> torch.Tensor:
        return getattr(self, f"weight_ih_l{layer}")

    def weight_hh(self, layer: int) -> torch.Tensor:
        return getattr(self, f"weight_hh_l{layer}")

    def layer_bias(self, layer: int) -> torch.Tensor | None:
        return getattr(self, f"bias_l{layer}") if self.bias else None

    def recurrent_weight(self, layer: int = 0) -> torch.Tensor:
        """The effective H×H transition matrix W_rec of ``layer``."""
        self._check_layer(layer)
        return self.weight_hh(layer)

    @torch.no_grad()
    def set_recurrent_weight_(self, layer: int, weight: torch.Tensor) -> None:
        self._check_layer(layer)
        self.weight_hh(layer).copy_(weight)

    # ------------------------------------------------------------------------------------- forward
    def _flat_weights(self) -> list[torch.Tensor]:
        flat = []
        for k in range(self.num_layers):
            w_ih = self._eye if (k == 0 and self.vocab_size is not None) else self.weight_ih(k)
            flat += [w_ih, self.weight_hh(k)]
            if self.bias:
                flat += [self.layer_bias(k), self._zero_bias]
        return flat

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """Top-layer states h_1..h_T as [B, T, H]."""
        self._check_features(x)
        if self.vocab_size is not None:
            x = nn.functional.embedding(x, self.weight_ih(0).t())
        if self.nonlinearity == "none":  # no fused kernel is linear: h_t = drive_t + W_rec h_{t−1}
            for k in range(self.num_layers):
                if k == 0 and self.vocab_size is not None:  # already W_in^1's columns: no identity product
                    drive = x if self.layer_bias(0) is None else x + self.layer_bias(0)
                else:
                    drive = nn.functional.linear(x, self.weight_ih(k), self.layer_bias(k))
                x = recurrence(drive, self.weight_hh(k), "none")
            return x
        if self.recurrence == "plainrnn":  # time-major through the stack: each layer's states are the next's rows
            states = x.transpose(0, 1)
            for k in range(self.num_layers):
                token_columns = k == 0 and self.vocab_size is not None  # x is W_in^1's columns: the drive
                states = rnn_layer(states, None if token_columns else self.weight_ih(k), self.layer_bias(k),
                                   self.weight_hh(k), self.nonlinearity)
            return states.transpose(0, 1)
        h0 = x.new_zeros(self.num_layers, x.shape[0], self.hidden_size)
        rnn = torch._VF.rnn_relu if self.nonlinearity == "relu" else torch._VF.rnn_tanh
        states, _ = rnn(x, h0, self._flat_weights(), self.bias, self.num_layers, 0.0, self.training,
                        False, True)
        return states

    def unrolled_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Top-layer h_1..h_T from an explicit Python loop (slow; for diagnostics that need each h_t as
        its own autograd node, e.g. ‖∂L/∂h_t‖ – the fused kernel's output only carries direct paths)."""
        act = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda z: z}[self.nonlinearity]
        if self.vocab_size is not None:
            below = nn.functional.embedding(x, self.weight_ih(0).t())
        else:
            below = nn.functional.linear(x, self.weight_ih(0))
        steps = []
        for k in range(self.num_layers):
            drive = below if k == 0 else nn.functional.linear(below, self.weight_ih(k))
            if self.bias:
                drive = drive + self.layer_bias(k)
            Wt = self.weight_hh(k).t()
            h = drive.new_zeros(drive.shape[0], self.hidden_size)
            steps = []
            for t in range(drive.shape[1]):
                h = act(torch.addmm(drive[:, t], h, Wt))
                steps.append(h)
            below = torch.stack(steps, 1)
        return steps

    def extra_repr(self) -> str:
        mode = f"vocab_size={self.vocab_size}" if self.vocab_size else f"input_size={self.input_size}"
        return (f"{mode}, hidden_size={self.hidden_size}, output_size={self.output_size}, "
                f"num_layers={self.num_layers}, nonlinearity={self.nonlinearity!r}, bias={self.bias}, "
                f"output={self.output!r}" + (", recurrence='torch'" if self.recurrence == "torch" else ""))
