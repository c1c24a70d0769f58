"""The 2017 paper's factored weight W = U diag(s) Vᵀ on any square weight of any module.

    s_i = 2m (σ(p_i) − 0.5) + 1  ∈ [1 − m, 1 + m]                              (eq. 10)

``spectral_(module, name, margin)`` registers the factorization with ``torch.nn.utils.parametrize``,
as geotorch and torch's own orthogonal parametrization do: ``module.<name>`` becomes U diag(s) Vᵀ,
computed from three tensors, U, p (s itself without a margin) and V, that live in
``module.parametrizations.<name>.original0/1/2``. U and V start as the singular vectors of the
weight the module had, and s as its singular values (moved into the margin's interior, where ds/dp
is usable).

The constraint holds under any optimizer, as geotorch's do: the factorization uses the orthogonal
polar factors of U and V,

    W = Q(U) diag(s) Q(V)ᵀ,   Q(X) = X (XᵀX)^{−1/2}   (X = Q P, P symmetric positive definite),

so W's singular values are |s| ∈ [1 − m, 1 + m] whatever a plain torch.optim step did to U and V.
On an orthogonal X (to the drift the geodesic route keeps, 1e-5 in float32) Q(X) is X itself and
∂L/∂X is the tangent projection X·skew(Xᵀ G), whose Cayley generator A = G Xᵀ − X Gᵀ is the same
as the raw gradient's: :func:`plainrnn.optim.spectral_optimizer`'s geodesic steps are unchanged.

Saving: ``torch.save(model.state_dict())`` holds U, p, V (``...parametrizations.<name>.original0/1/2``);
apply ``spectral_`` to the same weights of a fresh model, then ``load_state_dict``. To export a plain
weight, ``torch.nn.utils.parametrize.remove_parametrizations(module, name)``.

Example::

    >>> import torch, plainrnn as pr
    >>> rnn = torch.nn.RNN(3, 8, nonlinearity="relu")
    >>> _ = pr.stiefel.spectral_(rnn, "weight_hh_l0", margin=0.1)
    >>> s = torch.linalg.svdvals(rnn.weight_hh_l0)
    >>> bool(s.min() >= 0.9 - 1e-6 and s.max() <= 1.1 + 1e-6)
    True
"""
from __future__ import annotations

import warnings

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
        return (polar(U) * singular_values(spectrum, self.margin)) @ polar(V).t()

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor):
        """U, p, V of ``weight`` by SVD (in float64, then in the weight's dtype). A singular value
        outside the margin's inner 90 % (where σ'(p) < 0.0475, a fifth of its peak) starts at that
        band's edge instead, with one warning that says so: clipped to the margin's edge it would sit
        where ds/dp ≈ 0 and never move (a default-initialized weight has most of them there)."""
        U, S, Vh = torch.linalg.svd(weight.to(torch.float64))
        spectrum = spectrum_of(S, self.margin)
        if self.margin:
            band = 0.9 * self.margin
            moved = int(((S - 1).abs() > band).sum())
            self.moved = (f"{moved} of {S.numel()} singular values lay outside [1 − 0.9m, 1 + 0.9m] = [{1 - band:g}, "
                          f"{1 + band:g}] (from {float(S.min()):.3g} to {float(S.max()):.3g}); they start at that "
                          "band's edge, where the margin's gradient is usable") if moved else None
            if moved:
                spectrum = spectrum_of(S.clamp(1 - band, 1 + band), self.margin)
        dtype = weight.dtype
        return U.to(dtype), spectrum.to(dtype), Vh.t().contiguous().to(dtype)


class _Polar(torch.autograd.Function):
    """Q = X (XᵀX)^{−1/2} and its exact derivative.

    From X = QP: Qᵀ dX − dXᵀ Q = Ω P + P Ω with Ω = Qᵀ dQ skew, so Ω solves a Sylvester equation
    that is diagonal in P's eigenbasis (P = E Λ Eᵀ: Ω̃_ij = C̃_ij / (λ_i + λ_j), never singular since
    λ > 0, unlike an SVD's 1/(s_i² − s_j²)). Its adjoint gives ∂L/∂X = Q (N − Nᵀ) with
    N = Sylvester_P(Qᵀ G). At P = I that is Q·skew(Qᵀ G), the tangent projection."""

    @staticmethod
    def forward(ctx, X):
        eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
        gram = X.mT @ X
        tol = 1e-5 if X.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
        if float((gram - eye).abs().max()) <= tol:  # orthogonal already (the geodesic route): Q = X
            ctx.save_for_backward(X)
            ctx.eigen = False
            return X.clone()
        lam2, E = torch.linalg.eigh(gram.to(torch.float64))
        lam = lam2.clamp_min(torch.finfo(torch.float64).tiny).sqrt()
        Q = (X.to(torch.float64) @ (E / lam) @ E.mT).to(X.dtype)
        ctx.save_for_backward(Q, E.to(X.dtype), lam.to(X.dtype))
        ctx.eigen = True
        return Q

    @staticmethod
    def backward(ctx, G):
        if not ctx.eigen:
            (Q,) = ctx.saved_tensors
            M = Q.mT @ G
            return Q @ (M - M.mT) / 2
        Q, E, lam = ctx.saved_tensors
        M = E.mT @ (Q.mT @ G) @ E
        N = E @ (M / (lam[:, None] + lam[None, :])) @ E.mT
        return Q @ (N - N.mT)


def polar(X: torch.Tensor) -> torch.Tensor:
    """The orthogonal polar factor Q(X) = X (XᵀX)^{−1/2} of a square matrix, differentiable (X itself
    when X is orthogonal to rounding)."""
    return _Polar.apply(X)


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
    factorization = SpectralFactorization(margin)
    parametrize.register_parametrization(module, name, factorization)
    if getattr(factorization, "moved", None):
        warnings.warn(f"spectral_: {factorization.moved}", stacklevel=2)
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
