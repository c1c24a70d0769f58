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


def _powered(t: torch.Tensor, p: float, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    t = t.detach()
    if t.dtype != dtype:
        t = t.to(dtype)
        out = None
    if p == 2.0:
        return torch.square(t, out=out) if out is not None else t.square()
    return torch.pow(t.abs(), p)


def _workspace_buffer(workspace: dict | None, key, like: torch.Tensor) -> torch.Tensor | None:
    """A persistent buffer for |W|^p: a fresh 64 MB tensor every step costs more in page faults than
    the squaring itself."""
    if workspace is None:
        return None
    buf = workspace.get(key)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
        buf = workspace[key] = torch.empty_like(like, memory_format=torch.contiguous_format)
    return buf


def _pass(model, p: float, dtype: torch.dtype, workspace: dict | None):
    layers = model.linears()
    gin = [torch.ones(layers[0].in_features, dtype=dtype)]
    powered = []
    for k, layer in enumerate(layers):
        W = _powered(layer.weight, p, dtype, _workspace_buffer(workspace, k, layer.weight))
        powered.append(W)
        v = W @ gin[-1]
        if layer.bias is not None:
            v = v + _powered(layer.bias, p, dtype)
        gin.append(v)
    gout = [torch.ones(layers[-1].out_features, dtype=dtype)]
    for W in reversed(powered[1:]):
        gout.insert(0, W.t() @ gout[0])
    return gin, gout, gin[-1].sum()


def mlp_pass(model, p: float = 2.0, workspace: dict | None = None):
    """γ_in per layer (inputs first), γ_out per layer, and Σ_out γ_in = γ_p^p.

    Float32 models are computed in float32 (a 19M-weight MLP's κ pass is memory-bound, and float64
    copies would double it); if anything overflows, the pass is redone in float64."""
    p = _check_p(p)
    dtype = model.linears()[0].weight.dtype
    if dtype != torch.float64:
        gin, gout, total = _pass(model, p, torch.float32, workspace)
        if all(torch.isfinite(v).all() for v in (*gin, *gout)):
            return [v.double() for v in gin], [v.double() for v in gout], total.double()
    return _pass(model, p, torch.float64, None)


def path_norm(model, p: float = 2.0) -> torch.Tensor:
    """γ_p(w)^p = Σ_paths Π_e |w_e|^p; for p = 2 this is γ²_net."""
    return mlp_pass(model, p)[2]


def kappa_entries(model, p: float = 2.0, workspace: dict | None = None) -> tuple[dict, torch.Tensor]:
    """{name: γ_p(w, e)} for every parameter (Algorithm 1, line 7), and γ_p^p.

    For p = 2 these are exactly κ = ½ ∂²γ²/∂w² (eq. 8 of the 2016 paper)."""
    p = _check_p(p)
    gin, gout, total = mlp_pass(model, p, workspace)
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
