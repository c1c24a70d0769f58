"""spectral_ on any module's square weight (torch.nn.utils.parametrize) and spectral_optimizer on any
model: the factored weight starts as the module's own, U and V stay orthogonal, the singular values
stay in [1 − m, 1 + m], and the training loss goes down."""
import re

import pytest
import torch
from torch import nn

import plainrnn as pr


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(3, 8, nonlinearity="relu", batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.head(h[:, -1])


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 10, 3, generator=g, dtype=torch.float64)
    return x, x[:, :3, 0].sum(1, keepdim=True)


def test_without_a_margin_the_factored_weight_is_the_original_one():
    torch.manual_seed(0)
    model = _Model().double()
    x, _ = _data()
    before = model(x).detach()
    weight = model.rnn.weight_hh_l0.detach().clone()
    pr.stiefel.spectral_(model.rnn, "weight_hh_l0")
    torch.testing.assert_close(model.rnn.weight_hh_l0, weight, rtol=0, atol=1e-12)
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-12)


@pytest.mark.parametrize("margin", [0.0, 0.1, None])
def test_training_keeps_u_v_orthogonal_and_s_in_the_margin(margin):
    torch.manual_seed(0)
    model = _Model().double()
    pr.stiefel.spectral_(model.rnn, "weight_hh_l0", margin=margin)
    opt = pr.optim.spectral_optimizer(model, lr=1e-2, orth_lr=1e-2)
    (name, _, U, p, V), = pr.stiefel.spectral_factors(model)
    assert name == "rnn.weight_hh_l0"
    x, y = _data()
    losses = []
    U0 = U.detach().clone()
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    eye = torch.eye(8, dtype=torch.float64)
    torch.testing.assert_close(U.t() @ U, eye, rtol=0, atol=1e-10)
    torch.testing.assert_close(V.t() @ V, eye, rtol=0, atol=1e-10)
    assert (U - U0).abs().max() > 1e-3  # the geodesic steps moved U
    s = torch.linalg.svdvals(model.rnn.weight_hh_l0.detach())
    if margin is not None:
        assert s.min() >= 1 - margin - 1e-9 and s.max() <= 1 + margin + 1e-9
    assert losses[-1] < 0.7 * losses[0]


def test_a_linear_weight_and_a_scheduler():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    pr.stiefel.spectral_(net[0], margin=0.5)
    opt = pr.optim.spectral_optimizer(net, lr=1e-2, orth_lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    seen = []
    opt.register_step_post_hook(lambda *_: seen.append(True))
    x = torch.randn(8, 4)
    for _ in range(2):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
        sched.step()
    assert seen == [True, True]
    # param_groups show lr relative to spectral_optimizer's lr (× lr_ratio: the step each group takes)
    assert [g["lr"] * g["lr_ratio"] for g in opt.param_groups] == pytest.approx([2.5e-4, 2.5e-3, 2.5e-3 / (2 * 0.5)])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-3] * 3)


def test_bad_calls_are_named():
    with pytest.raises(ValueError, match=r"square weight; Linear.weight has shape \(3, 4\)"):
        pr.stiefel.spectral_(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="RNN has no weight named 'weight'"):
        pr.stiefel.spectral_(nn.RNN(3, 4))
    rnn = pr.stiefel.spectral_(nn.RNN(3, 4), "weight_hh_l0")
    with pytest.raises(ValueError, match=r"^RNN\.weight_hh_l0 is already parametrized$"):
        pr.stiefel.spectral_(rnn, "weight_hh_l0")
    with pytest.raises(ValueError, match="margin must be None or a number >= 0"):
        pr.stiefel.spectral_(nn.Linear(3, 3), margin=-1)
    with pytest.raises(ValueError, match="has no spectral factors"):
        pr.optim.spectral_optimizer(nn.Linear(3, 3), lr=1e-3)


