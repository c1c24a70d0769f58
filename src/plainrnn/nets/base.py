"""The contract of plainrnn's recurrent models: what the trainer, the diagnostics and the penalties
may ask of any of them (ReLURNN, SpectralRNN, LSTM).

    states = model.hidden_states(x)            # top-layer h_1..h_T, [B, T, H]
    y = model(x)                               # read-out of h_T ("last") or of every h_t ("all")
    W = model.recurrent_weight(layer)          # the transition of a layer (the LSTM: its 4 gate blocks)
    s = model.singular_values(layer)           # W's singular values (eq. 10's s for SpectralRNN)
    model.orthogonal_parameters()              # matrices kept orthogonal by geodesic steps ([] if none)
    steps = model.unrolled_states(x)           # h_1..h_T, each its own autograd node (for ‖∂L/∂h_t‖)

Inputs are either features [B, T, input_size] or, with ``vocab_size=V``, token ids [B, T], which
every model reads as one-hot vectors: token k enters as the k-th column of the first input weight.
"""
from __future__ import annotations

import torch
from torch import nn

OUTPUTS = ("last", "all")


def check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


class RecurrentModel(nn.Module):
    """Base class of the recurrent models: sizes checked in one place, the read-out, and defaults for
    the parts of the contract that only some models specialize."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int, output: str,
                 vocab_size: int | None):
        super().__init__()
        if vocab_size is not None:
            check_positive_int("vocab_size", vocab_size)
            input_size = vocab_size
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("output_size", output_size), ("num_layers", num_layers)):
            check_positive_int(name, value)
        check_choice("output", output, OUTPUTS)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.num_layers, self.output, self.vocab_size = num_layers, output, vocab_size

    # ------------------------------------------------------------------------------- the contract
    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """Top-layer states h_1..h_T as [B, T, H]."""
        raise NotImplementedError

    def recurrent_weight(self, layer: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def set_recurrent_weight_(self, layer: int, weight: torch.Tensor) -> None:
        raise NotImplementedError

    def recurrent_layers(self) -> int:
        return self.num_layers

    def singular_values(self, layer: int = 0) -> torch.Tensor:
        """The singular values of ``recurrent_weight(layer)`` (differentiable)."""
        return torch.linalg.svdvals(self.recurrent_weight(layer))

    def orthogonal_parameters(self) -> list[nn.Parameter]:
        """Matrices that a geodesic optimizer keeps orthogonal; none by default."""
        return []

    def unrolled_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Top-layer h_1..h_T from an explicit loop over time, each its own autograd node."""
        raise NotImplementedError(f"{type(self).__name__} has no explicit loop over time: the hidden-state "
                                  "gradients ‖∂L/∂h_t‖ are for ReLURNN and SpectralRNN")

    def read_out(self, states: torch.Tensor) -> torch.Tensor:
        """y = W_out h + b_out."""
        return nn.functional.linear(states, self.weight_out, self.bias_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = self.hidden_states(x)
        if self.output == "last":
            states = states[:, -1]
        return self.read_out(states)

    # --------------------------------------------------------------------------------- helpers
    def _check_layer(self, layer: int) -> None:
        if not (isinstance(layer, int) and 0 <= layer < self.num_layers):
            raise IndexError(f"layer must be in [0, {self.num_layers - 1}], got {layer!r}")

    def _check_features(self, x: torch.Tensor) -> None:
        if self.vocab_size is not None:
            if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"token mode expects integer ids of shape [B, T], got {tuple(x.shape)} {x.dtype}")
        elif x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input [B, T, {self.input_size}], got {tuple(x.shape)}")
