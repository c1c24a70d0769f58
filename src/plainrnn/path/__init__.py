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


def _generic(model, seq_len, p, example_input, workspace: dict | None = None, second_order: bool = False):
    """The squared network of a model that is not ours (built once per workspace, checked once)."""
    if workspace is not None and workspace.get("squared") is not None:
        return workspace["squared"]  # every κ pass of an optimizer: no walk over the modules again
    check_model(model)  # a layer that breaks the geometry is the first thing to name
    if p != 2:
        raise ValueError(f"p = {p}: lp Path-SGD (Algorithm 1) is defined for plainrnn.MLP; other models use p = 2")
    if seq_len is not None:
        raise ValueError(f"seq_len is for plainrnn.ReLURNN; for a {type(model).__name__} the example_input's shape "
                         "sets the unrolled length")
    # An optimizer's workspace: κ on one example of the batch, times B (checked exact once, at construction)
    squared = SquaredNetwork(model, example_input, one_example=workspace is not None, second_order=second_order)
    if workspace is not None:
        workspace["squared"] = squared
    return squared


def kappa_entries(model, seq_len: int | None = None, second_order: bool = False, p: float = 2.0,
                  workspace: dict | None = None, example_input: torch.Tensor | None = None):
    """κ = ½ ∂²γ²_net/∂p² (eq. 8) per parameter, in the compact form the optimizers use, and γ²_net.

    Args:
        model: a ReLURNN, an MLP, or a torch.nn model of the layers :mod:`plainrnn.path.generic` lists.
        seq_len: T, for a ReLURNN.
        second_order: add κ2 (eq. 10) on the recurrent matrices.
        p: the lp path regularizer of an MLP (Algorithm 1 of the 2015 paper); 2 elsewhere.
        workspace: a dict the caller keeps between calls: the MLP pass reuses its buffers there, a
            model of another kind its squared network.
        example_input: one batch shaped like the real input, for a model that is not ours.

    Returns:
        ({name: κ as a float64 tensor or a rank-one :class:`Outer`}, γ²_net as a float64 scalar; γ_p^p
        for an MLP with p ≠ 2).

    Example::

        >>> import plainrnn as pr
        >>> entries, gamma2 = pr.path.kappa_entries(pr.ReLURNN(2, 4, 1), seq_len=5)
        >>> type(entries["weight_ih_l0"]).__name__, gamma2.dtype
        ('Outer', torch.float64)
    """
    if isinstance(model, ReLURNN):
        if p != 2:
            raise ValueError(f"p = {p}: lp Path-SGD (Algorithm 1) is defined for MLPs; recurrent models use p = 2")
        return _rnn.kappa_entries(model, seq_len, second_order)
    if isinstance(model, MLP):
        return _mlp.kappa_entries(model, p, workspace)
    return _generic(model, seq_len, p, example_input, workspace, second_order).kappa(model, second_order)


