"""The squared sweep: one pass over an MLP weight matrix that updates it and computes its κ products.

    squared_sweep_(W, gin, gout, grad=G, row_factor=r, col_factor=c, lr=η)

    W ← W − η · G ∘ (r ⊗ c)                      (optional: Path-SGD's step, eq. 8, with κ = rows ⊗ cols,
                                                   r = s/rows and c = 1/cols)
    returns  |W|^p gin   and   |W|^pᵀ gout        (Algorithm 1 of the 2015 paper, lines 3 and 5)

r, c, gin and gout are in W's dtype, or in float64 for a float32 W (the "wide" route, for rescaled
networks whose factors leave float32's range; see :func:`plainrnn.path.mlp.mlp_pass`).

For the 784-4000-4000-10 MLP at batch 100, every one of these is bound by memory traffic over the
64 MB matrix, not by arithmetic: done as separate torch ops (square into a buffer, two mat-vecs, an
``addcmul_``) they read W four times and write it twice, which costs a quarter of an SGD step on a
2-core CPU. The C++ kernel in ``plainrnn/csrc/squared_sweep.cpp`` reads G and W once and writes W once, the
same traffic as SGD's own ``p.add_(grad)``, and computes the products of the *updated* W from
registers; an optimizer then has the next step's κ for free.

The kernel is part of plainrnn's one C++ extension (:mod:`plainrnn.native`: built on first use, once
per machine). Where it cannot be built (no compiler), or for p ≠ 2, other dtypes or devices, the same
function runs as eager torch ops, which give the same numbers up to rounding. ``PLAINRNN_KERNELS=0``
turns the kernel off.
"""
from __future__ import annotations

import torch

from ..native import kernel

def uses_kernel(W: torch.Tensor, p: float) -> bool:
    """Whether :func:`squared_sweep_` runs the compiled kernel for this matrix (else eager torch ops)."""
    return _kernel_for(W, p) is not None


def _kernel_for(W: torch.Tensor, p: float):
    if p != 2.0 or W.device.type != "cpu" or W.dtype not in (torch.float32, torch.float64) or not W.is_contiguous():
        return None
    return kernel()


def _powered(W: torch.Tensor, p: float, dtype: torch.dtype, buffer: torch.Tensor | None) -> torch.Tensor:
    W = W if W.dtype == dtype else W.to(dtype)  # the wide eager route squares in float64
    if p == 2.0:
        return torch.square(W, out=buffer) if buffer is not None and buffer.dtype == dtype else W.square()
    return W.abs().pow_(p)


def _vector_dtype(weight: torch.Tensor, *vectors) -> torch.dtype:
    """The one dtype of the factors and vectors: W's, or float64 for a float32 W (the wide route)."""
    dtypes = {v.dtype for v in vectors if v is not None}
    if len(dtypes) > 1:
        raise ValueError(f"the factors and vectors must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop() if dtypes else weight.dtype
    if dtype not in (weight.dtype, torch.float64):
        raise ValueError(f"the factors and vectors must have W's dtype ({weight.dtype}) or float64, got {dtype}")
    return dtype


def squared_sweep_(weight: torch.Tensor, gin: torch.Tensor | None = None, gout: torch.Tensor | None = None, *,
                   p: float = 2.0, grad: torch.Tensor | None = None, row_factor: torch.Tensor | None = None,
                   col_factor: torch.Tensor | None = None, lr: float = 0.0,
                   buffer: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Optionally W ← W − lr · grad ∘ (row_factor ⊗ col_factor), in place; then (|W|^p gin, |W|^pᵀ gout),
    each None when its vector is None. ``weight`` is a detached parameter and ``grad`` has its dtype.

    The factors and vectors share one dtype: W's ("narrow"), or float64 for a float32 W ("wide"). Wide,
    the update G·r·c is formed in float64 and rounded once into W, and the squares and sums are taken in
    float64: the route for networks whose factors s/κ leave float32's range (a node-wise rescaling by
    10^c moves them by 10^±2c) while W and the step itself stay inside it.

    ``buffer`` (W's shape, the vectors' dtype) spares the eager path a fresh allocation for |W|^p."""
    if grad is not None and (row_factor is None or col_factor is None):
        raise ValueError("an update needs both row_factor and col_factor")
    dtype = _vector_dtype(weight, gin, gout, row_factor, col_factor)
    module = _kernel_for(weight, p)
    if module is not None and (grad is None or grad.is_contiguous()):
        rows, cols = module.squared_sweep(weight, gin, gout, grad, row_factor, col_factor, float(lr))
        if grad is not None:  # the kernel writes through a pointer; autograd must still see W changed
            torch.autograd.graph.increment_version(weight)
        return (rows if gin is not None else None), (cols if gout is not None else None)
    if grad is not None:
        if dtype == weight.dtype:
            weight.addcmul_(grad * row_factor.unsqueeze(1), col_factor, value=-lr)
        else:
            step = grad.to(dtype).mul_((lr * row_factor).unsqueeze(1)).mul_(col_factor)
            weight.copy_(weight.to(dtype).sub_(step))
    if gin is None and gout is None:
        return None, None
    powered = _powered(weight, p, dtype, buffer)
    return (powered @ gin if gin is not None else None), (powered.t() @ gout if gout is not None else None)
