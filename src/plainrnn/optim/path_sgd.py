"""Path-SGD (2015, eq. 8; 2016, eq. 8) and path normalization for any torch optimizer.

    p_i ← p_i − η · s / κ_i(p) · ∂L/∂p_i,        κ_i = ½ ∂²γ²_net/∂p_i²       (eq. 8)

κ_i scales as (β_u/β_v)² under a node-wise rescaling β, and ∂L/∂p_i as β_u/β_v, so the update is
invariant to every rescaling of Theorem 1 (Theorem 2), with κ1 alone or with κ1 + κ2.

**Step scale s.** With the papers' init, γ²_net and κ are tiny (the κ of a recurrent entry is
~1e-5…1e-11 depending on T and H), so the raw update at η = 1e-3 explodes on its first step. We
multiply the step by a *rescaling-invariant* constant, so that Theorem 2 still holds exactly:

- ``lr_scale="path_norm"`` (default): s = γ²_net(w₀), the path norm at the first step, frozen
  afterwards. γ² is invariant under T_α, so s is the same for w and T_α(w). It makes η a relative
  step: Δp_i/p_i = −η · (p_i ∂L/∂p_i) / (κ_i p_i²/γ²), where p_i∂L/∂p_i and the "share of path mass"
  κ_i p_i²/γ² are both invariant and dimensionless, so a grid like {1e-2, 1e-3, 1e-4} means the same
  thing at any init scale.
- ``lr_scale="path_norm_now"``: s = γ²_net(w_t), re-estimated at every κ pass. Still invariant (γ² is),
  and it keeps η relative as γ² grows during training, which the frozen s does not.
- ``lr_scale=None`` or ``1.0``: the raw update of eq. 8.
- any positive float: a fixed s.

**Dead units.** κ_i = 0 means no input→output path uses p_i (a unit with all-zero incoming or
outgoing weights); then ∂L/∂p_i = 0 as well. We define 0/0 as a zero step, and also zero any factor
s/κ that is not finite. κ is computed in float64, so it neither overflows nor underflows for
T ≤ 1000 and squared spectral radius ≤ 1.5.
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

from ..path import divide_, kappa_entries, path_norm
from ..path.factored import from_plain, to_plain
from ..path.mlp import mlp_pass
from ..path.units import unit_groups
from .fused_mlp import FusedMLPStep, weights_signature
from .safeguards import backtrack_, limit_unit_steps


SCALE_RULES = ("path_norm", "path_norm_now")


def _resolve_scale(lr_scale) -> str | float:
    if lr_scale is None:
        return 1.0
    if lr_scale in SCALE_RULES:
        return lr_scale
    if isinstance(lr_scale, (int, float)) and not isinstance(lr_scale, bool) and lr_scale > 0:
        return float(lr_scale)
    raise ValueError(f"lr_scale must be one of {', '.join(map(repr, SCALE_RULES))}, None or a positive number, "
                     f"got {lr_scale!r}")


class _PathGeometry:
    """Computes κ for a model every ``kappa_every`` steps and path-normalizes its gradients.

    This is the composable piece: grad ← s · grad / κ. PathSGD follows it with an SGD step,
    PathNormalized with any torch optimizer's step."""

    def __init__(self, model, seq_len, second_order, p, lr_scale, kappa_every, example_input=None):
        if not isinstance(kappa_every, int) or kappa_every < 1:
            raise ValueError(f"kappa_every must be a positive integer, got {kappa_every!r}")
        self.model, self.seq_len, self.second_order, self.p = model, seq_len, second_order, p
        self.example_input = example_input
        self.kappa_every = kappa_every
        self.scale_rule = _resolve_scale(lr_scale)
        self.workspace: dict = {}  # buffers the κ pass reuses from step to step (not state: derivable)
        # Validate the model and seq_len now, so a wrong setup fails at construction, not at step 1.
        self._entries()
        self.names = {param: name for name, param in model.named_parameters()}
        self.gamma2_now: float | None = None
        self._ahead = None  # (signature of the weights, (κ entries, γ²)) computed after the last step

    def current_entries(self):
        """κ entries and γ² of the weights as they are now: from :meth:`look_ahead` if nothing has
        changed the weights since, else from a fresh κ pass."""
        if self._ahead is not None and self._ahead[0] == weights_signature(self.names):
            return self._ahead[1]
        return self._entries()

    def _entries(self):
        return kappa_entries(self.model, self.seq_len, self.second_order, self.p, self.workspace, self.example_input)

    def look_ahead(self) -> float:
        """γ² of the weights as they are now, by the κ pass that the next step would run anyway (kept
        for it): the safeguard's check costs nothing extra when κ is recomputed every step."""
        self._ahead = (weights_signature(self.names), self._entries())
        return float(self._ahead[1][1])

    def gamma2(self) -> float:
        """γ²_net (γ_p^p for an MLP) of the model's weights as they are now."""
        if self.kappa_every == 1:  # the next step's κ pass gives it, and is kept for that step
            return self.look_ahead()
        if self.example_input is not None:  # a model that is not ours: its squared network gives γ²
            return float(self._entries()[1])
        return float(path_norm(self.model, seq_len=self.seq_len, p=self.p))

    def kappa_due(self, steps: int, params, state) -> bool:
        """κ is recomputed every ``kappa_every`` steps, and whenever a parameter has none cached."""
        return steps % self.kappa_every == 0 or any("kappa" not in state[p] for p in params)

    def settle_scale(self, holder: dict, gamma2) -> None:
        """Fix the step scale s at the first κ computation (γ²(w₀) for "path_norm"), then never again;
        "path_norm_now" takes γ² of every κ computation instead."""
        if self.scale_rule == "path_norm_now":
            holder["path_scale"] = float(gamma2)
        elif holder.get("path_scale") is None:
            holder["path_scale"] = float(gamma2) if self.scale_rule == "path_norm" else self.scale_rule

    def mlp_vectors(self):
        """γ_in, γ_out and γ_p^p of an MLP model (Algorithm 1), computed afresh."""
        return mlp_pass(self.model, self.p, self.workspace)

    def normalize_(self, params, holder: dict, state, defer_columns: bool = False) -> dict:
        """grad ← s·grad/κ for ``params``. ``holder`` (a param group or a dict in the state_dict) keeps
        the scale s and the step count; ``state[param]["kappa"]`` caches κ between recomputations,
        so a resumed optimizer continues exactly. With ``defer_columns``, rank-one κ leave their
        column factor to the caller: returns {param: 1/cols}."""
        steps = holder.get("path_steps") or 0
        recompute = self.kappa_due(steps, params, state)
        if recompute:
            entries, gamma2 = self.current_entries()
            self.settle_scale(holder, gamma2)
            self.gamma2_now = float(gamma2)  # γ² of the weights this step starts from (the safeguard reads it)
        else:
            self.gamma2_now = None
        holder["path_steps"] = steps + 1
        scale = holder["path_scale"]
        deferred = {}
        for param in params:
            if param.grad is None:
                continue
            name = self.names.get(param)
            if name is None:
                raise ValueError("a parameter passed to the optimizer is not a parameter of its model")
            if recompute:
                state[param]["kappa"] = entries[name]
            cols = divide_(param.grad, state[param]["kappa"], scale, defer_columns)
            if cols is not None:
                deferred[param] = cols
        return deferred


