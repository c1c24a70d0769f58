"""Units and their incoming edges: the grain at which a node-wise rescaling acts.

Theorem 1's rescaling multiplies every edge *into* a hidden unit j by α_j and every edge *out of* it
by 1/α_j. So the parameters whose first dimension indexes the same receiving units (a layer's input
matrix, its recurrent matrix and its bias) belong together: for unit j, the rows j of all of them are
its incoming edges. Per edge e = (a → b), κ_e w_e² is invariant under every rescaling (κ_e scales as
(α_a/α_b)², w_e as α_b/α_a): it is the path mass that flows through e. Summed over a unit's incoming
edges it is the unit's share of the paths, weighted by how often each path enters the unit.
"""
from __future__ import annotations

import torch

from ..nets.mlp import MLP
from ..nets.relu_rnn import ReLURNN
from .factored import KappaEntry, Outer
from .generic import layer_unit_groups


def unit_groups(model) -> list[list[tuple[str, int]]]:
    """The parameters that feed the same units, one list per layer of units, as (name, dimension of
    the receiving unit).

    ReLURNN: ``weight_ih_l{l}, weight_hh_l{l}, bias_l{l}`` per layer, then ``weight_out, bias_out``.
    MLP: ``layers.{i}.weight, layers.{i}.bias`` per layer. Other torch.nn models: a layer's weight and
    bias (an output channel of a convolution is one unit at every position), each layer of an
    nn.RNN, and an nn.Embedding, whose units are its columns (dimension 1)."""
    if isinstance(model, ReLURNN):
        def layer_of(name: str) -> str:
            return name.rsplit("_", 1)[1]  # "l0", "l1", ..., "out"
    elif isinstance(model, MLP):
        def layer_of(name: str) -> str:
            return name.rsplit(".", 1)[0]  # "layers.0", ...
    else:
        return layer_unit_groups(model)
    groups: dict[str, list[tuple[str, int]]] = {}
    for name, _ in model.named_parameters():
        groups.setdefault(layer_of(name), []).append((name, 0))
    return list(groups.values())


def row_quadratic(entry: KappaEntry, values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Σ_k κ[j, k] · values[j, k]² for every index j of dimension ``dim`` (every receiving unit), in
    float64.

    A bias (1-d) gives κ[j]·values[j]². A rank-one κ = rows ⊗ cols is never expanded:
    rows[j] · Σ_k values[j, k]² cols[k]."""
    squared = values.detach().double().square()
    if isinstance(entry, Outer):
        if dim == 1:
            return entry.cols * (entry.rows @ squared)
        return entry.rows * (squared @ entry.cols)
    weighted = (entry.double() * squared).movedim(dim, 0)
    return weighted.reshape(weighted.shape[0], -1).sum(dim=1)
