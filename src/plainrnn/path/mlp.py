"""Path geometry of a ReLU :class:`~plainrnn.nets.MLP` (2015 paper), for any lp path regularizer.

With |w|^p on every edge (biases are edges from a constant-1 node), Algorithm 1 computes
    γ_in(v)  = Σ_{u→v} γ_in(u) |w_{u→v}|^p,      γ_in = 1 on inputs and the bias node,
    γ_out(v) = Σ_{v→u} |w_{v→u}|^p γ_out(u),     γ_out = 1 on outputs,
and the per-edge scale γ_p(w, e) = γ_in(u)^{2/p} γ_out(v)^{2/p} (Algorithm 1, line 7), which the
update divides by. γ_in(u)·γ_out(v) is the sum over paths through e of Π_{e'≠e} |w_e'|^p. For p = 2
this is κ1 of the 2016 paper (no parameter repeats on a path, so κ2 = 0), and
γ_p(w)^p = Σ_v∈out γ_in(v) is the lp path regularizer raised to the p.

Dropout never enters: the geometry is that of the deterministic network.
"""
from __future__ import annotations

import torch

from .factored import Outer

_DTYPE = torch.float64


def _check_p(p: float) -> float:
    if not (isinstance(p, (int, float)) and p >= 1):
        raise ValueError(f"p must be a number >= 1 (the lp path regularizer), got {p!r}")
    return float(p)


def _powered(t: torch.Tensor, p: float) -> torch.Tensor:
    t = t.detach().to(_DTYPE)
    return t.square() if p == 2.0 else t.abs().pow(p)


def mlp_pass(model, p: float = 2.0):
    """γ_in per layer (inputs first) and γ_out per layer, and Σ_out γ_in = γ_p^p."""
    p = _check_p(p)
    layers = model.linears()
    gin = [torch.ones(layers[0].in_features, dtype=_DTYPE)]
    powered = []
    for layer in layers:
        W = _powered(layer.weight, p)
        powered.append(W)
        v = W @ gin[-1]
        if layer.bias is not None:
            v = v + _powered(layer.bias, p)
        gin.append(v)
    gout = [torch.ones(layers[-1].out_features, dtype=_DTYPE)]
    for W in reversed(powered[1:]):
        gout.insert(0, W.t() @ gout[0])
    # gout[k] is γ_out at the outputs of layer k (k = 0..d−1), gin[k] at its inputs.
    return gin, gout, gin[-1].sum()


def path_norm(model, p: float = 2.0) -> torch.Tensor:
    """γ_p(w)^p = Σ_paths Π_e |w_e|^p; for p = 2 this is γ²_net."""
    return mlp_pass(model, p)[2]


def kappa_entries(model, p: float = 2.0) -> tuple[dict, torch.Tensor]:
    """{name: γ_p(w, e)} for every parameter (Algorithm 1, line 7), and γ_p^p.

    For p = 2 these are exactly κ = ½ ∂²γ²/∂w² (eq. 8 of the 2016 paper)."""
    p = _check_p(p)
    gin, gout, total = mlp_pass(model, p)
    power = 2.0 / p
    out = {}
    for k, layer in enumerate(model.linears()):
        rows, cols = gout[k], gin[k]
        if power != 1.0:
            rows, cols = rows.pow(power), cols.pow(power)
        out[f"layers.{k}.weight"] = Outer(rows, cols)
        if layer.bias is not None:
            out[f"layers.{k}.bias"] = rows.clone()
    return out, total
