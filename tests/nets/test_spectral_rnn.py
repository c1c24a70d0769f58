import pytest
import torch

import plainrnn as pr
from plainrnn.stiefel import orthogonality_error


def _train(model, steps=30, orth_lr=0.05, lr=0.05):
    opt = pr.optim.spectral_optimizer(model, lr=lr, orth_lr=orth_lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(8, 6, 3, generator=g, dtype=torch.float64)
        y = 3 * torch.randn(8, 2, generator=g, dtype=torch.float64)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return opt


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_singular_values_stay_in_the_margin(margin):
    model = pr.SpectralRNN(3, 6, 2, margin=margin).double()
    model.reset_parameters()  # U, V orthogonal to float64 precision
    _train(model, lr=0.5)
    s = torch.linalg.svdvals(model.recurrent_weight(0).detach())
    assert s.min() >= 1 - margin - 1e-12 and s.max() <= 1 + margin + 1e-12
    if margin == 0.0:
        assert orthogonality_error(model.recurrent_weight(0).detach()) < 1e-12
    else:
        assert s.max() - s.min() > 1e-3 * margin  # training did move them
    for M in model.orthogonal_parameters():
        assert orthogonality_error(M.detach()) < 1e-12


def test_gradcheck_through_the_sigmoid_parameterization():
    """gradcheck of the library's own forward (through ``singular_values``, eq. 10) as a function of
    the spectrum parameter p; the forward itself is checked against a reference loop."""
    model = pr.SpectralRNN(2, 4, 1, margin=0.3, nonlinearity="tanh").double()
    x = torch.randn(3, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)

    def library_forward(q):
        return torch.func.functional_call(model, {"spectrum_l0": q}, (x,))

    assert torch.autograd.gradcheck(library_forward, (p,))
    with torch.no_grad():
        expected = _forward_with_spectrum(model, p.detach(), x)
    torch.testing.assert_close(library_forward(p.detach()), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margin", [0.001, 0.1, 1.0])
def test_the_margin_maps_the_real_line_onto_exactly_its_interval(margin):
    """eq. 10: s = 2m(σ(p) − 1/2) + 1 covers (1 − m, 1 + m): never outside, and both ends approached."""
    model = pr.SpectralRNN(2, 5, 1, margin=margin).double()
    p = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=torch.float64)
    with torch.no_grad():
        model.spectrum_l0.copy_(p)
    s = model.singular_values(0).detach()
    assert float(s.min()) >= 1 - margin and float(s.max()) <= 1 + margin
    assert float(s[0]) == pytest.approx(1 - margin, abs=1e-12) and float(s[-1]) == pytest.approx(1 + margin, abs=1e-12)
    assert float(s[2]) == 1.0
    # ±30 is already within 1e-13·m of the ends: the map reaches the whole interval, not half of it
    assert float(s[1]) - (1 - margin) < 1e-12 and (1 + margin) - float(s[3]) < 1e-12


def _forward_with_spectrum(model, q, x):
    """The paper's formulas written out: s = 2m(σ(q) − 0.5) + 1, W = U diag(s) Vᵀ, a tanh loop."""
    s = 2 * model.margin * (torch.sigmoid(q) - 0.5) + 1
    W = (model.U_l0 * s) @ model.V_l0.t()
    h = torch.zeros(x.shape[0], model.hidden_size, dtype=x.dtype)
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ model.weight_ih_l0.t() + h @ W.t() + model.bias_l0)
    return h @ model.weight_out.t() + model.bias_out


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh", "none", "oplu", "prelu"])
def test_forward_matches_a_reference_loop(nonlinearity):
    model = pr.SpectralRNN(3, 6, 2, margin=0.2, nonlinearity=nonlinearity, output="all").double()
    with torch.no_grad():
        model.spectrum_l0.uniform_(-2, 2)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    W = model.recurrent_weight(0)
    act = {"relu": torch.relu, "tanh": torch.tanh, "none": lambda z: z,
           "oplu": lambda z: torch.stack([torch.maximum(z[:, ::2], z[:, 1::2]), torch.minimum(z[:, ::2], z[:, 1::2])], -1).flatten(1),
           "prelu": lambda z: torch.where(z >= 0, z, model.slope * z)}[nonlinearity]
    h = torch.zeros(4, 6, dtype=torch.float64)
    ys = []
    for t in range(7):
        h = act(x[:, t] @ model.weight_ih_l0.t() + h @ W.t() + model.bias_l0)
        ys.append(h @ model.weight_out.t() + model.bias_out)
    torch.testing.assert_close(model(x), torch.stack(ys, 1), rtol=1e-12, atol=1e-12)


def test_oplu_preserves_norm_and_learnable_prelu():
    z = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(pr.nets.spectral_rnn.oplu(z).norm(dim=1), z.norm(dim=1))
    model = pr.SpectralRNN(2, 4, 1, nonlinearity="prelu", learn_slope=True).double()
    assert any(n == "slope" for n, _ in model.named_parameters())
    # The slope's gradient against central finite differences of the library's own loss.
    x = torch.randn(3, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model.weight_ih_l0.mul_(5)  # enough negative pre-activations that the slope matters
    loss = lambda: model(x).square().sum()
    loss().backward()
    analytic = float(model.slope.grad)
    eps, base = 1e-6, float(model.slope.detach())
    with torch.no_grad():
        model.slope.fill_(base + eps)
        up = float(loss())
        model.slope.fill_(base - eps)
        down = float(loss())
    assert analytic != 0.0 and analytic == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_inits_through_the_common_module():
    model = pr.SpectralRNN(2, 6, 1, margin=None).double()
    pr.nets.init_recurrent_(model, "glorot", generator=torch.Generator().manual_seed(0))
    W = pr.nets.recurrent_matrix("glorot", 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(model.recurrent_weight(0), W, rtol=1e-10, atol=1e-12)
    pr.nets.init_recurrent_(model, "identity")
    torch.testing.assert_close(model.recurrent_weight(0), torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="hidden_size must be even"):
        pr.SpectralRNN(2, 5, 1, nonlinearity="oplu")


def test_float32_drift_stays_below_1e_5_over_10000_steps():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.linalg.qr(torch.randn(64, 64))[0])
    opt = pr.optim.StiefelSGD([W], lr=1e-3)
    worst = 0.0
    for step in range(10_000):
        W.grad = torch.randn(64, 64) * 3  # gradient norm ~ 200, larger than training sees
        opt.step()
        if step % 3 == 0 or step % 10 == 9:  # includes the step just before every check
            worst = max(worst, orthogonality_error(W.detach()))
    assert worst < 1e-5
    assert opt.state[W].get("reorthonormalized", 0) > 0  # the guard did have to act
