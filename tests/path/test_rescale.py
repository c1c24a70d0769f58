"""Theorem 1: T_α leaves the function and the path norm unchanged."""
import pytest
import torch

import plainrnn as pr


def _alphas(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.exp(torch.randn(n, generator=g, dtype=torch.float64) * 1.5) for n in sizes]


@pytest.mark.parametrize("layers,output", [(1, "last"), (3, "all")])
def test_rnn_rescaling_keeps_function_and_path_norm(layers, output):
    model = pr.ReLURNN(3, 5, 2, num_layers=layers, output=output).double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.6, 0.6)
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    before, norm_before = model(x), pr.path.path_norm(model, seq_len=10)
    old = {n: p.clone() for n, p in model.named_parameters()}
    pr.path.rescale_(model, _alphas([5] * layers, 0))
    assert any(not torch.allclose(old[n], p) for n, p in model.named_parameters())
    torch.testing.assert_close(model(x), before, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(pr.path.path_norm(model, seq_len=10), norm_before, rtol=1e-11, atol=0)


def test_tanh_network_is_not_rescaling_invariant():
    model = pr.ReLURNN(3, 5, 2, nonlinearity="tanh").double()
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    before = model(x)
    pr.path.rescale_(model, _alphas([5], 1))
    assert (model(x) - before).abs().max() > 1e-6


def test_mlp_rescaling_and_unbalance():
    model = pr.MLP(6, [8, 7], 3).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    before, norm = model(x), pr.path.path_norm(model)
    alphas = pr.path.unbalance_(model, units=10, generator=torch.Generator().manual_seed(0))
    assert max(a.max().item() for a in alphas) > 10
    torch.testing.assert_close(model(x), before, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pr.path.path_norm(model), norm, rtol=1e-10, atol=0)


def test_bad_alphas():
    model = pr.ReLURNN(2, 3, 1)
    with pytest.raises(ValueError, match="one α vector per hidden layer"):
        pr.path.rescale_(model, [])
    with pytest.raises(ValueError, match="must be positive"):
        pr.path.rescale_(model, [torch.tensor([1.0, -1.0, 1.0])])


def test_rescaling_a_model_it_does_not_know_is_one_clear_error():
    msg = r"^node-wise rescaling is implemented for plainrnn\.ReLURNN and plainrnn\.MLP, got Sequential$"
    with pytest.raises(TypeError, match=msg):
        pr.path.rescale_(torch.nn.Sequential(torch.nn.Linear(2, 2)), [torch.ones(2)])
    with pytest.raises(TypeError, match=msg):
        pr.path.unbalance_(torch.nn.Sequential(torch.nn.Linear(2, 2)), units=1)


def test_the_unbalanced_init_is_the_papers_recipe_draw_for_draw():
    """§5 of the 2015 paper: `units` picks with replacement over all hidden units, each multiplying its
    unit's α by 10^c, c = exp(N(0, σ²)); replayed by hand from the same generator, in float64. The
    defaults are the paper's 2000 picks and σ = 1, and unbalance_ draws over every hidden layer."""
    from plainrnn.path.rescale import unbalanced_alphas
    alphas = unbalanced_alphas([3, 4], units=5, sigma=0.5, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    picks = torch.randint(7, (5,), generator=g)
    c = torch.exp(torch.randn(5, generator=g, dtype=torch.float64) * 0.5)
    expected = torch.ones(7, dtype=torch.float64)
    for unit, exponent in zip(picks.tolist(), c.tolist()):
        expected[unit] = expected[unit] * 10.0 ** exponent
    assert len(set(picks.tolist())) < 5  # a unit picked twice: the factors multiply
    assert [a.dtype for a in alphas] == [torch.float64] * 2
    torch.testing.assert_close(torch.cat(alphas), expected, rtol=1e-15, atol=0)
    seeded = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    default = unbalanced_alphas([3, 4], generator=seeded())
    for a, b in zip(default, unbalanced_alphas([3, 4], units=2000, sigma=1.0, generator=seeded())):
        assert torch.equal(a, b)
    rnn = pr.ReLURNN(2, 3, 1, num_layers=2).double()
    drawn = pr.path.unbalance_(rnn, generator=seeded())
    for a, b in zip(drawn, unbalanced_alphas([3, 3], units=2000, sigma=1.0, generator=seeded())):
        assert torch.equal(a, b)
