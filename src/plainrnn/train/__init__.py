"""Training: the loop, the run config, model/optimizer builders, checkpoints."""
from .build import build_model, build_optimizer
from .config import MODELS, OPTIMIZERS, RunConfig
from .loop import resume, train

__all__ = ["RunConfig", "train", "resume", "build_model", "build_optimizer", "MODELS", "OPTIMIZERS"]
