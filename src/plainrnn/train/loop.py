"""The training loop, readable top to bottom, in three phases:

- :func:`setup`: config checks, processes, device, seeds, task, model, optimizer, resume, run directory;
- :func:`train_step`: batch → model → loss → backward → (clip) → optimizer;
- :func:`evaluate`: validation and test metrics → metrics.jsonl (→ TensorBoard);

and :func:`train`, which runs them with checkpoints, then :func:`finish` writes the summary.

- A non-finite loss or gradient norm ends the run as ``diverged`` with the step and the reason.
- Every ``checkpoint_every`` steps the model, optimizer, step and every RNG state are written
  atomically, so ``resume(run_dir)`` continues to the same numbers as an uninterrupted run and
  metrics already written are neither lost nor duplicated.
- Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel over gloo;
  every rank draws the same global batch and trains on its slice, so the result equals one process
  on the whole batch. Only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..stiefel import recurrent_penalty
from ..tasks import make_task
from .build import build_model, build_optimizer, init_generator
from .config import RunConfig, kept_from_the_run, saved_run_config
from .diagnostics import hidden_gradient_norms, spectral_stats
from .rundir import MetricsLog, RunDir


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


@dataclass
class Divergence:
    """Why a run ended early: a non-finite loss or gradient norm, or an exploded evaluation."""

    step: int
    reason: str


@dataclass
class Run:
    """Everything a run holds between its steps (built by :func:`setup`)."""

    cfg: RunConfig
    device: torch.device
    rank: int
    world: int
    task: object
    model: torch.nn.Module
    net: torch.nn.Module          # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    data_gen: torch.Generator
    dir: RunDir
    first_step: int = 1
    best_valid: float | None = None
    elapsed: float = 0.0          # seconds spent before this process (a resumed run)
    started: float = field(default_factory=time.perf_counter)
    log: MetricsLog | None = None
    grad_log: MetricsLog | None = None
    board: object = None

    @property
    def writer(self) -> bool:
        return self.rank == 0

    @property
    def run_dir(self) -> Path:
        return self.dir.path

    def wall_s(self) -> float:
        return round(self.elapsed + time.perf_counter() - self.started, 3)

    def checkpoint(self, step: int) -> None:
        """The model, optimizer, step and every RNG state, written atomically (rank 0 only)."""
        if self.writer:
            self.dir.save_checkpoint(dict(
                model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                data_rng=self.data_gen.get_state(), torch_rng=torch.get_rng_state(), step=step,
                best_valid=self.best_valid, config=self.cfg.to_dict(), elapsed=self.wall_s()))


# ---------------------------------------------------------------------------------------- setup
def setup(cfg: RunConfig, run_dir: RunDir, resuming: bool, rank: int, world: int) -> Run:
    """Device, seeds, task, model, optimizer for a validated config; then the checkpoint to resume
    from (if ``resuming``) and the run directory with its logs."""
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {world}")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed)  # batches are drawn on the CPU, then moved
    task = make_task(cfg.task, cfg.seq_len, cfg.data_dir, full_train=cfg.full_train)
    model = build_model(cfg, task.spec, init_generator(cfg.seed)).to(device)  # a CPU init: the same numbers anywhere
    optimizer = build_optimizer(cfg, model, task.spec.seq_len)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    run = Run(cfg=cfg, device=device, rank=rank, world=world, task=task, model=model, net=net, optimizer=optimizer,
              data_gen=data_gen, dir=run_dir)
    if resuming:
        _restore(run)
    if run.writer:
        # An extended finished run keeps its summary until finish() replaces it (RunDir.begin)
        run.dir.begin(cfg.to_dict(), resuming=resuming)
        keep = run.first_step - 1 if resuming else None
        run.log = run.dir.metrics_log(keep)
        run.grad_log = run.dir.grad_norms_log(keep) if cfg.grad_norms_every else None
        for name, artifact in getattr(task, "artifacts", dict)().items():
            run.dir.save_artifact(name, artifact)  # e.g. pmnist's permutation, saved with the run
        run.board = _tensorboard(run.dir) if cfg.tensorboard else None
    return run


def _restore(run: Run) -> None:
    path = run.dir.checkpoint_path
    ckpt = run.dir.load_checkpoint()
    missing = [k for k in ("model", "optimizer", "data_rng", "torch_rng", "step") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: cannot resume exactly, the checkpoint lacks {', '.join(missing)} (written by an "
                         "older plainrnn?); start the run again")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.data_gen.set_state(ckpt["data_rng"])
    torch.set_rng_state(ckpt["torch_rng"])
    run.first_step, run.best_valid, run.elapsed = ckpt["step"] + 1, ckpt["best_valid"], ckpt.get("elapsed", 0.0)


# ------------------------------------------------------------------------------------- one step
def train_step(run: Run, step: int) -> tuple[float, float] | Divergence:
    """One minibatch: loss (with the soft penalties), backward, clipping, the optimizer's step.
    Returns (training loss, gradient norm), or the divergence that ends the run."""
    cfg, model = run.cfg, run.model
    model.train()
    x, y = run.task.train_batch(cfg.batch_size, run.data_gen)  # the same global batch on every rank
    if run.world > 1:
        share = cfg.batch_size // run.world
        x, y = x[run.rank * share:(run.rank + 1) * share], y[run.rank * share:(run.rank + 1) * share]
    x, y = x.to(run.device), y.to(run.device)
    loss = run.task.loss(run.net(x), y)
    if cfg.loss_over_time == "sum" and run.task.spec.output == "all":
        # A cost summed over the time steps (and averaged over the batch), as Theano-era code often
        # wrote it: the mean times the counted outputs per sequence (T; padding, target −100, does not
        # count), which for plain SGD is T times the step and, beside the penalties below, T times
        # their relative weight lower.
        loss = loss * ((y != -100).sum() / y.shape[0])  # a tensor: no host sync in the step
    if cfg.orth_penalty or cfg.sv_prior or cfg.weight_decay:
        loss = loss + recurrent_penalty(model, orth=cfg.orth_penalty, sv_prior=cfg.sv_prior,
                                        weight_decay=cfg.weight_decay)
    run.optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(loss.item()):
        return Divergence(step, f"non-finite loss ({loss.item()})")
    loss.backward()
    # The norm is needed every step (divergence guard, metrics); the scaling pass only when clipping.
    # clip_grad_norm_(…, inf) would multiply every gradient by 1.
    norm = gradient_norm([p.grad for p in model.parameters() if p.grad is not None])
    if cfg.clip:
        torch.nn.utils.clip_grads_with_norm_(model.parameters(), cfg.clip, norm)
    grad_norm = norm.item()
    if not math.isfinite(grad_norm):
        return Divergence(step, f"non-finite gradient norm ({grad_norm})")
    run.optimizer.step()
    if run.grad_log is not None and (step % cfg.grad_norms_every == 0 or step == 1):
        # Figure 2 of the 2017 paper: how the loss gradient reaches back through time.
        run.grad_log.write(dict(step=step, norms=hidden_gradient_norms(model, x, y, run.task.loss)))
        model.zero_grad(set_to_none=True)
    return loss.item(), grad_norm


# ----------------------------------------------------------------------------------- evaluation
def evaluate(run: Run, step: int, train_loss: float, grad_norm: float) -> tuple[dict, Divergence | None]:
    """Validation and test metrics (and the optional extras) as one metrics record, written to the
    logs; a non-finite or exploded evaluation is a divergence."""
    cfg, model, task = run.cfg, run.model, run.task
    model.eval()
    valid_extras, test_extras = {}, {}  # the task's further metrics (PTB: accuracy beside bpc)
    valid_loss, valid_metric = task.evaluate(model, "valid", limit=cfg.eval_limit, extras=valid_extras)
    test_loss, test_metric = task.evaluate(model, "test", limit=cfg.eval_limit, extras=test_extras)
    record = dict(step=step, train_loss=train_loss, grad_norm=grad_norm, valid_loss=valid_loss,
                  valid_metric=valid_metric, test_loss=test_loss, test_metric=test_metric, wall_s=run.wall_s())
    record.update({f"valid_{k}": v for k, v in valid_extras.items()})
    record.update({f"test_{k}": v for k, v in test_extras.items()})
    group = run.optimizer.param_groups[0]
    if "path_backtracks" in group:  # Path-SGD's safeguards: halvings and limited unit steps so far
        record["path_backtracks"] = group["path_backtracks"]
        record["path_unit_clips"] = group.get("path_unit_clips", 0)
    if getattr(task, "train_size", None):  # image sets: curves against epochs, as the papers draw them
        record["epoch"] = round(step * cfg.batch_size / task.train_size, 4)
    if cfg.eval_train:  # the 2015 paper's training cross-entropy and error; the 2016 paper's training perplexity
        limit = cfg.train_eval_limit or cfg.eval_limit
        record["train_eval_loss"], record["train_eval_metric"] = task.evaluate(model, "train", limit=limit)
    record.update(spectral_stats(model))
    if run.log is not None:
        run.log.write(record)
    if run.board is not None:
        for key in ("train_loss", "valid_metric", "test_metric", "grad_norm"):
            run.board.add_scalar(key, record[key], step)
    if not (math.isfinite(valid_loss) and math.isfinite(test_loss)):
        return record, Divergence(step, "non-finite evaluation loss")
    if valid_loss > cfg.diverge_above:
        # A finite but astronomical loss (a Path-SGD step that blew up a unit gives 1e12 on the adding
        # problem) is a divergence too; the tasks' losses are O(1) at init.
        return record, Divergence(step, f"exploded: validation loss {valid_loss:.3g} > diverge_above "
                                        f"{cfg.diverge_above:g}")
    lower = task.spec.lower_is_better
    if run.best_valid is None or (valid_metric < run.best_valid if lower else valid_metric > run.best_valid):
        run.best_valid = valid_metric
    return record, None


# ------------------------------------------------------------------------------------- the loop
def train(cfg: RunConfig, progress: bool | None = None, resume_from: Path | None = None, on_start=None) -> dict:
    """Runs one configuration; returns the summary (also written to ``<run dir>/summary.json``).

    ``resume_from``: a run directory with a checkpoint to continue. The run directory is held for the
    whole run (:meth:`~plainrnn.train.rundir.RunDir.hold`): a second process training into it gets
    :class:`~plainrnn.train.lock.RunDirBusy` before touching a file. ``on_start(run_dir)`` is called
    once the run is set up and about to train (the CLI prints the directory)."""
    cfg.validate()  # a bad config is one clear error and leaves no run directory behind
    if resume_from is not None and (saved := RunDir(resume_from).saved_config()) is not None:
        cfg = RunConfig(**kept_from_the_run(cfg.to_dict(), saved))  # goes on with the kernel it began with
    rank, world = _distributed()  # under DDP only rank 0 writes files (Run.writer), so only it holds
    run_dir = RunDir(resume_from) if resume_from else RunDir.of(cfg.to_dict())
    with run_dir.hold() if rank == 0 else contextlib.nullcontext():
        if resume_from is None and rank == 0:
            run_dir.refuse_fresh_start(cfg.to_dict())  # read while held: no run is ever replaced by another
        run = setup(cfg, run_dir, resume_from is not None, rank, world)
        if on_start is not None and run.writer:
            on_start(run.run_dir)
        return _train(run, progress)


def _train(run: Run, progress: bool | None) -> dict:
    cfg = run.cfg
    divergence, last_eval = None, {}
    bar = tqdm(range(run.first_step, cfg.steps + 1), desc=cfg.run_name(), leave=False, dynamic_ncols=True,
               initial=run.first_step - 1, total=cfg.steps, disable=True if progress is False or not run.writer else None)
    checkpoint_every = cfg.checkpoint_every or cfg.eval_every
    with _deferred_interrupt() as interrupted:
        for step in bar:
            result = train_step(run, step)
            if isinstance(result, Divergence):
                divergence = result
                break
            if step % cfg.eval_every == 0 or step == cfg.steps:
                last_eval, divergence = evaluate(run, step, *result)
                bar.set_postfix(test=f"{last_eval['test_metric']:.4g}")
                if divergence:
                    break
            if step % checkpoint_every == 0 or interrupted():
                run.checkpoint(step)
            if interrupted():
                bar.close()
                raise TrainingInterrupted(f"interrupted: {run.run_dir} saved at step {step:,}; continue it with: "
                                          f"plainrnn train --resume {run.run_dir}")
    bar.close()
    return finish(run, divergence, last_eval)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the step in progress was finished and checkpointed."""


