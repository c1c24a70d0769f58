import torch

import plainrnn as pr
from plainrnn.stiefel import orthogonality_penalty, recurrent_penalty, singular_value_prior


def _finite_difference_check(fn, X, eps=1e-6):
    X = X.clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(X), X)
    numeric = torch.zeros_like(X)
    with torch.no_grad():
        for idx in range(X.numel()):
            E = torch.zeros_like(X).view(-1)
            E[idx] = eps
            E = E.view_as(X)
            numeric.view(-1)[idx] = (fn(X + E) - fn(X - E)) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-8)


def test_zero_at_orthogonal_and_positive_elsewhere():
    Q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    assert orthogonality_penalty(Q).item() < 1e-24
    assert orthogonality_penalty(Q * 1.01).item() > 1e-4
    assert singular_value_prior(torch.ones(5, dtype=torch.float64)).item() == 0.0
    assert singular_value_prior(torch.tensor([1.0, 1.2], dtype=torch.float64)).item() > 0


def test_gradients_match_finite_differences():
    W = torch.randn(4, 4, dtype=torch.float64)
    _finite_difference_check(orthogonality_penalty, W)
    _finite_difference_check(singular_value_prior, torch.randn(6, dtype=torch.float64))


def test_recurrent_penalty_on_any_model():
    rnn = pr.ReLURNN(2, 4, 1).double()  # identity init: orthogonal, singular values 1
    assert float(recurrent_penalty(rnn, orth=1.0, sv_prior=1.0).detach()) < 1e-24
    spectral = pr.SpectralRNN(2, 4, 1, margin=None).double()
    spectral.reset_parameters()  # orthogonal U, V drawn in float64
    with torch.no_grad():
        spectral.spectrum_l0.fill_(1.5)
    value = recurrent_penalty(spectral, orth=0.0, sv_prior=2.0, weight_decay=1.0).detach()
    assert abs(float(value) - (2.0 * 4 * 0.25 + 4 * 2.25)) < 1e-10


def test_each_coefficient_switches_on_its_own_term_and_the_defaults_leave_all_out():
    """recurrent_penalty against the three terms computed by hand on a non-orthogonal W (so that no
    term is zero): the defaults add nothing, and each λ adds exactly its own term."""
    from plainrnn.stiefel.penalties import composite_weight_decay
    torch.manual_seed(0)
    rnn = pr.ReLURNN(2, 4, 1).double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.randn(4, 4, dtype=torch.float64))
    W = rnn.weight_hh_l0.detach()
    terms = dict(orth=orthogonality_penalty(W), sv_prior=singular_value_prior(torch.linalg.svdvals(W)),
                 weight_decay=composite_weight_decay(W))
    assert all(float(t) > 1e-3 for t in terms.values())
    assert recurrent_penalty(rnn) == 0.0
    for name, term in terms.items():
        torch.testing.assert_close(recurrent_penalty(rnn, **{name: 0.5}).detach(), 0.5 * term, rtol=1e-10, atol=0)
    torch.testing.assert_close(recurrent_penalty(rnn, orth=1.0, sv_prior=2.0, weight_decay=3.0).detach(),
                               terms["orth"] + 2 * terms["sv_prior"] + 3 * terms["weight_decay"], rtol=1e-10, atol=0)
