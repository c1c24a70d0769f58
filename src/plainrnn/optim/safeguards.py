"""The rescaling-invariant safeguards of the path optimizers, as functions over (parameters,
directions, κ), in the way torch.optim keeps ``sgd()`` apart from ``SGD.step``: PathSGD and
InvariantAdam compose them; each returns its count, and the optimizer keeps the counters.

A move is ``(param, direction, lr)``: the step the optimizer is about to take is −lr · direction.
Both safeguards need only that the step Δ scales like the weight under a node-wise rescaling
(Theorem 1), which eq. 8's step and InvariantAdam's both do.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..path.units import row_quadratic

Move = tuple[torch.Tensor, torch.Tensor, float]


def limit_unit_steps(moves: list[Move], kappa_of: Callable[[torch.Tensor], object], name_of: dict,
                     unit_groups: list[list[tuple[str, int]]], rho: float) -> tuple[list[Move], int]:
    """The per-unit trust region ρ. For every unit j, with E_j its incoming edges (the rows j of its
    layer's parameters, :func:`plainrnn.path.units.unit_groups`) and Δ = lr · direction the step:

        r_j = sqrt( Σ_{e∈E_j} κ_e Δ_e² / Σ_{e∈E_j} κ_e w_e² ),     Δ_e ← Δ_e · min(1, ρ / r_j).

    Both sums are invariant under node-wise rescaling edge by edge (κ_e Δ_e² and κ_e w_e² are, since
    Δ_e scales like w_e), so r_j and the clipped step are too: Theorem 2 holds. A unit without
    incoming mass (Σ κ_e w_e² = 0) has no scale to compare with and is left alone.

    Returns:
        (the moves with their directions limited, never changed in place; how many units were limited).
    """
    by_name = {name_of[param]: (param, direction, lr) for param, direction, lr in moves}
    factors, unit_dim, clips = {}, {}, 0
    for group in unit_groups:
        present = [name for name, _ in group if name in by_name]
        if not present:
            continue
        step = mass = None
        for name, dim in group:
            if name not in by_name:
                continue
            param, direction, lr = by_name[name]
            kappa = kappa_of(param)
            unit_dim[name] = dim
            part_step = row_quadratic(kappa, direction, dim) * (lr * lr)
            part_mass = row_quadratic(kappa, param, dim)
            step = part_step if step is None else step + part_step
            mass = part_mass if mass is None else mass + part_mass
        ratio = torch.where(mass > 0, step / mass, torch.zeros_like(step)).sqrt()
        factor = torch.where(ratio > rho, rho / ratio, torch.ones_like(ratio))
        for name in present:
            factors[name] = factor
        clips += int((factor < 1).sum())
    limited = []
    for param, direction, lr in moves:
        factor = factors.get(name_of[param])
        if factor is not None and bool((factor < 1).any()):
            shape = [1] * direction.dim()
            shape[unit_dim[name_of[param]]] = -1
            direction = direction * factor.to(direction.dtype).reshape(shape)  # never in place: may be a buffer
        limited.append((param, direction, lr))
    return limited, clips


def backtrack_(before: list[tuple[torch.Tensor, torch.Tensor]], moves: list[Move], gamma2_before: float,
               max_growth: float, max_halvings: int, gamma2_now: Callable[[], float]) -> int:
    """The γ² safeguard, in place: while the step just taken raised γ² by more than ``max_growth`` (or
    made it non-finite), redo it from the saved weights ``before`` at half the size. γ² is invariant
    under node-wise rescaling, so the test and the halvings are too.

    Returns:
        How many halvings it took (at most ``max_halvings``).
    """
    limit = (1.0 + max_growth) * gamma2_before
    fraction, halvings = 1.0, 0
    while halvings < max_halvings:
        gamma2 = gamma2_now()
        if math.isfinite(gamma2) and gamma2 <= limit:
            break
        fraction, halvings = fraction / 2, halvings + 1
        for param, saved in before:
            param.copy_(saved)
        for param, direction, lr in moves:
            param.add_(direction, alpha=-lr * fraction)
    return halvings
