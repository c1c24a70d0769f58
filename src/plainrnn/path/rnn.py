"""Path geometry of a :class:`~plainrnn.nets.ReLURNN`, from one pass of its squared network.

Notation (2016 paper). Square every parameter, q = p²; feed the all-ones input (Theorem 3). The
squared network is linear on non-negative values, so its activations are
    a^l_t = Qin^l a^{l−1}_t + Q^l a^l_{t−1} + c^l,     a^l_0 = 0,  a^0_t = 1,
where Qin = W_in², Q = W_rec², c = b². Its summed emitted output is γ²_net (eq. 3):
    γ² = Σ_{t emitted} 1ᵀ (Qout a^d_t + c_out).
The backward values g^l_t = ∂γ²/∂a^l_t count the squared paths from a node to the outputs:
    g^l_t = Q^lᵀ g^l_{t+1} + Qin^{l+1}ᵀ g^{l+1}_t  (+ Qoutᵀ 1 at emitted steps of the top layer).

κ1 (eq. 9, Theorem 3) is the gradient of γ² in q, a sum over the edges that share a parameter:
    κ1(W_rec^l) = Σ_t g^l_t (a^l_{t−1})ᵀ,   κ1(W_in^l) = Σ_t g^l_t (a^{l−1}_t)ᵀ,   κ1(b^l) = Σ_t g^l_t,
    κ1(W_out) = 1 ⊗ Σ_{t emitted} a^d_t,     κ1(b_out) = #emitted · 1.

κ2 (eq. 10) counts pairs of distinct edges that share a parameter on one path; in a ReLURNN only
recurrent entries have them (a tied or reused weight of another model would too: generic.py refuses
κ2 for it). For W_rec[i, j] used at steps s1 < s2 of layer l (j@s−1 → i@s):
    κ2[i, j] = 4 q_ij Σ_{s1<s2} a_j(s1−1) (Q^{s2−1−s1})_{ji} g_i(s2).
(The factor is 4, not the paper's 1: ½∂²/∂p² of p^{2k} is k(2k−1)p^{2k−2}, of which κ1 is k·p^{2k−2},
leaving 2k(k−1) = 4·C(k,2) per path. Eq. 10 as printed gives half of that; see docs/path_sgd.md.)
We sum it with a backward recursion over s, O(T H³) per layer and O(H²) memory:
    B_s = diag(g(s+1)) + Q B_{s+1},  B_T = 0;      M = Σ_s diag(a(s−1)) B_s;      κ2 = 4 q ⊙ Mᵀ.
Everything runs in float64 so that T = 1000 with a squared spectral radius of 1.5 (≈1e176) stays
finite.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .factored import Outer

_DTYPE = torch.float64


@dataclass
class SquaredPass:
    """Forward values A[l] ((T+1)×H, row 0 is a_0 = 0) and backward values G[l] (T×H, row t−1 is g_t)."""

    Q: list[torch.Tensor]
    A: list[torch.Tensor]
    G: list[torch.Tensor]
    inputs_per_step: int
    emitted: torch.Tensor  # T booleans: which steps emit an output
    gamma2: torch.Tensor


def krylov_rows(Q: torch.Tensor, v: torch.Tensor, T: int) -> torch.Tensor:
    """Rows v, Qv, Q²v, …, Q^{T−1}v (T×H) by doubling: K ← [K; K (Q^n)ᵀ], Q^n ← (Q^n)², so ⌈log2 T⌉
    matrix products replace T dependent matrix-vector products (a Python loop over time)."""
    K = v.unsqueeze(0)
    P = Q
    while K.shape[0] < T:
        K = torch.cat((K, K @ P.t()))
        if K.shape[0] < T:
            P = P @ P  # only when another round needs it: Q^{2n} can overflow where Q^n does not
    return K[:T]


def _squared(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(_DTYPE).square()


def squared_pass(model, seq_len: int) -> SquaredPass:
    """One forward and one backward pass of the squared network at the all-ones input."""
    if seq_len is None or int(seq_len) < 1:
        raise ValueError(f"a recurrent model needs seq_len >= 1 for its path geometry, got {seq_len!r}")
    T, H, d = int(seq_len), model.hidden_size, model.num_layers
    device = model.weight_hh(0).device  # every tensor of the pass lives where the model does
    emitted = torch.zeros(T, dtype=torch.bool, device=device)
    if model.output == "all":
        emitted[:] = True
    else:
        emitted[-1] = True

    Q = [_squared(model.weight_hh(k)) for k in range(d)]
    Qin = [_squared(model.weight_ih(k)) for k in range(d)]
    C = [_squared(model.layer_bias(k)) for k in range(d)]
    A: list[torch.Tensor] = []
    below = None
    for k in range(d):
        if k == 0:
            # Constant input: the drive u is the same at every step, so a_t = Σ_{n<t} Qⁿ u, a prefix
            # sum of Krylov vectors (all terms are non-negative: no cancellation).
            drive = Qin[0].sum(1)
            if C[0] is not None:
                drive = drive + C[0]
            a = torch.zeros(T + 1, H, dtype=_DTYPE, device=device)
            torch.cumsum(krylov_rows(Q[0], drive, T), 0, out=a[1:])
            A.append(a)
            below = a
            continue
        drives = below[1:] @ Qin[k].t()
        if C[k] is not None:
            drives = drives + C[k]
        a = torch.zeros(T + 1, H, dtype=_DTYPE, device=device)
        Qk = Q[k]
        for t in range(T):
            torch.addmv(drives[t], Qk, a[t], out=a[t + 1])
        A.append(a)
        below = a

    Qout, c_out = _squared(model.weight_out), _squared(model.bias_out)
    out_sum = Qout.sum(0)  # Qoutᵀ 1
    gamma2 = A[-1][1:][emitted].sum(0) @ out_sum
    if c_out is not None:
        gamma2 = gamma2 + emitted.sum() * c_out.sum()

    G: list[torch.Tensor | None] = [None] * d
    above = torch.outer(emitted.to(_DTYPE), out_sum)  # what the top layer receives at each step
    for k in reversed(range(d)):
        QkT = Q[k].t()
        if k == d - 1:
            # The top layer's drive is Qoutᵀ1 at emitted steps: g_t = Σ_{n ≥ 0} (Qᵀ)ⁿ e_{t+n} is a
            # reversed Krylov sequence (last output) or its suffix sums (every output).
            K = krylov_rows(QkT, out_sum, T)
            G[k] = (torch.cumsum(K, 0) if model.output == "all" else K).flip(0)
        else:
            g = torch.zeros(T + 1, H, dtype=_DTYPE, device=device)  # row T is g_{T+1} = 0
            for t in reversed(range(T)):
                torch.addmv(above[t], QkT, g[t + 1], out=g[t])
            G[k] = g[:T]
        if k > 0:
            above = G[k] @ Qin[k]
    return SquaredPass(Q=Q, A=A, G=G, inputs_per_step=model.weight_ih(0).shape[1], emitted=emitted,
                       gamma2=gamma2)


def path_norm(model, seq_len: int) -> torch.Tensor:
    """γ²_net (eq. 3) of a ReLURNN unrolled for ``seq_len`` steps."""
    return squared_pass(model, seq_len).gamma2


def kappa2_recurrent(Q: torch.Tensor, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """κ2 of one recurrent matrix (module docstring), by the backward recursion over s."""
    T, H = G.shape
    B = torch.zeros(H, H, dtype=_DTYPE, device=Q.device)
    M = torch.zeros(H, H, dtype=_DTYPE, device=Q.device)
    # s runs from T−1 down to 2 (B_T = 0, and a(0) = 0 makes s = 1 vanish). Row s of G is g(s+1).
    for s in range(T - 1, 1, -1):
        B = torch.addmm(torch.diag(G[s]), Q, B)   # B_s = diag(g(s+1)) + Q B_{s+1}
        M.addcmul_(A[s - 1].unsqueeze(1), B)      # M += diag(a(s−1)) B_s
    return 4.0 * Q * M.t()


def kappa_entries(model, seq_len: int, second_order: bool = False) -> tuple[dict, torch.Tensor]:
    """{parameter name: κ entry} (dense tensor or rank-one :class:`Outer`), and γ²_net."""
    sp = squared_pass(model, seq_len)
    out: dict = {}
    for k in range(model.num_layers):
        g, a = sp.G[k], sp.A[k]
        g_sum = g.sum(0)
        if k == 0:
            out["weight_ih_l0"] = Outer(g_sum, torch.ones(sp.inputs_per_step, dtype=_DTYPE, device=g_sum.device))
        else:
            out[f"weight_ih_l{k}"] = g.t() @ sp.A[k - 1][1:]
        kappa_rec = g.t() @ a[:-1]
        if second_order:
            kappa_rec = kappa_rec + kappa2_recurrent(sp.Q[k], a, g)
        out[f"weight_hh_l{k}"] = kappa_rec
        if model.bias:
            out[f"bias_l{k}"] = g_sum
    out_rows = torch.ones(model.output_size, dtype=_DTYPE, device=sp.gamma2.device)
    out["weight_out"] = Outer(out_rows, sp.A[-1][1:][sp.emitted].sum(0))
    if model.bias:
        out["bias_out"] = out_rows * sp.emitted.sum()
    return out, sp.gamma2


def kappa2_only(model, seq_len: int) -> dict[str, torch.Tensor]:
    """κ2 alone for each recurrent matrix (zero elsewhere, Lemma 1 / footnote 3)."""
    sp = squared_pass(model, seq_len)
    return {f"weight_hh_l{k}": kappa2_recurrent(sp.Q[k], sp.A[k], sp.G[k]) for k in range(model.num_layers)}
