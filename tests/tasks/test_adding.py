import torch

from plainrnn.tasks import ADDING_BASELINE_MSE, AddingTask, adding_batch


def test_two_marks_one_in_each_half_and_the_right_target():
    x, y = adding_batch(500, 37, torch.Generator().manual_seed(0))
    mask = x[..., 1]
    assert torch.equal(mask.sum(1), torch.full((500,), 2.0))
    half = 37 // 2
    assert torch.equal(mask[:, :half].sum(1), torch.ones(500))
    assert torch.equal(mask[:, half:].sum(1), torch.ones(500))
    torch.testing.assert_close(y.squeeze(1), (x[..., 0] * mask).sum(1))
    assert ((x[..., 0] >= 0) & (x[..., 0] < 1)).all()


def test_same_seed_same_data_and_fixed_test_set():
    a = adding_batch(10, 20, torch.Generator().manual_seed(5))
    b = adding_batch(10, 20, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(AddingTask(20).split("test")[0], AddingTask(20).split("test")[0])
    assert not torch.equal(AddingTask(20).split("test")[0], AddingTask(20).split("valid")[0])


def test_predicting_one_gives_the_baseline():
    task = AddingTask(50, eval_size=20000)
    loss, mse = task.evaluate(lambda x: torch.ones(x.shape[0], 1), "test")
    assert abs(mse - ADDING_BASELINE_MSE) < 0.005


def test_each_mark_takes_every_position_of_its_half_including_the_last_step():
    """Mark 1 uniform on [0, T/2), mark 2 uniform on [T/2, T): the last step T − 1 is a possible mark."""
    from plainrnn.tasks.adding import adding_batch
    T = 10
    x, _ = adding_batch(20_000, T, torch.Generator().manual_seed(0))
    mask = x[..., 1]
    first, second = mask[:, : T // 2].argmax(1), mask[:, T // 2:].argmax(1) + T // 2
    assert sorted(first.unique().tolist()) == list(range(T // 2))
    assert sorted(second.unique().tolist()) == list(range(T // 2, T))
    counts = torch.bincount(second, minlength=T)[T // 2:].double()
    assert float(counts.min() / counts.max()) > 0.9  # uniform, the last step as likely as any
