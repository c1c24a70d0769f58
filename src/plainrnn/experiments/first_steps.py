"""What Path-SGD's first steps do to the path geometry: `plainrnn reproduce first-steps`.

For each of the first steps of a run (same config, seed and batches as the trainer), before the step:
the loss and γ²_net; and of the step Δ itself, measured in the κ metric (both invariant under
node-wise rescaling):

- the whole step, q = Σ_e κ_e Δ_e² / γ²: how far the step moves all paths together;
- per unit j, r_j = sqrt(Σ_{e→j} κ_e Δ_e² / Σ_{e→j} κ_e w_e²) over its incoming edges: how far it
  moves the unit relative to its own weights (:meth:`plainrnn.optim.PathSGD._limit_unit_steps`),
  the largest r_j and that unit's share of the path mass, Σ_{e→j} κ_e w_e² over the layer's sum.

On the adding problem the whole step is small (q ≈ 1e-4) while a unit that carries ~1e-7 of the
mass moves by more than 100 % of its weights; its recurrent self-loop then multiplies γ² by about
W[j,j]^{2T} in one step. That is the failure the per-unit trust region (``max_unit_step``) bounds.
"""
from __future__ import annotations

import math

import torch

from ..path import kappa, path_norm
from ..path.units import row_quadratic, unit_groups
from ..tasks import make_task
from ..train.build import build_model, build_optimizer, init_generator
from .tables import markdown_table


def first_steps(cfg, steps: int = 5) -> list[dict]:
    """One record per step: loss, γ² before the step, q, and the largest per-unit r_j with its mass share."""
    torch.manual_seed(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    task = make_task(cfg.task, cfg.seq_len, cfg.data_dir)
    model = build_model(cfg, task.spec, init_generator(cfg.seed))
    optimizer = build_optimizer(cfg, model, task.spec.seq_len)
    seq_len = None if cfg.model == "mlp" else task.spec.seq_len
    groups = unit_groups(model)
    records = []
    for step in range(1, steps + 1):
        x, y = task.train_batch(cfg.batch_size, data_gen)
        loss = task.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        gamma2 = float(path_norm(model, seq_len=seq_len))
        kap = kappa(model, seq_len=seq_len, second_order=cfg.kappa2)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer.step()
        after = dict(model.named_parameters())
        total, worst, worst_share = 0.0, 0.0, math.nan
        for group in groups:
            moved = sum(row_quadratic(kap[name], after[name].detach() - before[name], dim) for name, dim in group)
            mass = sum(row_quadratic(kap[name], before[name], dim) for name, dim in group)
            total += float(moved.sum())
            ratio = torch.where(mass > 0, moved / mass, torch.zeros_like(mass)).sqrt()
            j = int(ratio.argmax())
            if float(ratio[j]) > worst:
                worst, worst_share = float(ratio[j]), float(mass[j] / mass.sum())
        records.append(dict(step=step, loss=loss.item(), gamma2=gamma2, whole_step=total / gamma2,
                            largest_unit_step=worst, its_mass_share=worst_share))
        if not math.isfinite(loss.item()):
            break
    return records


def to_markdown(records: list[dict]) -> str:
    return markdown_table(
        ["step", "loss", "γ² before", "whole step q", "largest unit step r_j", "that unit's share of the mass"],
        [[f"{r['step']}", f"{r['loss']:.4g}", f"{r['gamma2']:.3g}", f"{r['whole_step']:.3g}",
          f"{r['largest_unit_step']:.3g}", f"{r['its_mass_share']:.2g}"] for r in records])
