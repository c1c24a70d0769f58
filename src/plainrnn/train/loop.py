"""The training loop, readable top to bottom.

task → batch → model → loss → backward → (clip) → optimizer → metrics.jsonl → checkpoint.
A non-finite loss or gradient norm ends the run as ``diverged`` with the step and the reason.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..stiefel import recurrent_penalty
from ..tasks import make_task
from .diagnostics import hidden_gradient_norms, spectral_stats
from .build import build_model, build_optimizer
from .checkpoint import save_checkpoint, write_json
from .config import RunConfig


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl``, flushed at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def train(cfg: RunConfig, progress: bool | None = None) -> dict:
    """Runs one configuration; returns the summary (also written to ``<run dir>/summary.json``)."""
    cfg.validate()
    torch.manual_seed(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    init_gen = torch.Generator().manual_seed(cfg.seed + 7919)  # init and data streams independent
    task = make_task(cfg.task, cfg.seq_len, cfg.data_dir)
    spec = task.spec
    model = build_model(cfg, spec, init_gen)
    optimizer = build_optimizer(cfg, model, spec.seq_len)

    run_dir = Path(cfg.out) / cfg.run_name()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", cfg.to_dict())
    log = MetricsLog(run_dir / "metrics.jsonl")
    for name, artifact in getattr(task, "artifacts", dict)().items():
        save_checkpoint(run_dir / name, artifact)  # e.g. pmnist's permutation, saved with the run
    grad_log = MetricsLog(run_dir / "grad_norms.jsonl") if cfg.grad_norms_every else None

    penalized = bool(cfg.orth_penalty or cfg.sv_prior or cfg.weight_decay)
    start = time.perf_counter()
    diverged, diverged_step, reason = False, None, None
    best_valid, last_eval = None, {}
    bar = tqdm(range(1, cfg.steps + 1), desc=cfg.run_name(), disable=progress is False or None,
               leave=False, dynamic_ncols=True) if progress is not False else range(1, cfg.steps + 1)
    for step in bar:
        model.train()
        x, y = task.train_batch(cfg.batch_size, data_gen)
        loss = task.loss(model(x), y)
        if penalized:
            loss = loss + recurrent_penalty(model, orth=cfg.orth_penalty, sv_prior=cfg.sv_prior,
                                            weight_decay=cfg.weight_decay)
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(loss.item()):
            diverged, diverged_step, reason = True, step, f"non-finite loss ({loss.item()})"
            break
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip or math.inf).item()
        if not math.isfinite(grad_norm):
            diverged, diverged_step, reason = True, step, f"non-finite gradient norm ({grad_norm})"
            break
        optimizer.step()

        if grad_log is not None and (step % cfg.grad_norms_every == 0 or step == 1):
            # Figure 2 of the 2017 paper: how the loss gradient reaches back through time.
            grad_log.write(dict(step=step, norms=hidden_gradient_norms(model, x, y, task.loss)))
            model.zero_grad(set_to_none=True)

        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            valid_loss, valid_metric = task.evaluate(model, "valid", limit=cfg.eval_limit)
            test_loss, test_metric = task.evaluate(model, "test", limit=cfg.eval_limit)
            last_eval = dict(step=step, train_loss=loss.item(), grad_norm=grad_norm, valid_loss=valid_loss,
                             valid_metric=valid_metric, test_loss=test_loss, test_metric=test_metric,
                             wall_s=round(time.perf_counter() - start, 3))
            last_eval.update(spectral_stats(model))
            log.write(last_eval)
            if isinstance(bar, tqdm):
                bar.set_postfix(test=f"{test_metric:.4g}")
            if not (math.isfinite(valid_loss) and math.isfinite(test_loss)):
                diverged, diverged_step, reason = True, step, "non-finite evaluation loss"
                break
            better = best_valid is None or (valid_metric < best_valid if spec.lower_is_better else valid_metric > best_valid)
            if better:
                best_valid = valid_metric
    if isinstance(bar, tqdm):
        bar.close()

    summary = dict(task=cfg.task, model=cfg.model, optimizer=cfg.optimizer, lr=cfg.lr, seed=cfg.seed,
                   seq_len=spec.seq_len, steps=last_eval.get("step", 0) if not diverged else diverged_step,
                   metric=spec.metric_name, baseline=spec.baseline,
                   test_loss=last_eval.get("test_loss", float("nan")) if not diverged else float("nan"),
                   test_metric=last_eval.get("test_metric", float("nan")) if not diverged else float("nan"),
                   valid_metric=last_eval.get("valid_metric", float("nan")) if not diverged else float("nan"),
                   best_valid_metric=best_valid, diverged=diverged, diverged_step=diverged_step,
                   diverged_reason=reason, wall_s=round(time.perf_counter() - start, 3),
                   run_dir=str(run_dir))
    if diverged:
        log.write(dict(step=diverged_step, diverged=True, reason=reason))
    save_checkpoint(run_dir / "checkpoint.pt", dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                                                    config=cfg.to_dict(), step=summary["steps"]))
    write_json(run_dir / "summary.json", summary)
    _figures(run_dir, grad_log is not None)
    return summary


def _figures(run_dir: Path, with_grad_norms: bool) -> None:
    """spectrum.png for spectral runs (Fig. 3 of the 2017 paper), grad_norms.png when recorded (Fig. 2)."""
    from ..experiments.plots import plot_hidden_gradients, plot_spectrum, read_metrics
    records = read_metrics(run_dir)
    if any("sv_mean" in r for r in records):
        plot_spectrum(records, run_dir / "spectrum.png")
    if with_grad_norms:
        rows = [json.loads(line) for line in (run_dir / "grad_norms.jsonl").read_text().splitlines() if line]
        if rows:
            plot_hidden_gradients(rows, run_dir / "grad_norms.png")
