"""The orthogonal geometry: Cayley geodesic steps, re-orthonormalization, soft penalties."""
from .cayley import cayley_step, orthogonality_error, reorthonormalize_, skew_generator
from .spectral import SpectralFactorization, spectral_, spectral_factors
from .penalties import (composite_weight_decay, orthogonality_penalty, recurrent_penalty,
                        singular_value_prior)

__all__ = ["spectral_", "spectral_factors", "SpectralFactorization", "cayley_step", "skew_generator", "orthogonality_error", "reorthonormalize_", "orthogonality_penalty",
           "singular_value_prior", "composite_weight_decay", "recurrent_penalty"]
