"""LSTM baseline, set up as the papers' LSTM rows: orthogonal recurrent init, forget-gate bias 1."""
from __future__ import annotations

import torch
from torch import nn

from .base import RecurrentModel


class LSTM(RecurrentModel):
    """torch.nn.LSTM with a linear read-out, following :class:`~plainrnn.nets.base.RecurrentModel`.

    ``recurrent_weight(layer)`` returns the four H×H gate blocks stacked as torch stores them,
    [4H, H] (input, forget, cell, output). torch's LSTM has no peephole connections. Token ids are
    read as one-hot vectors, as by the other models (the first layer's input weight is 4H × V).

    Args:
        input_size, hidden_size, output_size, num_layers, output, vocab_size: as for :class:`ReLURNN`.

    Example::

        >>> import torch, plainrnn as pr
        >>> lstm = pr.LSTM(1, 16, 10, vocab_size=50)
        >>> tuple(lstm(torch.randint(0, 50, (2, 7))).shape)
        (2, 10)
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int = 1,
                 output: str = "last", vocab_size: int | None = None):
        super().__init__(input_size, hidden_size, output_size, num_layers, output, vocab_size)
        self.lstm = nn.LSTM(self.input_size, hidden_size, num_layers, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        H = self.hidden_size
        for k in range(self.num_layers):
            w_hh = getattr(self.lstm, f"weight_hh_l{k}")
            for gate in range(4):
                nn.init.orthogonal_(w_hh[gate * H:(gate + 1) * H])
            getattr(self.lstm, f"bias_hh_l{k}").zero_()
            b_ih = getattr(self.lstm, f"bias_ih_l{k}")
            b_ih.zero_()
            b_ih[H:2 * H] = 1.0  # forget gate: remember by default (Gers et al. 2000; Jozefowicz et al. 2015)

    def recurrent_weight(self, layer: int = 0) -> torch.Tensor:
        """The stacked gate blocks [4H, H] of ``layer`` (LSTM has no single transition matrix)."""
        self._check_layer(layer)
        return getattr(self.lstm, f"weight_hh_l{layer}")

    @torch.no_grad()
    def set_recurrent_weight_(self, layer: int, weight: torch.Tensor) -> None:
        """Sets the stacked gate blocks [4H, H] of ``layer``."""
        self.recurrent_weight(layer).copy_(weight)

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        self._check_features(x)
        if self.vocab_size is not None:
            x = nn.functional.one_hot(x, self.vocab_size).to(self.readout.weight.dtype)
        return self.lstm(x)[0]

    def read_out(self, states: torch.Tensor) -> torch.Tensor:
        return self.readout(states)
