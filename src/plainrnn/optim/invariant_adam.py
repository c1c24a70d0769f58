"""Adam in path-normalized coordinates: an adaptive optimizer that keeps Theorem 2.

Take z_e = √κ_e · w_e for every edge (parameter entry) e, with κ of eq. 8. Under a node-wise
rescaling w_e → c_e w_e (Theorem 1), κ_e → κ_e / c_e² and g_e = ∂L/∂w_e → g_e / c_e, so

    z_e   and   g̃_e = ∂L/∂z_e = g_e / √κ_e                                         (1)

are both invariant. Adam run on z,

    m ← β1 m + (1 − β1) g̃,   v ← β2 v + (1 − β2) g̃²,
    Δz = −η · s · m̂ / (√v̂ + ε),     m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ)          (2)

is therefore invariant, ε included, and mapped back,

    Δw_e = Δz_e / √κ_e                                                                (3)

scales like w_e: the rescaled network takes the rescaled step, so both follow the same functions
(Theorem 2), with κ recomputed from the current weights. While κ is frozen this is Adam with the
per-coordinate learning rate η s / √κ_e and ε √κ_e; it is neither Adam (κ ≡ 1) nor
PathNormalized(Adam), which feeds g/κ to Adam, whose step is blind to a fixed positive factor per
coordinate and so loses κ (up to its drift) entirely.

The scale s keeps η relative (invariant, fixed at the first κ pass):

- ``lr_scale="path_norm"`` (default, as for PathSGD): s = √γ²(w₀);
- ``"z_rms"``: s = sqrt(Σ_e κ_e w_e² / N) at w₀, the RMS of the coordinates z;
- ``None`` or ``1.0``: none; a positive float: that s.

Measured on the adding problem's init (T = 100, H = 100, identity recurrent, U[−0.01, 0.01]
elsewhere): the first step at η = 1e-3 moves the recurrent matrix by up to 2.4 (path_norm) or 0.17
(z_rms) in absolute value, where Adam's moves each entry by 1e-3: every coordinate of z takes a step
η·s however small it is, and the identity's zero off-diagonal entries are tiny in z. η of 1e-5 to
1e-6 is Adam's scale there.

The per-unit trust region (``max_unit_step``) and the γ² backtracking (``max_path_growth``) of
:mod:`plainrnn.optim.safeguards` apply unchanged, since Δ scales like w. Where κ_e = 0 (no path
uses the entry; then g_e = 0 too) the entry does not move.
"""
from __future__ import annotations

import math

import torch

from ..path.factored import densify
from ..path.units import unit_groups
from .path_sgd import KappaStateOptimizer, _model_params, _PathGeometry
from .safeguards import backtrack_, limit_unit_steps

_SCALES = ("z_rms", "path_norm")


