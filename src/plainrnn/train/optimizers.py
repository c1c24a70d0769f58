"""The one registry of optimizer names: what ``--optimizer NAME`` builds, and what it reads.

RunConfig's choices, the CLI's ``--optimizer`` and :func:`~plainrnn.train.build.build_optimizer` all
come from :data:`OPTIMIZERS`; an entry says whether the optimizer reads κ (it then needs a plain
network), whether it has Path-SGD's safeguards (the trust region and backtracking), and which torch
optimizer a spectral model runs beside its geodesic steps on U and V.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class OptimizerEntry:
    build: Callable  # (cfg, model, path_kw) → optimizer, for a plain network
    reads_kappa: bool = False
    safeguarded: bool = False
    spectral_inner: str | None = None  # the torch.optim class a spectral model uses beside U and V, if any


def _torch(name: str, **fixed):
    def build(cfg, model, path_kw):
        import torch
        extra = {"momentum": cfg.momentum} if fixed.get("momentum") else {}
        return getattr(torch.optim, name)(model.parameters(), lr=cfg.lr, **extra)
    return build


def _path_sgd(cfg, model, path_kw):
    from ..optim import PathSGD
    rebalanced = {name: cfg.path_lr_nonrecurrent for name, _ in model.named_parameters()
                  if not name.startswith("weight_hh")} if cfg.path_lr_nonrecurrent != 1.0 else None
    return PathSGD(model, lr=cfg.lr, max_path_growth=cfg.max_path_growth, max_unit_step=cfg.max_unit_step,
                   momentum=cfg.path_momentum, lr_multipliers=rebalanced, **path_kw)


def _path_adam(cfg, model, path_kw):
    import torch

    from ..optim import PathNormalized
    return PathNormalized(torch.optim.Adam, model, lr=cfg.lr, **path_kw)


def _invariant_adam(cfg, model, path_kw):
    from ..optim import InvariantAdam
    return InvariantAdam(model, lr=cfg.lr, max_path_growth=cfg.max_path_growth, max_unit_step=cfg.max_unit_step,
                         **path_kw)


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry(_torch("SGD"), spectral_inner="SGD"),
    "momentum": OptimizerEntry(_torch("SGD", momentum=True), spectral_inner="SGD"),
    "adam": OptimizerEntry(_torch("Adam"), spectral_inner="Adam"),
    "adagrad": OptimizerEntry(_torch("Adagrad"), spectral_inner="Adagrad"),
    "rmsprop": OptimizerEntry(_torch("RMSprop"), spectral_inner="RMSprop"),
    "path-sgd": OptimizerEntry(_path_sgd, reads_kappa=True, safeguarded=True),
    "path-adam": OptimizerEntry(_path_adam, reads_kappa=True),
    "invariant-adam": OptimizerEntry(_invariant_adam, reads_kappa=True, safeguarded=True),
}
