import copy

import pytest
import torch

import plainrnn as pr
from oracles import regression_batches as _batches, small_relu_rnn


def _rnn(layers=2, output="last", seed=0):
    return small_relu_rnn(layers, output, seed)


def _train(model, make_opt, batches):
    opt = make_opt(model)
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model


def _alphas(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.exp(torch.randn(model.hidden_size, generator=g, dtype=torch.float64)) for _ in range(model.num_layers)]


@pytest.mark.parametrize("second_order", [False, True])
@pytest.mark.parametrize("maker", ["path-sgd", "path-sgd-momentum", "path-normalized-sgd", "path-sgd-scale-now",
                                   "path-sgd-raw", "path-sgd-safeguard", "path-sgd-unit-step", "path-sgd-rebalanced"])
def test_training_is_invariant_to_rescaling(second_order, maker):
    """Theorem 2: 20 Path-SGD steps from w and from T_α(w) give the same function, for every option."""
    def make(model):
        if maker == "path-sgd":
            return pr.optim.PathSGD(model, lr=0.05, seq_len=7, second_order=second_order)
        if maker == "path-sgd-scale-now":
            return pr.optim.PathSGD(model, lr=0.05, seq_len=7, second_order=second_order, lr_scale="path_norm_now")
        if maker == "path-sgd-raw":
            return pr.optim.PathSGD(model, lr=0.05 * float(pr.path.path_norm(_rnn(), seq_len=7)), seq_len=7,
                                    second_order=second_order, lr_scale=None)
        if maker == "path-sgd-safeguard":
            return pr.optim.PathSGD(model, lr=0.3, seq_len=7, second_order=second_order, max_path_growth=0.05,
                                    max_backtracks=30)
        if maker == "path-sgd-unit-step":  # ρ small enough that most unit steps are limited
            return pr.optim.PathSGD(model, lr=0.3, seq_len=7, second_order=second_order, max_unit_step=0.02,
                                    momentum=0.5)
        if maker == "path-sgd-rebalanced":  # every non-recurrent tensor at 30× (and 3×) lr, within the trust region
            factors = {name: 30.0 if name.endswith("l0") or "out" in name else 3.0
                       for name, _ in model.named_parameters() if not name.startswith("weight_hh")}
            return pr.optim.PathSGD(model, lr=0.05, seq_len=7, second_order=second_order, max_unit_step=0.05,
                                    lr_multipliers=factors)
        if maker == "path-sgd-momentum":
            return pr.optim.PathSGD(model, lr=0.02, seq_len=7, second_order=second_order, momentum=0.9)
        return pr.optim.PathNormalized(torch.optim.SGD, model, seq_len=7, second_order=second_order, lr=0.05)

    batches = _batches(20)
    a = _rnn()
    b = copy.deepcopy(a)
    pr.path.rescale_(b, _alphas(b))
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    assert (a.weight_ih_l0 - b.weight_ih_l0).abs().max() > 0.1
    _train(a, make, batches)
    _train(b, make, batches)
    start = _rnn()(x)
    assert (a(x) - start).abs().max() > 1e-2  # it did train
    torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("maker", ["sgd", "path-normalized-adam"])
def test_plain_sgd_and_path_normalized_adam_are_not_invariant_and_the_test_can_tell(maker):
    """The control for Theorem 2's test. PathNormalized(Adam) fails it too: Adam divides each coordinate
    by its own √v̂, which removes the factor c that s/κ gives a rescaled weight's step (docs/path_sgd.md)."""
    batches = _batches(20)
    a = _rnn()
    b = copy.deepcopy(a)
    pr.path.rescale_(b, _alphas(b))
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    if maker == "sgd":
        make = lambda m: torch.optim.SGD(m.parameters(), lr=0.05)
    else:
        make = lambda m: pr.optim.PathNormalized(torch.optim.Adam, m, seq_len=7, lr=1e-2)
    _train(a, make, batches)
    _train(b, make, batches)
    assert (a(x) - b(x)).abs().max() > 1e-4


