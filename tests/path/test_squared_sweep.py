"""The squared-sweep kernel (plainrnn.path.kernels) against float64 formulas, and its eager fallback."""
import itertools
import subprocess
import sys

import pytest
import torch

from plainrnn import native
from plainrnn.path import kernels
from plainrnn.path.kernels import squared_sweep_


# "wide": a float32 W and G with float64 factors and vectors (the route for rescaled networks)
PRECISIONS = {"float64": (torch.float64, torch.float64), "float32": (torch.float32, torch.float32),
              "wide": (torch.float32, torch.float64)}


def _problem(n, m, precision, seed=0):
    dtype, vec = PRECISIONS[precision] if isinstance(precision, str) else (precision, precision)
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    return dict(W=r(n, m).to(dtype), G=r(n, m).to(dtype), row_factor=r(n).abs().to(vec),
                col_factor=r(m).abs().to(vec), gin=r(m).abs().to(vec), gout=r(n).abs().to(vec))


def _oracle(P, lr, update):
    W = P["W"].double()
    if update:
        W = W - lr * P["G"].double() * torch.outer(P["row_factor"].double(), P["col_factor"].double())
    return W, (W * W) @ P["gin"].double(), (W * W).t() @ P["gout"].double()


def test_the_kernel_builds_on_this_machine():
    # CI has g++ and the ninja wheel: the fast route must really be the one that is tested.
    assert kernels.kernel() is not None


