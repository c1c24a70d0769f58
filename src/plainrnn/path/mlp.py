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

from .factored import NARROW_RANGE, Outer
from .kernels import squared_sweep_, uses_kernel


def _check_p(p: float) -> float:
    if not (isinstance(p, (int, float)) and p >= 1):
        raise ValueError(f"p must be a number >= 1 (the lp path regularizer), got {p!r}")
    return float(p)


# A float32 sweep is trusted when every vector entry lies in NARROW_RANGE, [2^-50, 2^50]: then no
# square that matters can overflow or flush to zero, and the factors s/γ and the products G·s/γ stay
# normal. Outside it (a network rescaled node-wise by 10^c moves γ by 10^±2c) the sweep runs wide.


def fits_narrow(*vectors) -> bool:
    """Whether every entry of the vectors is finite and within :data:`NARROW_RANGE`."""
    low, high = NARROW_RANGE
    return all(bool(((v >= low) & (v <= high)).all()) for v in vectors)


def certainly_wide(*vectors) -> bool:
    """Whether float64 vectors lie so far outside :data:`NARROW_RANGE` (or overflowed) that a float32
    sweep of the same weights cannot be trusted either: then :func:`mlp_pass` would sweep wide too."""
    low, high = NARROW_RANGE
    return any(bool(((v < low / 4) | (v > high * 4) | ~torch.isfinite(v)).any()) for v in vectors)


def _bias_power(layer, p: float, dtype: torch.dtype) -> torch.Tensor | float:
    if layer.bias is None:
        return 0.0
    bias = layer.bias.detach().to(dtype)
    return bias.square() if p == 2.0 else bias.abs().pow(p)


def _workspace_buffer(workspace: dict | None, key, like: torch.Tensor) -> torch.Tensor | None:
    """A persistent buffer for |W|^p on the eager path: a fresh 64 MB tensor every step costs more in
    page faults than the squaring itself."""
    if workspace is None:
        return None
    buf = workspace.get(key)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
        buf = workspace[key] = torch.empty_like(like, memory_format=torch.contiguous_format)
    return buf


def pivot_layer(layers) -> int:
    """The layer whose matrix is largest: the sweep visits it last, when both its γ_in and γ_out are known."""
    return max(range(len(layers)), key=lambda k: layers[k].weight.numel())


def sweep_layers(layers, p: float, dtype: torch.dtype, workspace: dict | None = None,
                 updates: list[dict] | None = None) -> tuple[list, list]:
    """γ_in per layer (inputs first, L + 1 vectors) and γ_out per layer (L vectors), in ``dtype``: the
    weights' own dtype, or float64 for float32 weights (the wide sweep, which squares in float64).

    γ_in flows forward (γ_in^k = |W^k|^p γ_in^{k−1} + |b^k|^p) and γ_out backward
    (γ_out^{k−1} = |W^k|^pᵀ γ_out^k), so a single pass in either order would read each matrix twice.
    Instead the layers before the largest one are swept forward, those after it backward, and the
    largest last, when both of its vectors are known: it is read once for both products. Only the
    small layers are read a second time, for products that this order could not give them.

    With ``updates`` (one dict of :func:`squared_sweep_` update arguments per layer), each matrix is
    updated in the same pass, before its products: the vectors returned are those of the updated
    network (biases must already be updated)."""
    L = len(layers)
    device = layers[0].weight.device
    gin = [torch.ones(layers[0].in_features, dtype=dtype, device=device)] + [None] * L
    gout = [None] * (L - 1) + [torch.ones(layers[-1].out_features, dtype=dtype, device=device)]

    def visit(k: int, forward: bool, backward: bool, update: bool) -> None:
        W = layers[k].weight.detach()  # the parameter itself: an update must land in it
        want_cols = backward and k > 0  # γ_out of the network's inputs is never used
        eager_buffer = p == 2.0 and W.dtype == dtype and not uses_kernel(W, p)
        rows, cols = squared_sweep_(W, gin[k] if forward else None, gout[k] if want_cols else None, p=p,
                                    buffer=_workspace_buffer(workspace, k, W) if eager_buffer else None,
                                    **(updates[k] if update and updates is not None else {}))
        if forward:
            gin[k + 1] = rows + _bias_power(layers[k], p, dtype)
        if want_cols:
            gout[k - 1] = cols

    pivot = pivot_layer(layers)
    for k in range(pivot):
        visit(k, forward=True, backward=False, update=True)
    for k in range(L - 1, pivot, -1):
        visit(k, forward=False, backward=True, update=True)
    visit(pivot, forward=True, backward=True, update=True)
    for k in range(pivot + 1, L):
        visit(k, forward=True, backward=False, update=False)
    for k in range(pivot - 1, 0, -1):
        visit(k, forward=False, backward=True, update=False)
    return gin, gout


def compute_dtype(model) -> torch.dtype:
    """The narrow sweep's dtype, the weights' own: float32 models are swept in float32 (the 19M-weight
    MLP's κ pass is memory-bound, and float64 copies would double it), float64 models in float64."""
    return torch.float64 if model.linears()[0].weight.dtype == torch.float64 else torch.float32


def finish_pass(gin: list, gout: list):
    """The float64 vectors of :func:`mlp_pass` from a sweep's."""
    return [v.double() for v in gin], [v.double() for v in gout], gin[-1].sum().double()


def mlp_pass(model, p: float = 2.0, workspace: dict | None = None):
    """γ_in per layer (inputs first), γ_out per layer, and Σ_out γ_in = γ_p^p, in float64.

    The sweep runs in :func:`compute_dtype`. A float32 sweep whose vectors leave :data:`NARROW_RANGE`
    (a network rescaled node-wise, like the 2015 paper's unbalanced init) is redone wide: float64
    squares and sums of the float32 weights, in one more pass and without a float64 copy of them. Its
    vectors are then exact to float64 rounding wherever they are finite (an overflow there maps to
    zero steps)."""
    p = _check_p(p)
    dtype = compute_dtype(model)
    gin, gout = sweep_layers(model.linears(), p, dtype, workspace)
    if dtype == torch.float32 and not fits_narrow(*gin, *gout):
        gin, gout = sweep_layers(model.linears(), p, torch.float64)
    return finish_pass(gin, gout)


def path_norm(model, p: float) -> torch.Tensor:
    """γ_p(w)^p = Σ_paths Π_e |w_e|^p; for p = 2 this is γ²_net (the public ``plainrnn.path.path_norm`` checks p)."""
    return mlp_pass(model, p)[2]


def kappa_entries(model, p: float = 2.0, workspace: dict | None = None) -> tuple[dict, torch.Tensor]:
    """{name: γ_p(w, e)} for every parameter (Algorithm 1, line 7), and γ_p^p.

    For p = 2 these are exactly κ = ½ ∂²γ²/∂w² (eq. 8 of the 2016 paper)."""
    p = _check_p(p)
    gin, gout, total = mlp_pass(model, p, workspace)
    return entries_from_vectors(model, gin, gout, p), total


def entries_from_vectors(model, gin: list, gout: list, p: float = 2.0) -> dict:
    """{name: κ} from :func:`mlp_pass`'s vectors: rows γ_out^{2/p}, columns γ_in^{2/p}."""
    power = 2.0 / p
    out = {}
    for k, layer in enumerate(model.linears()):
        rows, cols = gout[k], gin[k]
        if power != 1.0:
            rows, cols = rows.pow(power), cols.pow(power)
        out[f"layers.{k}.weight"] = Outer(rows, cols)
        if layer.bias is not None:
            out[f"layers.{k}.bias"] = rows.clone()
    return out
