"""One contract for the recurrent models (plainrnn.nets.base.RecurrentModel): the same checks with the
same words, token ids read as one-hot vectors by every model, and the parts diagnostics rely on."""
import pytest
import torch

import plainrnn as pr
from plainrnn.train.diagnostics import hidden_gradient_norms

MODELS = [lambda **kw: pr.ReLURNN(**kw), lambda **kw: pr.SpectralRNN(**kw), lambda **kw: pr.LSTM(**kw)]


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("field, value", [("hidden_size", -1), ("num_layers", 0), ("output_size", 0),
                                          ("input_size", 1.5), ("vocab_size", 0)])
def test_sizes_are_checked_with_the_same_words(make, field, value):
    kw = dict(input_size=2, hidden_size=4, output_size=1)
    kw[field] = value
    with pytest.raises(ValueError, match=rf"^{field} must be a positive integer, got {value!r}$"):
        make(**kw)


@pytest.mark.parametrize("make", MODELS)
def test_output_and_layer_checks_are_shared(make):
    with pytest.raises(ValueError, match="^output must be one of last, all, got 'first'$"):
        make(input_size=2, hidden_size=4, output_size=1, output="first")
    model = make(input_size=2, hidden_size=4, output_size=1)
    assert isinstance(model, pr.nets.RecurrentModel)
    with pytest.raises(IndexError, match=r"layer must be in \[0, 0\], got 1"):
        model.recurrent_weight(1)
    with pytest.raises(ValueError, match=r"expected input \[B, T, 2\], got \(3, 5\)"):
        model(torch.zeros(3, 5))


@pytest.mark.parametrize("make", MODELS)
def test_token_ids_are_one_hot_inputs(make):
    """A model with vocab_size=V gives, on token ids, what the same weights give on one-hot vectors."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 5, (3, 6))
    one_hot = torch.nn.functional.one_hot(tokens, 5).float()
    by_id = make(input_size=1, hidden_size=4, output_size=2, vocab_size=5)
    by_vector = make(input_size=5, hidden_size=4, output_size=2)
    by_vector.load_state_dict(by_id.state_dict())
    torch.testing.assert_close(by_id(tokens), by_vector(one_hot), rtol=1e-6, atol=1e-6)


def test_singular_values_and_orthogonal_parameters_have_defaults():
    relu = pr.ReLURNN(2, 4, 1)
    torch.testing.assert_close(relu.singular_values(0), torch.linalg.svdvals(relu.recurrent_weight(0)))
    assert relu.orthogonal_parameters() == []
    spectral = pr.SpectralRNN(2, 4, 1, margin=0.5)
    assert len(spectral.orthogonal_parameters()) == 2


def test_the_lstm_has_no_explicit_loop_and_says_so():
    x, y = torch.zeros(2, 3, 2), torch.zeros(2, 1)
    with pytest.raises(NotImplementedError, match="LSTM has no explicit loop over time"):
        hidden_gradient_norms(pr.LSTM(2, 4, 1), x, y, torch.nn.functional.mse_loss)
