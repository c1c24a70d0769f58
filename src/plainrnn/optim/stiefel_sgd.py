"""Geodesic SGD on orthogonal matrices, and the 2017 paper's optimizer setup for a model."""
from __future__ import annotations

from collections import ChainMap
from collections.abc import MutableMapping

import torch
from torch.optim import Optimizer

from ..stiefel.cayley import cayley_step, orthogonality_error, reorthonormalize_
from ..nets.base import RecurrentModel
from ..stiefel.spectral import spectral_factors


class StiefelSGD(Optimizer):
    """W ← (I + η/2·A)⁻¹ (I − η/2·A) W with A = G Wᵀ − W Gᵀ (2017 paper, eq. 9), for square
    orthogonal parameters. See :func:`plainrnn.stiefel.cayley_step`.

    Drift control: in exact arithmetic W stays orthogonal; in float32 rounding accumulates. Every
    ``check_every`` steps we measure ‖WᵀW − I‖ (max-abs) and, if it exceeds ``tol``, pull W back with
    Newton–Schulz iterations (:func:`plainrnn.stiefel.reorthonormalize_`). The check costs one matrix
    product per ``check_every`` steps. A float32 Cayley step adds up to ~4e-7 of drift (measured at
    H = 32…128 with gradient norms ~20), so checking every 10 steps against tol = 1e-6 keeps the drift
    below 1e-5 at every step, at 1/10 of a matrix product per step.

    ``method`` goes to :func:`cayley_step`: "auto" (a short Neumann series when it is exact to
    rounding, which it is at the paper's lr 1e-6, else one LU solve) or "solve" (always the solve).

    Args:
        params: square orthogonal matrices (or param groups of them).
        lr: the geodesic step size η.
        check_every: steps between drift checks.
        tol: the drift that triggers re-orthonormalization (None: 1e-6 in float32, 1e-12 in float64).
        method: "auto" or "solve".

    Example::

        >>> import torch, plainrnn as pr
        >>> W = torch.nn.Parameter(torch.eye(3))
        >>> opt = pr.optim.StiefelSGD([W], lr=0.1)
        >>> (W @ torch.randn(3, 3)).sum().backward()
        >>> opt.step()
        >>> pr.stiefel.orthogonality_error(W.detach()) < 1e-6
        True
    """

    def __init__(self, params, lr: float, check_every: int = 10, tol: float | None = None, method: str = "auto"):
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"Invalid learning rate: {lr} (must be > 0)")
        if not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
        if method not in ("auto", "solve"):
            raise ValueError(f"method must be 'auto' or 'solve', got {method!r}")
        super().__init__(params, dict(lr=lr, check_every=check_every, tol=tol, method=method))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2 or p.shape[0] != p.shape[1]:
                    raise ValueError(f"StiefelSGD needs square orthogonal matrices, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                p.copy_(cayley_step(p, p.grad, group["lr"], method=group.get("method", "auto")))
                if state["step"] % group["check_every"] == 0:
                    tol = group["tol"] if group["tol"] is not None else (1e-6 if p.dtype == torch.float32 else 1e-12)
                    if orthogonality_error(p) > tol:
                        reorthonormalize_(p)
                        state["reorthonormalized"] = state.get("reorthonormalized", 0) + 1
        return loss


class _GroupView(MutableMapping):
    """An inner optimizer's param group as :class:`Combined` shows it: ``lr`` in units of the combined
    optimizer's base lr (the inner lr is ``lr · lr_ratio``), every other key as it is. A scheduler that
    sets one lr (OneCycleLR's max_lr, CyclicLR's base_lr) therefore keeps each group's ratio."""

    def __init__(self, group: dict, ratio: float):
        self.group, self.ratio = group, ratio

    def __getitem__(self, key):
        if key == "lr_ratio":
            return self.ratio
        value = self.group[key]
        return value / self.ratio if key == "lr" else value

    def __setitem__(self, key, value):
        if key == "lr_ratio":
            raise KeyError("lr_ratio is fixed when the optimizer is built")
        self.group[key] = value * self.ratio if key == "lr" else value

    def __delitem__(self, key):
        del self.group[key]

    def __iter__(self):
        yield from self.group
        yield "lr_ratio"

    def __len__(self):
        return len(self.group) + 1

    def __repr__(self):
        return repr(dict(self))


class Combined(Optimizer):
    """Several optimizers stepping together as one (for the paper's geodesic + RMSprop setup).

    Args:
        *optimizers: torch optimizers over disjoint parameters, stepped in this order.
        base_lr: the lr that ``param_groups`` show every group's lr relative to (None: each group's
            own lr, ratio 1). With it, group g shows ``lr = inner lr / lr_ratio`` and ``lr_ratio``,
            so a scheduler that sets one lr for all groups (OneCycleLR) keeps their ratios.

    A real :class:`torch.optim.Optimizer`: step hooks, LR schedulers (they see and change the inner
    optimizers' own param groups), ``state_dict``/``load_state_dict`` in torch's layout (``state`` and
    ``param_groups`` over all parameters in order, plus ``group_counts``), with their hooks. ``state`` is
    one stable mapping over the inner optimizers' states. New param groups go to an inner optimizer
    (``combined.optimizers[i].add_param_group``), since only it knows what its groups mean.

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.SpectralRNN(2, 8, 1, margin=0.1)
        >>> opt = pr.optim.spectral_optimizer(model, lr=1e-3, orth_lr=1e-6)
        >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
        >>> len(opt.optimizers), opt.param_groups[0]["lr"], opt.optimizers[0].param_groups[0]["lr"]
        (2, 0.001, 1e-06)
    """

    def __init__(self, *optimizers: Optimizer, base_lr: float | None = None):
        if not optimizers or not all(isinstance(o, Optimizer) for o in optimizers):
            raise TypeError(f"Combined needs torch.optim.Optimizer instances, got {[type(o).__name__ for o in optimizers]}")
        if base_lr is not None and not (isinstance(base_lr, (int, float)) and base_lr > 0):
            raise ValueError(f"base_lr must be None or a number > 0, got {base_lr!r}")
        self.optimizers = list(optimizers)
        self.base_lr = base_lr
        self._assembling = True
        super().__init__([p for o in optimizers for g in o.param_groups for p in g["params"]], {})
        self._assembling = False
        # OneCycleLR and CyclicLR read momentum/betas from here
        self.defaults = {k: v for o in reversed(self.optimizers) for k, v in o.defaults.items()}
        self.state = ChainMap(*(o.state for o in self.optimizers))
        self._views: dict[int, _GroupView] = {}

    @property
    def param_groups(self) -> list:
        """The inner optimizers' own group dicts, read live (as :class:`_GroupView`): a scheduler's lr
        change reaches them, and a group added to an inner optimizer, or a reloaded one, shows here."""
        if self._assembling:
            return self._assembly_groups
        views = []
        for o in self.optimizers:
            for g in o.param_groups:
                view = self._views.get(id(g))
                if view is None or view.group is not g:
                    ratio = g["lr"] / self.base_lr if self.base_lr else 1.0
                    view = self._views[id(g)] = _GroupView(g, ratio)
                views.append(view)
        return views

    @param_groups.setter
    def param_groups(self, groups: list[dict]) -> None:
        self._assembly_groups = groups  # only Optimizer.__init__ sets it; the live view replaces it

    def add_param_group(self, param_group: dict) -> None:
        if self._assembling:
            return super().add_param_group(param_group)
        raise TypeError("Combined cannot guess which optimizer a new group belongs to; add it to one of "
                        "combined.optimizers (e.g. combined.optimizers[1].add_param_group(...))")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        for o in self.optimizers:
            o.zero_grad(set_to_none)

    def state_dict(self):
        """torch's layout over all parameters in order (each inner optimizer's indices shifted past the
        ones before it), plus ``group_counts``, the number of groups of each inner optimizer."""
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        state, groups, counts, offset = {}, [], [], 0
        for inner in (o.state_dict() for o in self.optimizers):
            state.update({index + offset: entry for index, entry in inner["state"].items()})
            groups += [{**g, "params": [index + offset for index in g["params"]]} for g in inner["param_groups"]]
            counts.append(len(inner["param_groups"]))
            offset += sum(len(g["params"]) for g in inner["param_groups"])
        sd = {"state": state, "param_groups": groups, "group_counts": counts}
        for hook in self._optimizer_state_dict_post_hooks.values():
            sd = hook(self, sd) or sd
        return sd

    def load_state_dict(self, state_dict):
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            state_dict = hook(self, state_dict) or state_dict
        for o, inner in zip(self.optimizers, self._split(state_dict)):
            o.load_state_dict(inner)
        self.state.maps[:] = [o.state for o in self.optimizers]  # torch replaces each inner state on load
        self._views.clear()
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def _split(self, state_dict) -> list[dict]:
        """Each inner optimizer's state_dict (torch's layout, indices from 0) out of the combined one."""
        n = len(self.optimizers)
        if isinstance(state_dict, dict) and isinstance(state_dict.get("optimizers"), list) \
                and len(state_dict["optimizers"]) == n:  # the layout before group_counts: one dict each
            return state_dict["optimizers"]
        counts = state_dict.get("group_counts") if isinstance(state_dict, dict) else None
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not (isinstance(counts, list) and len(counts) == n and isinstance(groups, list)
                and sum(counts) == len(groups) and isinstance(state_dict.get("state"), dict)):
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"expected the state_dict of a Combined optimizer of {n} optimizers (state, param_groups "
                             f"and group_counts with {n} entries), got {got}")
        inners, first, offset = [], 0, 0
        for count in counts:
            mine = groups[first:first + count]
            size = sum(len(g["params"]) for g in mine)
            inners.append({"state": {i - offset: v for i, v in state_dict["state"].items() if offset <= i < offset + size},
                           "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in mine]})
            first, offset = first + count, offset + size
        return inners

    def __repr__(self):
        return "Combined(" + ", ".join(type(o).__name__ for o in self.optimizers) + ")"


def spectral_optimizer(model, lr: float, orth_lr: float = 1e-6, optimizer_cls=torch.optim.RMSprop,
                       orth_method: str = "auto", **kwargs) -> Combined:
    """The 2017 paper's setup: geodesic SGD on every U and V at ``orth_lr``, ``optimizer_cls`` (RMSprop)
    on the rest at ``lr``, except the spectrum parameters p whose lr is divided by 2m: eq. 10 scales
    the gradient reaching p by 2m, and this undoes it (not done for m = 0, where p has no effect).

    Args:
        model: a :class:`~plainrnn.nets.SpectralRNN`, or any model with weights factored by
            :func:`plainrnn.stiefel.spectral_` (each with its own margin).
        lr: the ordinary parameters' learning rate (RMSprop's in the paper, 1e-4 or 1e-3).
        orth_lr: the geodesic steps' (the paper's 1e-6).
        optimizer_cls: the ordinary parameters' optimizer.
        orth_method: :class:`StiefelSGD`'s method.
        **kwargs: for ``optimizer_cls``.

    Returns:
        A :class:`Combined` optimizer: StiefelSGD on U and V, then ``optimizer_cls``.

    Example::

        >>> import torch, plainrnn as pr
        >>> opt = pr.optim.spectral_optimizer(pr.SpectralRNN(2, 8, 1, margin=0.1), lr=1e-3)
        >>> [type(o).__name__ for o in opt.optimizers], [g["lr"] * g["lr_ratio"] for g in opt.param_groups]
        (['StiefelSGD', 'RMSprop'], [1e-06, 0.001, 0.005])
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"spectral_optimizer takes the model (a torch.nn.Module), not a {type(model).__name__}: "
                        "it finds the factors U, p, V that spectral_ put in the model")
    if isinstance(model, RecurrentModel) and model.orthogonal_parameters():
        orthogonal = model.orthogonal_parameters()
        margins = [getattr(model, "margin", None)] * model.num_layers
        spectra = [model.spectrum(k) for k in range(model.num_layers)]
    else:
        factors = spectral_factors(model)
        if not factors:
            raise ValueError(f"{type(model).__name__} has no spectral factors: apply plainrnn.stiefel.spectral_(module, "
                             "name, margin) to a square weight first")
        orthogonal = [M for _, _, U, _, V in factors for M in (U, V)]
        margins = [factor.margin for _, factor, _, _, _ in factors]
        spectra = [p for _, _, _, p, _ in factors]
    taken = {id(p) for p in orthogonal} | {id(p) for p in spectra}
    rest = [p for p in model.parameters() if id(p) not in taken and p.requires_grad]
    groups = [dict(params=rest)] if rest else []
    for spectrum, margin in zip(spectra, margins):
        groups.append(dict(params=[spectrum], lr=lr / (2 * margin) if margin else lr))
    return Combined(StiefelSGD(orthogonal, lr=orth_lr, method=orth_method), optimizer_cls(groups, lr=lr, **kwargs),
                    base_lr=lr)
