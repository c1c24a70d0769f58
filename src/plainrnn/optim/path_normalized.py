"""Path normalization for any torch optimizer: s·∂L/∂p_i/κ_i (eq. 8's direction) fed to Adam, RMSprop, …

The geometry (κ, the step scale s, when κ is recomputed) is :class:`~plainrnn.optim.path_sgd.PathSGD`'s;
only the update is the inner optimizer's.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch.optim import Optimizer

from ..path.factored import from_plain, to_plain
from .path_sgd import _model_params, _PathGeometry


class PathNormalized(Optimizer):
    """Feeds path-normalized gradients, s·∂L/∂p_i/κ_i (eq. 8's direction), into any torch optimizer
    (the 2016 paper's RNN-Path on PTB-c and text8 uses Adam).

    ``state_dict()`` holds the inner optimizer's state, and the step scale. After ``step()`` the
    ``.grad`` fields hold the normalized gradients.

    Args:
        optimizer_cls: a torch.optim.Optimizer class.
        model: as for :class:`PathSGD`.
        seq_len, second_order, p, lr_scale, kappa_every, example_input: as for :class:`PathSGD`.
        **kwargs: the inner optimizer's arguments (lr, betas, ...).

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.ReLURNN(2, 8, 1)
        >>> opt = pr.optim.PathNormalized(torch.optim.Adam, model, seq_len=10, lr=1e-3)
        >>> x, y = pr.tasks.adding_batch(4, 10)
        >>> torch.nn.functional.mse_loss(model(x), y).backward()
        >>> opt.step()
        >>> type(opt.inner).__name__, opt.param_groups[0]["lr"]
        ('Adam', 0.001)
    """

    def __init__(self, optimizer_cls, model, seq_len: int | None = None, second_order: bool = False,
                 p: float = 2.0, lr_scale="path_norm", kappa_every: int = 1, example_input=None, **kwargs):
        if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, Optimizer)):
            got = (f"an instance of {type(optimizer_cls).__name__}" if isinstance(optimizer_cls, Optimizer)
                   else repr(optimizer_cls))  # an optimizer's repr spans lines; one line names it
            raise TypeError(f"optimizer_cls must be a torch.optim.Optimizer class such as torch.optim.Adam, got {got}; "
                            "pass the class and its arguments: PathNormalized(torch.optim.Adam, model, lr=...)")
        self.geometry = _PathGeometry(model, seq_len, second_order, p, lr_scale, kappa_every, example_input)
        self.inner = optimizer_cls(_model_params(model), **kwargs)
        self._scale = {"path_scale": None, "path_steps": 0}
        # κ cache kept apart from the inner state: optimizers like Adam initialize a param's state
        # when it is empty, so a foreign key there would break them.
        self._kappa = defaultdict(dict)
        self._assembling = True
        super().__init__(_model_params(model), dict(self.inner.defaults))  # hooks, the step wrapper
        self._assembling = False
        # Share the inner optimizer's groups and state, so schedulers and state_dict see one optimizer.
        self.defaults = self.inner.defaults
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state

    def add_param_group(self, param_group: dict) -> None:
        """Adds a group to the inner optimizer; its parameters must belong to the model (κ is the
        model's geometry) and not be in a group yet."""
        if self._assembling:
            return super().add_param_group(param_group)
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        foreign = [p for p in params if p not in self.geometry.names]
        if foreign:
            raise ValueError("PathNormalized: a new param group's parameters must be parameters of its model "
                             f"(got {len(foreign)} that are not)")
        self.inner.add_param_group({**param_group, "params": params})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.geometry.normalize_(params, self._scale, self._kappa)
        self.inner.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.inner.zero_grad(set_to_none)

    def state_dict(self):
        """torch.optim's layout (``state``, ``param_groups``: the inner optimizer's, through torch's own
        ``Optimizer.state_dict``, so its hooks fire), plus the step scale and the cached κ."""
        sd = super().state_dict()
        order = [p for group in self.param_groups for p in group["params"]]
        sd.update(self._scale, kappa=[to_plain(self._kappa[p].get("kappa")) for p in order])
        return sd

    def load_state_dict(self, state_dict):
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            state_dict = hook(self, state_dict) or state_dict
        if isinstance(state_dict, dict) and "inner" in state_dict:  # the layout of plainrnn ≤ 0.x checkpoints
            state_dict = {**state_dict["inner"], **{k: v for k, v in state_dict.items() if k != "inner"}}
        expected = {"state", "param_groups", "path_scale", "path_steps", "kappa"}
        if not isinstance(state_dict, dict) or not expected <= set(state_dict):
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"expected the state_dict of a PathNormalized optimizer (keys {sorted(expected)}), got {got}")
        self.inner.load_state_dict({"state": state_dict["state"], "param_groups": state_dict["param_groups"]})
        self.param_groups, self.state = self.inner.param_groups, self.inner.state
        self._scale.update(path_scale=state_dict["path_scale"], path_steps=state_dict["path_steps"])
        order = [p for group in self.param_groups for p in group["params"]]
        self._kappa = defaultdict(dict)
        for param, entry in zip(order, state_dict["kappa"]):
            if entry is not None:
                self._kappa[param]["kappa"] = from_plain(entry)
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def __repr__(self):
        return f"PathNormalized({self.inner!r})"
