"""The copy task (Hochreiter & Schmidhuber 1997; the 2017 paper's §3.1.1 layout).

Input of T+20 steps over 10 symbols (one-hot): 0 is the blank, 1..8 the data symbols a_1..a_8, 9 the
delimiter. Steps 1..10 hold 10 data symbols drawn uniformly from the 8; then T−1 blanks; then the
delimiter at step T+10; then 10 blanks. The target is blank at every step except the last 10, which
must repeat the 10 data symbols in order.

Training minimizes cross-entropy over all T+20 steps. Evaluation reports, on the 10 symbols to copy,
the cross-entropy (as the loss) and the accuracy (the metric). The memoryless baseline predicts blanks
and then guesses uniformly among the 8 symbols: log 8 ≈ 2.079 nats per copied symbol and accuracy 1/8;
over the whole sequence its cross-entropy is 10·log(8)/(T+20), the figure the 2017 paper plots.
"""
from __future__ import annotations

import math

import torch

from .base import Task, TaskSpec

BLANK, DELIMITER, SYMBOLS, COPY_LEN = 0, 9, 8, 10
_SPLIT_SEEDS = {"valid": 3_000_017, "test": 4_000_037}


def copy_batch(batch_size: int, T: int, generator: torch.Generator | None = None):
    """x one-hot [B, T+20, 10] and y class ids [B, T+20] (0 blank, 1..8 symbols)."""
    if T < 1:
        raise ValueError(f"the copy task needs T >= 1, got {T}")
    L = T + 2 * COPY_LEN
    data = torch.randint(1, SYMBOLS + 1, (batch_size, COPY_LEN), generator=generator)
    tokens = torch.full((batch_size, L), BLANK, dtype=torch.long)
    tokens[:, :COPY_LEN] = data
    tokens[:, COPY_LEN + T - 1] = DELIMITER
    target = torch.full((batch_size, L), BLANK, dtype=torch.long)
    target[:, -COPY_LEN:] = data
    return torch.nn.functional.one_hot(tokens, SYMBOLS + 2).float(), target


def memoryless_baseline(T: int) -> float:
    """Cross-entropy per step over the whole T+20-step sequence of the memoryless strategy."""
    return COPY_LEN * math.log(SYMBOLS) / (T + 2 * COPY_LEN)




class CopyTask(Task):
    """``seq_len`` is T, the gap; sequences have T+20 steps."""

    def __init__(self, seq_len: int, eval_size: int = 1000):
        copy_batch(1, seq_len)
        self.T = seq_len
        self.spec = TaskSpec(name="copy", input_size=SYMBOLS + 2, output_size=SYMBOLS + 1, output="all",
                             seq_len=seq_len + 2 * COPY_LEN, metric_name="copy_accuracy", lower_is_better=False,
                             baseline=1.0 / SYMBOLS)
        self.eval_size = eval_size
        self._splits: dict = {}

    def train_batch(self, batch_size, generator):
        return copy_batch(batch_size, self.T, generator)

    def eval_batches(self, split, batch_size, limit=None):  # the first `limit`: evaluate truncates
        if split not in self._splits:
            g = torch.Generator().manual_seed(_SPLIT_SEEDS[split] + self.T)
            self._splits[split] = copy_batch(self.eval_size, self.T, g)
        x, y = self._splits[split]
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]

    def loss(self, output, target):
        return torch.nn.functional.cross_entropy(output.flatten(0, 1), target.flatten())

    def metric_sums(self, output, target):
        out, tgt = output[:, -COPY_LEN:], target[:, -COPY_LEN:]
        ce = torch.nn.functional.cross_entropy(out.flatten(0, 1), tgt.flatten(), reduction="sum").item()
        correct = (out.argmax(-1) == tgt).sum().item()
        return ce, correct, tgt.numel()  # both per copied symbol
