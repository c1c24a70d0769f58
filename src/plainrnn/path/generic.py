"""Path geometry of any torch.nn model built from ReLU-network layers, from its squared network.

Theorem 3 of the 2016 paper (and §4 of the 2015 paper): square every parameter, q = p², and feed
the all-ones input. Every activation of a ReLU network is then a sum of non-negative path products,
so the ReLUs act as identities and the network is linear in each q. Its summed output is

    γ²_net = Σ_{paths} Π_{e ∈ path} p_e²                                   (2016, eq. 3)

and κ1 (eq. 9) is its gradient in q, summed over the edges that share a parameter:

    κ1_i = ∂γ²_net / ∂q_i.

So one forward and one backward pass of autograd give γ² and κ1 for any composition of ReLU-network
ops, which is the "few lines of code" the papers promise. The forward runs under
:class:`plainrnn.path.trace.SquaredPass`, which sees every torch call the model makes, module or
functional, and squares it exactly (linear maps, convolutions, ReLU, average pooling, dropout,
embedding, sums, constants, reshaping, a final log_softmax) or refuses it in one line naming the op
and the line of the forward that called it. An ``nn.RNN(nonlinearity="relu")`` becomes the linear
recurrence a_t = Q_ih a^{in}_t + Q_hh a_{t−1} + q_b_ih + q_b_hh from a_0 = 0 (paths start at the
input; an initial state passed to it is not a path source), whose states κ2 reads.

κ2 (eq. 10, the pairs of distinct edges that share a recurrent weight on one path) needs the
squared forward values a_t of each recurrent layer and the backward values g_t = ∂γ²/∂a_t;
the squared RNN keeps both, and :func:`plainrnn.path.rnn.kappa2_recurrent` sums them exactly. A
parameter that the forward reads at two places (tied weights, a layer called twice) also lies twice on
some paths; its κ2 is not computed, so ``second_order=True`` refuses it (κ1 stays exact).

Layers of torch.nn outside the supported list (tanh, sigmoid, max-pooling, a normalization layer,
attention, an LSTM) and parametrized modules are refused by name before the pass.

The arguments: ``example_input`` is one tensor, a tuple of the forward's arguments, or a dict of its
keyword arguments. Every floating tensor among them becomes all-ones (input nodes), every integer one
(token ids) all-zeros. The sums run over every entry, batch included: with a batch of B, γ² and κ are
B times the network's. Path-SGD's step, s/κ with s = γ², does not see that factor; an optimizer
computes them on one example and multiplies by B, after checking once that this is exact.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from .rnn import kappa2_recurrent
from .trace import ACTIVATION, FINAL, Refusal, SquaredPass, _tensors

_DTYPE = torch.float64
# torch.nn layers whose every op the squared pass handles (the pass checks them anyway)
_ACCEPTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ReLU, nn.Flatten, nn.Unflatten, nn.Identity,
             nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Embedding, nn.RNN,
             nn.LogSoftmax, nn.Softmax)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
SUPPORTED = ("Linear, Conv1d/2d/3d, ReLU, Flatten, Unflatten, Identity, Dropout, AvgPool, AdaptiveAvgPool, "
             "Embedding, RNN(nonlinearity='relu'), a final LogSoftmax/Softmax, and modules of your own that "
             "compose them")


class _SquaredRNN(nn.Module):
    """The squared linear recurrence of an ``nn.RNN`` (relu); keeps a_t of every layer for κ2."""

    def __init__(self, rnn: nn.RNN, prefix: str):
        super().__init__()
        self.num_layers, self.batch_first, self.bias = rnn.num_layers, rnn.batch_first, rnn.bias
        self.prefix = f"{prefix}." if prefix else ""
        for name, param in rnn.named_parameters():
            setattr(self, name, param)
        self.param_names = [name for name, _ in rnn.named_parameters()]
        self.states: list[list[torch.Tensor]] = []  # per layer, a_1 … a_T (each batch × H)
        self.keep_states = False  # κ2 needs the states and their gradients; κ1 alone does not
        self.squared_pass: SquaredPass | None = None

    def forward(self, x, h0=None):
        # The recurrence is exact as written (a sum of path products), so the pass does not look inside.
        tracer = self.squared_pass
        if tracer is not None:
            if tracer.kind_of(x) != ACTIVATION:
                tracer.refuse("nn.RNN", "is applied to a tensor that does not depend on the input")
            for name in self.param_names:
                tracer.uses[self.prefix + name] += 1
            tracer.opaque += 1
        try:
            with torch._C.DisableTorchFunction():  # no per-op dispatch through the pass for 2·T small ops
                out, last = self._recurrence(x)
        finally:
            if tracer is not None:
                tracer.opaque -= 1
        if tracer is not None:
            tracer.mark((out, last), ACTIVATION)
        return out, last

    def _recurrence(self, x):
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


def _check_layer(name: str, module: nn.Module) -> None:
    """A TypeError naming a layer that breaks the path geometry, before any pass."""
    label = name or type(module).__name__
    if parametrize.is_parametrized(module):
        tensors = ", ".join(module.parametrizations.keys())
        kind = type(module).__name__.removeprefix("Parametrized")
        raise TypeError(f"layer {label!r} ({kind}) is parametrized ({tensors} computed from other tensors): the "
                        "path geometry needs each weight as a parameter of its own, since κ of a computed weight is "
                        "not the squared network's; remove the parametrization, or train it with "
                        "plainrnn.optim.spectral_optimizer or a torch optimizer")
    if isinstance(module, nn.RNN):
        if module.nonlinearity != "relu":
            raise TypeError(f"layer {label!r} is nn.RNN(nonlinearity={module.nonlinearity!r}): the path geometry "
                            "needs ReLU units; use nonlinearity='relu'")
        if module.bidirectional or module.proj_size:
            raise TypeError(f"layer {label!r}: a bidirectional or projected nn.RNN is not supported")
        return
    if isinstance(module, _ACCEPTED) or isinstance(module, _CONTAINERS):
        return
    if type(module).__module__.startswith("torch."):
        raise TypeError(f"layer {label!r} ({type(module).__name__}) breaks the path geometry of a ReLU network; "
                        f"supported layers: {SUPPORTED}")


def _leaf_modules(module: nn.Module, prefix: str = ""):
    """(name, module) of every layer: a torch.nn layer (nn.RNN and nn.Embedding whole), or a module of
    the user's own, which is yielded and then entered (its own forward may use its own parameters)."""
    builtin = type(module).__module__.startswith("torch.") and not isinstance(module, _CONTAINERS)
    if builtin or parametrize.is_parametrized(module) or not any(True for _ in module.children()):
        yield prefix, module
        return
    if not isinstance(module, _CONTAINERS):
        yield prefix, module
    for name, child in module.named_children():
        yield from _leaf_modules(child, f"{prefix}.{name}" if prefix else name)


