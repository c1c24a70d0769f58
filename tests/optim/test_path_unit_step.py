"""PathSGD's per-unit trust region (max_unit_step): each unit's incoming step, measured in the κ
metric, is at most ρ times its incoming weights; units within the bound take the plain step; and the
rule is invariant under node-wise rescaling (the Theorem-2 test in test_path_sgd.py covers it too)."""
import copy

import pytest
import torch

import plainrnn as pr
from oracles import regression_batches as _batches, small_relu_rnn

# Each unit's incoming edges, by hand: rows j of the hidden layer's three parameters, and rows k of
# the output layer's two (an oracle independent of plainrnn.path.units).
_LAYERS = (("weight_ih_l0", "weight_hh_l0", "bias_l0"), ("weight_out", "bias_out"))


def _unit_ratios(kappa, before, after, layers=_LAYERS):
    """r_j = sqrt(Σ κ Δ² / Σ κ w²) over each unit's incoming edges, from the dense κ."""
    ratios = []
    for names in layers:
        step = sum((kappa[n] * (after[n] - before[n]) ** 2).reshape(len(before[n]), -1).sum(1) for n in names)
        mass = sum((kappa[n] * before[n] ** 2).reshape(len(before[n]), -1).sum(1) for n in names)
        ratios.append((step / mass).sqrt())
    return torch.cat(ratios)


def _one_step(model, rho, lr, batch, layers=_LAYERS):
    x, y = batch
    opt = pr.optim.PathSGD(model, lr=lr, seq_len=7, max_unit_step=rho)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    kappa = pr.path.kappa(model, seq_len=7)
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return _unit_ratios(kappa, before, after, layers), opt


def test_every_unit_step_is_within_the_bound_and_the_bound_is_reached():
    free, _ = _one_step(small_relu_rnn(), None, 0.5, _batches(1)[0])
    rho = float(free.median())  # half the units must be limited
    limited, opt = _one_step(small_relu_rnn(), rho, 0.5, _batches(1)[0])
    assert (free > rho * 1.01).sum() >= 3, "the test needs units that the bound must limit"
    assert limited.max() <= rho * (1 + 1e-12)
    over = free > rho
    torch.testing.assert_close(limited[over], torch.full_like(limited[over], rho), rtol=1e-12, atol=0)
    torch.testing.assert_close(limited[~over], free[~over], rtol=1e-12, atol=0)  # the others: the plain step
    assert opt.param_groups[0]["path_unit_clips"] == int(over.sum())