@contextlib.contextmanager
def _deferred_interrupt():
    """A first Ctrl-C lets the step in progress finish (an optimizer step cut halfway would leave the
    weights neither before nor after it), then the loop checkpoints and stops; a second one stops at
    once. Only in the main thread, where Python delivers signals."""
    import signal
    import threading
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        print("\nstopping after this step (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def finish(run: Run, divergence: Divergence | None, last_eval: dict) -> dict:
    """The summary of a run that ended (finished or diverged), its last checkpoint and summary.json."""
    cfg, spec = run.cfg, run.task.spec
    if not last_eval and run.log is not None and run.dir.has_metrics():  # resumed right at the end
        lines = run.dir.metrics()
        last_eval = next((r for r in reversed(lines) if "test_metric" in r), {})
    nan = float("nan")
    ended = divergence is not None
    summary = dict(task=cfg.task, model=cfg.model, optimizer=cfg.optimizer, lr=cfg.lr, seed=cfg.seed,
                   seq_len=spec.seq_len, steps=divergence.step if ended else last_eval.get("step", 0),
                   metric=spec.metric_name, baseline=spec.baseline, lower_is_better=spec.lower_is_better,
                   test_loss=nan if ended else last_eval.get("test_loss", nan),
                   test_metric=nan if ended else last_eval.get("test_metric", nan),
                   valid_metric=nan if ended else last_eval.get("valid_metric", nan),
                   best_valid_metric=run.best_valid, diverged=ended, diverged_step=divergence.step if ended else None,
                   diverged_reason=divergence.reason if ended else None, wall_s=run.wall_s(), run_dir=str(run.run_dir))
    if run.writer:
        if ended:
            run.log.write(dict(step=divergence.step, diverged=True, reason=divergence.reason))
        run.checkpoint(summary["steps"])
        run.dir.write_summary(summary)  # atomic: an extended run's old summary until this moment
        if run.board is not None:
            run.board.close()
    return summary


def resume(run_dir, progress: bool | None = None, steps: int | None = None, on_start=None) -> dict:
    """Continues the run in ``run_dir`` from its last checkpoint (``steps`` may extend it)."""
    run_dir = RunDir(run_dir)
    if not run_dir.has_checkpoint():
        raise FileNotFoundError(f"{run_dir}: no {RunDir.CHECKPOINT} to resume from")
    cfg = saved_run_config(run_dir.config())
    if steps is not None:
        floor = max(run_dir.last_evaluated_step() or 0, cfg.steps if run_dir.finished() else 0)
        if steps < floor:
            raise ValueError(f"--steps {steps} is below what {run_dir} already ran (step {floor:,}); --steps "
                             "lengthens a run, it cannot shorten one")
        cfg.steps = steps
    return train(cfg, progress, resume_from=run_dir.path, on_start=on_start)


def _tensorboard(run_dir: RunDir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is the optional extra plainrnn[tensorboard]
        raise RuntimeError("--tensorboard needs the tensorboard package: pip install 'plainrnn[tensorboard]'") from e
    return SummaryWriter(str(run_dir.tensorboard_dir))