def test_mlp_training_is_invariant_for_every_p():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    y = torch.randint(3, (16,), generator=g)
    for p in (1, 2, 3):
        a = pr.MLP(5, [7, 6], 3).double()
        b = copy.deepcopy(a)
        pr.path.rescale_(b, [torch.exp(torch.randn(n, generator=g, dtype=torch.float64)) for n in (7, 6)])
        for model in (a, b):
            opt = pr.optim.PathSGD(model, lr=0.1, p=p)
            for _ in range(20):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-10)


def _gradients_before_a_step():
    """A model with the gradient of one batch, and (batch, gradients, weights, κ) before its step."""
    model = _rnn()
    x, y = _batches(1)[0]
    torch.nn.functional.mse_loss(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    return model, (x, y), grads, before, pr.path.kappa(model, seq_len=7)


def test_gradients_really_are_divided_by_kappa():
    model, (x, y), grads, before, kappa = _gradients_before_a_step()
    opt = pr.optim.PathSGD(model, lr=0.01, seq_len=7, lr_scale=None)
    opt.step()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), before[n] - 0.01 * grads[n] / kappa[n], rtol=1e-12, atol=1e-15)
    # The default scale is the path norm at the first step, frozen afterwards and kept in state_dict.
    opt2 = pr.optim.PathSGD(model, lr=0.01, seq_len=7)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    gamma2 = pr.path.path_norm(model, seq_len=7).item()
    opt2.step()
    assert opt2.state_dict()["param_groups"][0]["path_scale"] == pytest.approx(gamma2, rel=1e-12)


def test_small_step_decreases_the_loss():
    model = _rnn(layers=1)
    x, y = _batches(1)[0]
    loss = lambda: torch.nn.functional.mse_loss(model(x), y)
    opt = pr.optim.PathSGD(model, lr=1e-3, seq_len=7, second_order=True)
    before = loss()
    before.backward()
    opt.step()
    assert loss().item() < before.item()


def test_dead_unit_gets_a_zero_step_not_nan():
    model = _rnn(layers=1)
    with torch.no_grad():
        model.weight_out[:, 2] = 0.0  # unit 2 has no outgoing edge: κ = 0 on its incoming weights
        model.weight_hh_l0[:, 2] = 0.0
    x, y = _batches(1)[0]
    torch.nn.functional.mse_loss(model(x), y).backward()
    row_before = model.weight_ih_l0[2].detach().clone()
    pr.optim.PathSGD(model, lr=0.1, seq_len=7, lr_scale=None).step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.equal(model.weight_ih_l0[2], row_before)


def test_state_dict_round_trips_and_kappa_every():
    model = _rnn()
    opt = pr.optim.PathSGD(model, lr=0.01, seq_len=7, momentum=0.9, kappa_every=3)
    _train(model, lambda m: opt, _batches(2))
    clone = copy.deepcopy(model)
    opt2 = pr.optim.PathSGD(clone, lr=0.01, seq_len=7, momentum=0.9, kappa_every=3)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.param_groups[0]["path_scale"] == opt.param_groups[0]["path_scale"]
    batches = _batches(3, seed=9)
    _train(model, lambda m: opt, batches)
    _train(clone, lambda m: opt2, batches)
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)

    wrapped = pr.optim.PathNormalized(torch.optim.Adam, model, seq_len=7, lr=1e-3)
    _train(model, lambda m: wrapped, _batches(2))
    sd = wrapped.state_dict()
    other = pr.optim.PathNormalized(torch.optim.Adam, copy.deepcopy(model), seq_len=7, lr=1e-3)
    other.load_state_dict(sd)
    assert other.state_dict()["path_scale"] == sd["path_scale"]
    assert len(other.state) == len(list(model.parameters()))