def check_model(model: nn.Module) -> None:
    """Raises a TypeError naming the first layer that breaks the path geometry."""
    if not isinstance(model, nn.Module):  # the torch.optim habit, model.parameters(): every Path entry point ends here
        raise TypeError(f"the path geometry needs the model (a torch.nn.Module), not a {type(model).__name__}: "
                        "κ and γ² depend on how the parameters connect, so PathSGD and PathNormalized take the "
                        "model itself (to hold parameters still, requires_grad_(False))")
    for name, module in _leaf_modules(model):
        _check_layer(name, module)


def layer_unit_groups(model: nn.Module) -> list[list[tuple[str, int]]]:
    """(parameter name, unit dimension) of the parameters that feed the same units, per layer.

    Only torch.nn layers say which dimension of a weight indexes its units; a module of the user's own
    that holds parameters, or a parameter shared by two layers, is refused (the per-unit trust region
    would not know which units a step moves)."""
    groups, seen = [], {}
    for name, module in _leaf_modules(model):
        prefix = f"{name}." if name else ""
        own = list(module.named_parameters(recurse=False)) if not isinstance(module, nn.RNN) else []
        if own and not type(module).__module__.startswith("torch."):
            raise ValueError(f"max_unit_step: {type(module).__name__} {name or '(the model)'!r} uses parameters of "
                             "its own, whose units the per-unit trust region cannot tell; use torch.nn layers for them "
                             "or leave max_unit_step unset")
        for param_name, param in module.named_parameters(recurse=isinstance(module, nn.RNN)):
            if id(param) in seen:
                raise ValueError(f"max_unit_step: {prefix}{param_name} is {seen[id(param)]} (a shared parameter "
                                 "feeds the units of two layers); leave max_unit_step unset for tied weights")
            seen[id(param)] = f"{prefix}{param_name}"
        if isinstance(module, nn.RNN):
            for k in range(module.num_layers):
                groups.append([(f"{prefix}{kind}_l{k}", 0) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                               if getattr(module, f"{kind}_l{k}", None) is not None])
        elif isinstance(module, nn.Embedding):
            groups.append([(f"{prefix}weight", 1)])
        elif own:
            groups.append([(f"{prefix}{param_name}", 0) for param_name, _ in own])
    return groups


