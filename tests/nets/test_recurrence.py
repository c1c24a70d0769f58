"""The custom recurrence (none, OPLU, PReLU) against autograd through the plain loop, and gradcheck in
float64; SpectralRNN gives the same numbers through it as through its explicit loop."""
import pytest
import torch

import plainrnn as pr
from plainrnn.nets.recurrence import recurrence
from plainrnn.nets.spectral_rnn import oplu


def _plain_loop(drive, weight, kind, slope=None):
    act = {"none": lambda z: z, "oplu": oplu, "prelu": lambda z: torch.where(z >= 0, z, slope * z)}[kind]
    h = drive.new_zeros(drive.shape[0], drive.shape[2])
    out = []
    for t in range(drive.shape[1]):
        h = act(drive[:, t] + h @ weight.t())
        out.append(h)
    return torch.stack(out, 1)


def _inputs(seed=0, dtype=torch.float64, B=3, T=7, H=6):
    g = torch.Generator().manual_seed(seed)
    drive = torch.randn(B, T, H, generator=g, dtype=dtype, requires_grad=True)
    weight = (torch.randn(H, H, generator=g, dtype=dtype) / H ** 0.5).requires_grad_(True)
    slope = torch.tensor(0.7, dtype=dtype, requires_grad=True)
    return drive, weight, slope


@pytest.mark.parametrize("kind", ["none", "oplu", "prelu"])
def test_values_and_gradients_match_autograd_through_the_plain_loop(kind):
    drive, weight, slope = _inputs()
    s = slope if kind == "prelu" else None
    upstream = torch.randn(3, 7, 6, dtype=torch.float64)
    ours = recurrence(drive, weight, kind, s)
    ref = _plain_loop(drive, weight, kind, s)
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-13)
    wrt = [drive, weight] + ([slope] if s is not None else [])
    g_ours = torch.autograd.grad(ours, wrt, upstream)
    g_ref = torch.autograd.grad(ref, wrt, upstream)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["none", "oplu", "prelu"])
def test_gradcheck(kind):
    drive, weight, slope = _inputs(seed=1, B=2, T=4, H=4)
    args = (drive, weight, kind, slope if kind == "prelu" else None)
    assert torch.autograd.gradcheck(lambda d, w: recurrence(d, w, kind, args[3]), (drive, weight))
    if kind == "prelu":
        assert torch.autograd.gradcheck(lambda a: recurrence(drive, weight, "prelu", a), (slope,))


@pytest.mark.parametrize("nonlinearity, learn", [("none", False), ("oplu", False), ("prelu", True)])
def test_the_spectral_rnn_is_unchanged_in_float32(nonlinearity, learn):
    torch.manual_seed(0)
    model = pr.SpectralRNN(3, 8, 2, margin=0.1, nonlinearity=nonlinearity, num_layers=2, learn_slope=learn,
                           output="all")
    x = torch.randn(4, 9, 3)
    fast = model(x)
    steps = model.unrolled_states(x)  # the explicit loop, one autograd node per step
    ref = torch.nn.functional.linear(torch.stack(steps, 1), model.weight_out, model.bias_out)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    g_fast = torch.autograd.grad(fast.square().sum(), list(model.parameters()), allow_unused=True)
    g_ref = torch.autograd.grad(ref.square().sum(), list(model.parameters()), allow_unused=True)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_ref):
        if b is None:
            assert a is None or a.abs().max() == 0, name
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_bad_calls_are_named():
    drive, weight, slope = _inputs()
    with pytest.raises(ValueError, match="kind must be one of none, oplu, prelu, relu, tanh, got 'sigmoid'"):
        recurrence(drive, weight, "sigmoid")
    with pytest.raises(ValueError, match="slope is PReLU's"):
        recurrence(drive, weight, "none", slope)
