"""How far apart two Path-SGD runs drift when they start from the same function: the noise floor of
Theorem 2 in finite precision.

Theorem 2 says Path-SGD from w and from T_α(w) gives the same function at every step. In exact
arithmetic it does; in floating point the two runs round differently from the first step, and
training on real data amplifies any difference of rounding size (a ReLU unit whose pre-activation sits
near zero flips for one run and not the other). So the right yardstick for "the same curve" is a
control: the balanced run against itself with every weight nudged by one part in 10^7, float32's
rounding. If the unbalanced run stays as close as that control, the method is as invariant as float32
lets anything be; in float64 the unbalanced run should stay at 10^-15.

`plainrnn reproduce invariance-gap [--set hidden=1000] [--set steps=300]` prints
max|f(x) − f'(x)| / max|f(x)| on 500 validation images at a few steps, for both dtypes and both pairs.
"""
from __future__ import annotations

import copy

import torch
from tqdm import tqdm

from ..nets import MLP
from ..optim import PathSGD
from ..path import unbalance_
from ..tasks import make_task
from .tables import markdown_table

CHECKPOINTS = (1, 10, 30, 100, 200, 300, 600, 1000)


def _pair(width: int, dtype: torch.dtype, partner: str, seed: int):
    torch.manual_seed(seed)
    base = MLP(784, [width, width], 10).to(dtype)
    other = copy.deepcopy(base)
    if partner == "unbalanced":  # the 2015 paper's unbalancing: the same function, other weights
        unbalance_(other, units=2000, generator=torch.Generator().manual_seed(seed + 3))
    else:  # a rounding-sized nudge: how much does training amplify float32's own rounding?
        g = torch.Generator().manual_seed(seed + 5)
        with torch.no_grad():
            for p in other.parameters():
                p.mul_(1 + 1e-7 * torch.randn(p.shape, generator=g, dtype=dtype))
    return base, other


def invariance_gap(cfg) -> list[dict]:
    """Rows {dtype, partner, gaps: {step: relative logit gap}} for the MNIST MLP of ``cfg`` (its
    hidden width, lr, batch size, steps, seed and data directory), trained with PathSGD."""
    task = make_task("mnist", None, cfg.data_dir)
    probe, _ = next(task.eval_batches("valid", 500))
    rows = []
    for dtype in (torch.float32, torch.float64):
        for partner in ("unbalanced", "nudged by 1e-7"):
            models = _pair(cfg.hidden, dtype, partner, cfg.seed)
            opts = [PathSGD(m, lr=cfg.lr) for m in models]
            data = torch.Generator().manual_seed(cfg.seed)
            gaps = {}
            for step in tqdm(range(1, cfg.steps + 1), desc=f"{str(dtype)[6:]}, {partner}", leave=False,
                             disable=None):  # progress on stderr; the table goes to stdout
                x, y = task.train_batch(cfg.batch_size, data)
                for model, opt in zip(models, opts):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(model(x.to(dtype)), y).backward()
                    opt.step()
                if step in CHECKPOINTS or step == cfg.steps:
                    with torch.no_grad():
                        a, b = (m(probe.to(dtype)) for m in models)
                    gaps[step] = float((a - b).abs().max() / a.abs().max())
            rows.append(dict(dtype=str(dtype).removeprefix("torch."), partner=partner, gaps=gaps))
    return rows


def to_markdown(rows: list[dict]) -> str:
    steps = sorted({s for r in rows for s in r["gaps"]})
    return markdown_table(["dtype", "second run", *(f"step {s}" for s in steps)],
                          [[r["dtype"], r["partner"], *(f"{r['gaps'][s]:.1e}" for s in steps)] for r in rows])
