"""Initializations of recurrent transition matrices, usable on every recurrent model here.

Each scheme draws an H×H matrix; a model whose ``recurrent_weight(layer)`` stacks k such blocks
(the LSTM's four gates) gets k independent draws. Models take the result through
``set_recurrent_weight_(layer, W)``, so the spectral model can factor it (W = U diag(s) Vᵀ).

Schemes:
    identity    W = I (IRNN, Le, Jaitly & Hinton 2015).
    uniform     W_ij ~ U[−a, a] (the 2016 paper's PTB runs use a = 0.01).
    orthogonal  W = Q from the QR of a Gaussian matrix, sign-corrected so Q is Haar-distributed.
    glorot      W_ij ~ N(0, 2 / (fan_in + fan_out)) = N(0, 1/H) (Glorot & Bengio 2010).
    nprnn       W = (A + I) / λ_max(A + I) with A = RᵀR / H, R_ij ~ N(0, 1): a normalized
                positive-definite matrix whose largest eigenvalue is 1 (Talathi & Vartak 2015).
"""
from __future__ import annotations

import math

import torch

RECURRENT_INITS = ("identity", "uniform", "orthogonal", "glorot", "nprnn")
# The 2015 paper's MLP inits: N(0, 1/fan-in), and that with 2000 random units rescaled (plainrnn.path.unbalance_).
MLP_INITS = ("balanced", "unbalanced")


def recurrent_matrix(scheme: str, size: int, *, a: float = 0.01, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One H×H matrix drawn from ``scheme`` (see the module docstring)."""
    H = size
    if scheme == "identity":
        return torch.eye(H, dtype=dtype)
    if scheme == "uniform":
        if not a > 0:
            raise ValueError(f"uniform init needs a > 0, got {a}")
        return (torch.rand(H, H, generator=generator, dtype=torch.float64) * 2 - 1).mul_(a).to(dtype)
    if scheme == "orthogonal":
        q, r = torch.linalg.qr(torch.randn(H, H, generator=generator, dtype=torch.float64))
        return (q * torch.sign(torch.diagonal(r))).to(dtype)  # the sign fix makes Q Haar (Mezzadri 2007)
    if scheme == "glorot":
        return (torch.randn(H, H, generator=generator, dtype=torch.float64) * math.sqrt(1.0 / H)).to(dtype)
    if scheme == "nprnn":
        R = torch.randn(H, H, generator=generator, dtype=torch.float64)
        A = R.t() @ R / H + torch.eye(H, dtype=torch.float64)
        return (A / torch.linalg.eigvalsh(A)[-1]).to(dtype)
    raise ValueError(f"unknown recurrent init {scheme!r}; choose one of {', '.join(RECURRENT_INITS)}")


@torch.no_grad()
def init_recurrent_(model, scheme: str, *, a: float = 0.01, generator: torch.Generator | None = None) -> None:
    """Draws every recurrent matrix of ``model`` from ``scheme``, block by H×H block."""
    for layer in range(model.recurrent_layers()):
        current = model.recurrent_weight(layer)
        H = current.shape[1]
        blocks = [recurrent_matrix(scheme, H, a=a, generator=generator, dtype=current.dtype)
                  for _ in range(current.shape[0] // H)]
        model.set_recurrent_weight_(layer, torch.cat(blocks, 0))


@torch.no_grad()
def init_rnn_(model, recurrent: str = "identity", *, recurrent_scale: float = 0.01,
              nonrecurrent_scale: float = 0.01, generator: torch.Generator | None = None) -> None:
    """The papers' full init of a :class:`ReLURNN`: non-recurrent weights from U[−s, s], zero biases,
    recurrent matrices from ``recurrent`` (``recurrent_scale`` is the uniform scheme's a)."""
    for name, p in model.named_parameters():
        if name.startswith("weight_hh"):
            continue
        if name.startswith("bias"):
            p.zero_()
        else:
            p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * nonrecurrent_scale)
    init_recurrent_(model, recurrent, a=recurrent_scale, generator=generator)
