"""Our ReLU/tanh recurrence (plainrnn.nets.recurrence.rnn_layer) against torch's fused kernels in float64:
values and every gradient to 1e-12, gradcheck, and the models built on it (ReLURNN, SpectralRNN) equal
to themselves with ``recurrence="torch"``."""
import pytest
import torch

import plainrnn as pr
from plainrnn.nets.recurrence import recurrence, rnn_layer

TOL = dict(rtol=1e-12, atol=1e-12)


def _fused(x, weight_ih, bias, weight_hh, kind):
    """torch._VF.rnn_relu / rnn_tanh, time-major, one layer: the kernel nn.RNN runs."""
    rnn = torch._VF.rnn_relu if kind == "relu" else torch._VF.rnn_tanh
    flat = [weight_ih, weight_hh] + ([bias, torch.zeros_like(bias)] if bias is not None else [])
    h0 = x.new_zeros(1, x.shape[1], weight_hh.shape[0])
    return rnn(x, h0, flat, bias is not None, 1, 0.0, True, False, False)[0]


def _inputs(seed=0, T=9, B=4, I=3, H=6, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64, requires_grad=True)
    w_ih = torch.randn(H, I, generator=g, dtype=torch.float64).requires_grad_(True)
    bias = torch.randn(H, generator=g, dtype=torch.float64).requires_grad_(True)
    w_hh = (scale * torch.randn(H, H, generator=g, dtype=torch.float64) / H ** 0.5).requires_grad_(True)
    return x, w_ih, bias, w_hh


