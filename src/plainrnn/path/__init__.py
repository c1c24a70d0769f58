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
from .generic import SquaredNetwork, check_model
from .rescale import rescale_mlp_, rescale_rnn_, unbalanced_alphas

__all__ = ["path_norm", "kappa", "kappa2", "kappa_entries", "rescale_", "unbalance_", "Outer", "divide_"]


def _generic(model, seq_len, p, example_input, workspace: dict | None = None):
    """The squared network of a model that is not ours (built once per workspace), after the checks."""
    check_model(model)  # a layer that breaks the geometry is the first thing to name
    if p != 2:
        raise ValueError(f"p = {p}: lp Path-SGD (Algorithm 1) is defined for plainrnn.MLP; other models use p = 2")
    if seq_len is not None:
        raise ValueError(f"seq_len is for plainrnn.ReLURNN; for a {type(model).__name__} the example_input's shape "
                         "sets the unrolled length")
    if workspace is not None and workspace.get("squared") is not None:
        return workspace["squared"]
    squared = SquaredNetwork(model, example_input)
    if workspace is not None:
        workspace["squared"] = squared
    return squared


def kappa_entries(model, seq_len: int | None = None, second_order: bool = False, p: float = 2.0,
                  workspace: dict | None = None, example_input: torch.Tensor | None = None):
    """κ per parameter name, possibly as rank-one :class:`Outer` factors, and γ²_net (γ_p^p for an MLP).

    ``workspace`` (a dict the caller keeps between calls) lets the MLP pass reuse its buffers, and a
    model of any other kind keep its squared network (:mod:`plainrnn.path.generic`)."""
    if isinstance(model, ReLURNN):
        if p != 2:
            raise ValueError(f"p = {p}: lp Path-SGD (Algorithm 1) is defined for MLPs; recurrent models use p = 2")
        return _rnn.kappa_entries(model, seq_len, second_order)
    if isinstance(model, MLP):
        return _mlp.kappa_entries(model, p, workspace)
    return _generic(model, seq_len, p, example_input, workspace).kappa(model, second_order)


def kappa(model, seq_len: int | None = None, second_order: bool = False, p: float = 2.0,
          example_input: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """{parameter name: κ}, each the parameter's shape, in float64 (eq. 8).

    κ1 is Theorem 3's gradient of the squared network at the all-ones input; ``second_order=True``
    adds κ2 (eq. 10, nonzero only on recurrent matrices). For an MLP, ``p`` selects the lp scale
    γ_p(w, e) of Algorithm 1 (p = 2 is κ). Any other torch.nn model made of ReLU-network layers
    (:mod:`plainrnn.path.generic`) needs ``example_input``, one batch shaped like the real input.

    Example::

        >>> import torch, plainrnn as pr
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> k = pr.path.kappa(net, example_input=torch.zeros(1, 3))
        >>> sorted(k), tuple(k["0.weight"].shape)
        (['0.bias', '0.weight', '2.bias', '2.weight'], (4, 3))
    """
    entries, _ = kappa_entries(model, seq_len, second_order, p, example_input=example_input)
    return {name: densify(entry) for name, entry in entries.items()}


def kappa2(model, seq_len: int) -> dict[str, torch.Tensor]:
    """κ2 alone for each recurrent matrix of a ReLURNN (it is zero on every other parameter)."""
    if not isinstance(model, ReLURNN):
        raise TypeError(f"kappa2 is defined for plainrnn.ReLURNN, got {type(model).__name__}; for other models "
                        "use kappa(..., second_order=True)")
    return _rnn.kappa2_only(model, seq_len)


def path_norm(model, seq_len: int | None = None, p: float = 2.0,
              example_input: torch.Tensor | None = None) -> torch.Tensor:
    """γ²_net: the sum over input→output paths of the product of squared weights (a float64 scalar).

    For a model that is not ours, the sum runs over the example_input's batch as well (B copies)."""
    if isinstance(model, ReLURNN):
        return _rnn.path_norm(model, seq_len)
    if isinstance(model, MLP):
        return _mlp.path_norm(model, p)
    return _generic(model, seq_len, p, example_input).kappa(model)[1]


def _unsupported(model) -> TypeError:
    return TypeError(f"node-wise rescaling is implemented for plainrnn.ReLURNN and plainrnn.MLP, "
                     f"got {type(model).__name__}")


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