def kappa(model, seq_len: int | None = None, second_order: bool = False, p: float = 2.0,
          example_input: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """κ_i = ½ ∂²γ²_net/∂p_i² for every parameter entry (eq. 8 of both Path-SGD papers).

    κ1 is Theorem 3's gradient of the squared network at the all-ones input; ``second_order=True``
    adds κ2 (eq. 10, nonzero only on recurrent matrices). For an MLP, ``p`` selects the lp scale
    γ_p(w, e) of Algorithm 1 (p = 2 is κ). Any other torch.nn model made of ReLU-network layers
    (:mod:`plainrnn.path.generic`) needs ``example_input``, one batch shaped like the real input.

    Args:
        model: a ReLURNN, an MLP, or a torch.nn model of supported layers.
        seq_len: T, the unrolled length, for a ReLURNN.
        second_order: κ1 + κ2 instead of κ1.
        p: the lp path regularizer of an MLP.
        example_input: for a model that is not ours.

    Returns:
        {parameter name: κ}, each a float64 tensor of the parameter's shape.

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
    """κ2 (eq. 10) alone for each recurrent matrix of a ReLURNN; it is zero on every other parameter.

    κ2[i, j] = 4 q_ij Σ_{s1<s2} a_j(s1−1) (Q^{s2−1−s1})_{ji} g_i(s2) counts the pairs of distinct
    edges that share W_rec[i, j] on one path (see :mod:`plainrnn.path.rnn`; the factor is 4, twice
    the paper's printed eq. 10, docs/path_sgd.md).

    Args:
        model: a ReLURNN.
        seq_len: T.

    Returns:
        {"weight_hh_l{k}": κ2 of layer k}, float64 H×H tensors.

    Example::

        >>> import plainrnn as pr
        >>> k2 = pr.path.kappa2(pr.ReLURNN(2, 4, 1, num_layers=2), seq_len=6)
        >>> sorted(k2), bool((k2["weight_hh_l0"] >= 0).all())
        (['weight_hh_l0', 'weight_hh_l1'], True)
    """
    if not isinstance(model, ReLURNN):
        raise TypeError(f"kappa2 is defined for plainrnn.ReLURNN, got {type(model).__name__}; for other models "
                        "use kappa(..., second_order=True)")
    return _rnn.kappa2_only(model, seq_len)


def path_norm(model, seq_len: int | None = None, p: float = 2.0,
              example_input: torch.Tensor | None = None) -> torch.Tensor:
    """γ²_net = Σ_{paths} Π_{e ∈ path} p_e² (2016, eq. 3), over the input→output paths (bias paths too).

    For a model that is not ours, the sum runs over the example_input's batch as well (B copies).

    Args:
        model: a ReLURNN, an MLP, or a torch.nn model of supported layers.
        seq_len: T, for a ReLURNN.
        p: for an MLP, γ_p^p = Σ_{paths} Π |p_e|^p instead.
        example_input: for a model that is not ours.

    Returns:
        A float64 scalar tensor.

    Example::

        >>> import torch, plainrnn as pr
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.ReLU(),
        ...                           torch.nn.Linear(1, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(2.0), net[2].weight.fill_(3.0)
        >>> float(pr.path.path_norm(net, example_input=torch.zeros(1, 1)))  # (2 · 3)²
        36.0
    """
    if isinstance(model, ReLURNN):
        return _rnn.path_norm(model, seq_len)
    if isinstance(model, MLP):
        return _mlp.path_norm(model, p)
    return _generic(model, seq_len, p, example_input).kappa(model)[1]


def _unsupported(model) -> TypeError:
    return TypeError(f"node-wise rescaling is implemented for plainrnn.ReLURNN and plainrnn.MLP, "
                     f"got {type(model).__name__}")


def rescale_(model, alphas) -> None:
    """Theorem 1's node-wise rescaling T_α, in place: the edges into hidden unit j of layer l are
    multiplied by α_l[j] and the edges out of it divided by it. The network computes the same function.

    Args:
        model: a ReLURNN or an MLP.
        alphas: one positive vector per hidden layer (length H, or the layer's width).

    Returns:
        None.

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.ReLURNN(2, 3, 1).double()
        >>> x = torch.rand(4, 5, 2, dtype=torch.float64)
        >>> before = model(x)
        >>> pr.path.rescale_(model, [torch.tensor([2.0, 0.5, 10.0])])
        >>> bool(torch.allclose(model(x), before))
        True
    """
    if isinstance(model, ReLURNN):
        return rescale_rnn_(model, alphas)
    if isinstance(model, MLP):
        return rescale_mlp_(model, alphas)
    raise _unsupported(model)


def unbalance_(model, units: int = 2000, sigma: float = 1.0, generator: torch.Generator | None = None) -> list:
    """The 2015 paper's unbalanced init (§5), in place: ``units`` hidden units picked at random across
    the layers are rescaled by α = 10^c, c ~ N(0, σ²) (T_α of Theorem 1: the same function).

    Args:
        model: an MLP or a ReLURNN, balanced.
        units: how many hidden units to rescale (with repetition; the paper's 2000).
        sigma: σ of the exponent.
        generator: for reproducible picks.

    Returns:
        The α vectors used, one per hidden layer.

    Example::

        >>> import torch, plainrnn as pr
        >>> mlp = pr.MLP(4, [8, 8], 2)
        >>> alphas = pr.path.unbalance_(mlp, units=5, generator=torch.Generator().manual_seed(0))
        >>> [tuple(a.shape) for a in alphas]
        [(8,), (8,)]
    """
    if isinstance(model, MLP):
        sizes = [layer.out_features for layer in model.linears()[:-1]]
    elif isinstance(model, ReLURNN):
        sizes = [model.hidden_size] * model.num_layers
    else:
        raise _unsupported(model)
    alphas = unbalanced_alphas(sizes, units=units, sigma=sigma, generator=generator)
    rescale_(model, alphas)
    return alphas
