"""κ, γ² and the geodesic step build every tensor where the model lives.

The machines here have no GPU, so the test puts models on torch's ``meta`` device: tensors there
have shapes and dtypes but no data, and an operation that mixes one with a CPU tensor fails the way
a CUDA tensor would. A ``torch.ones(n)`` without ``device=`` inside the library is such a mix.
Routes that must read a number to choose (the float32 range check, the series-or-solve choice of a
Cayley step) cannot run on ``meta``; their device handling is the same code as the routes below."""
import pytest
import torch
from torch import nn

import plainrnn as pr


def _on_meta(module):
    return module.double().to("meta")


def _assert_all_meta(tensors):
    for name, t in tensors.items():
        assert t.device.type == "meta", name


@pytest.mark.parametrize("hidden", [[4], [4, 5, 12, 12]])  # the second has layers before its pivot
def test_mlp_kappa_lives_on_the_models_device(hidden):
    model = _on_meta(pr.MLP(3, hidden, 2))
    _assert_all_meta(pr.path.kappa(model))
    assert pr.path.path_norm(model).device.type == "meta"


@pytest.mark.parametrize("output", ["last", "all"])
def test_rnn_kappa_and_kappa2_live_on_the_models_device(output):
    # The pass finds the steps that emit an output with nonzero(), whose size meta tensors cannot know:
    # torch's switch makes it assume every step emits (only shapes flow here, never values).
    from torch.fx.experimental import _config as fx_config
    model = _on_meta(pr.ReLURNN(2, 4, 3, output=output))
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        _assert_all_meta(pr.path.kappa(model, seq_len=5))
        _assert_all_meta(pr.path.kappa(model, seq_len=5, second_order=True))


def test_kappa_of_a_torch_module_lives_on_its_device():
    net = _on_meta(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.AvgPool1d(2), nn.Linear(2, 2)))
    _assert_all_meta(pr.path.kappa(net, example_input=torch.zeros(1, 3, device="meta")))
    rnn = _on_meta(nn.RNN(2, 3, nonlinearity="relu", batch_first=True))
    _assert_all_meta(pr.path.kappa(rnn, example_input=torch.zeros(1, 4, 2, device="meta")))


def test_orthogonality_penalty_and_skew_generator_live_on_the_weights_device():
    W = torch.empty(4, 4, dtype=torch.float64, device="meta")
    assert pr.stiefel.orthogonality_penalty(W).device.type == "meta"
    assert pr.stiefel.cayley.skew_generator(W, W).device.type == "meta"