def _param_groups(model, lr: float, multipliers: dict[str, float] | None):
    """One param group per learning rate: lr, and lr · m for the parameters ``multipliers`` names."""
    params = _model_params(model)
    if not multipliers:
        return params
    named = dict(model.named_parameters())
    unknown = sorted(set(multipliers) - set(named))
    if unknown:
        raise ValueError(f"lr_multipliers: {', '.join(unknown)} is not a parameter of the model; "
                         f"it has {', '.join(named)}")
    for name, factor in multipliers.items():
        if not (isinstance(factor, (int, float)) and factor > 0 and math.isfinite(factor)):
            raise ValueError(f"lr_multipliers[{name!r}] must be a number > 0, got {factor!r}")
    factor_of = {id(param): float(multipliers.get(name, 1.0)) for name, param in named.items()}
    groups: dict[float, list] = {}
    for param in params:  # model order within each group
        groups.setdefault(factor_of[id(param)], []).append(param)
    return [{"params": ps, "lr": lr * factor} for factor, ps in groups.items()]


def _model_params(model):
    # A list, not model.parameters(): a generator would be exhausted by its first use, which is
    # the bug that left the public feedforward Path-SGD code never rescaling anything. Frozen
    # parameters are in it too, as torch.optim keeps them: a step skips a parameter without a
    # gradient, so one frozen now (a warm-up) trains once it is unfrozen.
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters")
    return params


class KappaStateOptimizer(Optimizer):
    """A torch optimizer that caches each parameter's κ in ``state[param]["kappa"]``: its state_dict
    stores κ as plain tensors, so it loads with ``weights_only=True``."""

    def state_dict(self):
        sd = super().state_dict()
        sd["state"] = {index: {k: to_plain(v) if k == "kappa" else v for k, v in entry.items()}
                       for index, entry in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict):
        state = {index: {k: from_plain(v) if k == "kappa" else v for k, v in entry.items()}
                 for index, entry in state_dict.get("state", {}).items()}
        super().load_state_dict({**state_dict, "state": state})


