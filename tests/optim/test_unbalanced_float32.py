"""Theorem 2 in float32 at the 2015 paper's extreme scales: Path-SGD from an unbalanced init gives
the same function as from the balanced one, on every route.

The unbalanced network is the balanced one with units rescaled by 10^c (incoming weights ×10^c,
outgoing ÷10^c). Its κ factors s/κ then span 10^±2c, far outside float32 (c = 30 gives 10^60),
although its weights, gradients and steps are finite. The oracle is the balanced run itself."""
import copy

import pytest
import torch

import plainrnn as pr
from plainrnn.optim.fused_mlp import FusedMLPStep
from plainrnn.path import rescale_

SIZES = (12, [40, 40], 5)


def _alphas(exponents_by_layer):
    return [torch.tensor([10.0 ** c for c in layer], dtype=torch.float64) for layer in exponents_by_layer]


def _extreme_alphas(seed: int, top: float) -> list[torch.Tensor]:
    """About a third of the units scaled by 10^c with c up to ``top``, both hidden layers, including
    units in consecutive layers that are both scaled up (their edge's factor spans both scales)."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for width in SIZES[1]:
        c = torch.rand(width, generator=g, dtype=torch.float64) * top
        c[torch.rand(width, generator=g) > 0.35] = 0.0
        c[0] = top  # always one unit at the very top of the range
        layers.append(c.tolist())
    return _alphas(layers)


def _train(model, fused, kappa_every, steps=100, lr=0.05):
    opt = pr.optim.PathSGD(model, lr=lr, fused=fused, kappa_every=kappa_every)
    g = torch.Generator().manual_seed(7)
    for _ in range(steps):
        x = torch.rand(32, SIZES[0], generator=g)
        y = torch.randint(SIZES[2], (32,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _pair(top: float, seed: int = 0):
    torch.manual_seed(seed)
    balanced = pr.MLP(*SIZES)
    unbalanced = copy.deepcopy(balanced)
    rescale_(unbalanced, _extreme_alphas(seed, top))
    assert all(torch.isfinite(p).all() for p in unbalanced.parameters()), "the test needs finite float32 weights"
    return balanced, unbalanced


def _relative_gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    x = torch.rand(256, SIZES[0], generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        la, lb = a(x), b(x)
    return float((la - lb).abs().max() / la.abs().max())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kappa_every", [1, 10])
@pytest.mark.parametrize("top", [12.0, 30.0])
def test_path_sgd_is_invariant_in_float32_at_extreme_scales(fused, kappa_every, top):
    if fused and not FusedMLPStep.supports(pr.MLP(*SIZES), 2.0):
        pytest.skip("no C++ compiler here: the fused route does not exist")  # the unfused case still runs
    balanced, unbalanced = _pair(top)
    before = _relative_gap(balanced, unbalanced)
    _train(balanced, fused, kappa_every)
    _train(unbalanced, fused, kappa_every)
    assert all(torch.isfinite(p).all() for p in unbalanced.parameters())
    moved = _relative_gap(balanced, _pair(top)[0])  # how far training moved the function
    assert moved > 1e-2, "the runs must actually train for the comparison to mean anything"
    assert _relative_gap(balanced, unbalanced) < 1e-4, f"function drifted (it started {before:.1e} apart)"


def test_the_paper_unbalanced_init_in_float32_is_invariant_too():
    """The paper's own unbalancing (2000 picks with replacement, 10^c with c log-normal) on a 100-unit
    MLP: compounded picks reach 10^20 and more, yet both runs give the same function."""
    torch.manual_seed(3)
    balanced = pr.MLP(20, [100, 100], 10)
    unbalanced = copy.deepcopy(balanced)
    alphas = pr.path.unbalance_(unbalanced, units=200, generator=torch.Generator().manual_seed(5))
    assert max(float(a.max()) for a in alphas) > 1e15  # really outside float32's comfortable range
    for model in (balanced, unbalanced):
        opt = pr.optim.PathSGD(model, lr=0.05)
        g = torch.Generator().manual_seed(1)
        for _ in range(100):
            x, y = torch.rand(32, 20, generator=g), torch.randint(10, (32,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x = torch.rand(64, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = balanced(x), unbalanced(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-4


def test_wide_factors_go_through_float64_and_are_never_clamped():
    """divide_ with factors beyond float32: the normalized gradient equals the float64 oracle."""
    from plainrnn.path.factored import Outer, divide_
    g = torch.Generator().manual_seed(0)
    grad64 = torch.randn(4, 3, generator=g, dtype=torch.float64) * torch.tensor([1e-30, 1, 1, 1e-25], dtype=torch.float64)[:, None]
    rows = torch.tensor([1e-55, 1.0, 2.0, 1e-50], dtype=torch.float64)
    cols = torch.tensor([1e-20, 3.0, 1e25], dtype=torch.float64)
    expected = grad64 * 10.0 / torch.outer(rows, cols)
    grad = grad64.float()
    assert divide_(grad, Outer(rows, cols), scale=10.0, defer_columns=True) is None
    torch.testing.assert_close(grad, expected.float(), rtol=1e-6, atol=0)


def test_the_fused_steps_reused_products_are_a_fresh_pass_bit_for_bit_when_wide():
    """On the wide route the fused step keeps its float64 products only where a fresh pass would have
    swept wide too, so a resumed run (which starts with a fresh pass) continues bit for bit."""
    from plainrnn.path.mlp import mlp_pass
    if not FusedMLPStep.supports(pr.MLP(*SIZES), 2.0):
        pytest.skip("no C++ compiler here: the fused route does not exist")
    _, unbalanced = _pair(30.0)
    opt = pr.optim.PathSGD(unbalanced, lr=0.05, fused=True)
    g = torch.Generator().manual_seed(7)
    kept = 0
    for _ in range(5):
        x, y = torch.rand(32, SIZES[0], generator=g), torch.randint(SIZES[2], (32,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(unbalanced(x), y).backward()
        opt.step()
        cached = opt._fused._next
        if cached is not None:
            kept += 1
            gin, gout, gamma2 = cached[1]
            fresh_in, fresh_out, fresh_gamma2 = mlp_pass(unbalanced)
            assert all(torch.equal(a, b) for a, b in zip(gin + gout, fresh_in + fresh_out))
            assert torch.equal(gamma2, fresh_gamma2)
    assert kept == 5, "at 10^30 every step is wide, so every step's products should be kept"