def test_a_loose_bound_is_the_plain_step():
    a, b = small_relu_rnn(), small_relu_rnn()
    batches = _batches(5)
    for model, rho in ((a, None), (b, 1e6)):
        opt = pr.optim.PathSGD(model, lr=1e-2, seq_len=7, max_unit_step=rho)
        for x, y in batches:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_the_bound_keeps_theorem_2_with_limits_happening():
    model = small_relu_rnn()
    g = torch.Generator().manual_seed(3)
    alphas = [torch.exp(2 * torch.randn(6, generator=g, dtype=torch.float64))]
    rescaled = copy.deepcopy(model)
    pr.path.rescale_(rescaled, alphas)
    opts = []
    for net in (model, rescaled):
        opt = pr.optim.PathSGD(net, lr=0.3, seq_len=7, max_unit_step=0.01)
        for x, y in _batches(10):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        opts.append(opt)
    assert opts[0].param_groups[0]["path_unit_clips"] > 10
    assert opts[0].param_groups[0]["path_unit_clips"] == opts[1].param_groups[0]["path_unit_clips"]
    pr.path.rescale_(model, alphas)
    for p, q in zip(model.parameters(), rescaled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_the_mlp_groups_weights_with_their_biases():
    """On an MLP a unit's incoming edges are its weight row and its bias: the bound holds over both."""
    torch.manual_seed(0)
    model = pr.MLP(4, [5], 3).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    kappa = pr.path.kappa(model)
    opt = pr.optim.PathSGD(model, lr=0.5, max_unit_step=0.05)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    ratios = _unit_ratios(kappa, before, after, layers=(("layers.0.weight", "layers.0.bias"),
                                                          ("layers.1.weight", "layers.1.bias")))
    assert ratios.max() <= 0.05 * (1 + 1e-12)
    assert (ratios > 0.05 * (1 - 1e-9)).sum() == opt.param_groups[0]["path_unit_clips"] > 0


def test_bad_bounds_are_named():
    with pytest.raises(ValueError, match="max_unit_step must be None or a number > 0, got 0"):
        pr.optim.PathSGD(small_relu_rnn(), lr=1e-3, seq_len=7, max_unit_step=0)
    with pytest.raises(ValueError, match="fused=True cannot take max_path_growth or max_unit_step"):
        pr.optim.PathSGD(pr.MLP(3, [4], 2), lr=1e-3, fused=True, max_unit_step=0.1)


@pytest.mark.parametrize("dim", [0, 1])
def test_row_quadratic_of_a_rank_one_kappa_is_the_dense_sum(dim):
    """Σ_k κ[j, k] v[j, k]² (dim 0) or Σ_j κ[j, k] v[j, k]² (dim 1, an embedding's columns), with κ kept
    as rows ⊗ cols, equals the sum over the dense κ; so does a dense κ and a bias."""
    from plainrnn.path.factored import Outer
    from plainrnn.path.units import row_quadratic
    g = torch.Generator().manual_seed(0)
    rows, cols = torch.rand(4, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64)
    values = torch.randn(4, 3, generator=g, dtype=torch.float64)
    dense = torch.outer(rows, cols) * values.square()
    expected = dense.sum(dim=1 - dim)
    torch.testing.assert_close(row_quadratic(Outer(rows, cols), values, dim), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(row_quadratic(torch.outer(rows, cols), values, dim), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(row_quadratic(rows, values[:, 0]), rows * values[:, 0].square(), rtol=1e-12, atol=0)


def _limited_and_free(make_model, rho_quantile, lr, batch, layers, step_fn):
    """(ratios with the bound, ratios without it, the bound) for the units of ``layers``."""
    free, _ = step_fn(make_model(), None, lr, batch, layers)
    rho = float(free.quantile(rho_quantile))
    limited, _ = step_fn(make_model(), rho, lr, batch, layers)
    return limited, free, rho


def _check_bound(limited, free, rho):
    over = free > rho
    assert over.any() and not over.all(), "the test needs units on both sides of the bound"
    torch.testing.assert_close(limited[over], torch.full_like(limited[over], rho), rtol=1e-12, atol=0)
    torch.testing.assert_close(limited[~over], free[~over], rtol=1e-12, atol=0)


@pytest.mark.parametrize("frozen", [("weight_ih_l0",), ("weight_ih_l0", "weight_hh_l0", "bias_l0")])
def test_units_of_other_layers_are_limited_when_some_parameters_are_frozen(frozen):
    """Frozen parameters take no step and are left out of a unit's sums; a layer frozen whole is
    skipped, and the next layers are still limited."""
    def make():
        model = small_relu_rnn()
        for name in frozen:
            getattr(model, name).requires_grad_(False)
        return model

    layers = tuple(tuple(n for n in names if n not in frozen) for names in _LAYERS)
    layers = tuple(names for names in layers if names)
    _check_bound(*_limited_and_free(make, 0.5, 0.5, _batches(1)[0], layers, _one_step))


def test_an_embeddings_units_are_its_columns():
    """nn.Embedding(V, E): unit j of the embedding is column j (every token's edge into it), so the
    bound acts on Σ_v κ[v, j] Δ[v, j]² against Σ_v κ[v, j] w[v, j]²."""
    from torch import nn
    tokens = torch.tensor([[0, 3, 1], [2, 2, 4]])
    target = torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def make():
        torch.manual_seed(5)
        return nn.Sequential(nn.Embedding(5, 4), nn.Flatten(), nn.ReLU(), nn.Linear(12, 2)).double()

    def step(model, rho, lr, batch, layers):
        opt = pr.optim.PathSGD(model, lr=lr, example_input=tokens, max_unit_step=rho)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        kappa = pr.path.kappa(model, example_input=tokens)
        torch.nn.functional.mse_loss(model(tokens), target).backward()
        opt.step()
        after = {n: p.detach().clone() for n, p in model.named_parameters()}
        by_unit = lambda t: {n: v.t() if n == "0.weight" else v for n, v in t.items()}  # noqa: E731 (columns first)
        return _unit_ratios(by_unit(kappa), by_unit(before), by_unit(after), layers), opt

    # the embedding's tokens 0–4 all occur, so every column has mass
    _check_bound(*_limited_and_free(make, 0.5, 0.5, None, (("0.weight",), ("3.weight", "3.bias")), step))
