"""The cases `plainrnn bench` times: each builds both sides (ours, the baseline) on the same shapes.

A case is a function of ``quick`` returning two zero-argument callables, one step each; :data:`CASES`
is the one registry of their names (the targets are :data:`~plainrnn.experiments.bench.TARGETS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..nets import MLP, ReLURNN, SpectralRNN
from ..optim import PathNormalized, PathSGD, spectral_optimizer
from ..path import unbalance_
from ..tasks import copy_batch


def _rnn_step(model, optimizer, x, y, loss_fn):
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
    return step


def _ce(out, y):
    return torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _rnn_pair(H, T, B, ours_opt: Callable, base_opt: Callable, inputs=1, outputs=10):
    torch.manual_seed(0)
    a = ReLURNN(inputs, H, outputs)
    b = ReLURNN(inputs, H, outputs)
    b.load_state_dict(a.state_dict())
    x, y = torch.rand(B, T, inputs), torch.randint(outputs, (B,))
    return _rnn_step(a, ours_opt(a, T), x, y, _ce), _rnn_step(b, base_opt(b), x, y, _ce)


def _path_sgd_shapes(quick):
    """H, T, B of the path_sgd_overhead case (ReLURNN, 1 input, 10 outputs)."""
    return (50, 50, 10) if quick else (100, 784, 100)


def case_path_sgd(quick):
    H, T, B = _path_sgd_shapes(quick)
    return _rnn_pair(H, T, B, lambda m, T: PathSGD(m, lr=1e-4, seq_len=T),
                     lambda m: torch.optim.SGD(m.parameters(), lr=1e-4))


def case_path_adam(quick):
    H, T, B = _path_sgd_shapes(quick)
    return _rnn_pair(H, T, B, lambda m, T: PathNormalized(torch.optim.Adam, m, seq_len=T, lr=1e-4),
                     lambda m: torch.optim.Adam(m.parameters(), lr=1e-4))


def case_path_sgd_safeguard(quick):
    # The adding problem's shapes, where the safeguard is meant to run; lr small enough that no step is
    # undone, so the row times the check itself: the saved weights, and the next step's κ pass run early.
    H, T, B = (50, 30, 10) if quick else (100, 100, 50)
    return _rnn_pair(H, T, B, lambda m, T: PathSGD(m, lr=1e-4, seq_len=T, max_path_growth=0.1),
                     lambda m: PathSGD(m, lr=1e-4, seq_len=T))


def case_path_sgd_unit_step(quick):
    # Ours at an lr where units are limited at every step, so the row times the limiting itself; the
    # baseline at one small enough to stay finite (an exploded run would time arithmetic on inf).
    H, T, B = (50, 30, 10) if quick else (100, 100, 50)
    return _rnn_pair(H, T, B, lambda m, T: PathSGD(m, lr=1e-1, seq_len=T, max_unit_step=0.01),
                     lambda m: PathSGD(m, lr=1e-4, seq_len=T))


def case_kappa2(quick):
    H, T, B = (50, 30, 10) if quick else (100, 100, 50)
    return _rnn_pair(H, T, B, lambda m, T: PathSGD(m, lr=1e-4, seq_len=T, second_order=True),
                     lambda m: torch.optim.SGD(m.parameters(), lr=1e-4))


def case_cayley(H_full, method="auto"):
    def build(quick):
        T, B = (20, 10) if quick else (100, 50)
        H = H_full // 8 if quick else H_full  # --quick checks the harness, not the numbers
        torch.manual_seed(0)
        x, y = copy_batch(B, T)
        spectral = SpectralRNN(10, H, 9, margin=0.1, nonlinearity="relu", output="all")
        plain = ReLURNN(10, H, 9, output="all")
        ours = _rnn_step(spectral, spectral_optimizer(spectral, lr=1e-4, orth_lr=1e-6, orth_method=method,
                                                      optimizer_cls=torch.optim.SGD), x, y, _ce)
        base = _rnn_step(plain, torch.optim.SGD(plain.parameters(), lr=1e-4), x, y, _ce)
        return ours, base
    return build


def case_spectral_nonlinearity(nonlinearity):
    def build(quick):
        T, B, H = (30, 10, 16) if quick else (220, 50, 128)
        torch.manual_seed(0)
        x, y = copy_batch(B, T)
        sides = []
        for kind in (nonlinearity, "tanh"):
            # the baseline stays torch's fused tanh kernel, what these rows have always measured against
            model = SpectralRNN(10, H, 9, margin=0.1, nonlinearity=kind, output="all", learn_slope=kind == "prelu",
                                recurrence="torch")
            sides.append(_rnn_step(model, spectral_optimizer(model, lr=1e-4, orth_lr=1e-6), x, y, _ce))
        return tuple(sides)
    return build


def case_relurnn_vs_torch(quick):
    H, T, B = _path_sgd_shapes(quick)
    torch.manual_seed(0)
    ours = ReLURNN(1, H, 10)
    rnn, head = torch.nn.RNN(1, H, nonlinearity="relu", batch_first=True), torch.nn.Linear(H, 10)
    with torch.no_grad():  # the same weights on both sides: same activations, same (de)normal arithmetic
        rnn.weight_ih_l0.copy_(ours.weight_ih_l0)
        rnn.weight_hh_l0.copy_(ours.weight_hh_l0)
        rnn.bias_ih_l0.copy_(ours.bias_l0)
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(ours.weight_out)
        head.bias.copy_(ours.bias_out)
    x = torch.rand(B, T, 1)

    def run_ours():
        ours.zero_grad(set_to_none=True)
        ours(x).sum().backward()

    def run_torch():
        rnn.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        head(rnn(x)[0][:, -1]).sum().backward()
    return run_ours, run_torch


def case_recurrence(T, B, H, inputs, outputs, nonlinearity="relu"):
    """ReLURNN forward + backward on our kernel (recurrence="plainrnn") against the same model on torch's
    fused one, the same weights on both sides; the loss of the task whose shapes these are."""
    def build(quick):
        t, b, h = (60, 8, 16) if quick else (T, B, H)
        torch.manual_seed(0)
        ours = ReLURNN(inputs, h, outputs, nonlinearity=nonlinearity)
        theirs = ReLURNN(inputs, h, outputs, nonlinearity=nonlinearity, recurrence="torch")
        theirs.load_state_dict(ours.state_dict())
        x = torch.rand(b, t, inputs)
        y = torch.rand(b, 1) if outputs == 1 else torch.randint(outputs, (b,))
        loss_fn = torch.nn.functional.mse_loss if outputs == 1 else torch.nn.functional.cross_entropy

        def side(model):
            def run():
                model.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
            return run
        return side(ours), side(theirs)
    return build


def case_mlp(kappa_every=1, fused=None, unbalanced=False):
    def build(quick):
        sizes, B = ((784, [256, 256], 10), 50) if quick else ((784, [4000, 4000], 10), 100)
        torch.manual_seed(0)
        a = MLP(*sizes)
        b = MLP(*sizes)
        b.load_state_dict(a.state_dict())
        if unbalanced:  # units rescaled by up to ~10^27: factors s/κ far outside float32 (the wide route)
            # 2000 picks over 8000 units, as in the paper; the same share of the quick shapes' units
            unbalance_(a, units=sum(sizes[1]) // 4, generator=torch.Generator().manual_seed(7920))
            if not all(torch.isfinite(p).all() for p in a.parameters()):
                raise RuntimeError("the bench's unbalanced init overflowed float32; pick another generator seed")
        x, y = torch.rand(B, 784), torch.randint(10, (B,))
        ce = torch.nn.functional.cross_entropy
        return (_rnn_step(a, PathSGD(a, lr=1e-3, kappa_every=kappa_every, fused=fused), x, y, ce),
                _rnn_step(b, torch.optim.SGD(b.parameters(), lr=1e-3), x, y, ce))
    return build


@dataclass(frozen=True)
class Case:
    """A bench row: the ratio's target (ours / baseline must stay below it), what it measures, the
    function of ``quick`` that builds both sides (None: the memory row, measured in fresh processes), and
    the torch threads it runs on (None: the bench's own)."""

    target: float
    what: str
    build: Callable | None
    threads: int | None = None


# The one registry of bench cases; the paper's own figures are in docs/performance.md.
BENCH = {
    "path_sgd_overhead": Case(1.10, "PathSGD (κ1) step / SGD step, ReLURNN H=100 T=784 B=100, 1 in, 10 out", case_path_sgd),
    "path_adam_overhead": Case(1.10, "PathNormalized(Adam) step / Adam step, same shapes", case_path_adam),
    "path_sgd_safeguard_overhead": Case(1.05, "PathSGD(max_path_growth=0.1) step / PathSGD step, ReLURNN H=100 T=100 "
                                          "B=50 (the adding problem's shapes)", case_path_sgd_safeguard),
    "path_sgd_unit_step_overhead": Case(1.05, "PathSGD(max_unit_step=0.01) step / PathSGD step, the adding "
                                          "problem's shapes (H=100 T=100 B=50)", case_path_sgd_unit_step),
    "kappa2_overhead": Case(3.0, "PathSGD with κ2 step / SGD step, H=100 T=100 B=50", case_kappa2),
    "cayley_overhead_128": Case(1.10, "SpectralRNN + geodesic steps / plain RNN + SGD, copy T=100, B=50, H=128", case_cayley(128)),
    "cayley_overhead_500": Case(1.20, "same, H=500", case_cayley(500)),
    "cayley_overhead_1000": Case(1.30, "same, H=1000", case_cayley(1000)),
    # The geodesic steps above take the Neumann-series route, exact to rounding at the paper's lr 1e-6;
    # these force one LU solve per step (what a large geodesic lr needs), against the same targets.
    "cayley_solve_overhead_128": Case(1.10, "as cayley_overhead_128, every geodesic step an LU solve", case_cayley(128, "solve")),
    "cayley_solve_overhead_500": Case(1.20, "as cayley_overhead_500, every geodesic step an LU solve", case_cayley(500, "solve")),
    "cayley_solve_overhead_1000": Case(1.30, "as cayley_overhead_1000, every geodesic step an LU solve", case_cayley(1000, "solve")),
    "relurnn_vs_torch": Case(1.05, "ReLURNN fwd+bwd / torch.nn.RNN(relu)+Linear fwd+bwd, H=100 T=784 B=100", case_relurnn_vs_torch),
    "mlp_path_sgd_overhead": Case(1.05, "PathSGD step / SGD step, MLP 784-4000-4000-10, B=100", case_mlp()),
    "mlp_path_sgd_kappa_every_10_overhead": Case(1.05, "as mlp_path_sgd_overhead, κ recomputed every 10 steps", case_mlp(kappa_every=10)),
    # The headline MLP row takes the fused C++ step; this one forces the torch-ops route it replaces.
    "mlp_path_sgd_unfused_overhead": Case(1.05, "as mlp_path_sgd_overhead, PathSGD(fused=False)", case_mlp(fused=False)),
    "mlp_path_sgd_unbalanced_overhead": Case(1.05, "as mlp_path_sgd_overhead, PathSGD on the 2015 paper's unbalanced "
                                               "init (the wide float64-factor route) / SGD on the balanced one", case_mlp(unbalanced=True)),
    # The copy task as the 2017 paper runs it (no transition nonlinearity): the custom recurrence
    # (plainrnn.nets.recurrence) against the fused tanh kernel, a full training step with geodesic steps.
    "spectral_none_vs_tanh": Case(1.20, "SpectralRNN(nonlinearity='none') step / the same with tanh (fused kernel), "
                                    "copy T=220, B=50, H=128", case_spectral_nonlinearity("none")),
    "spectral_oplu_vs_tanh": Case(1.20, "as spectral_none_vs_tanh with OPLU", case_spectral_nonlinearity("oplu")),
    "spectral_prelu_vs_tanh": Case(1.20, "as spectral_none_vs_tanh with a learnable PReLU", case_spectral_nonlinearity("prelu")),
    # Our ReLU/tanh recurrence (plainrnn.nets.recurrence.rnn_layer) against torch's fused CPU kernel, the
    # model's forward and backward: the adding problem's longest T (2016 Table 2) at batch 50 and 16, and
    # sequential MNIST's shapes; one thread, as the sweeps run, and two.
    "recurrence_adding_b50": Case(0.6, "ReLURNN fwd+bwd on our recurrence / on torch's fused kernel, adding T=750 "
                                       "B=50 H=100, 1 thread", case_recurrence(750, 50, 100, 2, 1), threads=1),
    "recurrence_adding_b16": Case(0.6, "as recurrence_adding_b50 at B=16", case_recurrence(750, 16, 100, 2, 1), threads=1),
    "recurrence_adding_b50_tanh": Case(0.6, "as recurrence_adding_b50 with tanh units",
                                       case_recurrence(750, 50, 100, 2, 1, "tanh"), threads=1),
    "recurrence_smnist_h100": Case(0.6, "as recurrence_adding_b50 at sMNIST's shapes, T=784 B=50 H=100, 10 classes",
                                   case_recurrence(784, 50, 100, 1, 10), threads=1),
    "recurrence_smnist_h128": Case(0.6, "as recurrence_smnist_h100 with H=128", case_recurrence(784, 50, 128, 1, 10),
                                   threads=1),
    "recurrence_adding_b50_2threads": Case(0.6, "as recurrence_adding_b50 on 2 threads",
                                           case_recurrence(750, 50, 100, 2, 1), threads=2),
    "recurrence_smnist_h128_2threads": Case(0.6, "as recurrence_smnist_h128 on 2 threads",
                                            case_recurrence(784, 50, 128, 1, 10), threads=2),
    "path_sgd_peak_memory": Case(1.10, "peak RSS of PathSGD steps / SGD steps at path_sgd_overhead shapes", None),
}
