"""PathSGD's fused step for an MLP: the update and the next step's κ in one pass over each matrix.

For an MLP, κ of a weight matrix is rank one, κ[j, k] = γ_out[j] · γ_in[k] (Algorithm 1), and the
vectors γ_in, γ_out come from products with the squared matrices. Computed apart from the update,
they cost three extra passes over memory per step (the square, one product each way), which is a
quarter of an SGD step for the 784-4000-4000-10 MLP at batch 100 (docs/performance.md). Here each
matrix is updated by the squared-sweep kernel,

    W ← W − η · G ∘ (s/γ_out ⊗ 1/γ_in),                               (eq. 8)

which, in the same pass, multiplies the *updated* squared matrix by the new γ_in and γ_out
(:func:`plainrnn.path.mlp.sweep_layers` orders the layers so that both are known when the largest
matrix is visited). The vectors are then exactly those a fresh κ pass would compute at the next
step (the kernel's sums do not depend on which products it computes together), so the next step
reuses them, and a step costs the same memory traffic as SGD's.

The reuse is guarded: the vectors belong to the parameters' versions (and storages) they were
computed from. If anything changes a parameter between steps (``load_state_dict``, a rescaling, a
manual edit), the versions differ and the next step computes κ afresh.
"""
from __future__ import annotations

import torch

from ..nets import MLP
from ..path.factored import fits, inverse
from ..path.kernels import kernel, squared_sweep_
from ..path.mlp import certainly_wide, entries_from_vectors, finish_pass, fits_narrow, sweep_layers


def weights_signature(params) -> tuple:
    """Identifies the parameters' current values, for caches derived from them: _version moves on every
    in-place change (the kernel bumps it too); data_ptr catches `p.data = …`."""
    return tuple((id(p), p._version, p.data_ptr()) for p in params)


class FusedMLPStep:
    """The fused route of :class:`PathSGD` for an :class:`~plainrnn.nets.MLP` (no momentum, p = 2)."""

    def __init__(self, model: MLP):
        self.model = model
        self.layers = model.linears()
        self.params = [p for layer in self.layers for p in (layer.weight, layer.bias) if p is not None]
        self._next = None  # (signature, (γ_in, γ_out, γ²)) of the parameters as the last step left them

    @staticmethod
    def unsupported_reason(model, p: float) -> str | None:
        if not isinstance(model, MLP):
            return f"the fused route is for plainrnn.MLP, got {type(model).__name__}"
        if p != 2.0:
            return f"the fused route is for p = 2, got p = {p}"
        if kernel() is None:
            return "plainrnn's C++ kernels could not be built here (see the warning above, or PLAINRNN_KERNELS=0)"
        return None

    @classmethod
    def supports(cls, model, p: float) -> bool:
        return cls.unsupported_reason(model, p) is None

    def applies(self, param_groups) -> bool:
        """Whether this step can take the fused route: every parameter of the model is in the optimizer
        without momentum, has a gradient, and is a contiguous float32 or float64 CPU tensor."""
        in_groups = {p: g for g in param_groups for p in g["params"]}
        dtypes = set()
        for param in self.params:
            group = in_groups.get(param)
            if group is None or group["momentum"] or param.grad is None:
                return False
            if param.device.type != "cpu" or not (param.is_contiguous() and param.grad.is_contiguous()):
                return False
            dtypes.add(param.dtype)
        return len(in_groups) == len(self.params) and len(dtypes) == 1 and dtypes <= {torch.float32, torch.float64}

    def _current_vectors(self, geometry):
        """γ_in and γ_out (float64) of the parameters as they are now, and γ²: reused from the last
        step's sweep when no parameter has changed since, else from a fresh pass."""
        cached = self._next
        if cached is not None and cached[0] == weights_signature(self.params):
            return cached[1]
        return geometry.mlp_vectors()

    def step(self, geometry, holder: dict, state, lr_of: dict) -> None:
        """One PathSGD step. ``holder`` keeps the step scale and count, ``state[param]["kappa"]`` κ (as the
        unfused route does, so a state_dict is the same either way); ``lr_of`` maps param → lr."""
        steps = holder.get("path_steps") or 0
        if geometry.kappa_due(steps, self.params, state):
            gin, gout, gamma2 = self._current_vectors(geometry)
            geometry.settle_scale(holder, gamma2)
            entries = entries_from_vectors(self.model, gin, gout)
            for param in self.params:
                state[param]["kappa"] = entries[geometry.names[param]]
        holder["path_steps"] = steps + 1
        scale = holder["path_scale"]

        dtype = self.params[0].dtype
        factors = [(inverse(state[layer.weight]["kappa"].rows, scale), inverse(state[layer.weight]["kappa"].cols, 1.0))
                   for layer in self.layers]
        # A rescaled network's factors may leave float32's range: then the whole pass runs wide (float64
        # factors, products and sums; W stays float32), so that the step is exactly invariant.
        wide = not all(fits(rows, dtype) and fits(cols, dtype) for rows, cols in factors)
        factor_dtype = torch.float64 if wide else dtype
        updates = []
        for layer, (rows, cols) in zip(self.layers, factors):
            rows, cols = rows.to(factor_dtype), cols.to(factor_dtype)
            if layer.bias is not None:
                layer.bias.add_(layer.bias.grad * rows, alpha=-lr_of[layer.bias])
            updates.append(dict(grad=layer.weight.grad, row_factor=rows, col_factor=cols, lr=lr_of[layer.weight]))
        # Products of the updated matrices only when the next step will use them.
        if (steps + 1) % geometry.kappa_every == 0:
            gin, gout = sweep_layers(self.layers, 2.0, factor_dtype, updates=updates)
            # Kept only where a fresh pass (mlp_pass) would have swept the same way, so that reusing
            # them is bit for bit a fresh pass: narrow sweeps in range, wide sweeps far out of it.
            keep = (dtype == torch.float64 or (certainly_wide(*gin, *gout) if wide else fits_narrow(*gin, *gout)))
            vectors = finish_pass(gin, gout) if keep else None
        else:
            for layer, update in zip(self.layers, updates):
                squared_sweep_(layer.weight.detach(), **update)
            vectors = None
        self._next = None if vectors is None else (weights_signature(self.params), vectors)
