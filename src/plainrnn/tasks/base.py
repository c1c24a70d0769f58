"""What a task gives the trainer: batches, a loss, a metric, and how the model must be shaped."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch


@dataclass
class TaskSpec:
    """Shape of the model a task needs, and how it is judged.

    ``output`` is "last" (one prediction per sequence) or "all" (one per step). ``vocab_size`` is set
    for token inputs. ``metric_name`` names what ``evaluate`` reports as the test metric, and
    ``lower_is_better`` says which way is good. ``baseline`` is the metric of a trivial predictor."""

    name: str
    input_size: int
    output_size: int
    output: str
    seq_len: int
    metric_name: str
    lower_is_better: bool
    baseline: float | None = None
    vocab_size: int | None = None


class Task:
    """Base class. Subclasses set ``spec`` and implement the three methods below."""

    spec: TaskSpec

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def eval_batches(self, split: str, batch_size: int,
                     limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed batches of ``split`` ("valid", "test", or "train" for a real data set). With ``limit``,
        a task may choose which ``limit`` examples represent the split (by default :meth:`evaluate`
        takes the first ones)."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metric_sums(self, output: torch.Tensor, target: torch.Tensor) -> tuple[float, float, int]:
        """(summed loss, summed metric, count) of one batch, so that evaluation can average exactly."""
        raise NotImplementedError

    def finish_metric(self, loss_sum: float, metric_sum: float, count: int) -> tuple[float, float]:
        """(mean loss, metric) from the sums; override when the metric is not a plain mean."""
        return loss_sum / count, metric_sum / count

    def extra_sums(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Further metrics a paper reports beside the main one, as sums over the same ``count`` as
        :meth:`metric_sums` (the 2017 paper gives PTB's accuracy beside its bits per character)."""
        return {}

    @torch.no_grad()
    def evaluate(self, model: Callable, split: str = "test", batch_size: int = 500,
                 limit: int | None = None, extras: dict | None = None) -> tuple[float, float]:
        """(mean loss, metric) over ``split``; ``limit`` caps the number of sequences/examples. A dict
        passed as ``extras`` receives the means of :meth:`extra_sums` (e.g. ``{"accuracy": 0.57}``)."""
        loss_sum = metric_sum = 0.0
        count = seen = 0
        extra_sums: dict[str, float] = {}
        param = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
        device = param.device if param is not None else None  # evaluate where the model lives
        for x, y in self.eval_batches(split, batch_size, limit):
            if device is not None:
                x, y = x.to(device), y.to(device)
            if limit is not None:
                if seen >= limit:
                    break
                x, y = x[:limit - seen], y[:limit - seen]
                seen += len(x)
            output = model(x)
            l, m, n = self.metric_sums(output, y)
            loss_sum, metric_sum, count = loss_sum + l, metric_sum + m, count + n
            if extras is not None:
                for name, value in self.extra_sums(output, y).items():
                    extra_sums[name] = extra_sums.get(name, 0.0) + value
        if extras is not None:
            extras.update({name: value / count for name, value in extra_sums.items()})
        return self.finish_metric(loss_sum, metric_sum, count)
