"""Path geometry of any torch.nn model built from ReLU-network layers, from its squared network.

Theorem 3 of the 2016 paper (and §4 of the 2015 paper): square every parameter, q = p², and feed
the all-ones input. Every activation of a ReLU network is then a sum of non-negative path products,
so the ReLUs act as identities and the network is linear in each q. Its summed output is

    γ²_net = Σ_{paths} Π_{e ∈ path} p_e²                                   (2016, eq. 3)

and κ1 (eq. 9) is its gradient in q, summed over the edges that share a parameter:

    κ1_i = ∂γ²_net / ∂q_i.

So one forward and one backward pass of autograd give γ² and κ1 for any composition of the
layers below, which is the "few lines of code" the papers promise. The layers and how each one
squares:

- ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``: the same layer with squared weights and biases (zero
  padding contributes no path).
- ``nn.ReLU``, ``nn.Flatten``, ``nn.Unflatten``, ``nn.Identity``, ``nn.Dropout`` (the network it
  thins): unchanged, since the squared network's values are non-negative.
- ``nn.AvgPool1d``/``nn.AvgPool2d``: a window of k inputs is k edges of weight 1/k, so the squared
  layer is the average divided by k.
- ``nn.Embedding``: its input nodes are the one-hot vocabulary; at the all-ones input every position
  receives Σ_v q[v, :].
- ``nn.RNN(nonlinearity="relu")``, any depth, batch_first or not: the linear recurrence
  a_t = Q_ih a^{in}_t + Q_hh a_{t−1} + q_b_ih + q_b_hh. Its two biases are two edges from the bias
  node.

κ2 (eq. 10, the pairs of distinct edges that share a recurrent weight on one path) needs the
squared forward values a_t of each recurrent layer and the backward values g_t = ∂γ²/∂a_t;
the squared RNN keeps both, and :func:`plainrnn.path.rnn.kappa2_recurrent` sums them exactly.

A layer outside this list (tanh, sigmoid, max-pooling, a normalization layer, attention, an LSTM)
breaks the path geometry: its output is not a sum of path products. It raises a TypeError that names
it. The forward method of a module of your own may compose the layers above freely; functional
calls in it are not seen (``F.relu`` is harmless, ``torch.tanh`` would silently be wrong).

The sums run over every entry of the example input, batch included: with a batch of B, γ² and κ
are B times the network's. Path-SGD's step, s/κ with s = γ², does not see that factor.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from .rnn import kappa2_recurrent

_DTYPE = torch.float64
_PASS_THROUGH = (nn.ReLU, nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)
_SQUARED_AS_IS = (nn.Linear, nn.Conv1d, nn.Conv2d)
SUPPORTED = ("Linear, Conv1d, Conv2d, ReLU, Flatten, Unflatten, Identity, Dropout, AvgPool1d, AvgPool2d, "
             "Embedding, RNN(nonlinearity='relu')")


class _SquaredAvgPool(nn.Module):
    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool
        size = pool.kernel_size if isinstance(pool.kernel_size, tuple) else (pool.kernel_size,) * (
            2 if isinstance(pool, nn.AvgPool2d) else 1)
        self.window = 1
        for k in size:
            self.window *= k
        if isinstance(pool, nn.AvgPool2d) and pool.divisor_override is not None:
            self.window = pool.divisor_override

    def forward(self, x):
        # k edges of weight 1/k each: Σ (1/k)² x = average / k.
        return self.pool(x) / self.window


class _SquaredEmbedding(nn.Module):
    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.weight = embedding.weight

    def forward(self, tokens):
        # Every position sees the whole one-hot vocabulary at once: Σ_v q[v, :].
        column = self.weight.sum(0)
        return column.expand(*tokens.shape, column.shape[0])


class _SquaredRNN(nn.Module):
    """The squared linear recurrence of an ``nn.RNN`` (relu); keeps a_t of every layer for κ2."""

    def __init__(self, rnn: nn.RNN):
        super().__init__()
        self.num_layers, self.batch_first, self.bias = rnn.num_layers, rnn.batch_first, rnn.bias
        for name, param in rnn.named_parameters():
            setattr(self, name, param)
        self.states: list[list[torch.Tensor]] = []  # per layer, a_1 … a_T (each batch × H)
        self.keep_states = False  # κ2 needs the states and their gradients; κ1 alone does not

    def forward(self, x, h0=None):
        seq = x.transpose(0, 1) if self.batch_first else x  # T × batch × F (or T × F unbatched)
        self.states, lasts = [], []
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            drive = seq @ w_ih.t()
            if self.bias:
                drive = drive + getattr(self, f"bias_ih_l{k}") + getattr(self, f"bias_hh_l{k}")
            a = torch.zeros_like(drive[0])
            layer = []
            for t in range(drive.shape[0]):
                a = drive[t] + a @ w_hh.t()
                if self.keep_states:
                    a.retain_grad()
                layer.append(a)
            if self.keep_states:
                self.states.append(layer)
            lasts.append(layer[-1])
            seq = torch.stack(layer)
        out = seq.transpose(0, 1) if self.batch_first else seq
        return out, torch.stack(lasts)  # h_n, for a model that reads the last state


def _squared_module(name: str, module: nn.Module) -> nn.Module | None:
    """The squared stand-in for a leaf layer (None: the layer is its own), or a TypeError naming it."""
    if isinstance(module, _PASS_THROUGH) or isinstance(module, _SQUARED_AS_IS):
        return None
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        return _SquaredAvgPool(module)
    if isinstance(module, nn.Embedding):
        return _SquaredEmbedding(module)
    if isinstance(module, nn.RNN):
        if module.nonlinearity != "relu":
            raise TypeError(f"layer {name!r} is nn.RNN(nonlinearity={module.nonlinearity!r}): the path geometry "
                            "needs ReLU units; use nonlinearity='relu'")
        if module.bidirectional or module.proj_size:
            raise TypeError(f"layer {name!r}: a bidirectional or projected nn.RNN is not supported")
        return _SquaredRNN(module)
    raise TypeError(f"layer {name!r} ({type(module).__name__}) breaks the path geometry of a ReLU network; "
                    f"supported layers: {SUPPORTED}")


def _leaf_modules(module: nn.Module, prefix: str = ""):
    """(name, module) of every layer: a module without children, or an nn.RNN / nn.Embedding."""
    if isinstance(module, (nn.RNN, nn.Embedding)) or not any(True for _ in module.children()):
        yield prefix, module
        return
    if any(True for _ in module.parameters(recurse=False)):
        raise TypeError(f"layer {prefix or type(module).__name__!r} ({type(module).__name__}) breaks the path "
                        f"geometry of a ReLU network: it uses parameters of its own in its forward; supported "
                        f"layers: {SUPPORTED}")
    for name, child in module.named_children():
        yield from _leaf_modules(child, f"{prefix}.{name}" if prefix else name)


def check_model(model: nn.Module) -> None:
    """Raises a TypeError naming the first layer that breaks the path geometry."""
    if not isinstance(model, nn.Module):  # the torch.optim habit, model.parameters(): every Path entry point ends here
        raise TypeError(f"the path geometry needs the model (a torch.nn.Module), not a {type(model).__name__}: "
                        "κ and γ² depend on how the parameters connect, so PathSGD and PathNormalized take the "
                        "model itself (to hold parameters still, requires_grad_(False))")
    for name, module in _leaf_modules(model):
        _squared_module(name or type(module).__name__, module)


def layer_unit_groups(model: nn.Module) -> list[list[tuple[str, int]]]:
    """(parameter name, unit dimension) of the parameters that feed the same units, per layer."""
    groups = []
    for name, module in _leaf_modules(model):
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.RNN):
            for k in range(module.num_layers):
                groups.append([(f"{prefix}{kind}_l{k}", 0) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                               if getattr(module, f"{kind}_l{k}", None) is not None])
        elif isinstance(module, nn.Embedding):
            groups.append([(f"{prefix}weight", 1)])
        else:
            own = [(f"{prefix}{param_name}", 0) for param_name, _ in module.named_parameters(recurse=False)]
            if own:
                groups.append(own)
    return groups


class SquaredNetwork:
    """The squared network of ``model`` at the all-ones input shaped like ``example_input``."""

    def __init__(self, model: nn.Module, example_input):
        # Each leaf is checked below as it is replaced (_squared_module names a layer that breaks the geometry).
        if example_input is None:
            raise ValueError(f"example_input is required for a {type(model).__name__}: pass one batch shaped like "
                             "the real input (the path geometry of plainrnn.ReLURNN and plainrnn.MLP needs none)")
        if not isinstance(example_input, torch.Tensor):
            raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
        self.names = [name for name, _ in model.named_parameters()]
        squared = copy.deepcopy(model).to(_DTYPE).eval()
        self.rnns: dict[str, _SquaredRNN] = {}
        for name, module in list(_leaf_modules(squared)):
            stand_in = _squared_module(name, module)
            if stand_in is None:
                continue
            if name == "":
                squared = stand_in
            else:
                parent_name, _, child = name.rpartition(".")
                parent = squared.get_submodule(parent_name) if parent_name else squared
                setattr(parent, child, stand_in)
            if isinstance(stand_in, _SquaredRNN):
                self.rnns[name] = stand_in
        self.module = squared
        floating = example_input.is_floating_point()
        device = next((p.device for p in model.parameters()), example_input.device)
        self.input = (torch.ones(example_input.shape, dtype=_DTYPE, device=device) if floating
                      else torch.zeros(example_input.shape, dtype=example_input.dtype, device=device))

    def kappa(self, model: nn.Module, second_order: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({name: κ}, γ²) for the weights of ``model`` as they are now, in float64."""
        q = {name: param.detach().to(_DTYPE).square().requires_grad_(True)
             for name, param in model.named_parameters()}
        for rnn in self.rnns.values():
            rnn.keep_states = second_order
        with torch.enable_grad():
            out = functional_call(self.module, q, (self.input,))
            if isinstance(out, tuple):  # an nn.RNN at the top: its output sequence
                out = out[0]
            gamma2 = out.sum()
            gamma2.backward()  # not autograd.grad: κ2 reads the retained gradients of the RNN states
        kappa = {name: (t.grad if t.grad is not None else torch.zeros_like(t)).detach() for name, t in q.items()}
        if second_order:
            for prefix, rnn in self.rnns.items():
                for k, layer in enumerate(rnn.states):
                    name = f"{prefix}.weight_hh_l{k}" if prefix else f"weight_hh_l{k}"
                    kappa[name] = kappa[name] + self._kappa2(q[name].detach(), layer)
        for rnn in self.rnns.values():
            rnn.states = []  # the pass's graph is not kept until the next one
        return kappa, gamma2.detach()

    @staticmethod
    def _kappa2(Q: torch.Tensor, layer: list[torch.Tensor]) -> torch.Tensor:
        """κ2 of one recurrent matrix from its squared forward values and their gradients, summed over
        the example's batch (each batch entry is the same set of paths)."""
        total = torch.zeros_like(Q)
        values = torch.stack([a.detach() for a in layer])  # T × (batch…) × H
        grads = torch.stack([a.grad if a.grad is not None else torch.zeros_like(a) for a in layer])
        values = values.reshape(values.shape[0], -1, values.shape[-1])
        grads = grads.reshape(grads.shape[0], -1, grads.shape[-1])
        zero = torch.zeros(1, Q.shape[0], dtype=_DTYPE, device=Q.device)
        for b in range(values.shape[1]):
            total += kappa2_recurrent(Q, torch.cat([zero, values[:, b]]), grads[:, b])
        return total