@pytest.mark.parametrize("kind", ["relu", "tanh"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_equal_torchs_fused_kernel(kind, with_bias):
    x, w_ih, bias, w_hh = _inputs()
    bias = bias if with_bias else None
    upstream = torch.randn(9, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours, ref = rnn_layer(x, w_ih, bias, w_hh, kind), _fused(x, w_ih, bias, w_hh, kind)
    assert ours.shape == (9, 4, 6) and (ours > 0).any() and (ours <= 0).any()  # both sides of the kink
    torch.testing.assert_close(ours, ref, **TOL)
    wrt = [t for t in (x, w_ih, bias, w_hh) if t is not None]
    for name, a, b in zip("x w_ih bias w_hh".split() if with_bias else "x w_ih w_hh".split(),
                          torch.autograd.grad(ours, wrt, upstream), torch.autograd.grad(ref, wrt, upstream)):
        torch.testing.assert_close(a, b, **TOL, msg=name)


@pytest.mark.parametrize("kind", ["relu", "tanh"])
def test_a_given_drive_equals_the_fused_kernel_on_an_identity_input(kind):
    """weight_ih=None: x is the drive (the token mode's embedding columns); through recurrence() too."""
    drive, _, bias, w_hh = _inputs(I=6)
    eye = torch.eye(6, dtype=torch.float64)
    upstream = torch.randn(9, 4, 6, dtype=torch.float64)
    ours, ref = rnn_layer(drive, None, bias, w_hh, kind), _fused(drive, eye, bias, w_hh, kind)
    torch.testing.assert_close(ours, ref, **TOL)
    for a, b in zip(torch.autograd.grad(ours, [drive, bias, w_hh], upstream),
                    torch.autograd.grad(ref, [drive, bias, w_hh], upstream)):
        torch.testing.assert_close(a, b, **TOL)
    batch_first = recurrence(drive.transpose(0, 1), w_hh, kind)
    torch.testing.assert_close(batch_first, _fused(drive, eye, None, w_hh, kind).transpose(0, 1), **TOL)


@pytest.mark.parametrize("kind", ["relu", "tanh"])
def test_gradcheck(kind):
    x, w_ih, bias, w_hh = _inputs(seed=2, T=5, B=2, I=3, H=4)
    assert torch.autograd.gradcheck(lambda *a: rnn_layer(*a, kind=kind), (x, w_ih, bias, w_hh))
    drive = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, b, w: rnn_layer(d, None, b, w, kind=kind), (drive, bias, w_hh))


def test_a_single_step_and_inputs_without_gradients():
    x, w_ih, bias, w_hh = _inputs(T=1)
    ours = rnn_layer(x, w_ih, bias, w_hh)
    torch.testing.assert_close(ours, torch.relu(x @ w_ih.t() + bias), **TOL)
    (g_hh,) = torch.autograd.grad(ours.sum(), [w_hh])
    assert g_hh.abs().max() == 0  # h_0 = 0: no step reads W_hh
    frozen = rnn_layer(x.detach(), w_ih.detach(), None, w_hh)  # only W_hh asks for a gradient
    (g,) = torch.autograd.grad(frozen.sum(), [w_hh])
    assert g.shape == w_hh.shape


def test_bad_calls_are_named():
    x, w_ih, bias, w_hh = _inputs()
    with pytest.raises(ValueError, match="kind must be one of relu, tanh, got 'none'"):
        rnn_layer(x, w_ih, bias, w_hh, "none")
    with pytest.raises(ValueError, match=r"x must be T × B × features, got shape \(9, 4\)"):
        rnn_layer(x[:, :, 0], w_ih, bias, w_hh)
    with pytest.raises(ValueError, match="recurrence must be one of plainrnn, torch, got 'cudnn'"):
        pr.ReLURNN(2, 4, 1, recurrence="cudnn")


def _same_weights(make, **kw):
    torch.manual_seed(0)
    ours = make(recurrence="plainrnn", **kw).double()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(std=0.4)  # away from the identity init: both signs of every pre-activation
    theirs = make(recurrence="torch", **kw).double()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("kw", [dict(), dict(nonlinearity="tanh"), dict(num_layers=3), dict(bias=False),
                                dict(vocab_size=7, num_layers=2), dict(output="all", num_layers=2, nonlinearity="tanh")],
                         ids=["relu", "tanh", "3-layers", "no-bias", "tokens", "all-steps"])
def test_relurnn_equals_itself_on_torchs_kernel(kw):
    ours, theirs = _same_weights(lambda **k: pr.ReLURNN(3, 6, 2, **k), **kw)
    x = torch.randint(7, (4, 9)) if "vocab_size" in kw else torch.randn(4, 9, 3, dtype=torch.float64)
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(a, b, **TOL)
    for (name, _), ga, gb in zip(ours.named_parameters(), torch.autograd.grad(a.square().sum(), list(ours.parameters())),
                                 torch.autograd.grad(b.square().sum(), list(theirs.parameters()))):
        torch.testing.assert_close(ga, gb, **TOL, msg=name)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_spectral_rnn_equals_itself_on_torchs_kernel(nonlinearity):
    ours, theirs = _same_weights(lambda **k: pr.SpectralRNN(3, 6, 2, margin=0.5, num_layers=2, **k),
                                 nonlinearity=nonlinearity)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    a, b = ours(x), theirs(x)
    torch.testing.assert_close(a, b, **TOL)
    for (name, _), ga, gb in zip(ours.named_parameters(), torch.autograd.grad(a.square().sum(), list(ours.parameters())),
                                 torch.autograd.grad(b.square().sum(), list(theirs.parameters()))):
        torch.testing.assert_close(ga, gb, **TOL, msg=name)


def test_the_kernel_is_named_in_the_models_repr():
    assert "recurrence='torch'" in repr(pr.ReLURNN(2, 4, 1, recurrence="torch"))
    assert "recurrence" not in repr(pr.ReLURNN(2, 4, 1))


def test_the_compiled_loops_are_built_here_and_taken():
    """CI has g++ and ninja: the route that trains is the one tested."""
    from plainrnn import native
    from plainrnn.nets import recurrence as module
    assert native.kernel() is not None and hasattr(native.kernel(), "recurrence_forward_")
    assert module._compiled(torch.zeros(2, 1, 1), torch.zeros(1, 1)) is native.kernel()
    assert module._compiled(torch.zeros(2, 1, 1, dtype=torch.bfloat16), torch.zeros(1, 1)) is None


@pytest.mark.parametrize("kind", ["relu", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_compiled_loops_give_the_python_loops_numbers_bit_for_bit(kind, dtype, monkeypatch):
    """A run resumed where the extension cannot be built goes on with the same numbers; a NaN drive
    (a run about to diverge) is carried the same way too."""
    from plainrnn.nets import recurrence as module
    g = torch.Generator().manual_seed(5)
    drive = torch.randn(40, 6, 12, generator=g, dtype=dtype)
    drive[7, 2, 3] = float("nan")
    weight = torch.randn(12, 12, generator=g, dtype=dtype) / 3
    upstream = torch.randn(40, 6, 12, generator=g, dtype=dtype)
    results = []
    for route in ("compiled", "python"):
        if route == "python":
            monkeypatch.setattr(module, "_compiled", lambda *tensors: None)
        d, w = drive.clone().requires_grad_(), weight.clone().requires_grad_()
        out = rnn_layer(d, None, None, w, kind)
        results.append([out.detach(), *torch.autograd.grad(out, [d, w], upstream)])
    for a, b in zip(*results):
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
    assert results[0][0].isnan().any() and not results[0][0][:7].isnan().any()
