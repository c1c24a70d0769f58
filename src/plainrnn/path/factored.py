"""κ tensors that may be stored as a rank-one outer product.

For a weight matrix whose edges each appear at most once per path (every MLP weight, the input
and output weights of an RNN), Theorem 3 gives κ1[j, k] = g_j · a_k: the squared network's
backward value at the edge's head times its forward value at the tail. Keeping the two vectors
instead of the H×F product saves a pass over memory in the optimizer's hot loop, which matters for
the 784-4000-4000-10 MLP (19M weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Outer:
    """A rank-one κ = rows ⊗ cols, κ[j, k] = rows[j] · cols[k] (Theorem 3: g_j · a_k).

    Args:
        rows: the backward values g of the edges' heads (length H).
        cols: the forward values a of their tails (length F).

    Returns:
        (``dense()``) the H×F tensor.

    Example::

        >>> import torch
        >>> from plainrnn.path import Outer
        >>> Outer(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0, 5.0])).dense()[1].tolist()
        [6.0, 8.0, 10.0]
    """

    rows: torch.Tensor
    cols: torch.Tensor

    def dense(self) -> torch.Tensor:
        return torch.outer(self.rows, self.cols)


KappaEntry = torch.Tensor | Outer


def to_plain(entry):
    """A κ entry as tensors and dicts only, so that a state_dict holding it loads with
    ``torch.load(weights_only=True)`` (a pickled :class:`Outer` would need arbitrary unpickling)."""
    if isinstance(entry, Outer):
        return {"outer_rows": entry.rows, "outer_cols": entry.cols}
    return entry


def from_plain(entry):
    """The inverse of :func:`to_plain`."""
    if isinstance(entry, dict) and set(entry) == {"outer_rows", "outer_cols"}:
        return Outer(entry["outer_rows"], entry["outer_cols"])
    return entry


def densify(entry: KappaEntry) -> torch.Tensor:
    return entry.dense() if isinstance(entry, Outer) else entry


def inverse(kappa: torch.Tensor, scale: float) -> torch.Tensor:
    """scale / κ in float64, with the dead-unit guard: where κ = 0 (no path reaches the edge, so
    ∂L/∂p = 0 too) or where the ratio is not finite, the factor is 0, so the parameter does not move."""
    inv = scale / kappa.double()
    return torch.where(torch.isfinite(inv), inv, torch.zeros((), dtype=inv.dtype, device=inv.device))


# A factor applied in the gradient's own float32 stays within [2^-50, 2^50], so that the factor, and the
# gradient times it, stay normal floats. A node-wise rescaling by 10^c moves a factor by 10^±2c, so
# the factors of an unbalanced network (2015 paper, c up to 30 and more) leave that range although
# the step itself does not: those are applied in float64 and the step rounded once (never clamped).
NARROW_RANGE = (2.0 ** -50, 2.0 ** 50)


def fits(factor: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether a float64 factor can be applied in ``dtype`` without leaving its normal range (zeros,
    the dead units' factors, are exact in any dtype)."""
    if dtype == torch.float64:
        return True
    magnitude = factor.abs()
    return bool(((magnitude == 0) | ((magnitude >= NARROW_RANGE[0]) & (magnitude <= NARROW_RANGE[1]))).all())


def divide_(grad: torch.Tensor, entry: KappaEntry, scale: float = 1.0, defer_columns: bool = False):
    """In place: grad ← scale · grad / κ (eq. 8), with κ = 0 mapped to a zero step.

    Factors that do not fit the gradient's dtype (see :func:`fits`) are applied together in float64,
    and the result rounded once.

    Args:
        grad: the gradient ∂L/∂p, overwritten.
        entry: κ of that parameter, a tensor or an :class:`Outer`.
        scale: the step scale s.
        defer_columns: with a rank-one κ whose factors fit, apply only the row factor and return the
            column factor 1/cols, for the caller to fold into its own update (one pass less over a
            large matrix).

    Returns:
        The deferred column factor, or None.

    Example::

        >>> import torch
        >>> from plainrnn.path import divide_
        >>> g = torch.tensor([2.0, 3.0, 5.0])
        >>> divide_(g, torch.tensor([4.0, 0.0, 10.0]), scale=2.0)
        >>> g.tolist()
        [1.0, 0.0, 1.0]
    """
    if isinstance(entry, Outer):
        rows, cols = inverse(entry.rows, scale), inverse(entry.cols, 1.0)
        if fits(rows, grad.dtype) and fits(cols, grad.dtype):
            # (scale/κ)[j,k] = (scale/rows[j]) · (1/cols[k]): two broadcast multiplies, no H×F temporary.
            grad.mul_(rows.to(grad.dtype).unsqueeze(1))
            if defer_columns:
                return cols.to(grad.dtype)
            grad.mul_(cols.to(grad.dtype))
            return None
        # G·rows alone may overflow where G·rows·cols does not (both ends of an edge rescaled up).
        grad.copy_(grad.double().mul_(rows.unsqueeze(1)).mul_(cols))
        return None
    factor = inverse(entry, scale)
    if fits(factor, grad.dtype):
        grad.mul_(factor.to(grad.dtype))
    else:
        grad.copy_(grad.double().mul_(factor))
    return None
