"""The squared network's pass, op by op: every torch call a forward makes is squared exactly or refused.

Theorem 3 (2016) says γ²_net is the summed output of the network with every weight squared, at the
all-ones input, because then every activation is a sum of non-negative path products and the ReLUs
act as identities. That holds op by op, for the ops that *are* edges of a path graph:

- an edge weight w becomes w²: a parameter is squared before the pass (``functional_call``); a constant
  of the forward (a Python number or a tensor that depends on neither input nor parameters) that
  multiplies an activation, or is added to one (an edge from the bias node), is squared here;
- a sign is an edge weight too: ``−x`` is ``x`` and ``x − y`` is ``x + y`` in the squared network;
- a sum node stays a sum; a mean over n entries is n edges of weight 1/n, so Σ x/n² = mean/n; an
  average pool divides each window by its own divisor d (its count of inputs, or the kernel size with
  ``count_include_pad``, or ``divisor_override``), so the squared window is avg/d;
- ReLU is the identity on the squared network's non-negative values; dropout is the network it thins
  (identity);
- moving entries (view, reshape, indexing, concatenation, transpose, …) keeps every edge;
- an embedding is a linear layer on one-hot tokens: every position receives Σ_v q[v, :].

Anything else (max-pooling, tanh, a normalization, a product of two activations, a weight computed
from parameters, …) is not a sum of path products: :class:`SquaredPass` raises a TypeError that names
the op and the line of the user's forward that called it. A final ``log_softmax``/``softmax`` belongs
to the loss (it shifts each row of logits; NLL of log_softmax is cross-entropy of the logits), so the
squared pass takes the geometry of the logits; anything that reads its result afterwards is refused.
"""
from __future__ import annotations

import math
import os
import traceback

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

ACTIVATION, PARAMETER, FINAL = "activation", "parameter", "final"

# Ops that read shapes, dtypes or devices: no edge, nothing to check.
_METADATA = {"size", "dim", "numel", "__len__", "is_floating_point", "is_complex", "element_size", "stride",
             "is_contiguous", "get_device", "ndimension", "nelement", "__format__", "__repr__", "__bool__",
             "requires_grad_", "retain_grad", "storage_offset", "data_ptr", "untyped_storage", "__hash__",
             "has_names", "is_nonzero", "__index__", "__int__", "__float__", "equal", "__eq__", "__ne__"}
# Ops that move entries around without arithmetic: every edge stays an edge.
_STRUCTURAL = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose", "t",
               "contiguous", "expand", "expand_as", "__getitem__", "narrow", "select", "chunk", "split",
               "split_with_sizes", "tensor_split", "unbind", "cat", "concat", "concatenate", "stack", "hstack",
               "vstack", "dstack", "movedim", "moveaxis", "swapaxes", "swapdims", "clone", "repeat", "tile",
               "repeat_interleave", "view_as", "reshape_as", "squeeze_", "unsqueeze_", "t_", "transpose_",
               "flip", "roll", "index_select", "unfold", "ravel", "atleast_1d", "atleast_2d", "atleast_3d"}