class PathSGD(KappaStateOptimizer):
    """Path-SGD: SGD on path-normalized gradients (eq. 8), optionally with momentum.

    Args:
        model: the network (the optimizer reads its geometry, so it takes the model, not a parameter
            list): a :class:`ReLURNN`, an :class:`MLP` (exact fast routes), or any torch.nn model made of
            the layers :mod:`plainrnn.path.generic` lists, with ``example_input``.
        lr: η.
        seq_len: T, the unrolled length (recurrent models).
        second_order: add κ2 (exact ½∂²γ²/∂p²; O(T H³) extra per recurrent layer).
        p: the lp path regularizer for MLPs (Algorithm 1 of the 2015 paper); 2 for RNNs.
        momentum, dampening, nesterov: as in :class:`torch.optim.SGD`, applied to the normalized direction.
        weight_decay: L2 coefficient, added to the gradient *before* normalization (it is part of L).
        lr_scale: the step scale s (module docstring): "path_norm" (default, γ²(w₀)), "path_norm_now"
            (γ² re-estimated at every κ pass), None (raw eq. 8), or a number.
        kappa_every: recompute κ every this many steps (1 = every step, the exact method).
        fused: for an MLP with p = 2 and no momentum, update each weight matrix and compute the next
            step's κ in one pass (a C++ kernel, :mod:`plainrnn.optim.fused_mlp`). None (default): when
            the kernel can be built here; True: require it; False: never. As in ``torch.optim``, the
            fused route gives the same numbers up to rounding.
        max_path_growth: the γ² safeguard (None: off). A step that raises γ²_net by more than this
            fraction (or makes it non-finite) is undone and retried at half the size, at most
            ``max_backtracks`` times (the last try is kept). The diagonal model of γ² behind eq. 8 is
            badly wrong where γ² grows like W_rec[i,i]^{2T}; this bounds how far one step moves the path
            geometry. γ² and the step direction are both invariant under node-wise rescaling, so the
            accepted step is too (Theorem 2 holds). ``param_groups[0]["path_backtracks"]`` counts the
            halvings so far.
        max_backtracks: halvings allowed per step with ``max_path_growth``.
        example_input: for a model that is not ours, one batch shaped like the real input; κ comes from
            its squared network at the all-ones input of that shape (Theorem 3).
        lr_multipliers: ``{parameter name: m}`` (names as ``model.named_parameters()`` gives them): those
            parameters step at lr · m, each distinct m its own param group. A fixed factor per weight
            tensor keeps Theorem 2 (a rescaled edge's step still scales like the edge), so it is the
            invariant way to rebalance layers: on the adding problem at init, eq. 8 moves the recurrent
            rows ~450 times faster than the input and read-out weights (``plainrnn reproduce step-scales``).
        max_unit_step: the per-unit trust region ρ (None: off). Each unit's incoming step is scaled
            down so that its length in the κ metric is at most ρ times that of the unit's incoming
            weights (:meth:`_limit_unit_steps`). It answers the failure measured on the adding problem:
            a unit that carries almost no path mass gets a step of 100 % of its weights or more,
            though the whole step is tiny in the κ metric, and its recurrent self-loop then grows γ²
            like W[j,j]^{2T}. Rescaling-invariant (Theorem 2 holds). ``param_groups[0]["path_unit_clips"]``
            counts the unit steps limited so far.

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.ReLURNN(2, 8, 1)
        >>> opt = pr.optim.PathSGD(model, lr=1e-2, seq_len=10, max_unit_step=0.01)
        >>> x, y = pr.tasks.adding_batch(4, 10)
        >>> torch.nn.functional.mse_loss(model(x), y).backward()
        >>> opt.step()
        >>> opt.param_groups[0]["path_steps"]
        1
    """

    def __init__(self, model, lr: float, seq_len: int | None = None, second_order: bool = False, p: float = 2.0,
                 momentum: float = 0.0, weight_decay: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 lr_scale="path_norm", kappa_every: int = 1, fused: bool | None = None,
                 max_path_growth: float | None = None, max_backtracks: int = 10, max_unit_step: float | None = None,
                 example_input: torch.Tensor | None = None, lr_multipliers: dict[str, float] | None = None):
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"Invalid learning rate: {lr} (must be > 0)")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum} (must be >= 0)")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if max_path_growth is not None and not (isinstance(max_path_growth, (int, float)) and max_path_growth > 0):
            raise ValueError(f"max_path_growth must be None or a number > 0, got {max_path_growth!r}")
        if not isinstance(max_backtracks, int) or max_backtracks < 0:
            raise ValueError(f"max_backtracks must be an integer >= 0, got {max_backtracks!r}")
        if max_unit_step is not None and not (isinstance(max_unit_step, (int, float)) and max_unit_step > 0):
            raise ValueError(f"max_unit_step must be None or a number > 0, got {max_unit_step!r}")
        if fused and (max_path_growth is not None or max_unit_step is not None):
            raise ValueError("fused=True cannot take max_path_growth or max_unit_step: both act on the whole step "
                             "before or after the update")
        self.max_path_growth, self.max_backtracks = max_path_growth, max_backtracks
        self.max_unit_step = max_unit_step
        self.geometry = _PathGeometry(model, seq_len, second_order, p, lr_scale, kappa_every, example_input)
        if max_unit_step is not None:
            self._unit_groups = unit_groups(model)
        # An MLP without momentum takes the fused route when the kernel builds (plainrnn.optim.fused_mlp):
        # same update, same κ, same state_dict, one pass over each matrix instead of four.
        if fused not in (None, True, False):
            raise ValueError(f"fused must be None, True or False, got {fused!r}")
        if fused and momentum:
            raise ValueError("fused=True needs momentum=0: the fused route has no momentum buffer")
        if fused and not FusedMLPStep.supports(model, p):
            raise RuntimeError(f"fused=True: {FusedMLPStep.unsupported_reason(model, p)}")
        use_fused = (fused is not False and max_path_growth is None and max_unit_step is None
                     and FusedMLPStep.supports(model, p))
        self._fused = FusedMLPStep(model) if use_fused else None
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, path_scale=None, path_steps=0, path_backtracks=0, path_unit_clips=0)
        super().__init__(_param_groups(model, lr, lr_multipliers), defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with_grad = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["weight_decay"]:
                for param in params:
                    param.grad.add_(param, alpha=group["weight_decay"])
            with_grad.append(params)
        # One κ computation per step for all groups; the scale lives in the groups (state_dict).
        first = self.param_groups[0]
        if self._fused is not None and self._fused.applies(self.param_groups):
            lr_of = {param: group["lr"] for group in self.param_groups for param in group["params"]}
            self._fused.step(self.geometry, first, self.state, lr_of)
            for group in self.param_groups:
                group["path_scale"], group["path_steps"] = first["path_scale"], first["path_steps"]
            return loss
        guard = self.max_path_growth is not None
        if guard:
            before = [(p, p.detach().clone()) for params in with_grad for p in params]
        deferred = self.geometry.normalize_([p for params in with_grad for p in params], first, self.state,
                                            defer_columns=not guard and self.max_unit_step is None)
        if guard:  # γ² of the weights before the step: this step's κ pass, or a path-norm pass
            gamma2_before = self.geometry.gamma2_now
            if gamma2_before is None:
                gamma2_before = self.geometry.gamma2()
        moves = []  # (param, direction, lr) of this step
        for group, params in zip(self.param_groups, with_grad):
            group["path_scale"], group["path_steps"] = first["path_scale"], first["path_steps"]
            for param in params:
                cols = deferred.get(param)
                if cols is not None and not group["momentum"]:
                    # p ← p − lr · (grad/rows) ⊙ (1/cols): the column factor rides on the update itself,
                    # so a 4000×4000 layer is read and written once less than divide-then-step.
                    param.addcmul_(param.grad, cols, value=-group["lr"])
                    continue
                if cols is not None:
                    param.grad.mul_(cols)
                direction = param.grad
                if group["momentum"]:
                    state = self.state[param]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = direction.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(direction, alpha=1 - group["dampening"])
                    direction = direction.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                moves.append((param, direction, group["lr"]))
        if self.max_unit_step is not None:
            moves = self._limit_unit_steps(moves, first)
        for param, direction, lr in moves:
            param.add_(direction, alpha=-lr)
        if guard:
            self._backtrack(before, moves, gamma2_before, first)
        return loss

    def _limit_unit_steps(self, moves, first: dict):
        """The per-unit trust region (``max_unit_step``), :func:`plainrnn.optim.safeguards.limit_unit_steps`;
        its count of limited units lives in the param groups (state_dict)."""
        limited, clips = limit_unit_steps(moves, lambda param: self.state[param]["kappa"], self.geometry.names,
                                          self._unit_groups, self.max_unit_step)
        first["path_unit_clips"] = (first.get("path_unit_clips") or 0) + clips
        for group in self.param_groups:
            group["path_unit_clips"] = first["path_unit_clips"]
        return limited

    def _backtrack(self, before, moves, gamma2_before: float, first: dict) -> None:
        """The γ² safeguard (``max_path_growth``), :func:`plainrnn.optim.safeguards.backtrack_`."""
        halvings = backtrack_(before, moves, gamma2_before, self.max_path_growth, self.max_backtracks,
                              self.geometry.gamma2)
        total = (first.get("path_backtracks") or 0) + halvings
        for group in self.param_groups:
            group["path_backtracks"] = total