def _arguments(example_input) -> tuple[tuple, dict]:
    """The forward's (args, kwargs) from an example_input: a tensor, a tuple of arguments or a dict."""
    if isinstance(example_input, torch.Tensor):
        return (example_input,), {}
    if isinstance(example_input, tuple):
        return example_input, {}
    if isinstance(example_input, dict) and all(isinstance(k, str) for k in example_input):
        return (), dict(example_input)
    raise TypeError("example_input must be a tensor, a tuple of the forward's arguments or a dict of its keyword "
                    f"arguments, got {type(example_input).__name__}")


def _squared_inputs(value, device):
    """All-ones for a floating tensor (the input nodes), all-zeros for token ids; anything else as it is."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return torch.ones(value.shape, dtype=_DTYPE, device=device)
        return torch.zeros(value.shape, dtype=value.dtype, device=device)
    if isinstance(value, (tuple, list)):
        return type(value)(_squared_inputs(v, device) for v in value)
    return value


def _sliced(value, dim: int, size: int):
    """Every tensor whose dimension ``dim`` has ``size`` entries, cut to its first entry there."""
    if isinstance(value, torch.Tensor):
        return value.narrow(dim, 0, 1) if value.dim() > dim and value.shape[dim] == size else value
    if isinstance(value, (tuple, list)):
        return type(value)(_sliced(v, dim, size) for v in value)
    if isinstance(value, dict):
        return {k: _sliced(v, dim, size) for k, v in value.items()}
    return value


class _Traced(nn.Module):
    """Runs the squared module under a :class:`SquaredPass` (functional_call swaps in q first)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module
        self.tracer: SquaredPass | None = None

    def forward(self, *args, **kwargs):
        with self.tracer:
            return self.inner(*args, **kwargs)


