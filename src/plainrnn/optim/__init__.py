"""Optimizers that read the model's geometry: PathSGD, PathNormalized (any optimizer), StiefelSGD."""
from .path_sgd import PathNormalized, PathSGD

__all__ = ["PathSGD", "PathNormalized"]
