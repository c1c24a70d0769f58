"""Turn a RunConfig into a model and an optimizer."""
from __future__ import annotations

import torch

from ..nets import LSTM, MLP, ReLURNN, SpectralRNN, init_rnn_
from ..nets.init import init_recurrent_
from ..optim import spectral_optimizer
from ..path import unbalance_
from ..tasks import TaskSpec
from .optimizers import OPTIMIZERS


def init_generator(seed: int) -> torch.Generator:
    """The generator a run's model is initialized from: its own stream, independent of the data's
    (seeded with ``seed``), so that changing the batch order never changes the init."""
    return torch.Generator().manual_seed(seed + 7919)


def build_model(cfg, spec: TaskSpec, generator: torch.Generator | None = None) -> torch.nn.Module:
    if cfg.model == "mlp":
        # The 2015 paper's balanced init, N(0, 1/fan-in); --layers hidden layers of --hidden units.
        model = MLP(spec.input_size, [cfg.hidden] * cfg.layers, spec.output_size, dropout=cfg.dropout)
        if generator is not None:
            model.reset_parameters(generator)
        if cfg.init == "unbalanced":  # the same function, with 2000 units rescaled (2015, §5)
            alphas = unbalance_(model, units=2000, sigma=1.0, generator=generator)
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                top = max(float(a.log10().max()) for a in alphas)
                raise ValueError(f"the unbalanced init overflows {model.layers[0].weight.dtype} at seed {cfg.seed}: "
                                 f"a unit's scale reached 10^{top:.1f} (units picked more than once compound); "
                                 "try another seed")
        return model
    common = dict(output=spec.output, vocab_size=spec.vocab_size)
    if cfg.model == "lstm":
        model = LSTM(spec.input_size, cfg.hidden, spec.output_size, cfg.layers, **common)
        if cfg.init != "orthogonal":
            init_recurrent_(model, cfg.init, a=cfg.init_scale, generator=generator)
        return model
    if cfg.model == "spectral":
        model = SpectralRNN(spec.input_size, cfg.hidden, spec.output_size, margin=cfg.margin,
                            nonlinearity=cfg.resolved_nonlinearity(), num_layers=cfg.layers,
                            recurrence=cfg.recurrence, **common)
        init_recurrent_(model, cfg.init, a=cfg.init_scale, generator=generator)
        return model
    model = ReLURNN(spec.input_size, cfg.hidden, spec.output_size, cfg.layers,
                    nonlinearity=cfg.resolved_nonlinearity(), bias=cfg.bias, recurrence=cfg.recurrence, **common)
    init_rnn_(model, cfg.init, recurrent_scale=cfg.init_scale, nonrecurrent_scale=cfg.input_scale,
              generator=generator)
    return model


def build_optimizer(cfg, model: torch.nn.Module, seq_len: int) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names (:data:`~plainrnn.train.optimizers.OPTIMIZERS`)."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    entry = OPTIMIZERS[cfg.optimizer]
    if cfg.model == "spectral":
        # The 2017 paper's setup: geodesic SGD on U and V, the chosen optimizer on everything else.
        if entry.spectral_inner is None:
            raise ValueError(f"optimizer {cfg.optimizer} needs a plain network, not the spectral model")
        extra = {"momentum": cfg.momentum} if cfg.optimizer == "momentum" else {}
        return spectral_optimizer(model, lr=cfg.lr, orth_lr=cfg.orth_lr,
                                  optimizer_cls=getattr(torch.optim, entry.spectral_inner), **extra)
    path_kw = dict(seq_len=seq_len, second_order=cfg.kappa2,
                   lr_scale=None if cfg.path_lr_scale == "none" else cfg.path_lr_scale)
    return entry.build(cfg, model, path_kw)
