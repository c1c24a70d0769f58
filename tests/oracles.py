"""Independent references the tests compare against: explicit loops and unrolled graphs."""
from __future__ import annotations

import itertools

import torch


def rnn_reference_forward(model, x):
    """h_t^i = σ(W_in^i h_t^{i−1} + W_rec^i h_{t−1}^i + b^i), y_t = W_out h_t + b_out, as a plain loop."""
    act = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda z: z}[model.nonlinearity]
    if model.vocab_size is not None:
        x = torch.nn.functional.one_hot(x, model.vocab_size).to(model.weight_out.dtype)
    B, T, _ = x.shape
    below = [x[:, t] for t in range(T)]
    for k in range(model.num_layers):
        h = torch.zeros(B, model.hidden_size, dtype=x.dtype)
        layer_out = []
        for t in range(T):
            z = below[t] @ model.weight_ih(k).t() + h @ model.weight_hh(k).t()
            if model.bias:
                z = z + model.layer_bias(k)
            h = act(z)
            layer_out.append(h)
        below = layer_out
    ys = [h @ model.weight_out.t() + (model.bias_out if model.bias else 0) for h in below]
    return ys[-1] if model.output == "last" else torch.stack(ys, 1)


def rnn_squared_gamma2(params: dict, model, T: int) -> torch.Tensor:
    """γ²_net as a differentiable function of the parameters: the squared network at the all-ones input.

    Written from Table 1 directly (not from plainrnn.path), for autograd Hessians."""
    d = model.num_layers
    F = model.weight_ih(0).shape[1]
    below = [torch.ones(F, dtype=torch.float64) for _ in range(T)]
    for k in range(d):
        h = torch.zeros(model.hidden_size, dtype=torch.float64)
        outs = []
        for t in range(T):
            z = params[f"weight_ih_l{k}"] ** 2 @ below[t] + params[f"weight_hh_l{k}"] ** 2 @ h
            if model.bias:
                z = z + params[f"bias_l{k}"] ** 2
            h = z
            outs.append(h)
        below = outs
    steps = range(T) if model.output == "all" else [T - 1]
    total = 0.0
    for t in steps:
        y = params["weight_out"] ** 2 @ below[t]
        if model.bias:
            y = y + params["bias_out"] ** 2
        total = total + y.sum()
    return total


def half_hessian_diagonal(fn, params: dict) -> dict:
    """{name: ½ diag ∂²fn/∂p²} by autograd, one parameter tensor at a time."""
    out = {}
    for name, value in params.items():
        def of_one(v, name=name):
            local = dict(params)
            local[name] = v
            return fn(local)
        H = torch.autograd.functional.hessian(of_one, value)
        n = value.numel()
        out[name] = 0.5 * H.reshape(n, n).diagonal().reshape(value.shape)
    return out


def unrolled_rnn_edges(model, T: int):
    """The explicit unrolled graph of a ReLURNN: (source node, target node, weight) triples.

    Nodes: ("in", t, k), ("bias",), ("h", layer, t, j), ("out", t, o). Sources are inputs and the bias node."""
    edges = []
    H = model.hidden_size
    F = model.weight_ih(0).shape[1]
    for t in range(1, T + 1):
        for k in range(model.num_layers):
            Win, Wrec = model.weight_ih(k).detach(), model.weight_hh(k).detach()
            for j in range(H):
                for i in range(Win.shape[1]):
                    src = ("in", t, i) if k == 0 else ("h", k - 1, t, i)
                    edges.append((src, ("h", k, t, j), float(Win[j, i])))
                if t > 1:
                    for i in range(H):
                        edges.append((("h", k, t - 1, i), ("h", k, t, j), float(Wrec[j, i])))
                if model.bias:
                    edges.append((("bias",), ("h", k, t, j), float(model.layer_bias(k).detach()[j])))
        if model.output == "all" or t == T:
            for o in range(model.output_size):
                for j in range(H):
                    edges.append((("h", model.num_layers - 1, t, j), ("out", t, o), float(model.weight_out.detach()[o, j])))
                if model.bias:
                    edges.append((("bias",), ("out", t, o), float(model.bias_out.detach()[o])))
    sources = [("in", t, i) for t in range(1, T + 1) for i in range(F)] + ([("bias",)] if model.bias else [])
    return edges, sources


def enumerate_paths(edges, sources):
    """Every source→output path as a list of edge indices, by depth-first search."""
    out_edges: dict = {}
    for idx, (u, _, _) in enumerate(edges):
        out_edges.setdefault(u, []).append(idx)
    paths = []

    def walk(node, trail):
        if node[0] == "out":
            paths.append(list(trail))
            return
        for idx in out_edges.get(node, []):
            trail.append(idx)
            walk(edges[idx][1], trail)
            trail.pop()

    for s in sources:
        walk(s, [])
    return paths


def mlp_edges(model):
    """The MLP's graph: nodes (layer, unit) with layer 0 the inputs, plus ("bias",)."""
    edges = []
    for k, layer in enumerate(model.linears()):
        W = layer.weight.detach()
        for j in range(W.shape[0]):
            for i in range(W.shape[1]):
                edges.append(((k, i), (k + 1, j), float(W[j, i]), (f"layers.{k}.weight", (j, i))))
            if layer.bias is not None:
                edges.append(((("bias",)), (k + 1, j), float(layer.bias.detach()[j]), (f"layers.{k}.bias", (j,))))
    return edges


def mlp_paths(model):
    depth = len(model.linears())
    edges = mlp_edges(model)
    out_edges: dict = {}
    for idx, (u, *_rest) in enumerate(edges):
        out_edges.setdefault(u, []).append(idx)
    paths = []

    def walk(node, trail):
        if node != ("bias",) and node[0] == depth:
            paths.append(list(trail))
            return
        for idx in out_edges.get(node, []):
            trail.append(idx)
            walk(edges[idx][1], trail)
            trail.pop()

    sources = [(0, i) for i in range(model.sizes[0])] + ([("bias",)] if model.bias else [])
    for s in sources:
        walk(s, [])
    return edges, paths


__all__ = [name for name in dir() if not name.startswith("_")] + ["itertools"]


def small_relu_rnn(layers=1, output="last", seed=0):
    """A float64 ReLURNN(3 → 6 → 2) with weights from U[−0.4, 0.4]: big enough that Path-SGD's steps
    move γ² visibly, small enough for exact oracles."""
    import plainrnn as pr
    torch.manual_seed(seed)
    model = pr.ReLURNN(3, 6, 2, num_layers=layers, output=output).double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.4, 0.4)
    return model


def regression_batches(n, T=7, seed=1):
    """n seeded float64 (x [8, T, 3], y [8, 2]) batches for small_relu_rnn."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, T, 3, generator=g, dtype=torch.float64),
             torch.randn(8, 2, generator=g, dtype=torch.float64)) for _ in range(n)]


class Killed(Exception):
    """Raised in place of a step, as if the process had died there."""


def train_killed_after(cfg, steps: int) -> str:
    """Runs ``train(cfg)`` as if the process were killed right after step ``steps``: the periodic
    checkpoints written up to then stay, nothing after is written. Returns the run directory."""
    from pathlib import Path

    import pytest

    from plainrnn.train import loop
    real_step = loop.train_step

    def step(run, k):
        if k > steps:
            raise Killed
        return real_step(run, k)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "train_step", step)
        try:
            loop.train(cfg, progress=False)
        except Killed:
            pass
        else:
            raise AssertionError(f"the run ended before step {steps + 1}: nothing was killed")
    return str(Path(cfg.out) / cfg.run_name())
