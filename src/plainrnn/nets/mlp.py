"""The ReLU multilayer perceptron of the 2015 Path-SGD paper.

    h^0 = x,   h^k = [W^k h^{k−1} + b^k]_+  (k = 1..d−1),   y = W^d h^{d−1} + b^d

Dropout (the paper trains with and without p = 0.5) acts on hidden activations during training
only; the path geometry (κ, path norm) is always that of the network without dropout.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """ReLU MLP, the 2015 paper's network: x → (Linear → ReLU)* → Linear.

    The default init is the 2015 paper's balanced one: W^k_ij ~ N(0, 1/fan_in), zero biases.

    Args:
        input_size: features in.
        hidden_sizes: the widths of the hidden layers (may be empty).
        output_size: logits out.
        bias: biases on every layer.
        dropout: dropout on the hidden units (the paper's Fig. 3 uses 0.5).

    Example::

        >>> import torch, plainrnn as pr
        >>> mlp = pr.MLP(784, [64, 64], 10)
        >>> tuple(mlp(torch.rand(3, 784)).shape)
        (3, 10)
    """

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], output_size: int, bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        sizes = [input_size, *hidden_sizes, output_size]
        for s in sizes:
            if not isinstance(s, int) or s < 1:
                raise ValueError(f"layer sizes must be positive integers, got {sizes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.sizes, self.bias, self.dropout = sizes, bias, dropout
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.weight.normal_(0.0, 1.0 / math.sqrt(layer.in_features), generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()

    def linears(self) -> list[nn.Linear]:
        return list(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
            if self.dropout:
                x = nn.functional.dropout(x, self.dropout, self.training)
        return self.layers[-1](x)
