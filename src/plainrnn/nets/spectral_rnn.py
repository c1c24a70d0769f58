"""The spectrally constrained RNN of the 2017 paper: W = U diag(s) Vᵀ.

    h_t = σ(W_in x_t + U diag(s) Vᵀ h_{t−1} + b),    y_t = W_out h_t + b_out

U and V are H×H orthogonal matrices, kept orthogonal by geodesic (Cayley) steps
(:class:`plainrnn.optim.StiefelSGD`). With ``margin=m`` the singular values are held in [1−m, 1+m]:

    s_i = 2m (σ(p_i) − 0.5) + 1                                              (eq. 10)

and with ``margin=None`` s is a free parameter. m = 0 makes W orthogonal.

Nonlinearities: relu, tanh (fused kernel), none, OPLU (Chernodub & Nowicki 2016: each pair of units
(a, b) becomes (max(a, b), min(a, b)), which preserves the norm), and PReLU with a fixed slope or,
with ``learn_slope=True``, a learnable one (the paper's appendix starts it at 0.7).
"""
from __future__ import annotations

import torch
from torch import nn

from ..stiefel.spectral import singular_values, spectrum_of
from .base import RecurrentModel, check_choice
from .init import recurrent_matrix
from .recurrence import recurrence, rnn_layer
from .relu_rnn import RECURRENCES

NONLINEARITIES = ("relu", "tanh", "none", "oplu", "prelu")


def oplu(z: torch.Tensor) -> torch.Tensor:
    a, b = z[..., 0::2], z[..., 1::2]
    return torch.stack((torch.maximum(a, b), torch.minimum(a, b)), dim=-1).flatten(-2)