class InvariantAdam(KappaStateOptimizer):
    """Adam in the path-normalized coordinates z = √κ ⊙ w (eqs. 1–3 of the module docstring).

    Args:
        model: a ReLURNN, an MLP, or a torch.nn model of ReLU-network layers (with ``example_input``).
        lr: η.
        seq_len: T, for a ReLURNN.
        betas, eps: as for torch.optim.Adam (ε in z's units, so invariant).
        second_order: κ1 + κ2 instead of κ1.
        lr_scale: ``"z_rms"``, ``"path_norm"``, None or a positive number (the module docstring).
        kappa_every: recompute κ every this many steps (1: exact Theorem 2 at every step).
        max_unit_step: ρ of the per-unit trust region, or None.
        max_path_growth, max_backtracks: the γ² safeguard, or None.
        example_input: for a model that is not ours.

    Example::

        >>> import torch, plainrnn as pr
        >>> model = pr.ReLURNN(2, 8, 1)
        >>> opt = pr.optim.InvariantAdam(model, lr=1e-3, seq_len=10)
        >>> x, y = pr.tasks.adding_batch(4, 10)
        >>> torch.nn.functional.mse_loss(model(x), y).backward()
        >>> opt.step()
        >>> sorted(opt.state[model.weight_hh_l0])
        ['exp_avg', 'exp_avg_sq', 'kappa', 'step']
    """

    def __init__(self, model, lr: float = 1e-3, seq_len: int | None = None, betas=(0.9, 0.999), eps: float = 1e-8,
                 second_order: bool = False, lr_scale="path_norm", kappa_every: int = 1,
                 max_unit_step: float | None = None, max_path_growth: float | None = None, max_backtracks: int = 10,
                 example_input=None):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"Invalid learning rate: {lr} (must be > 0)")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"Invalid betas: {betas!r} (two numbers in [0, 1))")
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
        if not (lr_scale is None or lr_scale in _SCALES
                or (isinstance(lr_scale, (int, float)) and not isinstance(lr_scale, bool) and lr_scale > 0)):
            raise ValueError(f"lr_scale must be one of {', '.join(map(repr, _SCALES))}, None or a positive number, "
                             f"got {lr_scale!r}")
        for name, value in (("max_unit_step", max_unit_step), ("max_path_growth", max_path_growth)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be None or a number > 0, got {value!r}")
        self.geometry = _PathGeometry(model, seq_len, second_order, 2.0, "path_norm", kappa_every, example_input)
        self.lr_scale, self.max_unit_step = lr_scale, max_unit_step
        self.max_path_growth, self.max_backtracks = max_path_growth, max_backtracks
        self._unit_groups = unit_groups(model) if max_unit_step is not None else None
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, path_scale=None, path_steps=0, path_backtracks=0,
                        path_unit_clips=0)
        super().__init__(_model_params(model), defaults)

    def _settle_scale(self, holder: dict, entries: dict, gamma2) -> None:
        """s of eq. 2, fixed at the first κ pass (it is invariant, so Theorem 2 holds with it)."""
        if holder.get("path_scale") is not None:
            return
        if self.lr_scale == "z_rms":
            mass = sum(float((densify(entries[self.geometry.names[p]]) * p.detach().double().square()).sum())
                       for g in self.param_groups for p in g["params"])
            count = sum(p.numel() for g in self.param_groups for p in g["params"])
            holder["path_scale"] = math.sqrt(mass / count)
        elif self.lr_scale == "path_norm":
            holder["path_scale"] = math.sqrt(float(gamma2))
        else:
            holder["path_scale"] = 1.0 if self.lr_scale is None else float(self.lr_scale)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first = self.param_groups[0]
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        steps = first.get("path_steps") or 0
        gamma2_before = None
        if self.geometry.kappa_due(steps, params, self.state):
            entries, gamma2 = self.geometry.current_entries()
            self._settle_scale(first, entries, gamma2)
            gamma2_before = float(gamma2)
            for p in params:
                self.state[p]["kappa"] = entries[self.geometry.names[p]]
        scale = first["path_scale"]
        moves = []
        for group in self.param_groups:
            group["path_scale"], group["path_steps"] = scale, steps + 1
            beta1, beta2 = group["betas"]
            for p in (p for p in group["params"] if p.grad is not None):
                state = self.state[p]
                root = densify(state["kappa"]).double().sqrt()
                alive = root > 0
                g = torch.where(alive, p.grad.double() / torch.where(alive, root, 1.0), 0.0).to(p.dtype)  # eq. 1
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                state["exp_avg"].lerp_(g, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = state["exp_avg"] / (1 - beta1 ** state["step"])
                v_hat = state["exp_avg_sq"] / (1 - beta2 ** state["step"])
                dz = scale * m_hat.double() / (v_hat.double().sqrt() + group["eps"])             # eq. 2
                direction = torch.where(alive, dz / torch.where(alive, root, 1.0), 0.0).to(p.dtype)  # eq. 3
                moves.append((p, direction, group["lr"]))
        if self.max_unit_step is not None:
            moves, clips = limit_unit_steps(moves, lambda p: self.state[p]["kappa"], self.geometry.names,
                                            self._unit_groups, self.max_unit_step)
            for group in self.param_groups:
                group["path_unit_clips"] = (group.get("path_unit_clips") or 0) + clips
        guard = self.max_path_growth is not None
        before = [(p, p.detach().clone()) for p, _, _ in moves] if guard else []
        if guard and gamma2_before is None:
            gamma2_before = self.geometry.gamma2()
        for p, direction, lr in moves:
            p.add_(direction, alpha=-lr)
        if guard:
            halvings = backtrack_(before, moves, gamma2_before, self.max_path_growth, self.max_backtracks,
                                  self.geometry.gamma2)
            for group in self.param_groups:
                group["path_backtracks"] = (group.get("path_backtracks") or 0) + halvings
        return loss
