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
    model = pr.SpectralRNN(2, 4, 1, margin=0.3, nonlinearity="tanh").double()
    x = torch.randn(3, 5, 2, dtype=torch.float64)

    def f(p):
        model.spectrum_l0.data = p
        return model(x)

    p = torch.randn(4, dtype=torch.float64, requires_grad=True)
    model.spectrum_l0 = torch.nn.Parameter(p.detach().clone())
    assert torch.autograd.gradcheck(lambda q: _forward_with_spectrum(model, q, x), (p,))


def _forward_with_spectrum(model, q, x):
    s = 2 * model.margin * (torch.sigmoid(q) - 0.5) + 1
    W = (model.U_l0 * s) @ model.V_l0.t()
    h = torch.zeros(x.shape[0], model.hidden_size, dtype=x.dtype)
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ model.weight_ih_l0.t() + h @ W.t() + model.bias_l0)
    # and the model's own forward with the same spectrum must agree with this reference
    with torch.no_grad():
        model.spectrum_l0.copy_(q)
    torch.testing.assert_close(model(x), h @ model.weight_out.t() + model.bias_out)
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
    model = pr.SpectralRNN(2, 4, 1, nonlinearity="prelu", learn_slope=True)
    assert any(n == "slope" for n, _ in model.named_parameters())


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
