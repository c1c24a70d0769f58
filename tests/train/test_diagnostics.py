import json

import pytest
import torch

import plainrnn as pr
from plainrnn.experiments.plots import plot_hidden_gradients, plot_spectrum, run_figures
from plainrnn.train import RunConfig, train
from plainrnn.train.diagnostics import hidden_gradient_norms, spectral_stats


def test_hidden_gradient_norms_match_a_manual_loop():
    model = pr.ReLURNN(2, 5, 1, nonlinearity="tanh").double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.8, 0.8)
    x, y = torch.randn(4, 6, 2, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
    loss_fn = torch.nn.functional.mse_loss
    got = hidden_gradient_norms(model, x, y, loss_fn)
    h = torch.zeros(4, 5, dtype=torch.float64)
    states = []
    for t in range(6):
        h = torch.tanh(x[:, t] @ model.weight_ih_l0.t() + h @ model.weight_hh_l0.t() + model.bias_l0)
        h.retain_grad()
        states.append(h)
    loss_fn(h @ model.weight_out.t() + model.bias_out, y).backward()
    expected = [s.grad.norm().item() for s in states]
    assert len(got) == 6
    for a, b in zip(got, expected):
        assert abs(a - b) <= 1e-12 * max(1.0, b)


def test_with_an_output_at_every_step_only_the_last_outputs_loss_reaches_back():
    """Fig. 2 of the 2017 paper: "the gradient of the loss from the last time step". The copy task's
    loss over every output would be a different measure (each h_t's own output dominates it)."""
    torch.manual_seed(0)
    model = pr.SpectralRNN(3, 6, 4, margin=0.1, nonlinearity="none", output="all").double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    y = torch.randint(4, (2, 7))
    loss_fn = lambda out, tgt: torch.nn.functional.cross_entropy(out.flatten(0, 1), tgt.flatten())  # noqa: E731
    got = hidden_gradient_norms(model, x, y, loss_fn)
    states = model.unrolled_states(x)
    last = torch.nn.functional.cross_entropy(model.read_out(states[-1]), y[:, -1])
    expected = [g.norm().item() for g in torch.autograd.grad(last, states, retain_graph=True)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    every = torch.nn.functional.cross_entropy(model.read_out(torch.stack(states, 1)).flatten(0, 1), y.flatten())
    other = [g.norm().item() for g in torch.autograd.grad(every, states)]
    assert got != pytest.approx(other, rel=1e-3)


def test_spectral_stats_and_figures(tmp_path):
    model = pr.SpectralRNN(2, 6, 1, margin=0.2).double()
    model.reset_parameters()
    with torch.no_grad():
        model.spectrum_l0.copy_(torch.linspace(-3, 3, 6, dtype=torch.float64))
    stats = spectral_stats(model)
    s = model.singular_values(0).detach()
    assert abs(stats["sv_min"] - s.min().item()) < 1e-12 and abs(stats["sv_max"] - s.max().item()) < 1e-12
    assert stats["orth_error"] < 1e-12
    plain = pr.ReLURNN(2, 3, 1).double()  # a plain W: its spectrum (Fig. 4, left), no factors to check
    with torch.no_grad():
        plain.weight_hh(0).copy_(torch.diag(torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)))
    assert spectral_stats(plain) == pytest.approx(dict(sv_min=0.5, sv_max=2.0, sv_mean=3.5 / 3, sv_std=(7 / 12) ** 0.5))  # unbiased std
    assert spectral_stats(pr.LSTM(2, 3, 1)) == {}
    s = train(RunConfig(task="adding", model="spectral", margin=0.1, optimizer="rmsprop", seq_len=8, hidden=8,
                        steps=12, eval_every=4, grad_norms_every=5, out=str(tmp_path)), progress=False)
    run = tmp_path / s["run_dir"].split("/")[-1]
    assert not (run / "spectrum.png").exists()  # train() draws nothing: the layer above does
    assert sorted(p.name for p in run_figures(run)) == ["grad_norms.png", "spectrum.png"]
    rows = [json.loads(l) for l in open(run / "grad_norms.jsonl")]
    assert [r["step"] for r in rows] == [1, 5, 10] and all(len(r["norms"]) == 8 for r in rows)
    for name in ("spectrum.png", "grad_norms.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
    assert plot_hidden_gradients(rows, tmp_path / "g.png").exists()
    assert plot_spectrum([json.loads(l) for l in open(run / "metrics.jsonl")], tmp_path / "s.png").exists()
