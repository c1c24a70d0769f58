"""Optimizers that read the model's geometry: PathSGD, PathNormalized (any optimizer), StiefelSGD."""
from .path_sgd import PathNormalized, PathSGD
from .stiefel_sgd import Combined, StiefelSGD, spectral_optimizer

__all__ = ["PathSGD", "PathNormalized", "StiefelSGD", "Combined", "spectral_optimizer"]