def test_constructor_errors_name_the_bad_value():
    model = _rnn()
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        pr.optim.PathSGD(model, lr=-1, seq_len=5)
    with pytest.raises(ValueError, match="seq_len"):
        pr.optim.PathSGD(model, lr=0.1)
    with pytest.raises(ValueError, match="lr_scale"):
        pr.optim.PathSGD(model, lr=0.1, seq_len=5, lr_scale="huge")
    with pytest.raises(TypeError, match="optimizer_cls"):
        pr.optim.PathNormalized("adam", model, seq_len=5)
    with pytest.raises(TypeError, match="path geometry"):
        pr.optim.PathSGD(pr.LSTM(2, 3, 1), lr=0.1, seq_len=5)


def test_path_normalized_adam_with_kappa_frozen_is_plain_adam():
    """Adam's step m̂/√v̂ does not change when every gradient coordinate is multiplied by a fixed
    positive factor (here s/κ_i, with κ frozen after the first step and ε negligible). So PathNormalized(Adam)
    differs from Adam only through κ's drift during training (and ε): docs/results.md's Path-Adam row
    is tested against plain Adam at the same lr for that reason."""
    model = small_relu_rnn()
    twin = copy.deepcopy(model)
    path_adam = pr.optim.PathNormalized(torch.optim.Adam, model, seq_len=7, lr=1e-2, eps=1e-30, kappa_every=10**9)
    adam = torch.optim.Adam(twin.parameters(), lr=1e-2, eps=1e-30)
    for x, y in _batches(5):
        for net, opt in ((model, path_adam), (twin, adam)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    path_sgd, plain = copy.deepcopy(model), copy.deepcopy(model)  # the control: SGD does see the factor
    opt_p = pr.optim.PathSGD(path_sgd, seq_len=7, lr=1e-2)
    opt_s = torch.optim.SGD(plain.parameters(), lr=1e-2)
    for net, opt in ((path_sgd, opt_p), (plain, opt_s)):
        x, y = _batches(1)[0]
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    assert max((a - b).abs().max().item() for a, b in zip(path_sgd.parameters(), plain.parameters())) > 1e-4


def test_path_normalized_resumes_bit_for_bit_between_kappa_passes():
    """κ is part of PathNormalized's state: with kappa_every=3, a copy loaded after step 2 must take
    steps 3 and 4 with the κ of step 1, exactly as the optimizer it was saved from."""
    model = _rnn()
    opt = pr.optim.PathNormalized(torch.optim.SGD, model, seq_len=7, lr=0.05, momentum=0.5, kappa_every=3)
    _train(model, lambda m: opt, _batches(2))
    with torch.no_grad():  # a κ computed now would differ from the stored one
        for p in model.parameters():
            p.mul_(1.1)
    clone = copy.deepcopy(model)
    opt2 = pr.optim.PathNormalized(torch.optim.SGD, clone, seq_len=7, lr=0.05, momentum=0.5, kappa_every=3)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    batches = _batches(2, seed=9)
    _train(model, lambda m: opt, batches)
    _train(clone, lambda m: opt2, batches)
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_path_normalized_names_a_bad_state_dict():
    opt = pr.optim.PathNormalized(torch.optim.SGD, _rnn(), seq_len=7, lr=0.05)
    keys = r"\(keys \['kappa', 'param_groups', 'path_scale', 'path_steps', 'state'\]\)"
    with pytest.raises(ValueError, match=rf"^expected the state_dict of a PathNormalized optimizer {keys}, got "
                                         r"\['param_groups', 'state'\]$"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    with pytest.raises(ValueError, match=rf"{keys}, got list$"):
        opt.load_state_dict([])


def test_path_normalized_sgd_with_its_defaults_is_path_sgd_with_its_defaults():
    """The same defaults (κ1 only, κ every step, s = γ²(w₀), p = 2): PathNormalized(SGD) steps exactly
    like PathSGD, and it is a torch optimizer whose defaults are its inner one's."""
    a, b = _rnn(), _rnn()
    wrapped = pr.optim.PathNormalized(torch.optim.SGD, a, seq_len=7, lr=0.05)
    _train(a, lambda m: wrapped, _batches(4))
    _train(b, lambda m: pr.optim.PathSGD(m, seq_len=7, lr=0.05), _batches(4))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15)
    assert wrapped.defaults is wrapped.inner.defaults and wrapped.defaults["lr"] == 0.05
    assert wrapped.state_dict()["path_steps"] == 4
    fresh = pr.optim.PathNormalized(torch.optim.SGD, _rnn(), seq_len=7, lr=0.05).state_dict()
    assert fresh["path_scale"] is None and fresh["path_steps"] == 0


def test_a_single_tensor_param_group_is_added_to_the_inner_optimizer():
    model = _rnn()
    opt = pr.optim.PathNormalized(torch.optim.SGD, model, seq_len=7, lr=0.05)
    first = opt.param_groups[0]["params"]  # every model parameter: free one for a group of its own
    opt.inner.param_groups[0]["params"] = [p for p in first if p is not model.weight_out]
    opt.add_param_group({"params": model.weight_out, "lr": 0.01})
    assert opt.inner.param_groups[-1]["params"] == [model.weight_out] and opt.inner.param_groups[-1]["lr"] == 0.01
    with pytest.raises(ValueError, match=r"^PathNormalized: a new param group's parameters must be parameters of "
                                         r"its model \(got 1 that are not\)$"):
        opt.add_param_group({"params": torch.nn.Parameter(torch.zeros(2))})


@pytest.mark.parametrize("make", ["rnn", "mlp"])
def test_path_sgd_state_loads_with_weights_only_and_resumes_bit_for_bit(make, tmp_path):
    """κ is stored as plain tensors (an MLP's rank-one κ as its two vectors), so torch.load with
    weights_only=True reads the state; between κ passes the loaded copy steps exactly like the original."""
    model = _rnn() if make == "rnn" else pr.MLP(3, [6, 5], 2).double()
    batches = _batches(4) if make == "rnn" else [(x[:, 0], y) for x, y in _batches(4)]
    opt = pr.optim.PathSGD(model, lr=0.05, seq_len=7 if make == "rnn" else None, momentum=0.5, kappa_every=3)
    _train(model, lambda m: opt, batches[:2])
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    clone = copy.deepcopy(model)
    opt2 = pr.optim.PathSGD(clone, lr=0.05, seq_len=7 if make == "rnn" else None, momentum=0.5, kappa_every=3)
    opt2.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    with torch.no_grad():  # a κ computed now would differ from the stored one
        for p, q in zip(model.parameters(), clone.parameters()):
            p.mul_(1.1)
            q.mul_(1.1)
    _train(model, lambda m: opt, batches[2:])
    _train(clone, lambda m: opt2, batches[2:])
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("factors, lrs", [
    ({"weight_ih_l0": 30.0, "weight_out": 30.0, "bias_l1": 0.5}, [0.005, 0.01, 0.3]),
    # the rank-one κ (weight_ih_l0, weight_out) take the deferred-column route: the read-out alone at
    # 30× must get its own group's lr there, not the first group's
    ({"weight_out": 30.0}, [0.01, 0.3])])
def test_lr_multipliers_step_the_named_parameters_at_lr_times_their_factor(factors, lrs):
    model, _, grads, before, kappa = _gradients_before_a_step()
    opt = pr.optim.PathSGD(model, lr=0.01, seq_len=7, lr_scale=None, lr_multipliers=factors)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx(lrs)
    opt.step()
    for n, p in model.named_parameters():
        lr = 0.01 * factors.get(n, 1.0)
        torch.testing.assert_close(p.detach(), before[n] - lr * grads[n] / kappa[n], rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=r"lr_multipliers: weight_hh is not a parameter of the model; "
                                         r"it has weight_ih_l0, weight_hh_l0"):
        pr.optim.PathSGD(model, lr=0.01, seq_len=7, lr_multipliers={"weight_hh": 2.0})
    with pytest.raises(ValueError, match=r"lr_multipliers\['weight_out'\] must be a number > 0, got 0"):
        pr.optim.PathSGD(model, lr=0.01, seq_len=7, lr_multipliers={"weight_out": 0})
