"""Where a Path-SGD step goes: the factor s/κ_i that multiplies lr · ∂L/∂p_i, per parameter tensor.

PathSGD moves p_i by −lr · (s/κ_i) · ∂L/∂p_i (eq. 8 with the step scale s of
:mod:`plainrnn.optim.path_sgd`). For a given init, the spread of s/κ across and within parameter
tensors decides which learning rates are usable: the largest factor bounds lr from above (beyond it
the first steps blow up a unit), the typical factor of the slow tensors decides how long training
takes. `plainrnn reproduce step-scales` prints this table for any run configuration.
"""
from __future__ import annotations

import torch

from ..path import kappa, path_norm
from ..tasks import make_task
from ..train.build import build_model, init_generator
from .tables import markdown_table


def step_scales(cfg) -> dict:
    """{"gamma2": γ²_net at init, "params": {name: {shape, min, median, max}}} of s/κ with the
    default s = γ²_net(w₀), for the model a run with ``cfg`` would start from (same seed, same init)."""
    task = make_task(cfg.task, cfg.seq_len, cfg.data_dir)
    model = build_model(cfg, task.spec, init_generator(cfg.seed))  # the trainer's init stream
    seq_len = task.spec.seq_len
    gamma2 = float(path_norm(model, seq_len=seq_len))
    kap = kappa(model, seq_len=seq_len, second_order=cfg.kappa2)
    params = {}
    for name, k in kap.items():
        factor = (gamma2 / k.double()).flatten()
        finite = factor[torch.isfinite(factor)]  # κ = 0: a dead edge, which PathSGD never moves
        params[name] = dict(shape=list(k.shape), min=float(finite.min()), median=float(finite.median()),
                            max=float(finite.max()), dead=int(factor.numel() - finite.numel()))
    return dict(gamma2=gamma2, seq_len=seq_len, params=params)


def to_markdown(result: dict) -> str:
    lines = [f"γ²_net at init = {result['gamma2']:.4g} (T = {result['seq_len']}); a step moves p by "
             "−lr · (s/κ) · ∂L/∂p with s = γ²_net(w₀)", ""]
    return "\n".join(lines) + "\n" + markdown_table(
        ["parameter", "shape", "min s/κ", "median s/κ", "max s/κ", "κ = 0"],
        [[name, "×".join(map(str, r["shape"])), f"{r['min']:.3g}", f"{r['median']:.3g}", f"{r['max']:.3g}",
          f"{r['dead']}"] for name, r in result["params"].items()])