class SpectralRNN(RecurrentModel):
    """Plain RNN whose transition is factored as U diag(s) Vᵀ; same interface as :class:`ReLURNN`.

    Parameters are named ``weight_ih_l{k}``, ``U_l{k}``, ``V_l{k}``, ``spectrum_l{k}`` (p of eq. 10, or
    s itself without a margin), ``bias_l{k}``, ``weight_out``, ``bias_out`` (and ``slope`` for a learnable
    PReLU). ``orthogonal_parameters()`` lists the U and V matrices for a Stiefel optimizer.

    Args:
        input_size, hidden_size, output_size, num_layers, output, bias, vocab_size, recurrence: as for
            :class:`ReLURNN` (``recurrence`` picks the relu/tanh kernel).
        margin: m of eq. 10, singular values in [1 − m, 1 + m]; None: free singular values.
        nonlinearity: "tanh", "relu", "none", "oplu", "prelu"
            (:mod:`plainrnn.nets.recurrence`).
        init: U and V "orthogonal" (random) or "identity".
        prelu_slope: PReLU's slope a; learn_slope: make it a parameter.

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.SpectralRNN(10, 16, 9, margin=0.1, nonlinearity="none", output="all")
        >>> s = model.singular_values(0)
        >>> tuple(model(torch.rand(2, 5, 10)).shape), bool(((s >= 0.9) & (s <= 1.1)).all())
        ((2, 5, 9), True)
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, margin: float | None = None,
                 nonlinearity: str = "tanh", output: str = "last", num_layers: int = 1, bias: bool = True,
                 vocab_size: int | None = None, init: str = "orthogonal", prelu_slope: float = 0.7,
                 learn_slope: bool = False, recurrence: str = "plainrnn"):
        super().__init__(input_size, hidden_size, output_size, num_layers, output, vocab_size)
        check_choice("recurrence", recurrence, RECURRENCES)
        self.recurrence = recurrence
        if margin is not None and not (isinstance(margin, (int, float)) and margin >= 0):
            raise ValueError(f"margin must be None or a number >= 0, got {margin!r}")
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if nonlinearity == "oplu" and hidden_size % 2:
            raise ValueError(f"hidden_size must be even for OPLU, which pairs units, got {hidden_size}")
        check_choice("init", init, ("orthogonal", "identity"))  # other schemes: plainrnn.nets.init_recurrent_
        self.margin, self.nonlinearity, self.bias = margin, nonlinearity, bias
        input_size = self.input_size
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(hidden_size, fan_in)))
            self.register_parameter(f"U_l{k}", nn.Parameter(torch.eye(hidden_size)))
            self.register_parameter(f"V_l{k}", nn.Parameter(torch.eye(hidden_size)))
            self.register_parameter(f"spectrum_l{k}", nn.Parameter(torch.zeros(hidden_size) if margin is not None
                                                                   else torch.ones(hidden_size)))
            if bias:
                self.register_parameter(f"bias_l{k}", nn.Parameter(torch.zeros(hidden_size)))
        self.weight_out = nn.Parameter(torch.empty(output_size, hidden_size))
        self.bias_out = nn.Parameter(torch.zeros(output_size)) if bias else None
        if nonlinearity == "prelu":
            slope = torch.tensor(float(prelu_slope))
            if learn_slope:
                self.slope = nn.Parameter(slope)
            else:
                self.register_buffer("slope", slope)
        self.register_buffer("_zero_bias", torch.zeros(hidden_size), persistent=False)
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: str = "orthogonal") -> None:
        """Glorot-uniform input and output weights, zero biases, s = 1, and U, V orthogonal or identity."""
        for name, p in self.named_parameters():
            if name.startswith(("weight_ih", "weight_out")):
                nn.init.xavier_uniform_(p)
            elif name.startswith("bias"):
                p.zero_()
        for k in range(self.num_layers):
            for M in (self.U(k), self.V(k)):
                M.copy_(recurrent_matrix(init, self.hidden_size, dtype=M.dtype))
            self.spectrum(k).copy_(torch.zeros(self.hidden_size) if self.margin is not None else torch.ones(self.hidden_size))

    # ---------------------------------------------------------------------------------- structure
    def U(self, layer: int) -> nn.Parameter:
        return getattr(self, f"U_l{layer}")

    def V(self, layer: int) -> nn.Parameter:
        return getattr(self, f"V_l{layer}")

    def spectrum(self, layer: int) -> nn.Parameter:
        return getattr(self, f"spectrum_l{layer}")

    def weight_ih(self, layer: int) -> nn.Parameter:
        return getattr(self, f"weight_ih_l{layer}")

    def orthogonal_parameters(self) -> list[nn.Parameter]:
        return [M for k in range(self.num_layers) for M in (self.U(k), self.V(k))]

    def singular_values(self, layer: int = 0) -> torch.Tensor:
        """s of eq. 10: 2m(σ(p) − 0.5) + 1 with a margin, p itself without."""
        return singular_values(self.spectrum(layer), self.margin)

    def recurrent_weight(self, layer: int = 0) -> torch.Tensor:
        """The composite H×H transition W = U diag(s) Vᵀ."""
        self._check_layer(layer)
        return (self.U(layer) * self.singular_values(layer)) @ self.V(layer).t()

    @torch.no_grad()
    def set_recurrent_weight_(self, layer: int, weight: torch.Tensor) -> None:
        """Factor ``weight`` = U S Vᵀ by SVD. With a margin, S is clipped into [1−m, 1+m] first."""
        U, S, Vh = torch.linalg.svd(weight.to(torch.float64))
        self.U(layer).copy_(U)
        self.V(layer).copy_(Vh.t())
        self.spectrum(layer).copy_(spectrum_of(S, self.margin))

    # ------------------------------------------------------------------------------------ forward
    def _activation(self, z: torch.Tensor) -> torch.Tensor:
        if self.nonlinearity == "none":
            return z
        if self.nonlinearity == "oplu":
            return oplu(z)
        return torch.where(z >= 0, z, self.slope * z)  # prelu

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        self._check_features(x)
        if self.vocab_size is not None:
            x = nn.functional.one_hot(x, self.vocab_size).to(self.weight_out.dtype)
        for k in range(self.num_layers):
            W = self.recurrent_weight(k)
            b = getattr(self, f"bias_l{k}") if self.bias else None
            if self.nonlinearity in ("relu", "tanh") and self.recurrence == "plainrnn":
                # One composite W per forward, then our loops (as ReLURNN's); ∂W flows on into U, s, V.
                x = rnn_layer(x.transpose(0, 1), self.weight_ih(k), b, W, self.nonlinearity).transpose(0, 1)
            elif self.nonlinearity in ("relu", "tanh"):
                # One composite W per forward, then PyTorch's fused recurrence.
                rnn = torch._VF.rnn_relu if self.nonlinearity == "relu" else torch._VF.rnn_tanh
                flat = [self.weight_ih(k), W] + ([b, self._zero_bias] if self.bias else [])
                h0 = x.new_zeros(1, x.shape[0], self.hidden_size)
                x, _ = rnn(x, h0, flat, self.bias, 1, 0.0, self.training, False, True)
            else:
                # No fused kernel for these: a custom function with explicit loops both ways
                # (plainrnn.nets.recurrence), T matrix products per pass and no per-step graph.
                drive = nn.functional.linear(x, self.weight_ih(k), b)
                x = recurrence(drive, W, self.nonlinearity, self.slope if self.nonlinearity == "prelu" else None)
        return x

    def unrolled_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Top-layer h_1..h_T from an explicit loop, each its own autograd node (for ‖∂L/∂h_t‖)."""
        act = {"relu": torch.relu, "tanh": torch.tanh}.get(self.nonlinearity, self._activation)
        if self.vocab_size is not None:
            x = nn.functional.one_hot(x, self.vocab_size).to(self.weight_out.dtype)
        steps = []
        for k in range(self.num_layers):
            drive = nn.functional.linear(x, self.weight_ih(k), getattr(self, f"bias_l{k}") if self.bias else None)
            Wt = self.recurrent_weight(k).t()
            h = drive.new_zeros(drive.shape[0], self.hidden_size)
            steps = []
            for t in range(drive.shape[1]):
                h = act(torch.addmm(drive[:, t], h, Wt))
                steps.append(h)
            x = torch.stack(steps, 1)
        return steps

