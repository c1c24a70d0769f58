"""Defaults that carry the papers' protocols or the eq. 8 step: changing one changes what a user gets
without a word, so each is pinned here (a mutation study found no test that called these with them)."""
import inspect

import torch

import plainrnn as pr
from plainrnn.path import factored, generic, mlp, rescale, rnn


def _defaults(fn):
    return {k: v.default for k, v in inspect.signature(fn).parameters.items()
            if v.default is not inspect.Parameter.empty}


def test_the_path_geometry_defaults():
    assert _defaults(pr.path.kappa_entries) == dict(seq_len=None, second_order=False, p=2.0, workspace=None,
                                                    example_input=None)
    assert _defaults(mlp.kappa_entries) == dict(p=2.0, workspace=None)  # the path regularizer γ2
    assert _defaults(rnn.kappa_entries) == dict(second_order=False)  # κ1; κ2 only when asked
    assert _defaults(generic.SquaredNetwork.kappa) == dict(second_order=False)
    assert _defaults(factored.divide_) == dict(scale=1.0, defer_columns=False)  # the raw eq. 8 step


def test_the_unbalanced_init_defaults_are_the_2015_papers():
    """§5: 2000 units picked over the hidden layers, rescaled by 10^c with c ~ N(0, 1)."""
    assert _defaults(pr.path.unbalance_) == dict(units=2000, sigma=1.0, generator=None)
    assert _defaults(rescale.unbalanced_alphas) == dict(units=2000, sigma=1.0, generator=None)


def test_unbalance_follows_its_generator_and_its_sigma():
    def run(seed, sigma):
        torch.manual_seed(123)  # the global RNG must not be what decides
        net = pr.MLP(3, [4, 4], 2).double()
        alphas = pr.path.unbalance_(net, units=6, sigma=sigma, generator=torch.Generator().manual_seed(seed))
        return torch.cat(alphas)
    torch.testing.assert_close(run(0, 1.0), run(0, 1.0), rtol=0, atol=0)
    assert not torch.equal(run(0, 1.0), run(1, 1.0))
    # the same generator, another σ: other factors (σ reaches the draws)
    assert not torch.equal(run(0, 2.0), run(0, 1.0))


def test_bad_inputs_of_the_geometry_are_refused():
    import pytest
    from torch import nn
    with pytest.raises(ValueError, match=r"^p must be a number >= 1 \(the lp path regularizer\), got 0.5$"):
        pr.path.kappa(pr.MLP(3, [4], 2), p=0.5)
    with pytest.raises(TypeError, match="bidirectional or projected"):
        pr.path.kappa(nn.RNN(2, 3, nonlinearity="relu", bidirectional=True), example_input=torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match=r"^α for hidden layer 0 must be positive"):
        pr.path.rescale_(pr.MLP(3, [4], 2), [torch.tensor([1.0, 0.0, 2.0, 1.0])])


def test_unbalance_picks_as_many_units_as_asked():
    net = pr.MLP(3, [4, 4], 2).double()
    alphas = pr.path.unbalance_(net, units=1, generator=torch.Generator().manual_seed(0))
    assert int((torch.cat(alphas) != 1).sum()) == 1
