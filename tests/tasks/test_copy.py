import math

import torch

from plainrnn.tasks import CopyTask, copy_batch, memoryless_baseline


def test_layout_is_exactly_as_specified():
    T = 15
    x, y = copy_batch(64, T, torch.Generator().manual_seed(0))
    tokens = x.argmax(-1)
    assert x.shape == (64, T + 20, 10) and y.shape == (64, T + 20)
    assert ((tokens[:, :10] >= 1) & (tokens[:, :10] <= 8)).all()
    assert (tokens[:, 10:10 + T - 1] == 0).all()
    assert (tokens[:, 10 + T - 1] == 9).all()
    assert (tokens[:, 10 + T:] == 0).all()
    assert (y[:, :T + 10] == 0).all()
    assert torch.equal(y[:, -10:], tokens[:, :10])


def test_memoryless_baseline_figure():
    T = 100
    task = CopyTask(T, eval_size=2000)

    def memoryless(x):
        # blank for the first T+10 steps, uniform over the 8 symbols for the last 10
        logits = torch.full((x.shape[0], T + 20, 9), -1e9)
        logits[:, :T + 10, 0] = 0.0
        logits[:, T + 10:, 1:] = 0.0
        return logits

    loss, acc = task.evaluate(memoryless, "test")
    assert math.isclose(loss, math.log(8), rel_tol=1e-6)  # cross-entropy per copied symbol
    assert abs(acc - 1 / 8) < 0.01  # argmax picks symbol 1: right 1/8 of the time, up to sampling
    x, y = copy_batch(2000, T, torch.Generator().manual_seed(0))
    full = torch.nn.functional.cross_entropy(memoryless(x).flatten(0, 1), y.flatten()).item()
    assert math.isclose(full, memoryless_baseline(T), rel_tol=1e-6)
    assert math.isclose(memoryless_baseline(T), 10 * math.log(8) / 120)
