import pytest
import torch

import plainrnn as pr
from oracles import rnn_reference_forward


def _randomize(model, scale=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-scale, scale)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "none"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_reference_loop(nonlinearity, layers, output, bias):
    model = pr.ReLURNN(3, 5, 2, num_layers=layers, nonlinearity=nonlinearity, bias=bias, output=output).double()
    _randomize(model)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    expected = rnn_reference_forward(model, x)
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["relu", "none"])
def test_token_mode_equals_one_hot_input(nonlinearity):
    model = pr.ReLURNN(0 + 1, 6, 7, num_layers=2, vocab_size=7, output="all", nonlinearity=nonlinearity).double()
    _randomize(model)
    tokens = torch.randint(7, (3, 5))
    torch.testing.assert_close(model(tokens), rnn_reference_forward(model, tokens), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["relu", "none"])
def test_gradients_match_reference_loop(nonlinearity):
    model = pr.ReLURNN(2, 4, 1, num_layers=2, nonlinearity=nonlinearity).double()
    _randomize(model)
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    model(x).sum().backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    rnn_reference_forward(model, x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(fused[n], p.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "none"])
def test_the_unrolled_states_are_the_hidden_states(nonlinearity):
    """‖∂L/∂h_t‖ (the 2017 paper's Fig. 2) reads the explicit loop; it must be the model's recurrence."""
    model = pr.ReLURNN(3, 5, 2, num_layers=2, nonlinearity=nonlinearity, output="all").double()
    _randomize(model)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(torch.stack(model.unrolled_states(x), 1), model.hidden_states(x), rtol=1e-12, atol=1e-12)


def test_recurrent_weight_and_bad_arguments():
    model = pr.ReLURNN(2, 4, 1, num_layers=2)
    assert model.recurrent_weight(1) is model.weight_hh_l1
    with pytest.raises(IndexError, match="layer must be in"):
        model.recurrent_weight(2)
    with pytest.raises(ValueError, match="nonlinearity"):
        pr.ReLURNN(2, 4, 1, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="output"):
        pr.ReLURNN(2, 4, 1, output="first")
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 3, 5))