def test_a_second_weight_of_the_same_module_can_be_factored_and_both_are_found():
    rnn = pr.stiefel.spectral_(nn.RNN(3, 3), "weight_hh_l0")
    pr.stiefel.spectral_(rnn, "weight_ih_l0", margin=0.1)  # square too: another weight, not "already"
    assert [name for name, *_ in pr.stiefel.spectral_factors(nn.Sequential(rnn))] == ["0.weight_hh_l0", "0.weight_ih_l0"]
    assert [name for name, *_ in pr.stiefel.spectral_factors(rnn)] == ["weight_hh_l0", "weight_ih_l0"]  # top level


def test_other_parametrizations_are_not_spectral_factors():
    class Symmetric(nn.Module):
        def forward(self, X):
            return X.triu() + X.triu(1).transpose(0, 1)

    layer = nn.Linear(3, 3)
    torch.nn.utils.parametrize.register_parametrization(layer, "weight", Symmetric())
    assert pr.stiefel.spectral_factors(layer) == []
    chained = pr.stiefel.spectral_(nn.Linear(3, 3))
    torch.nn.utils.parametrize.register_parametrization(chained, "weight", Symmetric())  # a chain of two
    assert pr.stiefel.spectral_factors(chained) == []


@pytest.mark.parametrize("margin", [0.01, 0.5, 2.0])
def test_spectrum_of_inverts_the_singular_values_and_clips_to_the_margin(margin):
    """s(p) = 2m(σ(p) − ½) + 1 maps p = 0 to 1 and the real line into (1 − m, 1 + m); spectrum_of is
    its inverse inside the margin, and outside it lands next to the nearest end."""
    from plainrnn.stiefel.spectral import singular_values, spectrum_of
    s = 1 + margin * torch.tensor([-0.9, -0.3, 0.0, 0.4, 0.99], dtype=torch.float64)
    torch.testing.assert_close(singular_values(spectrum_of(s, margin), margin), s, rtol=1e-12, atol=1e-12)
    assert singular_values(torch.zeros(1, dtype=torch.float64), margin).item() == 1.0
    outside = singular_values(spectrum_of(torch.tensor([1 - 3 * margin, 1 + 3 * margin], dtype=torch.float64),
                                          margin), margin)
    torch.testing.assert_close(outside, torch.tensor([1 - margin, 1 + margin], dtype=torch.float64),
                               rtol=0, atol=3e-6 * margin)
    assert (outside > 1 - margin).all() and (outside < 1 + margin).all()


def test_spectrum_of_without_a_margin_or_with_a_zero_margin():
    from plainrnn.stiefel.spectral import singular_values, spectrum_of
    s = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    free = spectrum_of(s, None)
    assert torch.equal(free, s) and free is not s  # p is s itself, a copy
    assert torch.equal(spectrum_of(s, 0), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(singular_values(torch.tensor([-5.0, 5.0]), 0), torch.ones(2))


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD])
def test_the_margin_holds_under_a_plain_torch_optimizer(optimizer):
    """50 steps of a plain torch optimizer on U, p and V at a large lr: U and V leave the orthogonal
    group, but W's singular values stay in [1 − m, 1 + m] (its factors are U's and V's polar factors)."""
    torch.manual_seed(0)
    model = _Model().double()
    pr.stiefel.spectral_(model.rnn, "weight_hh_l0", margin=0.1)
    opt = optimizer(model.parameters(), lr=0.05)
    x, y = _data()
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    U = model.rnn.parametrizations.weight_hh_l0.original0.detach()
    assert pr.stiefel.orthogonality_error(U) > 1e-3  # the optimizer did move U off the group
    s = torch.linalg.svdvals(model.rnn.weight_hh_l0.detach())
    assert s.min() >= 0.9 - 1e-12 and s.max() <= 1.1 + 1e-12


