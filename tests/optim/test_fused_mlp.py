"""PathSGD's fused route for MLPs (plainrnn.optim.fused_mlp) against the unfused route."""
import copy

import pytest
import torch

import plainrnn as pr
from plainrnn.optim.fused_mlp import FusedMLPStep


def _mlp(sizes=(5, [7, 6], 3), dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return pr.MLP(*sizes).to(dtype)


def _data(n=16, inputs=5, classes=3, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, inputs, generator=g, dtype=dtype), torch.randint(classes, (n,), generator=g)


def _train(model, opt, data, steps, before_step=None):
    x, y = data
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if before_step:
            before_step()
        opt.step()


@pytest.fixture
def count_fused_steps(monkeypatch):
    calls = []
    original = FusedMLPStep.step
    monkeypatch.setattr(FusedMLPStep, "step", lambda self, *a: (calls.append(1), original(self, *a))[1])
    return calls


@pytest.mark.parametrize("sizes", [(5, [7, 6], 3), (5, [9, 30, 4, 6], 3), (5, [4, 5, 12, 12], 3), (5, [40], 3), (5, [], 3)])
@pytest.mark.parametrize("kw", [dict(), dict(kappa_every=3), dict(weight_decay=1e-3, lr_scale=None)])
def test_fused_and_unfused_routes_agree(sizes, kw, count_fused_steps):
    """Deep nets put the largest matrix in the middle, so the sweep's reordering and its second reads
    of small layers are exercised too."""
    a = _mlp(sizes)
    b = copy.deepcopy(a)
    data = _data()
    lr = 0.05 if kw.get("lr_scale", "path_norm") else 1e-3
    fused = pr.optim.PathSGD(a, lr=lr, fused=True, **kw)
    plain = pr.optim.PathSGD(b, lr=lr, fused=False, **kw)
    _train(a, fused, data, 12)
    _train(b, plain, data, 12)
    assert len(count_fused_steps) == 12
    assert (a.layers[0].weight - _mlp(sizes).layers[0].weight).abs().max() > 1e-4  # it did train
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    sa, sb = fused.state_dict(), plain.state_dict()
    assert sa["param_groups"][0]["path_scale"] == pytest.approx(sb["param_groups"][0]["path_scale"], rel=1e-12)
    for key in sa["state"]:
        ka, kb = sa["state"][key]["kappa"], sb["state"][key]["kappa"]
        dense = lambda k: k.dense() if isinstance(k, pr.path.Outer) else k
        torch.testing.assert_close(dense(ka), dense(kb), rtol=1e-10, atol=0)


def test_reusing_the_sweeps_products_is_exact():
    """A float32 run that reuses each update's products as the next κ equals, bit for bit, one that
    computes κ afresh at every step (the fresh pass runs the same kernel on the updated weights)."""
    sizes = (20, [64, 48], 5)
    a = _mlp(sizes, torch.float32)
    b = copy.deepcopy(a)
    data = _data(32, 20, 5, torch.float32)
    reuse = pr.optim.PathSGD(a, lr=0.05, fused=True)
    fresh = pr.optim.PathSGD(b, lr=0.05, fused=True)
    _train(a, reuse, data, 10)
    _train(b, fresh, data, 10, before_step=lambda: setattr(fresh._fused, "_next", None))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_a_change_between_steps_makes_kappa_fresh():
    """Rescaling the network between steps (or loading weights) must not leave the next step with the
    κ of the old weights."""
    a = _mlp()
    b = copy.deepcopy(a)
    data = _data()
    fused = pr.optim.PathSGD(a, lr=0.05, fused=True)
    plain = pr.optim.PathSGD(b, lr=0.05, fused=False)
    _train(a, fused, data, 3)
    _train(b, plain, data, 3)
    g = torch.Generator().manual_seed(5)
    alphas = [torch.exp(2 * torch.randn(n, generator=g, dtype=torch.float64)) for n in (7, 6)]
    pr.path.rescale_(a, alphas)
    pr.path.rescale_(b, alphas)
    _train(a, fused, data, 3)
    _train(b, plain, data, 3)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    b2 = copy.deepcopy(b)
    a.load_state_dict(b2.state_dict())  # copy_ into the same tensors: their versions move
    _train(a, fused, data, 2)
    _train(b, plain, data, 2)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_momentum_or_a_missing_gradient_takes_the_unfused_route(count_fused_steps):
    model = _mlp()
    _train(model, pr.optim.PathSGD(model, lr=0.01, momentum=0.9), _data(), 2)
    assert count_fused_steps == []
    model.layers[1].weight.requires_grad_(False)  # not in the optimizer: the fused route needs all of them
    _train(model, pr.optim.PathSGD(model, lr=0.01), _data(), 2)
    assert count_fused_steps == []


def test_fused_true_says_why_it_cannot():
    with pytest.raises(ValueError, match="fused=True needs momentum=0"):
        pr.optim.PathSGD(_mlp(), lr=0.1, momentum=0.9, fused=True)
    with pytest.raises(RuntimeError, match="fused route is for plainrnn.MLP, got ReLURNN"):
        pr.optim.PathSGD(pr.ReLURNN(2, 4, 1), lr=0.1, seq_len=5, fused=True)
    with pytest.raises(RuntimeError, match="fused route is for p = 2, got p = 3"):
        pr.optim.PathSGD(_mlp(), lr=0.1, p=3, fused=True)
    with pytest.raises(ValueError, match="fused must be None, True or False"):
        pr.optim.PathSGD(_mlp(), lr=0.1, fused="yes")


@pytest.mark.parametrize("kappa_every", [1, 4])
def test_resuming_from_a_state_dict_continues_bit_for_bit(kappa_every):
    """A resumed optimizer has no reusable products, so its first step computes κ afresh; in float32
    that must give exactly the numbers of the run that was never interrupted."""
    sizes = (20, [64, 48], 5)
    data = _data(32, 20, 5, torch.float32)
    full = _mlp(sizes, torch.float32)
    opt = pr.optim.PathSGD(full, lr=0.05, kappa_every=kappa_every, fused=True)
    _train(full, opt, data, 6)
    saved = copy.deepcopy((full.state_dict(), opt.state_dict()))
    _train(full, opt, data, 5)
    resumed = _mlp(sizes, torch.float32, seed=3)
    resumed.load_state_dict(saved[0])
    opt2 = pr.optim.PathSGD(resumed, lr=0.05, kappa_every=kappa_every, fused=True)
    opt2.load_state_dict(saved[1])
    _train(resumed, opt2, data, 5)
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_lr_multipliers_on_a_bias_alone_agree_between_the_routes(count_fused_steps):
    """Every parameter at its own group's lr on the fused route too: a bias at 5× (its weight at 1×) and
    the next layer's weight at 0.2× train exactly as on the unfused route."""
    factors = {"layers.0.bias": 5.0, "layers.1.weight": 0.2}
    a = _mlp()
    b = copy.deepcopy(a)
    data = _data()
    _train(a, pr.optim.PathSGD(a, lr=0.05, fused=True, lr_multipliers=factors), data, 5)
    _train(b, pr.optim.PathSGD(b, lr=0.05, fused=False, lr_multipliers=factors), data, 5)
    assert len(count_fused_steps) == 5
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
