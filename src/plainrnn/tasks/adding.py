"""The adding problem (Hochreiter & Schmidhuber 1997; as in both RNN papers).

Two input channels over T steps: values from U[0, 1), and a mask with exactly two ones, the first
at a step drawn uniformly from the first half ⌊T/2⌋ steps and the second from the remaining steps.
The target is the sum of the two marked values. Predicting the mean, 1, gives MSE = Var(u1 + u2)
= 2/12 ≈ 0.167 (the 2016 paper's Table 2 writes it as 16.7: its numbers are MSE×100).

The validation and test sets are fixed (their own seeds, independent of the training seed), so
every run is judged on the same sequences.
"""
from __future__ import annotations

import torch

from .base import Task, TaskSpec

ADDING_BASELINE_MSE = 1.0 / 6.0
_SPLIT_SEEDS = {"valid": 1_000_003, "test": 2_000_003}


def adding_batch(batch_size: int, seq_len: int, generator: torch.Generator | None = None):
    """x [B, T, 2] (value, mask) and y [B, 1]."""
    if seq_len < 2:
        raise ValueError(f"the adding problem needs seq_len >= 2, got {seq_len}")
    half = seq_len // 2
    values = torch.rand(batch_size, seq_len, generator=generator)
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, seq_len, (batch_size,), generator=generator)
    mask = torch.zeros(batch_size, seq_len)
    rows = torch.arange(batch_size)
    mask[rows, first] = 1.0
    mask[rows, second] = 1.0
    target = (values[rows, first] + values[rows, second]).unsqueeze(1)
    return torch.stack([values, mask], dim=2), target


class AddingTask(Task):
    def __init__(self, seq_len: int, eval_size: int = 1000):
        self.spec = TaskSpec(name="adding", input_size=2, output_size=1, output="last", seq_len=seq_len,
                             metric_name="mse", lower_is_better=True, baseline=ADDING_BASELINE_MSE)
        self.eval_size = eval_size
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        adding_batch(1, seq_len)  # validates seq_len

    def train_batch(self, batch_size, generator):
        return adding_batch(batch_size, self.spec.seq_len, generator)

    def split(self, name: str):
        if name not in self._splits:
            g = torch.Generator().manual_seed(_SPLIT_SEEDS[name] + self.spec.seq_len)
            self._splits[name] = adding_batch(self.eval_size, self.spec.seq_len, g)
        return self._splits[name]

    def eval_batches(self, split, batch_size, limit=None):  # the first `limit`: evaluate truncates
        x, y = self.split(split)
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]

    def loss(self, output, target):
        return torch.nn.functional.mse_loss(output, target)

    def metric_sums(self, output, target):
        se = (output - target).square().sum().item()
        return se, se, target.numel()
