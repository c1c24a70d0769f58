"""`plainrnn reproduce step-scales`: the factor s/κ that multiplies a Path-SGD step, at a run's init."""
import subprocess
import sys

import torch

from plainrnn.experiments.step_scales import step_scales
from plainrnn.optim import PathSGD
from plainrnn.tasks import make_task
from plainrnn.train import RunConfig
from plainrnn.train.build import build_model, init_generator


def test_factors_are_the_ones_path_sgd_applies():
    cfg = RunConfig(task="adding", seq_len=12, hidden=6, seed=3, optimizer="path-sgd", lr=1e-3)
    result = step_scales(cfg)
    # The oracle: one PathSGD step on the same init with ∂L/∂p = 1 moves p_i by exactly lr · s/κ_i.
    model = build_model(cfg, make_task("adding", 12).spec, init_generator(cfg.seed))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = PathSGD(model, lr=1.0, seq_len=12)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    for name, p in model.named_parameters():
        moved = (before[name] - p.detach()).double().flatten()
        r = result["params"][name]
        assert r["shape"] == list(p.shape)
        assert torch.allclose(torch.tensor([r["min"], r["median"], r["max"]], dtype=torch.float64),
                              torch.stack([moved.min(), moved.median(), moved.max()]), rtol=1e-5), name


def test_cli_prints_the_table_and_rejects_bad_keys():
    ok = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "step-scales", "--set", "seq_len=10",
                         "--set", "hidden=5"], capture_output=True, text=True, check=True)
    assert "| weight_hh_l0 | 5×5 |" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "step-scales", "--set", "hidden=x"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "plainrnn reproduce: error: hidden must be an int, got 'x'"


def test_invariance_gap_separates_exact_invariance_from_the_rounding_control():
    """`reproduce invariance-gap` on a small MLP: in float64 the unbalanced Path-SGD run stays at
    rounding distance from the balanced one, while the control nudged by 1e-7 stays ~1e-7 away."""
    from plainrnn.experiments.invariance_gap import invariance_gap, to_markdown
    from plainrnn.train.config import load_config
    cfg = load_config(None, dict(task="mnist", model="mlp", hidden=16, layers=2, lr=1e-3, batch_size=20,
                                 steps=10, seed=1))
    rows = {(r["dtype"], r["partner"]): r["gaps"] for r in invariance_gap(cfg)}
    assert max(rows[("float64", "unbalanced")].values()) < 1e-12
    assert min(rows[("float64", "nudged by 1e-7")].values()) > 1e-9
    assert "| float64 | unbalanced |" in to_markdown(list(dict(dtype=d, partner=p, gaps=g) for (d, p), g in rows.items()))
