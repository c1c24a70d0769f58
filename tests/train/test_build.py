"""build_model's MLP inits: the 2015 paper's balanced and unbalanced networks compute the same function."""
import pytest
import torch

from plainrnn.tasks.base import TaskSpec
from plainrnn.train import RunConfig
from plainrnn.train.build import build_model, init_generator


def _spec():
    return TaskSpec(name="mnist", input_size=784, output_size=10, output="last", seq_len=1, vocab_size=None,
                    metric_name="accuracy", lower_is_better=False, baseline=0.1)


def _build(init, seed, hidden=4000):
    cfg = RunConfig(task="mnist", model="mlp", hidden=hidden, layers=2, seed=seed, init=init).validate()
    return build_model(cfg, _spec(), init_generator(seed))


def test_unbalanced_mlp_is_the_balanced_one_rescaled():
    balanced, unbalanced = _build("balanced", 1), _build("unbalanced", 1)
    default = _build("identity", 1)  # the recurrent default stands for balanced
    for p, q in zip(balanced.parameters(), default.parameters()):
        assert torch.equal(p, q)
    ratio = unbalanced.layers[0].weight.abs().max() / balanced.layers[0].weight.abs().max()
    assert ratio > 1e10  # some units really were scaled by 10^c
    x = torch.rand(8, 784)
    with torch.no_grad():
        torch.testing.assert_close(unbalanced.double()(x.double()), balanced.double()(x.double()),
                                   rtol=1e-5, atol=1e-6)


def test_an_unbalanced_init_that_overflows_float32_says_so():
    # at seed 0 picks of one unit compound to 10^42.4: float32 weights of 0.016 · 10^42 are inf
    with pytest.raises(ValueError, match=r"unbalanced init overflows torch.float32 at seed 0: .*10\^42.4"):
        _build("unbalanced", 0)
