"""The 2017 paper's factored weight W = U diag(s) Vᵀ on any square weight of any module.

    s_i = 2m (σ(p_i) − 0.5) + 1  ∈ [1 − m, 1 + m]                              (eq. 10)

``spectral_(module, name, margin)`` registers the factorization with ``torch.nn.utils.parametrize``,
as geotorch and torch's own orthogonal parametrization do: ``module.<name>`` becomes U diag(s) Vᵀ,
computed from three tensors, U, p (s itself without a margin) and V, that live in
``module.parametrizations.<name>.original0/1/2``. U and V start as the singular vectors of the
weight the module had, and s as its singular values (clipped into the margin). They stay
orthogonal only if a geodesic optimizer steps them: :func:`plainrnn.optim.spectral_optimizer` finds
them in any model.

Example::

    >>> import torch, plainrnn as pr
    >>> rnn = torch.nn.RNN(3, 8, nonlinearity="relu")
    >>> _ = pr.stiefel.spectral_(rnn, "weight_hh_l0", margin=0.1)
    >>> s = torch.linalg.svdvals(rnn.weight_hh_l0)
    >>> bool(s.min() >= 0.9 - 1e-6 and s.max() <= 1.1 + 1e-6)
    True
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


def singular_values(spectrum: torch.Tensor, margin: float | None) -> torch.Tensor:
    """s of eq. 10 from its parameter p: 2m(σ(p) − 0.5) + 1 with a margin, p itself without."""
    if margin is None:
        return spectrum
    return 2 * margin * (torch.sigmoid(spectrum) - 0.5) + 1


def spectrum_of(singular: torch.Tensor, margin: float | None) -> torch.Tensor:
    """The parameter p that gives the singular values ``singular`` (clipped into [1 − m, 1 + m])."""
    if margin is None:
        return singular.clone()
    if margin == 0:
        return torch.zeros_like(singular)
    fraction = ((singular - 1) / (2 * margin) + 0.5).clamp(1e-6, 1 - 1e-6)
    return torch.logit(fraction)


class SpectralFactorization(nn.Module):
    """The parametrization W = U diag(s(p)) Vᵀ (eq. 10), with U, p, V as its three original tensors.

    Args:
        margin: m; None for free singular values (p is s itself).

    Returns:
        (``forward(U, p, V)``) the composite weight.

    Example::

        >>> import torch
        >>> from plainrnn.stiefel import SpectralFactorization
        >>> f = SpectralFactorization(margin=0.5)
        >>> W = f(torch.eye(2), torch.tensor([100.0, -100.0]), torch.eye(2))  # s at the ends of [0.5, 1.5]
        >>> W.diagonal().tolist()
        [1.5, 0.5]
    """

    def __init__(self, margin: float | None = None):
        super().__init__()
        if margin is not None and not (isinstance(margin, (int, float)) and margin >= 0):
            raise ValueError(f"margin must be None or a number >= 0, got {margin!r}")
        self.margin = margin

    def forward(self, U: torch.Tensor, spectrum: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        return (U * singular_values(spectrum, self.margin)) @ V.t()

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor):
        """U, p, V of ``weight`` by SVD (in float64, then in the weight's dtype)."""
        U, S, Vh = torch.linalg.svd(weight.to(torch.float64))
        dtype = weight.dtype
        return U.to(dtype), spectrum_of(S, self.margin).to(dtype), Vh.t().contiguous().to(dtype)


def spectral_(module: nn.Module, name: str = "weight", margin: float | None = None) -> nn.Module:
    """Replaces the square weight ``module.<name>`` by U diag(s) Vᵀ in place; returns the module.

    Args:
        module: any module, e.g. ``nn.RNN`` (``name="weight_hh_l0"``) or ``nn.Linear``.
        name: the weight to factor; it must be a square matrix.
        margin: m of eq. 10, singular values in [1 − m, 1 + m]; None: free singular values.

    Returns:
        The module, with ``module.<name>`` now computed from U, p and V.

    Example::

        >>> import torch, plainrnn as pr
        >>> layer = pr.stiefel.spectral_(torch.nn.Linear(4, 4), margin=0.0)  # an orthogonal weight
        >>> bool(torch.allclose(layer.weight.T @ layer.weight, torch.eye(4), atol=1e-5))
        True
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"{type(module).__name__} has no weight named {name!r}")
    if parametrize.is_parametrized(module, name):
        # torch renames a parametrized module's class (ParametrizedRNN): name the user's class
        raise ValueError(f"{type(module).__name__.removeprefix('Parametrized')}.{name} is already parametrized")
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"spectral_ needs a square weight; {type(module).__name__}.{name} has shape "
                         f"{tuple(weight.shape)}")
    parametrize.register_parametrization(module, name, SpectralFactorization(margin))
    return module


def spectral_factors(model: nn.Module) -> list[tuple[str, SpectralFactorization, nn.Parameter, nn.Parameter,
                                                       nn.Parameter]]:
    """Every weight of ``model`` that :func:`spectral_` factored.

    Args:
        model: any module.

    Returns:
        A list of (qualified weight name, its :class:`SpectralFactorization`, U, p, V).

    Example::

        >>> import torch, plainrnn as pr
        >>> net = torch.nn.Sequential(pr.stiefel.spectral_(torch.nn.RNN(2, 3), "weight_hh_l0"))
        >>> [name for name, *_ in pr.stiefel.spectral_factors(net)]
        ['0.weight_hh_l0']
    """
    found = []
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for name, chain in module.parametrizations.items():
            if len(chain) == 1 and isinstance(chain[0], SpectralFactorization):
                qualified = f"{module_name}.{name}" if module_name else name
                found.append((qualified, chain[0], chain.original0, chain.original1, chain.original2))
    return found
