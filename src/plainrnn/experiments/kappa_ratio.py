"""‖κ2‖/‖κ1‖ over T and H at uniform[−0.1, 0.1] init: the table of the 2016 paper's Fig. 2.

The paper measured it on word-level PTB (H=200, T=20) during training; its values were lost in the
text's extraction. κ depends only on the weights, so at initialization the ratio is a property of
the init alone. We report the norms over the recurrent matrix (the only parameter with κ2 ≠ 0) and
over all parameters, averaged over seeds.
"""
from __future__ import annotations

import statistics

import torch

from ..nets import ReLURNN
from ..path import kappa, kappa2
from .tables import markdown_table

DEFAULT_T = (10, 20, 50, 100)
DEFAULT_H = (50, 100, 200)


def kappa_ratio(T: int, H: int, seed: int, vocab: int = 10_000) -> dict:
    """One model: word-level input (token ids over ``vocab``), output at every step, U[−0.1, 0.1]."""
    g = torch.Generator().manual_seed(seed)
    model = ReLURNN(1, H, vocab, vocab_size=vocab, output="all")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 0.2 - 0.1)
    k1 = kappa(model, seq_len=T)
    k2 = kappa2(model, seq_len=T)["weight_hh_l0"]
    rec = (k2.norm() / k1["weight_hh_l0"].norm()).item()
    all_k1 = torch.sqrt(sum(v.square().sum() for v in k1.values()))
    return dict(recurrent=rec, all_parameters=(k2.norm() / all_k1).item())


def kappa_ratio_table(Ts=DEFAULT_T, Hs=DEFAULT_H, seeds: int = 3, vocab: int = 10_000) -> dict:
    table = {}
    for H in Hs:
        for T in Ts:
            runs = [kappa_ratio(T, H, s, vocab) for s in range(seeds)]
            table[f"T={T},H={H}"] = {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
    return table


def to_markdown(table: dict, Ts=DEFAULT_T, Hs=DEFAULT_H, key: str = "recurrent") -> str:
    return markdown_table(["H \\ T", *map(str, Ts)],
                          [[str(H), *(f"{table[f'T={T},H={H}'][key]:.3g}" for T in Ts)] for H in Hs])