_CASTS = {"to", "float", "double", "half", "bfloat16", "type", "type_as", "cpu", "cuda"}
_RELU = {"relu", "relu_"}
_DROPOUT = {"dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "feature_dropout", "feature_dropout_"}
_FINAL = {"log_softmax", "softmax"}
_FACTORIES = {"zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
              "new_ones", "new_empty", "new_full", "arange", "tensor", "as_tensor", "eye", "linspace"}
_ADD = {"add", "__add__", "__radd__", "add_", "__iadd__"}
_SUB = {"sub", "__sub__", "sub_", "__isub__", "subtract", "rsub", "__rsub__"}
_MUL = {"mul", "__mul__", "__rmul__", "mul_", "__imul__", "multiply"}
_DIV = {"div", "__truediv__", "div_", "__itruediv__", "true_divide", "divide"}
_NEG = {"neg", "__neg__", "negative", "neg_"}
# (input, weight, bias) layers: F.linear, the convolutions, and their transposes.
_LAYERS = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_PRODUCTS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv"}
_AVG_POOLS = {"avg_pool1d": 1, "avg_pool2d": 2, "avg_pool3d": 3}
_ADAPTIVE_POOLS = {"adaptive_avg_pool1d": 1, "adaptive_avg_pool2d": 2, "adaptive_avg_pool3d": 3}
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
# What to write instead, for the ops people reach for most often.
_POOL_HINT = " (the largest input of a window is not a sum of paths): use average pooling"
_UNIT_HINT = " (the units of a ReLU network are piecewise linear): use relu"
_HINTS = {**{f"max_pool{d}d": _POOL_HINT for d in (1, 2, 3)}, **{f"adaptive_max_pool{d}d": _POOL_HINT for d in (1, 2, 3)},
          **{op: _UNIT_HINT for op in ("tanh", "sigmoid", "gelu", "silu", "elu", "selu", "leaky_relu", "softplus",
                                      "hardtanh", "relu6", "mish", "hardswish", "hardsigmoid", "prelu", "celu")},
          **{op: " (it divides by a statistic of the activations): leave the normalization out of a model trained "
                 "with the path geometry" for op in ("batch_norm", "layer_norm", "group_norm", "instance_norm",
                                                      "rms_norm", "normalize")}}
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
SUPPORTED_OPS = ("linear maps and convolutions (F.linear, conv, matmul with a parameter), ReLU, average pooling, "
                 "dropout, embedding, sums and means, adding or scaling by constants, reshaping, indexing and "
                 "concatenation, nn.RNN(relu), and a final log_softmax/softmax")


class Refusal(Exception):
    """An op the squared pass cannot square. Not a TypeError inside the pass: torch turns a TypeError
    raised in ``Tensor.__mul__`` into NotImplemented, and Python then raises its own message;
    :class:`plainrnn.path.generic.SquaredNetwork` re-raises it as a TypeError."""


def _caller() -> str:
    """file:line of the innermost frame outside torch and plainrnn: the user's forward."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = os.path.abspath(frame.filename)
        if not (path.startswith(_TORCH_DIR) or path.startswith(_OWN_DIR) or "contextlib" in path):
            return f"{os.path.relpath(path) if not path.startswith('..') else path}:{frame.lineno}"
    return "<unknown>"


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class SquaredPass(TorchFunctionMode):
    """A TorchFunctionMode that runs a forward as its squared network (module docstring), tagging
    every tensor as an activation (it depends on the input), a parameter (on parameters only) or a
    constant, and refusing every op that is not an edge of a path graph.

    ``uses`` counts, per parameter tensor, the ops that read it: a parameter read by two ops (tied
    weights, a layer called twice) lies twice on some paths, which κ2 would have to count.
    """

    def __init__(self, parameters: dict[str, torch.Tensor]):
        super().__init__()
        self.kind = WeakIdKeyDictionary()
        self.name_of = WeakIdKeyDictionary()
        for name, tensor in parameters.items():
            self.kind[tensor] = PARAMETER
            self.name_of[tensor] = name
        self.uses: dict[str, int] = {name: 0 for name in parameters}
        self.opaque = 0  # > 0 inside a squared stand-in (nn.RNN) that does its own exact arithmetic

    # -- bookkeeping ---------------------------------------------------------------------------------
    def mark(self, value, kind):
        for tensor in _tensors(value):
            if kind is not None:
                self.kind[tensor] = kind
        return value

    def kind_of(self, value):
        return self.kind.get(value) if isinstance(value, torch.Tensor) else None

    def refuse(self, op: str, why: str):
        raise Refusal(f"{op} at {_caller()} {why}; the path geometry accepts {SUPPORTED_OPS} "
                        "(docs/own_model.md)")

    # -- the pass --------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.opaque:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name == "__get__":  # an attribute: .shape, .T, .data, ...
            return self._attribute(func, args)
        if name in _METADATA:
            return func(*args, **kwargs)
        kinds = [self.kind_of(t) for t in _tensors((args, kwargs))]
        if FINAL in kinds:
            self.refuse(name, "reads the output of a log_softmax/softmax, which the path geometry takes as part "
                              "of the loss: make it the forward's last op, or return logits and use cross_entropy")
        for tensor in _tensors((args, kwargs)):
            if tensor in self.name_of and name not in _STRUCTURAL | _CASTS:
                self.uses[self.name_of[tensor]] += 1
        acts = ACTIVATION in kinds
        if name == "embedding":  # the one layer fed by constants (token ids): its input nodes are one-hot
            return self._embedding(args, kwargs)
        if name in _FACTORIES:
            return func(*args, **kwargs)
        if not acts and PARAMETER not in kinds:
            return func(*args, **kwargs)  # constants only (masks, positions): no path passes here
        if name in _STRUCTURAL:
            out = self.mark(func(*args, **kwargs), ACTIVATION if acts else PARAMETER)
            if not acts:  # a view of a parameter (W.t(), W.view(...)) still names it, so its uses count
                named = [self.name_of[t] for t in _tensors((args, kwargs)) if t in self.name_of]
                for tensor in _tensors(out):
                    if len(named) == 1:
                        self.name_of[tensor] = named[0]
            return out
        if name in _CASTS:
            return args[0]  # the squared pass stays in float64 on the model's device
        if not acts:
            names = sorted({self.name_of[t] for t in _tensors((args, kwargs)) if t in self.name_of})
            self.refuse(name, f"computes a weight from the parameter{'s' if len(names) > 1 else ''} "
                              f"{', '.join(names) or '(derived)'}: κ of a computed weight is not the squared "
                              "network's (use the weight as a parameter)")
        return self._squared(name, func, args, kwargs)

    def _attribute(self, func, args):
        attribute = getattr(func.__self__, "__name__", "")
        value = func(*args)
        if not isinstance(value, torch.Tensor):
            return value
        kind = self.kind_of(args[0])
        if attribute in ("T", "mT", "H", "mH"):
            return self.mark(value, kind)
        if kind is not None:
            self.refuse(f".{attribute}", "leaves autograd's graph, so no κ reaches what it feeds")
        return value

    def _squared(self, name, func, args, kwargs):
        if name in _RELU:
            return self.mark(func(*args, **kwargs), ACTIVATION)
        if name in _DROPOUT:
            return args[0] if args else kwargs["input"]
        if name in _FINAL:
            x = args[0] if args else kwargs["input"]
            return self.mark(x.clone(), FINAL)
        if name in _NEG:
            return args[0]
        if name in _ADD | _SUB:
            return self._sum(name, func, args, kwargs)
        if name in _MUL | _DIV:
            return self._scale(name, func, args, kwargs)
        if name in _LAYERS:
            return self._layer(name, func, args, kwargs)
        if name in _PRODUCTS:
            return self._product(name, func, args, kwargs)
        if name in ("sum", "mean"):
            out = func(*args, **kwargs)
            if name == "mean":  # n edges of weight 1/n: Σ x/n² = mean / n
                out = out / (args[0].numel() // max(out.numel(), 1))
            return self.mark(out, ACTIVATION)
        if name in _AVG_POOLS:
            return self.mark(_squared_avg_pool(func, _AVG_POOLS[name], args, kwargs), ACTIVATION)
        if name in _ADAPTIVE_POOLS:
            return self.mark(_squared_adaptive_pool(func, _ADAPTIVE_POOLS[name], args, kwargs), ACTIVATION)
        if name == "pad":
            value = kwargs.get("value", args[3] if len(args) > 3 else None)
            mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
            if mode == "constant" and not value:
                return self.mark(func(*args, **kwargs), ACTIVATION)  # zeros: no path
            self.refuse(f"pad(mode={mode!r}, value={value!r})", "is not zero padding")
        self.refuse(name, "is not a sum of path products" + _HINTS.get(name.rstrip("_"), ""))

    def _constant_squared(self, value):
        """A constant edge weight or bias, squared (a number or a constant tensor)."""
        if isinstance(value, torch.Tensor):
            return value.to(torch.float64).square() if value.is_floating_point() else value.square()
        return value * value

    def _sum(self, name, func, args, kwargs):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        alpha = kwargs.get("alpha", 1)
        if name in ("rsub", "__rsub__"):
            a, b = b, a  # b − a with a the tensor
        terms = []
        for term, weight in ((a, 1), (b, alpha)):
            kind = self.kind_of(term)
            if kind == ACTIVATION:
                terms.append(term if weight == 1 else term * (weight * weight))
            elif kind == PARAMETER:  # a bias: already squared (its sign is an edge weight too)
                terms.append(term if weight == 1 else term * (weight * weight))
            else:
                terms.append(self._constant_squared(term * weight if weight != 1 else term))
        out = terms[0] + terms[1]
        if name.endswith("_") and not name.startswith("__") or name in ("__iadd__", "__isub__"):
            args[0].copy_(out)
            out = args[0]
        return self.mark(out, ACTIVATION)

    def _scale(self, name, func, args, kwargs):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        if "rounding_mode" in kwargs and kwargs["rounding_mode"] is not None:
            self.refuse(f"{name}(rounding_mode={kwargs['rounding_mode']!r})", "is not a linear map")
        ka, kb = self.kind_of(a), self.kind_of(b)
        if name in _DIV:
            if kb is not None:
                self.refuse(name, "divides by an activation or a parameter")
            out = a / self._constant_squared(b)
        else:
            if ka == ACTIVATION and kb == ACTIVATION:
                self.refuse(name, "multiplies two activations")
            act, other = (a, b) if ka == ACTIVATION else (b, a)
            factor = other if self.kind_of(other) == PARAMETER else self._constant_squared(other)
            out = act * factor
        if name.endswith("_") and not name.startswith("__") or name in ("__imul__", "__itruediv__"):
            args[0].copy_(out)
            out = args[0]
        return self.mark(out, ACTIVATION)

    def _layer(self, name, func, args, kwargs):
        args = list(args)
        weight_at = 1
        x = args[0] if args else kwargs.get("input")
        weight = args[weight_at] if len(args) > weight_at else kwargs.get("weight")
        if self.kind_of(x) != ACTIVATION:
            self.refuse(name, "is applied to a tensor that does not depend on the input")
        if self.kind_of(weight) == ACTIVATION:
            self.refuse(name, "multiplies two activations (its weight depends on the input)")
        if self.kind_of(weight) is None:
            weight = self._constant_squared(weight)
            if len(args) > weight_at:
                args[weight_at] = weight
            else:
                kwargs = {**kwargs, "weight": weight}
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if bias is not None and self.kind_of(bias) is None:
            if len(args) > 2:
                args[2] = self._constant_squared(bias)
            else:
                kwargs = {**kwargs, "bias": self._constant_squared(bias)}
        return self.mark(func(*args, **kwargs), ACTIVATION)

    def _product(self, name, func, args, kwargs):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2", kwargs.get("vec")))
        ka, kb = self.kind_of(a), self.kind_of(b)
        if ka == ACTIVATION and kb == ACTIVATION:
            self.refuse(name, "multiplies two activations")
        if ka is None:
            a = self._constant_squared(a)
        if kb is None:
            b = self._constant_squared(b)
        return self.mark(func(a, b), ACTIVATION)

    def _embedding(self, args, kwargs):
        names = ("input", "weight", "padding_idx", "max_norm")
        bound = dict(zip(names, args), **kwargs)
        if bound.get("max_norm") is not None:
            self.refuse("embedding(max_norm=...)", "renormalizes its weights in the forward")
        tokens, weight = bound["input"], bound["weight"]
        if self.kind_of(tokens) is not None:
            self.refuse("embedding", "reads token indices computed from activations")
        column = weight.sum(0)  # every position sees the whole one-hot vocabulary at once
        return self.mark(column.expand(*tokens.shape, column.shape[0]), ACTIVATION)


def _squared_avg_pool(func, dims: int, args, kwargs):
    """avg / d for every window, d its own divisor: d = (its count of inputs) / avg-pool(ones), exact
    for padding, ``count_include_pad``, ``ceil_mode`` and ``divisor_override`` alike."""
    bound = dict(zip(_POOL_ARGS, args), **kwargs)
    x = bound["input"]
    out = func(*args, **kwargs)
    ones = torch.ones_like(x)
    averaged_ones = func(ones, *args[1:], **kwargs)
    counts = _window_counts(ones, dims, bound)
    return torch.where(counts > 0, out * averaged_ones / counts.clamp_min(1), torch.zeros_like(out))


def _window_counts(ones: torch.Tensor, dims: int, bound: dict) -> torch.Tensor:
    """How many real (not padded) inputs each pooling window holds: a sum pool of ones."""
    def tup(value, default=None):
        if value is None:
            value = default
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    kernel = tup(bound["kernel_size"])
    stride = tup(bound.get("stride") or None, kernel) if bound.get("stride") not in (None, [], ()) else kernel
    padding = tup(bound.get("padding", 0))
    ceil_mode = bool(bound.get("ceil_mode", False))
    if dims == 1:  # as a 2-d pool of height 1, which takes divisor_override
        return F.avg_pool2d(ones.unsqueeze(-2), (1, *kernel), (1, *stride), (0, *padding), ceil_mode, True,
                            divisor_override=1).squeeze(-2)
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    return pool(ones, kernel, stride, padding, ceil_mode, True, divisor_override=1)


def _squared_adaptive_pool(func, dims: int, args, kwargs):
    """An adaptive window i covers [⌊iL/O⌋, ⌈(i+1)L/O⌉): n edges of weight 1/n, so avg / n."""
    x = args[0] if args else kwargs["input"]
    out = func(*args, **kwargs)
    counts = None
    for axis in range(dims):
        length, size = x.shape[x.dim() - dims + axis], out.shape[out.dim() - dims + axis]
        n = torch.tensor([math.ceil((i + 1) * length / size) - (i * length) // size for i in range(size)],
                         dtype=out.dtype, device=out.device)
        shape = [1] * dims
        shape[axis] = size
        n = n.reshape(shape)
        counts = n if counts is None else counts * n
    return out / counts
