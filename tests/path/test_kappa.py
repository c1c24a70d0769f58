"""κ against ½·diag of the autograd Hessian of γ²_net (eq. 8), the ground truth."""
import math

import pytest
import torch

import plainrnn as pr
from oracles import half_hessian_diagonal, rnn_squared_gamma2


def _random_rnn(layers, output, bias=True, H=3, F=2, O=2, scale=0.9, vocab=None):
    model = pr.ReLURNN(F, H, O, num_layers=layers, output=output, bias=bias, vocab_size=vocab).double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-scale, scale)
    return model


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("output", ["last", "all"])
@pytest.mark.parametrize("T", [1, 3, 8])
def test_kappa1_plus_kappa2_is_half_hessian_diagonal(layers, output, T):
    model = _random_rnn(layers, output)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    expected = half_hessian_diagonal(lambda ps: rnn_squared_gamma2(ps, model, T), params)
    got = pr.path.kappa(model, seq_len=T, second_order=True)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-8, atol=0, msg=name)


def test_kappa_without_bias_and_with_tokens():
    for model in (_random_rnn(2, "all", bias=False), _random_rnn(1, "all", vocab=4)):
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        expected = half_hessian_diagonal(lambda ps: rnn_squared_gamma2(ps, model, 5), params)
        got = pr.path.kappa(model, seq_len=5, second_order=True)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-8, atol=0)


def test_kappa2_is_zero_off_the_recurrent_matrices_and_kappa1_is_the_squared_gradient():
    model = _random_rnn(2, "last")
    k1 = pr.path.kappa(model, seq_len=6)
    k12 = pr.path.kappa(model, seq_len=6, second_order=True)
    for name in k1:
        if "weight_hh" in name:
            assert (k12[name] - k1[name]).abs().max() > 1e-6 * k1[name].abs().max()
        else:
            assert torch.equal(k12[name], k1[name])
    # Theorem 3: κ1 = ∇_{p̃} g(1), the gradient of the squared network in the squared parameters.
    squared = {n: p.detach().square().requires_grad_() for n, p in model.named_parameters()}
    g = rnn_squared_gamma2({n: v.sqrt() for n, v in squared.items()}, model, 6)
    grads = torch.autograd.grad(g, list(squared.values()))
    for (name, _), grad in zip(squared.items(), grads):
        torch.testing.assert_close(k1[name], grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("route", ["kernel", "eager"])
@pytest.mark.parametrize("hidden", [[4, 3], [5, 9, 4], [4, 5, 12, 12]])  # last: 2 layers before the pivot
def test_mlp_kappa_is_half_hessian_diagonal(route, hidden, monkeypatch):
    """Both routes of the sweep (plainrnn.path.kernels), and a net whose largest matrix is inside."""
    if route == "eager":
        monkeypatch.setenv("PLAINRNN_KERNELS", "0")
    model = pr.MLP(3, hidden, 2).double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}

    def gamma2(ps):
        a = torch.ones(3, dtype=torch.float64)
        for k in range(len(hidden) + 1):
            a = ps[f"layers.{k}.weight"] ** 2 @ a + ps[f"layers.{k}.bias"] ** 2
        return a.sum()

    expected = half_hessian_diagonal(gamma2, params)
    got = pr.path.kappa(model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-8, atol=0)


def test_kappa_stays_finite_for_long_sequences_and_large_spectral_radius():
    H, T = 6, 1000
    model = pr.ReLURNN(1, H, 1)  # float32 parameters, as users have them
    with torch.no_grad():
        # W_rec² = 1.5·P for a permutation-free all-positive matrix with spectral radius 1.5.
        model.weight_hh_l0.fill_(math.sqrt(1.5 / H))
        model.weight_ih_l0.fill_(0.5)
        model.weight_out.fill_(0.5)
    k = pr.path.kappa(model, seq_len=T, second_order=True)
    gamma2 = pr.path.path_norm(model, seq_len=T)
    assert torch.isfinite(gamma2) and gamma2 > 1e170
    for name, value in k.items():
        assert torch.isfinite(value).all(), name
    # Closed form at this all-equal matrix: every row of Q is q = 1.5/H, so Q^n 1 = 1.5^n 1.
    # a_t = 0.25 Σ_{n<t} 1.5^n,  γ² = Σ_o Σ_j 0.25 a_T[j] = H · 0.25 · a_T.
    a_T = 0.25 * (1.5 ** T - 1) / 0.5
    assert math.isclose(gamma2.item(), H * 0.25 * a_T, rel_tol=1e-9)


def test_kappa2_alone_is_the_second_order_part_on_each_recurrent_matrix():
    model = _random_rnn(2, "all")
    k2 = pr.path.kappa2(model, seq_len=6)
    k1, k12 = pr.path.kappa(model, seq_len=6), pr.path.kappa(model, seq_len=6, second_order=True)
    assert sorted(k2) == ["weight_hh_l0", "weight_hh_l1"]
    for name, value in k2.items():
        torch.testing.assert_close(value, k12[name] - k1[name], rtol=1e-9, atol=1e-15)
        assert value.abs().max() > 0
    with pytest.raises(TypeError, match=r"kappa2 is defined for plainrnn\.ReLURNN, got MLP; for other models "
                                        r"use kappa\(\.\.\., second_order=True\)"):
        pr.path.kappa2(pr.MLP(3, [4], 2), seq_len=6)


def test_a_kappa_entry_survives_the_trip_through_a_plain_state_dict():
    """to_plain/from_plain: an Outer becomes two tensors and comes back; a dense κ, a 0-d κ (a bias of
    one unit) and a κ not computed yet (None) pass through unchanged."""
    from plainrnn.path.factored import Outer, from_plain, to_plain
    outer = Outer(torch.tensor([1.0, 2.0]), torch.tensor([3.0]))
    plain = to_plain(outer)
    assert set(plain) == {"outer_rows", "outer_cols"} and all(isinstance(v, torch.Tensor) for v in plain.values())
    back = from_plain(plain)
    assert isinstance(back, Outer) and torch.equal(back.dense(), outer.dense())
    for entry in (torch.ones(2, 2), torch.tensor(3.0), None):
        assert to_plain(entry) is entry and from_plain(entry) is entry
    other = {"outer_rows": torch.ones(1)}  # not an Outer's dict: left alone
    assert from_plain(other) is other
