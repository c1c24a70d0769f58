"""The path geometry of ReLU networks: path norm, κ (eq. 8), and node-wise rescalings.

    path_norm(model, seq_len=None)                   γ²_net (2016, eq. 3), or γ_p^p for an MLP with p
    kappa(model, seq_len=None, second_order=False)   {name: κ = ½ ∂²γ²_net/∂p²} (eq. 8; κ1 + κ2)
    rescale_(model, alphas)                          Theorem 1's T_α, in place
    unbalance_(model, ...)                           the 2015 paper's unbalanced init, in place

Supported models: :class:`~plainrnn.nets.ReLURNN` (any depth, relu or tanh – κ always comes from
the squared ReLU network – last or all outputs, vector or token inputs) and
:class:`~plainrnn.nets.MLP`. Recurrent models need ``seq_len``, the unrolled length T.
"""
from __future__ import annotations

import torch

from ..nets.mlp import MLP
from ..nets.relu_rnn import ReLURNN
from . import mlp as _mlp
from . import rnn as _rnn
from .factored import Outer, densify, divide_
from .rescale import rescale_mlp_, rescale_rnn_, unbalanced_alphas

__all__ = ["path_norm", "kappa", "kappa2", "kappa_entries", "rescale_", "unbalance_", "Outer", "divide_"]


def _unsupported(model) -> TypeError:
    return TypeError(f"path geometry is defined for plainrnn.ReLURNN and plainrnn.MLP, got {type(model).__name__}")


def kappa_entries(model, seq_len: int | None = None, second_order: bool = False, p: float = 2.0,
                  workspace: dict | None = None):
    """κ per parameter name, possibly as rank-one :class:`Outer` factors, and γ²_net (γ_p^p for an MLP).

    ``workspace`` (a dict the caller keeps between calls) lets the MLP pass reuse its buffers."""
    if isinstance(model, ReLURNN):
        if p != 2:
            raise ValueError(f"p = {p}: lp Path-SGD (Algorithm 1) is defined for MLPs; recurrent models use p = 2")
        return _rnn.kappa_entries(model, seq_len, second_order)
    if isinstance(model, MLP):
        return _mlp.kappa_entries(model, p, workspace)
    raise _unsupported(model)


def kappa(model, seq_len: int | None = None, second_order: bool = False, p: float = 2.0) -> dict[str, torch.Tensor]:
    """{parameter name: κ}, each the parameter's shape, in float64 (eq. 8).

    κ1 is Theorem 3's gradient of the squared network at the all-ones input; ``second_order=True``
    adds κ2 (eq. 10, nonzero only on recurrent matrices). For an MLP, ``p`` selects the lp scale
    γ_p(w, e) of Algorithm 1 (p = 2 is κ)."""
    entries, _ = kappa_entries(model, seq_len, second_order, p)
    return {name: densify(entry) for name, entry in entries.items()}


def kappa2(model, seq_len: int) -> dict[str, torch.Tensor]:
    """κ2 alone for each recurrent matrix of a ReLURNN (it is zero on every other parameter)."""
    if not isinstance(model, ReLURNN):
        raise _unsupported(model)
    return _rnn.kappa2_only(model, seq_len)


def path_norm(model, seq_len: int | None = None, p: float = 2.0) -> torch.Tensor:
    """γ²_net: the sum over input→output paths of the product of squared weights (a float64 scalar)."""
    if isinstance(model, ReLURNN):
        return _rnn.path_norm(model, seq_len)
    if isinstance(model, MLP):
        return _mlp.path_norm(model, p)
    raise _unsupported(model)


def rescale_(model, alphas) -> None:
    """Theorem 1's T_α in place: ``alphas`` holds one positive vector per hidden layer."""
    if isinstance(model, ReLURNN):
        return rescale_rnn_(model, alphas)
    if isinstance(model, MLP):
        return rescale_mlp_(model, alphas)
    raise _unsupported(model)


def unbalance_(model, units: int = 2000, sigma: float = 1.0, generator: torch.Generator | None = None) -> list:
    """The 2015 paper's unbalanced init, applied in place to a balanced network; returns the α used."""
    if isinstance(model, MLP):
        sizes = [layer.out_features for layer in model.linears()[:-1]]
    elif isinstance(model, ReLURNN):
        sizes = [model.hidden_size] * model.num_layers
    else:
        raise _unsupported(model)
    alphas = unbalanced_alphas(sizes, units=units, sigma=sigma, generator=generator)
    rescale_(model, alphas)
    return alphas
