"""What PathSGD's state must hold after step 1: the step scale frozen at γ²(w₀), and κ recomputed on
exactly the steps that ``kappa_every`` names. The oracles are computed from the weights themselves,
not from the optimizer's own helpers, so the routes cannot agree with each other on a wrong answer."""
import copy

import pytest
import torch

import plainrnn as pr
from plainrnn.path import densify


def _mlp(seed=0):
    torch.manual_seed(seed)
    return pr.MLP(6, [9, 7], 3).double()


def _batch(i):
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randint(3, (16,), generator=g)


def _step(model, opt, i):
    x, y = _batch(i)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("fused", [False, True])
def test_the_step_scale_stays_the_path_norm_at_the_first_step(fused):
    model = _mlp()
    gamma2_w0 = float(pr.path.path_norm(model))
    opt = pr.optim.PathSGD(model, lr=0.05, fused=fused if fused else False, kappa_every=1)
    for i in range(6):
        _step(model, opt, i)
    assert float(pr.path.path_norm(model)) != pytest.approx(gamma2_w0, rel=1e-6), "training must move γ²"
    assert opt.param_groups[0]["path_scale"] == pytest.approx(gamma2_w0, rel=1e-12)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kappa_every", [1, 3])
def test_kappa_is_recomputed_on_exactly_the_scheduled_steps(fused, kappa_every):
    """Step t (counting from 0) uses κ of the weights as they were at step k·⌊t/k⌋. Replaying the
    update with that κ, from the weights and gradients alone, must give the optimizer's weights."""
    model = _mlp()
    opt = pr.optim.PathSGD(model, lr=0.05, fused=fused, kappa_every=kappa_every)
    scale = float(pr.path.path_norm(model))
    kappa_at = None
    for t in range(7):
        if t % kappa_every == 0:
            kappa_at = {name: densify(k) for name, k in pr.path.kappa_entries(model)[0].items()}
        before = copy.deepcopy(model)
        x, y = _batch(t)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        opt.step()
        for (name, p), q in zip(model.named_parameters(), before.parameters()):
            expected = q - 0.05 * scale * grads[name] / kappa_at[name]
            torch.testing.assert_close(p.detach(), expected.detach(), rtol=1e-10, atol=1e-13,
                                       msg=f"step {t}, {name}: not the update with the scheduled κ")


@pytest.mark.parametrize("fused", [False, True])
def test_the_re_estimated_scale_is_the_path_norm_of_the_last_kappa_pass(fused):
    model = _mlp()
    opt = pr.optim.PathSGD(model, lr=0.05, fused=fused, lr_scale="path_norm_now")
    for i in range(6):
        gamma2_before_step = float(pr.path.path_norm(model))
        _step(model, opt, i)
    assert opt.param_groups[0]["path_scale"] == pytest.approx(gamma2_before_step, rel=1e-10)
    assert gamma2_before_step != pytest.approx(float(pr.path.path_norm(_mlp())), rel=1e-6)
