"""InvariantAdam: Adam in z = √κ ⊙ w. Theorem 2 in float64 for every option (red when a piece is made
non-invariant), its step against the formula written out, and that it is neither Adam nor
PathNormalized(Adam) on a rescaled init."""
import copy
import math

import pytest
import torch

import plainrnn as pr
from oracles import regression_batches as _batches, small_relu_rnn


def _alphas(model, seed=3, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.exp(spread * torch.randn(model.hidden_size, generator=g, dtype=torch.float64))
            for _ in range(model.num_layers)]


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model


OPTIONS = {
    "plain": dict(),
    "kappa2": dict(second_order=True),
    "z_rms": dict(lr_scale="z_rms"),
    "unit-step": dict(max_unit_step=0.02),
    "backtracking": dict(max_path_growth=0.01),
    "kappa-every-3": dict(kappa_every=3),
}


@pytest.mark.parametrize("option", OPTIONS)
def test_training_is_invariant_to_rescaling(option):
    """Theorem 2: 20 steps from w and from T_α(w) (α up to e^±3) give the same function to 1e-9."""
    batches = _batches(20)
    a = small_relu_rnn(2, "last", 0)
    b = copy.deepcopy(a)
    pr.path.rescale_(b, _alphas(b))
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    start = a(x).detach()
    torch.testing.assert_close(b(x), start, rtol=1e-12, atol=1e-13)
    lr = 1e-3 if option != "backtracking" else 5e-2
    _train(a, pr.optim.InvariantAdam(a, lr=lr, seq_len=7, **OPTIONS[option]), batches)
    _train(b, pr.optim.InvariantAdam(b, lr=lr, seq_len=7, **OPTIONS[option]), batches)
    assert (a(x) - start).abs().max() > 1e-3  # it did train
    torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-10)


def test_with_kappa_taken_as_one_it_is_adam_and_the_test_sees_it_part(monkeypatch):
    """The same test with κ replaced by ones (so z = w: plain Adam): the two runs part, so the
    invariance test can fail."""
    import plainrnn.optim.invariant_adam as module
    batches = _batches(20)
    a = small_relu_rnn(2, "last", 0)
    b = copy.deepcopy(a)
    pr.path.rescale_(b, _alphas(b))
    real_densify = module.densify
    monkeypatch.setattr(module, "densify", lambda entry: torch.ones_like(real_densify(entry)))  # κ ≡ 1: plain Adam
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    _train(a, pr.optim.InvariantAdam(a, lr=1e-3, seq_len=7, lr_scale=None), batches)
    _train(b, pr.optim.InvariantAdam(b, lr=1e-3, seq_len=7, lr_scale=None), batches)
    assert (a(x) - b(x)).abs().max() > 1e-4


def test_the_step_is_adam_in_z_written_out():
    """Two steps against eqs. 1–3 by hand: g̃ = g/√κ, Adam's moments on g̃, Δw = −η s m̂/(√v̂ + ε)/√κ,
    s = √γ²(w₀), κ recomputed before each step."""
    model = small_relu_rnn(2, "last", 0)
    twin = copy.deepcopy(model)
    opt = pr.optim.InvariantAdam(model, lr=1e-3, seq_len=7, betas=(0.8, 0.9), eps=1e-6)
    s = math.sqrt(float(pr.path.path_norm(twin, seq_len=7)))
    m = {n: torch.zeros_like(p) for n, p in twin.named_parameters()}
    v = {n: torch.zeros_like(p) for n, p in twin.named_parameters()}
    for t, (x, y) in enumerate(_batches(2), 1):
        kappa = pr.path.kappa(twin, seq_len=7)
        for net in (model, twin):
            net.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        with torch.no_grad():
            for n, p in twin.named_parameters():
                root = kappa[n].sqrt()
                g = torch.where(root > 0, p.grad / root.clamp_min(1e-300), 0.0)
                m[n] = 0.8 * m[n] + 0.2 * g
                v[n] = 0.9 * v[n] + 0.1 * g * g
                dz = s * (m[n] / (1 - 0.8 ** t)) / ((v[n] / (1 - 0.9 ** t)).sqrt() + 1e-6)
                p.sub_(1e-3 * torch.where(root > 0, dz / root.clamp_min(1e-300), 0.0))
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-15, msg=n)


def test_it_is_neither_adam_nor_path_normalized_adam_on_a_rescaled_init():
    """From a rescaled init (α up to e^±3), 20 steps: InvariantAdam follows its balanced run (the test
    above), while Adam and PathNormalized(Adam) each leave theirs; and its trajectory differs from
    both of theirs on the balanced init."""
    batches = _batches(20)
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    makers = {"invariant": lambda m: pr.optim.InvariantAdam(m, lr=1e-3, seq_len=7),
              "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
              "path-adam": lambda m: pr.optim.PathNormalized(torch.optim.Adam, m, seq_len=7, lr=1e-3)}
    out, gap = {}, {}
    for name, make in makers.items():
        a = small_relu_rnn(2, "last", 0)
        b = copy.deepcopy(a)
        pr.path.rescale_(b, _alphas(b))
        _train(a, make(a), batches)
        _train(b, make(b), batches)
        out[name], gap[name] = a(x).detach(), float((a(x) - b(x)).detach().abs().max())
    assert gap["invariant"] < 1e-9 and gap["adam"] > 1e-3 and gap["path-adam"] > 1e-3
    assert (out["invariant"] - out["adam"]).abs().max() > 1e-3
    assert (out["invariant"] - out["path-adam"]).abs().max() > 1e-3


def test_bad_arguments_are_named():
    model = small_relu_rnn(1, "last", 0)
    with pytest.raises(ValueError, match=r"^Invalid learning rate: inf \(must be > 0\)$"):
        pr.optim.InvariantAdam(model, lr=math.inf, seq_len=7)
    with pytest.raises(ValueError, match=r"^Invalid betas: \(0\.9, 1\.0\) \(two numbers in \[0, 1\)\)$"):
        pr.optim.InvariantAdam(model, lr=1e-3, seq_len=7, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"^lr_scale must be one of 'z_rms', 'path_norm', None or a positive number"):
        pr.optim.InvariantAdam(model, lr=1e-3, seq_len=7, lr_scale="path_norm_now")


def test_it_resumes_from_its_state_dict_bit_for_bit():
    batches = _batches(6)
    a = small_relu_rnn(2, "last", 0)
    opt = pr.optim.InvariantAdam(a, lr=1e-3, seq_len=7, max_unit_step=0.05)
    _train(a, opt, batches[:3])
    b = copy.deepcopy(a)
    other = pr.optim.InvariantAdam(b, lr=1e-3, seq_len=7, max_unit_step=0.05)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train(a, opt, batches[3:])
    _train(b, other, batches[3:])
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