class SquaredNetwork:
    """The squared network of ``model`` at the all-ones input shaped like ``example_input``.

    With ``one_example=True`` (the optimizers), κ and γ² are computed on the first example of the
    batch and multiplied by B, once it is checked at construction that this equals the whole batch's
    pass (a batch dimension is the first of dimensions 0 and 1 that passes; none: the whole batch)."""

    def __init__(self, model: nn.Module, example_input, one_example: bool = False, second_order: bool = False):
        if example_input is None:
            raise ValueError(f"example_input is required for a {type(model).__name__}: pass one batch shaped like "
                             "the real input (the path geometry of plainrnn.ReLURNN and plainrnn.MLP needs none)")
        args, kwargs = _arguments(example_input)
        self.names = [name for name, _ in model.named_parameters()]
        squared = copy.deepcopy(model).to(_DTYPE).eval()
        self.rnns: dict[str, _SquaredRNN] = {}
        for name, module in list(_leaf_modules(squared)):
            _check_layer(name, module)
            if not isinstance(module, nn.RNN):
                continue
            stand_in = _SquaredRNN(module, name)
            if name == "":
                squared = stand_in
            else:
                parent_name, _, child = name.rpartition(".")
                parent = squared.get_submodule(parent_name) if parent_name else squared
                setattr(parent, child, stand_in)
            self.rnns[name] = stand_in
        self.module = _Traced(squared)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.args, self.kwargs = _squared_inputs(args, device), {k: _squared_inputs(v, device) for k, v in kwargs.items()}
        self.shape = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else None
        self.factor = 1.0
        full = self.kappa(model, second_order)  # the pass that checks every op, before any step
        if one_example:
            self._take_one_example(model, second_order, full)

    def _take_one_example(self, model, second_order, full) -> None:
        if self.shape is None:
            return
        args, kwargs = self.args, self.kwargs
        for dim in (0, 1):
            if len(self.shape) <= dim or self.shape[dim] <= 1:
                continue
            size = self.shape[dim]
            self.args, self.kwargs, self.factor = _sliced(args, dim, size), _sliced(kwargs, dim, size), float(size)
            try:
                kappa, gamma2 = self.kappa(model, second_order)
                exact = torch.allclose(gamma2, full[1], rtol=1e-9, atol=0) and all(
                    torch.allclose(kappa[n], full[0][n], rtol=1e-9, atol=1e-300) for n in kappa)
            except (RuntimeError, TypeError, ValueError, IndexError):
                exact = False
            if exact:
                return
        self.args, self.kwargs, self.factor = args, kwargs, 1.0

    def kappa(self, model: nn.Module, second_order: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({name: κ}, γ²) for the weights of ``model`` as they are now, in float64."""
        q = {name: param.detach().to(_DTYPE).square().requires_grad_(True)
             for name, param in model.named_parameters()}
        tracer = SquaredPass(q)
        for tensor in _tensors((self.args, self.kwargs)):
            if tensor.is_floating_point():  # token ids stay constants: the embedding reads them
                tracer.kind[tensor] = ACTIVATION
        for rnn in self.rnns.values():
            rnn.keep_states, rnn.squared_pass = second_order, tracer
        self.module.tracer = tracer
        try:
            with torch.enable_grad():
                out = functional_call(self.module, {f"inner.{n}": t for n, t in q.items()}, self.args, self.kwargs)
                gamma2 = self._gamma2(out, tracer, model)
                gamma2.backward()  # not autograd.grad: κ2 reads the retained gradients of the RNN states
        except Refusal as refusal:
            raise TypeError(str(refusal)) from None
        except RuntimeError as error:  # a shape the forward cannot take
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"example_input of shape {self.shape} does not fit the forward of "
                             f"{type(model).__name__}: {first}") from None
        finally:
            self.module.tracer = None
            for rnn in self.rnns.values():
                rnn.squared_pass = None
        if second_order:
            shared = {n: k for n, k in tracer.uses.items() if k > 1}
            if shared:
                name, count = next(iter(shared.items()))
                raise TypeError(f"parameter {name!r} is read at {count} places of the forward (tied or reused weights), "
                                "so it lies twice on some paths and its κ2 is not computed; use second_order=False "
                                "(κ1, exact)")
        kappa = {name: (t.grad if t.grad is not None else torch.zeros_like(t)).detach() for name, t in q.items()}
        if second_order:
            for prefix, rnn in self.rnns.items():
                for k, layer in enumerate(rnn.states):
                    name = f"{prefix}.weight_hh_l{k}" if prefix else f"weight_hh_l{k}"
                    kappa[name] = kappa[name] + self._kappa2(q[name].detach(), layer)
        for rnn in self.rnns.values():
            rnn.states = []  # the pass's graph is not kept until the next one
        if self.factor != 1.0:
            kappa = {name: k * self.factor for name, k in kappa.items()}
        gamma2 = gamma2.detach() * self.factor
        _check_result(kappa, gamma2, model)
        return kappa, gamma2

    @staticmethod
    def _gamma2(out, tracer: SquaredPass, model) -> torch.Tensor:
        """The summed output; a forward that returns (output, hidden, …) has its first element as output."""
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or tracer.kind_of(out) not in (ACTIVATION, FINAL):
            raise TypeError(f"the forward of {type(model).__name__} returns {type(out).__name__} that does not depend "
                            "on its input: the path geometry needs the output tensor (first, if a tuple)")
        return out.sum()

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


def _check_result(kappa: dict, gamma2: torch.Tensor, model) -> None:
    """γ² > 0, finite, and κ ≥ 0, finite: anything else is an error, never a step (one read of two
    scalars per κ pass; a meta tensor has no values to read)."""
    if gamma2.device.type == "meta":
        return
    if not (torch.isfinite(gamma2) and gamma2 > 0):
        raise ArithmeticError(f"the squared network of {type(model).__name__} gave γ² = {float(gamma2):g}: "
                              + ("no path carries weight (a zero layer?), so the Path-SGD step s/κ is undefined"
                                 if gamma2 == 0 else "it must be a positive, finite sum of path products"))
    bad = [name for name, k in kappa.items() if not bool(torch.isfinite(k).all() & (k >= 0).all())]
    for name in bad[:1]:
            raise ArithmeticError(f"κ of {name} is negative or not finite: the squared network of "
                                  f"{type(model).__name__} is not a sum of path products")
