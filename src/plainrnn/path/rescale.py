"""Node-wise rescalings that leave a ReLU network's function unchanged.

RNN (Theorem 1 of the 2016 paper). For positive α^i_j, one per hidden unit j of layer i:
    W_in^i[j, k]  ← α^i_j / α^{i−1}_k · W_in^i[j, k]   (α^0 = 1 on the inputs)
    W_rec^i[j, k] ← α^i_j / α^i_k · W_rec^i[j, k]
    b^i[j]        ← α^i_j · b^i[j]                     (the bias node's α is 1, footnote 1)
    W_out[j, k]   ← W_out[j, k] / α^d_k
MLP (2015 paper, §3): the same with one α per hidden unit of each layer.

Because [αz]_+ = α[z]_+ for α > 0, every unit's output is multiplied by its α and undone by its
outgoing weights. (This holds for ReLU only; a tanh network's function does change.)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_alphas(alphas: Sequence[torch.Tensor], sizes: list[int]) -> list[torch.Tensor]:
    alphas = [torch.as_tensor(a) for a in alphas]
    if len(alphas) != len(sizes):
        raise ValueError(f"need one α vector per hidden layer ({len(sizes)}), got {len(alphas)}")
    for i, (a, n) in enumerate(zip(alphas, sizes)):
        if a.shape != (n,):
            raise ValueError(f"α for hidden layer {i} must have shape ({n},), got {tuple(a.shape)}")
        if not bool((a > 0).all()):
            raise ValueError(f"α for hidden layer {i} must be positive (a rescaling by a negative or zero "
                             "factor changes the function)")
    return alphas


@torch.no_grad()
def rescale_rnn_(model, alphas: Sequence[torch.Tensor]) -> None:
    d = model.num_layers
    alphas = _check_alphas(alphas, [model.hidden_size] * d)
    for i in range(d):
        a = alphas[i].to(model.weight_hh(i))
        w_in = model.weight_ih(i)
        w_in.mul_(a.unsqueeze(1))
        if i > 0:
            w_in.div_(alphas[i - 1].to(w_in).unsqueeze(0))
        model.weight_hh(i).mul_(a.unsqueeze(1)).div_(a.unsqueeze(0))
        if model.bias:
            model.layer_bias(i).mul_(a)
    model.weight_out.div_(alphas[-1].to(model.weight_out).unsqueeze(0))


@torch.no_grad()
def rescale_mlp_(model, alphas: Sequence[torch.Tensor]) -> None:
    layers = model.linears()
    alphas = _check_alphas(alphas, [layer.out_features for layer in layers[:-1]])
    for k, layer in enumerate(layers):
        if k < len(alphas):
            a = alphas[k].to(layer.weight)
            layer.weight.mul_(a.unsqueeze(1))
            if layer.bias is not None:
                layer.bias.mul_(a)
        if k > 0:
            layer.weight.div_(alphas[k - 1].to(layer.weight).unsqueeze(0))


def unbalanced_alphas(sizes: list[int], *, units: int = 2000, sigma: float = 1.0,
                      generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """The 2015 paper's unbalanced init, as α vectors: pick ``units`` hidden units at random with
    replacement (over all hidden layers); each pick multiplies that unit's α by 10^c, c log-normal
    (c = exp(N(0, σ²)))."""
    total = sum(sizes)
    flat = torch.ones(total, dtype=torch.float64)
    picks = torch.randint(total, (units,), generator=generator)
    c = torch.exp(torch.randn(units, generator=generator, dtype=torch.float64) * sigma)
    for unit, exponent in zip(picks.tolist(), c.tolist()):
        flat[unit] *= 10.0 ** exponent
    return list(torch.split(flat, sizes))