@pytest.mark.parametrize("route", ["kernel", "eager"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "wide"])
@pytest.mark.parametrize("shape", [(7, 37), (8, 32), (1, 5), (13, 100)])
def test_update_and_products_match_the_formulas(route, dtype, shape, monkeypatch):
    if route == "eager":
        monkeypatch.setattr(kernels, "_kernel_for", lambda W, p: None)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=1e-5)
    for update, want_rows, want_cols in itertools.product([False, True], repeat=3):
        P = _problem(*shape, dtype)
        W = P["W"].clone()
        step = dict(grad=P["G"], row_factor=P["row_factor"], col_factor=P["col_factor"], lr=0.3) if update else {}
        rows, cols = squared_sweep_(W, P["gin"] if want_rows else None, P["gout"] if want_cols else None, **step)
        W_ref, rows_ref, cols_ref = _oracle(P, 0.3, update)
        torch.testing.assert_close(W.double(), W_ref, **tol)
        assert W.dtype == P["W"].dtype  # the wide route updates the float32 matrix in place
        assert (rows is None) != want_rows and (cols is None) != want_cols
        if want_rows:
            torch.testing.assert_close(rows.double(), rows_ref, **tol)
        if want_cols:
            torch.testing.assert_close(cols.double(), cols_ref, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64", "wide"])
def test_products_of_an_update_equal_a_fresh_sweep_bit_for_bit(dtype):
    """The optimizer reuses the products its update computed as the next step's κ; this holds only
    because every variant of the kernel sums in the same order."""
    P = _problem(103, 517, dtype, seed=1)
    W = P["W"].clone()
    rows, cols = squared_sweep_(W, P["gin"], P["gout"], grad=P["G"], row_factor=P["row_factor"],
                                col_factor=P["col_factor"], lr=0.01)
    fresh_rows, fresh_cols = squared_sweep_(W, P["gin"], P["gout"])
    assert torch.equal(rows, fresh_rows) and torch.equal(cols, fresh_cols)
    assert torch.equal(squared_sweep_(W, P["gin"])[0], rows)
    assert torch.equal(squared_sweep_(W, None, P["gout"])[1], cols)
    rows_only, _ = squared_sweep_(P["W"].clone(), P["gin"], grad=P["G"], row_factor=P["row_factor"],
                                  col_factor=P["col_factor"], lr=0.01)
    assert torch.equal(rows_only, rows)


def test_an_update_is_seen_by_autograd_like_any_in_place_change():
    weight = torch.nn.Parameter(torch.randn(6, 20))
    loss = (weight ** 3).sum()  # saves weight for backward
    with torch.no_grad():
        squared_sweep_(weight.detach(), grad=torch.ones(6, 20), row_factor=torch.ones(6), col_factor=torch.ones(20),
                       lr=0.1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_bad_shapes_are_named():
    W = torch.zeros(4, 5)
    with pytest.raises(RuntimeError, match="gin must be a vector of length 5"):
        squared_sweep_(W, torch.ones(4))
    with pytest.raises(ValueError, match="both row_factor and col_factor"):
        squared_sweep_(W, grad=torch.zeros(4, 5), lr=1.0)


def test_a_lock_left_by_an_interrupted_build_does_not_hang_the_next_one():
    """torch marks a build with a bare ``lock`` file and waits for it without end; a build killed midway
    (Ctrl-C) leaves one, and every later Path-SGD run on an MLP hung. A fresh process must now clear it
    (nobody holds build.flock) and load the kernel."""
    assert kernels.kernel() is not None  # built and cached: the fresh process below only loads it
    stale = native._build_directory(native._build_name()) / "lock"
    stale.touch()
    try:
        done = subprocess.run([sys.executable, "-c", "from plainrnn import native; "
                               "print(native._compile() is not None)"],
                              capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("the build waited on a lock that no process holds")
    finally:
        stale.unlink(missing_ok=True)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def test_without_a_compiler_it_warns_once_and_falls_back(monkeypatch):
    def broken():
        raise RuntimeError("Ninja is required to load C++ extensions\nmore detail")
    monkeypatch.setattr(native, "_compile", broken)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_tried", False)
    with pytest.warns(RuntimeWarning, match=r"could not build its C\+\+ kernels \(Ninja is required"):
        assert kernels.kernel() is None
    P = _problem(5, 9, torch.float64)
    rows, _ = squared_sweep_(P["W"], P["gin"])
    torch.testing.assert_close(rows, (P["W"] ** 2) @ P["gin"], rtol=1e-12, atol=0)


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("PLAINRNN_KERNELS", "0")
    assert kernels.kernel() is None


@pytest.mark.parametrize("route", ["kernel", "eager"])
def test_the_wide_route_keeps_a_step_whose_factors_leave_float32(route, monkeypatch):
    """Factors of 10^±60 (a unit rescaled by 10^30): each leaves float32, the step G·r·c does not.
    The wide route matches the float64 formula; the narrow one cannot even hold the factors."""
    if route == "eager":
        monkeypatch.setattr(kernels, "_kernel_for", lambda W, p: None)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(5, 33, generator=g, dtype=torch.float64)
    W[0] *= 1e30  # the incoming row of a unit scaled up by 10^30
    G = torch.randn(5, 33, generator=g, dtype=torch.float64)
    G[0] *= 1e-30
    row_factor = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    row_factor[0] *= 1e60
    col_factor = torch.rand(33, generator=g, dtype=torch.float64) + 0.5
    gin = torch.rand(33, generator=g, dtype=torch.float64)
    expected = W - 0.1 * G * torch.outer(row_factor, col_factor)
    W32 = W.float()
    rows, _ = squared_sweep_(W32, gin, grad=G.float(), row_factor=row_factor, col_factor=col_factor, lr=0.1)
    torch.testing.assert_close(W32.double(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(rows, (W32.double() ** 2) @ gin, rtol=1e-12, atol=0)
    assert not torch.isfinite(row_factor.float()).all()


def test_mixed_vector_dtypes_are_refused():
    W = torch.randn(3, 4)
    with pytest.raises(ValueError, match="share one dtype"):
        squared_sweep_(W, torch.ones(4, dtype=torch.float64), torch.ones(3))
    with pytest.raises((ValueError, RuntimeError), match="float64"):
        squared_sweep_(W.double(), torch.ones(4))
