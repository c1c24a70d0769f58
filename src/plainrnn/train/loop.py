"""The training loop, readable top to bottom.

task → batch → model → loss → backward → (clip) → optimizer → metrics.jsonl → checkpoint.

- A non-finite loss or gradient norm ends the run as ``diverged`` with the step and the reason.
- Every ``checkpoint_every`` steps the model, optimizer, step and every RNG state are written
  atomically, so ``resume(run_dir)`` continues to the same numbers as an uninterrupted run and
  metrics already written are neither lost nor duplicated.
- Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel over gloo;
  every rank draws the same global batch and trains on its slice, so the result equals one process
  on the whole batch. Only rank 0 writes files.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..stiefel import recurrent_penalty
from ..tasks import make_task
from .build import build_model, build_optimizer, init_generator
from .checkpoint import load_checkpoint, save_checkpoint, write_json, write_text
from .config import RunConfig
from .diagnostics import hidden_gradient_norms, spectral_stats


class MetricsLog:
    """Appends one JSON object per line to a .jsonl file, flushed at once."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until_step is None:
            self.path.write_text("")
        else:  # resuming: keep what the checkpoint covers, drop what will be recomputed
            kept = [line for line in (self.path.read_text().splitlines() if self.path.exists() else [])
                    if line.strip() and json.loads(line).get("step", 0) <= keep_until_step]
            write_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def gradient_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """‖(g_1, …, g_n)‖_2 in the gradients' dtype, or in float64 when that overflows but every gradient
    is finite: squares of float32 gradients overflow from about 1e19, and the 2015 paper's unbalanced
    MLPs have gradients of 1e27. Those are large, not diverged."""
    norm = torch.nn.utils.get_total_norm(grads)
    if torch.isfinite(norm) or torch.isnan(norm):
        return norm
    # An infinite norm: an overflow of the squares, or an infinite entry (which stays infinite below).

    def scaled_norm(g: torch.Tensor) -> torch.Tensor:
        # ‖g‖ = 2^k·‖2^-k g‖: a power of two scales exactly, and one float32 pass is cheap (a float64
        # cast of a 16M-entry gradient took as long as the forward and backward passes together).
        norm = torch.linalg.vector_norm(g).double()
        for k in (64, 96, 120):
            if torch.isfinite(norm):
                break
            norm = torch.linalg.vector_norm(g * 2.0 ** -k).double() * 2.0 ** k
        return norm

    return torch.linalg.vector_norm(torch.stack([scaled_norm(g) for g in grads]))


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (cuda when torch sees a GPU, else cpu), checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name}: this torch sees no CUDA GPU (a CPU build, or no driver); "
                             "use --device cpu or auto")
        index = int(name[5:]) if name.startswith("cuda:") else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def train(cfg: RunConfig, progress: bool | None = None, resume_from: Path | None = None,
          stop_after: int | None = None) -> dict:
    """Runs one configuration; returns the summary (also written to ``<run dir>/summary.json``).

    ``resume_from``: a run directory with a checkpoint to continue. ``stop_after``: stop (as if
    killed) after that many steps, leaving the last periodic checkpoint (used by tests)."""
    cfg.validate()
    rank, world = _distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed)  # batches are drawn on the CPU, then moved
    init_gen = init_generator(cfg.seed)
    task = make_task(cfg.task, cfg.seq_len, cfg.data_dir, full_train=cfg.full_train)
    spec = task.spec
    model = build_model(cfg, spec, init_gen).to(device)  # initialized on the CPU: the same numbers anywhere
    optimizer = build_optimizer(cfg, model, spec.seq_len)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    run_dir = Path(resume_from) if resume_from else Path(cfg.out) / cfg.run_name()
    first_step, best_valid, elapsed = 1, None, 0.0
    if resume_from:
        ckpt = load_checkpoint(run_dir / "checkpoint.pt")
        missing = [k for k in ("model", "optimizer", "data_rng", "torch_rng", "step") if k not in ckpt]
        if missing:
            raise ValueError(f"{run_dir / 'checkpoint.pt'}: cannot resume exactly, the checkpoint lacks "
                             f"{', '.join(missing)} (written by an older plainrnn?); start the run again")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        data_gen.set_state(ckpt["data_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        first_step, best_valid, elapsed = ckpt["step"] + 1, ckpt["best_valid"], ckpt.get("elapsed", 0.0)
    writer = rank == 0
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict())
        _write_yaml(run_dir / "config.yaml", cfg.to_dict())
        keep = first_step - 1 if resume_from else None
        log = MetricsLog(run_dir / "metrics.jsonl", keep)
        grad_log = MetricsLog(run_dir / "grad_norms.jsonl", keep) if cfg.grad_norms_every else None
        for name, artifact in getattr(task, "artifacts", dict)().items():
            save_checkpoint(run_dir / name, artifact)  # e.g. pmnist's permutation, saved with the run
        board = _tensorboard(run_dir) if cfg.tensorboard else None
    else:
        log = grad_log = board = None

    def checkpoint(step: int) -> None:
        if writer:
            save_checkpoint(run_dir / "checkpoint.pt", dict(
                model=model.state_dict(), optimizer=optimizer.state_dict(), data_rng=data_gen.get_state(),
                torch_rng=torch.get_rng_state(), step=step, best_valid=best_valid, config=cfg.to_dict(),
                elapsed=elapsed + time.perf_counter() - start))

    penalized = bool(cfg.orth_penalty or cfg.sv_prior or cfg.weight_decay)
    checkpoint_every = cfg.checkpoint_every or cfg.eval_every
    start = time.perf_counter()
    diverged, diverged_step, reason = False, None, None
    last_eval: dict = {}
    steps = range(first_step, cfg.steps + 1)
    bar = tqdm(steps, desc=cfg.run_name(), leave=False, dynamic_ncols=True, initial=first_step - 1,
               total=cfg.steps, disable=None) if (progress is not False and writer) else steps
    share = cfg.batch_size // world
    for step in bar:
        model.train()
        x, y = task.train_batch(cfg.batch_size, data_gen)  # the same global batch on every rank
        x, y = x.to(device), y.to(device)
        if world > 1:
            x, y = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
        loss = task.loss(net(x), y)
        if penalized:
            loss = loss + recurrent_penalty(model, orth=cfg.orth_penalty, sv_prior=cfg.sv_prior,
                                            weight_decay=cfg.weight_decay)
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(loss.item()):
            diverged, diverged_step, reason = True, step, f"non-finite loss ({loss.item()})"
            break
        loss.backward()
        # The norm is needed every step (divergence guard, metrics); the scaling pass only when clipping.
        # clip_grad_norm_(…, inf) would multiply every gradient by 1.
        norm = gradient_norm([p.grad for p in model.parameters() if p.grad is not None])
        if cfg.clip:
            torch.nn.utils.clip_grads_with_norm_(model.parameters(), cfg.clip, norm)
        grad_norm = norm.item()
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
                             wall_s=round(elapsed + time.perf_counter() - start, 3))
            if "path_backtracks" in optimizer.param_groups[0]:  # the γ² safeguard's halvings so far
                last_eval["path_backtracks"] = optimizer.param_groups[0]["path_backtracks"]
                last_eval["path_unit_clips"] = optimizer.param_groups[0].get("path_unit_clips", 0)
            if getattr(task, "train_size", None):  # image sets: curves against epochs, as the papers draw them
                last_eval["epoch"] = round(step * cfg.batch_size / task.train_size, 4)
            if cfg.eval_train:  # the 2015 paper's panels: training cross-entropy and training error
                last_eval["train_eval_loss"], last_eval["train_eval_metric"] = task.evaluate(
                    model, "train", limit=cfg.eval_limit)
            last_eval.update(spectral_stats(model))
            if log is not None:
                log.write(last_eval)
            if board is not None:
                for key in ("train_loss", "valid_metric", "test_metric", "grad_norm"):
                    board.add_scalar(key, last_eval[key], step)
            if isinstance(bar, tqdm):
                bar.set_postfix(test=f"{test_metric:.4g}")
            if not (math.isfinite(valid_loss) and math.isfinite(test_loss)):
                diverged, diverged_step, reason = True, step, "non-finite evaluation loss"
                break
            if valid_loss > cfg.diverge_above:
                # A finite but astronomical loss (a Path-SGD step that blew up a unit gives 1e12 on the
                # adding problem) is a divergence too; the tasks' losses are O(1) at init.
                diverged, diverged_step = True, step
                reason = f"exploded: validation loss {valid_loss:.3g} > diverge_above {cfg.diverge_above:g}"
                break
            if best_valid is None or (valid_metric < best_valid if spec.lower_is_better else valid_metric > best_valid):
                best_valid = valid_metric
        if step % checkpoint_every == 0:
            checkpoint(step)
        if stop_after is not None and step >= stop_after:
            if isinstance(bar, tqdm):
                bar.close()
            return dict(stopped_at=step, run_dir=str(run_dir))
    if isinstance(bar, tqdm):
        bar.close()

    if not last_eval and log is not None and log.path.exists():  # resumed right at the end
        lines = [json.loads(line) for line in log.path.read_text().splitlines() if line.strip()]
        last_eval = next((r for r in reversed(lines) if "test_metric" in r), {})
    nan = float("nan")
    summary = dict(task=cfg.task, model=cfg.model, optimizer=cfg.optimizer, lr=cfg.lr, seed=cfg.seed,
                   seq_len=spec.seq_len, steps=diverged_step if diverged else last_eval.get("step", 0),
                   metric=spec.metric_name, baseline=spec.baseline, lower_is_better=spec.lower_is_better,
                   test_loss=nan if diverged else last_eval.get("test_loss", nan),
                   test_metric=nan if diverged else last_eval.get("test_metric", nan),
                   valid_metric=nan if diverged else last_eval.get("valid_metric", nan),
                   best_valid_metric=best_valid, diverged=diverged, diverged_step=diverged_step,
                   diverged_reason=reason, wall_s=round(elapsed + time.perf_counter() - start, 3),
                   run_dir=str(run_dir))
    if writer:
        if diverged:
            log.write(dict(step=diverged_step, diverged=True, reason=reason))
        checkpoint(summary["steps"] if not diverged else diverged_step)
        write_json(run_dir / "summary.json", summary)
        if board is not None:
            board.close()
        _figures(run_dir, grad_log is not None)
    return summary


def resume(run_dir, progress: bool | None = None, steps: int | None = None) -> dict:
    """Continues the run in ``run_dir`` from its last checkpoint (``steps`` may extend it)."""
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoint.pt").exists():
        raise FileNotFoundError(f"{run_dir}: no checkpoint.pt to resume from")
    cfg = RunConfig(**json.loads((run_dir / "config.json").read_text()))
    if steps is not None:
        cfg.steps = steps
    return train(cfg, progress, resume_from=run_dir)


def _write_yaml(path: Path, obj: dict) -> None:
    import yaml
    write_text(path, yaml.safe_dump(obj, sort_keys=True))


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is the optional extra plainrnn[tensorboard]
        raise RuntimeError("--tensorboard needs the tensorboard package: pip install 'plainrnn[tensorboard]'") from e
    return SummaryWriter(str(run_dir / "tensorboard"))


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
