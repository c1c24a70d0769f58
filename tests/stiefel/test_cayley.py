import math

import pytest
import torch

from plainrnn.optim import StiefelSGD
from plainrnn.stiefel import cayley_step, orthogonality_error, reorthonormalize_, skew_generator


def _orthogonal(n, seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_stays_orthogonal_to_1e_12():
    W = _orthogonal(30, 0)
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        W = cayley_step(W, torch.randn(30, 30, generator=g, dtype=torch.float64), lr=0.3)
    assert orthogonality_error(W) < 1e-12


def test_generator_is_skew_and_step_matches_the_textbook_formula():
    W, G = _orthogonal(6, 2), torch.randn(6, 6, dtype=torch.float64)
    A = skew_generator(W, G)
    torch.testing.assert_close(A, -A.t())
    I = torch.eye(6, dtype=torch.float64)
    expected = torch.linalg.inv(I + 0.05 * A) @ (I - 0.05 * A) @ W
    torch.testing.assert_close(cayley_step(W, G, 0.1), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("seed", range(5))
def test_small_step_descends_on_a_linear_loss(seed):
    """For every seed, the first-order change of L(W) = tr(GᵀW) along the step equals −lr·‖A‖²/2·…:
    it must be negative and match −η/2·‖A‖_F² (the Riemannian gradient's squared norm) to O(η²).
    A step multiplied on the wrong side moves along another direction and fails the match."""
    W = _orthogonal(8, seed)
    G = torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    loss = lambda M: torch.trace(G.t() @ M)  # L(W) = tr(GᵀW), so ∂L/∂W = G
    A = G @ W.t() - W @ G.t()
    lr = 1e-6
    change = float(loss(cayley_step(W, G, lr)) - loss(W))
    assert change < 0
    assert change == pytest.approx(-lr / 2 * float((A * A).sum()), rel=1e-4)


def test_closed_form_2x2_rotation():
    # W = I, G = [[0, g], [-g, 0]] ⇒ A = G − Gᵀ = 2G, and the Cayley transform of a 2×2 skew matrix
    # [[0, c], [-c, 0]] (c = η g) is the rotation by θ with tan(θ/2) = c.
    g, lr = 0.7, 0.4
    G = torch.tensor([[0.0, g], [-g, 0.0]], dtype=torch.float64)
    c = lr * g
    theta = 2 * math.atan(c)
    R = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    torch.testing.assert_close(cayley_step(torch.eye(2, dtype=torch.float64), G, lr), R, rtol=1e-14, atol=1e-14)


def test_reorthonormalize_pulls_a_drifted_matrix_back():
    W = _orthogonal(40, 3) + 1e-4 * torch.randn(40, 40, dtype=torch.float64)
    assert orthogonality_error(W) > 1e-5
    reorthonormalize_(W)
    assert orthogonality_error(W) < 1e-12


def test_bad_shapes():
    with pytest.raises(ValueError, match="square W"):
        cayley_step(torch.zeros(2, 3), torch.zeros(2, 3), 0.1)
    with pytest.raises(ValueError, match=r"got \(2, 3, 4\) and \(2, 3, 4\)"):  # a batch of non-square matrices
        cayley_step(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), 0.1)
    with pytest.raises(ValueError, match=r"^method must be 'auto' or 'solve', got 'lu'$"):
        cayley_step(torch.eye(2), torch.zeros(2, 2), 0.1, method="lu")


@pytest.mark.parametrize("lr, solves", [(1e-6, False), (0.5, True)])
def test_auto_takes_the_series_only_where_it_is_exact_and_solve_always_solves(lr, solves, monkeypatch):
    """The two routes agree to rounding, so only the route itself tells them apart: count the solves."""
    calls = []
    real_solve = torch.linalg.solve
    monkeypatch.setattr(torch.linalg, "solve", lambda *a, **k: calls.append(1) or real_solve(*a, **k))
    W, G = _orthogonal(6, 1), torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    cayley_step(W, G, lr)
    assert (len(calls) > 0) == solves
    calls.clear()
    cayley_step(W, G, lr, method="solve")
    assert len(calls) == 1


@pytest.mark.parametrize("dtype,lr", [(torch.float64, 1e-9), (torch.float64, 1e-6), (torch.float32, 1e-6), (torch.float32, 1e-4)])
def test_series_branch_equals_the_solve_to_rounding(dtype, lr):
    W = _orthogonal(50, 7).to(dtype)
    G = torch.randn(50, 50, dtype=dtype, generator=torch.Generator().manual_seed(8))
    fast, exact = cayley_step(W, G, lr), cayley_step(W, G, lr, method="solve")
    eps = torch.finfo(dtype).eps
    assert (fast - exact).abs().max().item() < 50 * eps
    assert orthogonality_error(fast) < 50 * eps
    assert (fast - W).abs().max().item() > 10 * eps  # and it did move


@pytest.mark.parametrize("dtype, drift, expect_pull", [(torch.float64, 1e-9, True), (torch.float32, 3e-7, False)])
def test_default_drift_tolerances_are_per_dtype(dtype, drift, expect_pull):
    """StiefelSGD re-orthonormalizes above 1e-12 in float64 and 1e-6 in float32 by default: a drift of
    1e-9 is pulled back in float64; one of 3e-7 is left alone in float32 (its own rounding level)."""
    from plainrnn.optim import StiefelSGD
    W = _orthogonal(6, 0).to(dtype)
    with torch.no_grad():
        W.mul_(1 + drift)  # ‖WᵀW − I‖ ≈ 2·drift
    param = torch.nn.Parameter(W.clone())
    opt = StiefelSGD([param], lr=1e-30, check_every=1)
    param.grad = torch.zeros_like(param)
    opt.step()
    pulled = opt.state[param].get("reorthonormalized", 0) == 1
    assert pulled == expect_pull


def _root(k, eps):
    """The b where b^{k+1}/(1 − b) = eps/2, by bisection in float64."""
    lo, hi = 0.0, 0.5
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid ** (k + 1) / (1 - mid) <= eps / 2 else (lo, mid)
    return lo


@pytest.mark.parametrize("eps", [torch.finfo(torch.float64).eps, torch.finfo(torch.float32).eps])
def test_series_terms_is_the_fewest_terms_whose_remainder_bound_is_within_half_an_eps(eps):
    """Just inside and just outside each k's bound b^{k+1}/(1 − b) ≤ eps/2 (a relative nudge of 1e-6
    moves the bound by about 1e-6 · (k+1), far more than rounding)."""
    from plainrnn.stiefel.cayley import series_terms
    for k in (1, 2, 3):
        b = _root(k, eps)
        assert series_terms(b * (1 - 1e-6), eps) == k
        assert series_terms(b * (1 + 1e-6), eps) == (k + 1 if k < 3 else None)
    assert series_terms(0.0, eps) == 1
    assert series_terms(0.5, eps) is None and series_terms(1.0, eps) is None and series_terms(3.0, eps) is None


def test_cayley_step_bounds_b_by_half_the_lr_times_the_generators_frobenius_norm(monkeypatch):
    import plainrnn.stiefel.cayley as cayley
    seen = []
    real = cayley.series_terms
    monkeypatch.setattr(cayley, "series_terms", lambda b, eps: seen.append((b, eps)) or real(b, eps))
    W, G = _orthogonal(5, 3), torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    cayley.cayley_step(W, G, 1e-3)
    A = skew_generator(W, G)
    assert seen == [(pytest.approx(1e-3 / 2 * torch.linalg.matrix_norm(A).item(), rel=1e-12),
                     torch.finfo(torch.float64).eps)]


@pytest.mark.parametrize("lr, method", [(1e-6, "auto"), (0.3, "auto"), (0.3, "solve")])
def test_a_batch_of_matrices_steps_like_each_matrix_alone(lr, method):
    Ws = torch.stack([_orthogonal(4, s) for s in range(3)])
    Gs = torch.randn(3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    batched = cayley_step(Ws, Gs, lr, method=method)
    for i in range(3):
        torch.testing.assert_close(batched[i], cayley_step(Ws[i], Gs[i], lr, method=method), rtol=0, atol=1e-14)
        assert orthogonality_error(batched[i]) < 1e-13


def test_stiefel_sgd_checks_its_arguments_and_keeps_them_as_defaults():
    from plainrnn.optim import StiefelSGD
    W = torch.nn.Parameter(_orthogonal(3, 0))
    opt = StiefelSGD([W], lr=0.1)
    assert opt.defaults == dict(lr=0.1, check_every=10, tol=None, method="auto")
    assert StiefelSGD([W], lr=0.1, method="solve").defaults["method"] == "solve"
    assert StiefelSGD([W], lr=0.1, tol=1e-3).param_groups[0]["tol"] == 1e-3
    for shape in [(3, 4), (4, 3), (3,), (2, 3, 3)]:  # wide, tall, a vector, a batch: none is one orthogonal matrix
        with pytest.raises(ValueError) as caught:
            StiefelSGD([torch.nn.Parameter(torch.zeros(shape))], lr=0.1)
        assert str(caught.value) == f"StiefelSGD needs square orthogonal matrices, got a parameter of shape {shape}"
    for bad, message in [(dict(lr=0.0), r"^Invalid learning rate: 0\.0 \(must be > 0\)$"),
                         (dict(lr="0.1"), r"^Invalid learning rate: 0\.1 \(must be > 0\)$"),
                         (dict(lr=0.1, check_every=0), r"^check_every must be a positive integer, got 0$"),
                         (dict(lr=0.1, check_every=2.0), r"^check_every must be a positive integer, got 2\.0$"),
                         (dict(lr=0.1, method="lu"), r"^method must be 'auto' or 'solve', got 'lu'$")]:
        with pytest.raises(ValueError, match=message):
            StiefelSGD([W], **bad)


def test_an_explicit_zero_drift_tolerance_is_taken_at_its_word():
    """tol=0.0 re-orthonormalizes at every check where any drift is left (a float32 Cayley step leaves
    ~1e-7); the default tol (1e-6 in float32) does not. 0.0 must not fall back to the default."""
    def reorthonormalized(tol):
        torch.manual_seed(0)
        W = torch.nn.Parameter(torch.linalg.qr(torch.randn(16, 16))[0])
        opt = StiefelSGD([W], lr=0.1, check_every=1, tol=tol)
        for _ in range(3):
            W.grad = torch.randn(16, 16)
            opt.step()
        return opt.state[W].get("reorthonormalized", 0)
    assert reorthonormalized(0.0) == 3
    assert reorthonormalized(None) == 0
