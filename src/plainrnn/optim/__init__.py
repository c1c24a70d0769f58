"""Optimizers that read the model's geometry: PathSGD, PathNormalized (any optimizer), InvariantAdam,
StiefelSGD."""
from .invariant_adam import InvariantAdam
from .path_normalized import PathNormalized
from .path_sgd import PathSGD
from .stiefel_sgd import Combined, StiefelSGD, spectral_optimizer

__all__ = ["PathSGD", "PathNormalized", "InvariantAdam", "StiefelSGD", "Combined", "spectral_optimizer"]