def test_the_geodesic_step_is_the_cayley_step_of_the_raw_gradient():
    """spectral_optimizer's StiefelSGD step on U equals cayley_step(U, ∂L/∂U) with ∂L/∂U taken through
    W = U diag(s) Vᵀ without the polar factor: on an orthogonal U the polar factor changes the gradient
    only by a normal component, which the Cayley generator G Uᵀ − U Gᵀ does not see."""
    torch.manual_seed(1)
    model = _Model().double()
    pr.stiefel.spectral_(model.rnn, "weight_hh_l0", margin=0.1)
    chain = model.rnn.parametrizations.weight_hh_l0
    U, p, V = (t.detach().clone().requires_grad_(True) for t in (chain.original0, chain.original1, chain.original2))
    x, y = _data(1)
    W = (U * pr.stiefel.spectral.singular_values(p, 0.1)) @ V.t()  # the raw gradient: W built by hand
    rnn = nn.RNN(3, 8, nonlinearity="relu", batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(rnn, name).copy_(getattr(model.rnn, name))
    h = torch.func.functional_call(rnn, {"weight_hh_l0": W, "weight_ih_l0": rnn.weight_ih_l0,
                                         "bias_ih_l0": rnn.bias_ih_l0, "bias_hh_l0": rnn.bias_hh_l0}, (x,))[0]
    torch.nn.functional.mse_loss(model.head(h[:, -1]), y).backward()
    expected = pr.stiefel.cayley_step(U.detach(), U.grad, 1e-2)
    opt = pr.optim.spectral_optimizer(model, lr=1e-3, orth_lr=1e-2)
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    torch.testing.assert_close(chain.original0.detach(), expected, rtol=0, atol=1e-13)


def test_a_default_initialized_weight_starts_inside_the_margin_and_says_so():
    """nn.RNN(2, 64)'s default weight has most singular values far below 1 − m: each starts at the
    inner band's edge, where ds/dp is a fifth of its peak, and registration warns once, in one line."""
    torch.manual_seed(0)
    rnn = torch.nn.RNN(2, 64)
    with pytest.warns(UserWarning) as caught:
        pr.stiefel.spectral_(rnn, "weight_hh_l0", margin=0.1)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert re.match(r"^spectral_: \d+ of 64 singular values lay outside \[1 − 0\.9m, 1 \+ 0\.9m\] = \[0\.91, 1\.09\]",
                    str(caught[0].message))
    p = rnn.parametrizations.weight_hh_l0.original1.detach()
    slope = torch.sigmoid(p) * (1 - torch.sigmoid(p))  # σ'(p): ds/dp = 2m σ'(p)
    assert slope.min() >= 0.0475 - 1e-6
    s = torch.linalg.svdvals(rnn.weight_hh_l0.detach())
    assert s.min() >= 0.91 - 1e-5 and s.max() <= 1.09 + 1e-5


def test_the_polar_factor_and_its_gradient_against_finite_differences():
    """Q(X) = X (XᵀX)^{-1/2}: orthogonal, X = Q P with P symmetric; its gradient passes torch's gradcheck at
    a generic X, and at an orthogonal X (the route that returns X itself) it matches central differences,
    whose perturbed points leave the orthogonal group and take the eigen route."""
    from plainrnn.stiefel.spectral import polar
    g = torch.Generator().manual_seed(0)
    X = torch.randn(5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    Q = polar(X)
    torch.testing.assert_close(Q.T @ Q, torch.eye(5, dtype=torch.float64), rtol=0, atol=1e-12)
    P = Q.T @ X
    torch.testing.assert_close(P, P.T, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(polar, (X,))
    O, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    O.requires_grad_(True)
    G, D = (torch.randn(5, 5, generator=g, dtype=torch.float64) for _ in range(2))
    (grad,) = torch.autograd.grad((polar(O) * G).sum(), O)
    eps = 1e-6
    with torch.no_grad():
        numeric = ((polar(O + eps * D) * G).sum() - (polar(O - eps * D) * G).sum()) / (2 * eps)
    torch.testing.assert_close((grad * D).sum(), numeric, rtol=1e-7, atol=1e-9)
