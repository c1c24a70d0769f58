"""PathSGD's γ² safeguard (max_path_growth): it bounds γ²'s growth per step, and it keeps Theorem 2."""
import copy

import pytest
import torch

import plainrnn as pr
from oracles import regression_batches as _batches, small_relu_rnn


def _rnn(seed=0):
    return small_relu_rnn(seed=seed)


def _run(model, batches, **kw):
    opt = pr.optim.PathSGD(model, seq_len=7, **kw)
    growth = []
    for x, y in batches:
        before = float(pr.path.path_norm(model, seq_len=7))
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        growth.append(float(pr.path.path_norm(model, seq_len=7)) / before - 1)
    return opt, growth


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_no_step_raises_the_path_norm_by_more_than_the_bound(momentum):
    _, free = _run(_rnn(), _batches(12), lr=0.3, momentum=momentum)
    assert max(free) > 0.1, "the test needs steps that the safeguard must stop"
    opt, guarded = _run(_rnn(), _batches(12), lr=0.3, momentum=momentum, max_path_growth=0.1, max_backtracks=30)
    assert max(guarded) <= 0.1 + 1e-12
    assert opt.param_groups[0]["path_backtracks"] > 0


def test_a_step_within_the_bound_is_the_plain_step():
    a, b = _rnn(), _rnn()
    _run(a, _batches(5), lr=1e-3)
    opt, _ = _run(b, _batches(5), lr=1e-3, max_path_growth=0.5)
    assert opt.param_groups[0]["path_backtracks"] == 0
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kappa_every", [1, 3])
def test_the_safeguard_keeps_theorem_2(kappa_every):
    """rescale_ then N guarded steps = N guarded steps then rescale_, with backtracks happening."""
    model = _rnn()
    g = torch.Generator().manual_seed(3)
    alphas = [torch.exp(2 * torch.randn(6, generator=g, dtype=torch.float64))]
    rescaled = copy.deepcopy(model)
    pr.path.rescale_(rescaled, alphas)
    kw = dict(lr=0.3, max_path_growth=0.05, max_backtracks=30, kappa_every=kappa_every)
    opt, _ = _run(model, _batches(10), **kw)
    opt2, _ = _run(rescaled, _batches(10), **kw)
    assert opt.param_groups[0]["path_backtracks"] > 0
    assert opt.param_groups[0]["path_backtracks"] == opt2.param_groups[0]["path_backtracks"]
    pr.path.rescale_(model, alphas)
    for p, q in zip(model.parameters(), rescaled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_bad_safeguard_settings_are_named():
    with pytest.raises(ValueError, match="max_path_growth must be None or a number > 0, got -1"):
        pr.optim.PathSGD(_rnn(), lr=1e-3, seq_len=7, max_path_growth=-1)
    with pytest.raises(ValueError, match="max_backtracks must be an integer >= 0"):
        pr.optim.PathSGD(_rnn(), lr=1e-3, seq_len=7, max_path_growth=0.1, max_backtracks=-2)
    with pytest.raises(ValueError, match="fused=True cannot take max_path_growth or max_unit_step"):
        pr.optim.PathSGD(pr.MLP(3, [4], 2), lr=1e-3, fused=True, max_path_growth=0.1)


def test_the_trainer_takes_the_safeguard_and_logs_its_halvings(tmp_path):
    import json
    from plainrnn.train import RunConfig, train
    cfg = RunConfig(seq_len=10, hidden=8, steps=30, eval_every=10, optimizer="path-sgd", lr=3.0, clip=1.0,
                    max_path_growth=0.1, out=str(tmp_path), input_scale=0.1)
    summary = train(cfg, progress=False)
    rows = [json.loads(line) for line in open(summary["run_dir"] + "/metrics.jsonl")]
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert rows[-1]["path_backtracks"] > 0 and rows[0]["path_backtracks"] <= rows[-1]["path_backtracks"]


@pytest.mark.parametrize("max_backtracks", [30, 1])
def test_the_step_taken_is_the_largest_halving_within_the_bound_replayed_by_hand(max_backtracks):
    """One guarded step against an oracle: the plain step Δ (from an unguarded twin at lr 3, which
    multiplies γ² by 6.2), then the fractions 1, 1/2, 1/4, … tried from the saved weights, with γ² from
    path_norm; the first with γ²(w − f·Δ) ≤ 1.2·γ²(w) is kept (here f = 1/4: 1/2 gives 1.39). When
    max_backtracks halvings are not enough, the last try is kept."""
    x, y = _batches(1)[0]
    plain, guarded = _rnn(), _rnn()
    w0 = {n: p.detach().clone() for n, p in plain.named_parameters()}
    opt = pr.optim.PathSGD(plain, seq_len=7, lr=3.0)
    torch.nn.functional.mse_loss(plain(x), y).backward()
    opt.step()
    step = {n: w0[n] - p.detach() for n, p in plain.named_parameters()}
    gamma2 = lambda f: float(pr.path.path_norm(_with(w0, step, f), seq_len=7))  # noqa: E731
    halvings = next(h for h in range(31) if gamma2(2.0 ** -h) <= 1.2 * gamma2(0.0))
    assert halvings == 2, "the test wants a step that needs two halvings"
    expected = min(halvings, max_backtracks)
    opt = pr.optim.PathSGD(guarded, seq_len=7, lr=3.0, max_path_growth=0.2, max_backtracks=max_backtracks)
    torch.nn.functional.mse_loss(guarded(x), y).backward()
    opt.step()
    assert opt.param_groups[0]["path_backtracks"] == expected
    for n, p in guarded.named_parameters():
        torch.testing.assert_close(p.detach(), w0[n] - 2.0 ** -expected * step[n], rtol=1e-12, atol=1e-14)


def _with(w0, step, fraction):
    model = _rnn()
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(w0[n] - fraction * step[n])
    return model


@pytest.mark.parametrize("kappa_every", [1, 3])
def test_the_safeguard_bounds_gamma2_on_a_users_model(kappa_every):
    """γ² comes from the κ pass (κ every step) or from the squared network alone (between κ passes)."""
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    example = torch.zeros(1, 3, dtype=torch.float64)
    opt = pr.optim.PathSGD(net, lr=3.0, example_input=example, max_path_growth=0.05, max_backtracks=30,
                           kappa_every=kappa_every)
    growth = []
    for x, y in _batches(8):
        before = float(pr.path.path_norm(net, example_input=example))
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[:, 0]), y).backward()
        opt.step()
        growth.append(float(pr.path.path_norm(net, example_input=example)) / before - 1)
    assert opt.param_groups[0]["path_backtracks"] > 0
    assert max(growth) <= 0.05 + 1e-12
