"""`plainrnn demo`: the adding problem at T=100, four setups side by side, in about 3 minutes.

The setups train at once, one process each with one torch thread (a T=100, H=100, B=50 step does not
gain from a second thread, so two cores run two setups in the time of one). Each is its method at the
best setting that the adding study found (docs/results.md, `plainrnn reproduce adding-study`).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from pathlib import Path

from ..tasks import ADDING_BASELINE_MSE
from ..train import RunConfig
from .plots import plot_learning_curves, read_metrics
from .report import steps_to_reach

# label, settings: IRNN+SGD is the 2016 paper's baseline; Adam, Path-SGD and Adam on path-normalized
# gradients are the contenders, each at its best setting in the adding study (docs/results.md): the
# raw-gradient methods with clipping at 1, Path-SGD with the per-unit trust region instead (invariant).
DEMO_SETUPS = (
    ("IRNN + SGD", dict(optimizer="sgd", lr=1e-2, clip=1.0)),
    ("ReLU RNN + Adam", dict(optimizer="adam", lr=1e-3, clip=1.0)),
    ("ReLU RNN + Path-SGD", dict(optimizer="path-sgd", lr=1e-2, max_unit_step=0.01)),
    ("ReLU RNN + Path-Adam", dict(optimizer="path-adam", lr=1e-4, clip=1.0)),
)
# What the study found: data, not code; docs/results.md shows the same text (tests/experiments/test_results.py).
FINDINGS_FILE = Path(__file__).parent / "findings" / "adding_study.md"
DEMO_STEPS = 6000
SOLVED = 0.01  # the 2016 paper's "0" (its Table 2 is MSE×100)


def _config(settings: dict, steps: int, out: str) -> RunConfig:
    return RunConfig(task="adding", seq_len=100, hidden=100, init="identity", input_scale=0.01, batch_size=50,
                     steps=steps, eval_every=max(1, steps // 25), seed=0, out=str(Path(out) / "demo"),
                     name=settings["optimizer"], **settings)


def _train_one(config: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    from ..train import train
    return train(RunConfig(**config), progress=False)


def run_demo(out: str = "runs", steps: int | None = None, quiet: bool = False) -> int:
    steps = steps or DEMO_STEPS
    start = time.perf_counter()
    if not quiet:
        print(f"training {len(DEMO_SETUPS)} setups on the adding problem (T = 100), {steps} steps each, side by "
              f"side ...", flush=True)
    configs = {label: _config(settings, steps, out) for label, settings in DEMO_SETUPS}
    summaries = {}
    with cf.ProcessPoolExecutor(min(len(configs), os.cpu_count() or 1), mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, cfg.to_dict()): label for label, cfg in configs.items()}
        for fut in cf.as_completed(futures):
            label = futures[fut]
            summaries[label] = fut.result()
            if not quiet:
                print(f"  {label}: done after {time.perf_counter() - start:.0f} s", flush=True)
    curves = {label: read_metrics(summaries[label]["run_dir"]) for label in configs}
    png = plot_learning_curves(curves, Path(out) / "demo" / "learning_curves.png", ylabel="test MSE",
                               title="Adding problem, T = 100, H = 100 (clipping at 1)",
                               baseline=ADDING_BASELINE_MSE)
    print()
    print(f"{'setup':<24} {'lr':>7} {'test MSE':>10} {'best valid':>11} {'test ≤ 0.01 at':>15} {'time':>7}")
    for label, settings in DEMO_SETUPS:
        lr = settings["lr"]
        s = summaries[label]
        solved = steps_to_reach(Path(s["run_dir"]), SOLVED, lower_is_better=True)
        status = (f"div@{s['diverged_step']}" if s["diverged"] else "not yet" if solved is None
                  else f"step {solved}")
        test = "nan" if s["diverged"] else f"{s['test_metric']:.4f}"
        best = "-" if s["best_valid_metric"] is None else f"{s['best_valid_metric']:.4f}"
        print(f"{label:<24} {lr:>7g} {test:>10} {best:>11} {status:>15} {s['wall_s']:>6.1f}s")
    print(f"baseline (always predict 1): MSE {ADDING_BASELINE_MSE:.3f}; the papers' 'solved' is test MSE below {SOLVED:g}")
    print("Every setup first learns the mean (the 0.167 plateau); Adam leaves it within a few thousand steps.")
    print(FINDINGS_FILE.read_text().rstrip())
    print(f"learning curves: {png}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0
