"""The run directory's one owner: its files, its lock, its state, and how a run is copied.

A run directory holds::

    config.json      the RunConfig the trainer reads back (config.yaml: the same, for people; all that
                     results/ keeps of a published run)
    metrics.jsonl    one record per evaluation, appended (a torn last line is cut at resume)
    grad_norms.jsonl ‖∂L/∂h_t‖ records, when asked for
    checkpoint.pt    model, optimizer, step and every RNG state, written atomically
    summary.json     written last, when the run ended: its presence (covering the config's steps) is
                     what "finished" means
    .lock            the advisory lock of the process training into it

No other module spells these names: the trainer, sweeps, ``publish`` and ``report`` go through
:class:`RunDir`. Every entry point that trains asks :meth:`RunDir.state` while it holds the lock, so no
run ever replaces another: a different config that would delete results is a ``conflict`` named in one
line, a finished run of the same config is ``done``, a cut one ``resumable``. No file of a finished
run is removed before its replacement is complete: extending a finished run keeps its summary until
the longer run writes its own (a summary that covers fewer steps than the config is not "finished").
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path

from .checkpoint import load_checkpoint, read_json, read_records, save_checkpoint, write_json, write_text, write_yaml
from .config import KEPT_FROM_THE_RUN, WRITTEN_BEFORE, RunConfig, kept_from_the_run, saved_run_config
from .lock import RunDirBusy, hold_lock, lock_holder

__all__ = ["RunDir", "RunDirTaken", "RunDirBusy", "MetricsLog", "config_differences", "trial_state",
           "trial_conflict", "refuse_fresh_start", "hold_run_dir", "run_dir_holder"]


class RunDirTaken(ValueError):
    """The run directory holds results that training this config afresh would delete."""


# Keys that say where and how a run is kept or computed, not what it computes: the same trial read from
# another folder or resumed on another device, with or without TensorBoard, by either kernel, is the same trial.
_INCIDENTAL = ("out", "data_dir", "device", "tensorboard", "checkpoint_every") + KEPT_FROM_THE_RUN


def config_differences(saved: dict, config: dict) -> dict[str, tuple] | None:
    """The keys in which a run directory's config differs from this trial's, as ``{key: (saved, wanted)}``.
    A key added to RunConfig since the run was made takes its default (or what it meant then:
    :data:`~plainrnn.train.config.WRITTEN_BEFORE`), so a new option does not set a run apart from the
    trial it was; None when the saved config has a key RunConfig no longer has."""
    try:
        old = dataclasses.asdict(saved_run_config(saved))
    except TypeError:
        return None
    return {k: (old.get(k), v) for k, v in config.items() if k not in _INCIDENTAL and old.get(k) != v}


class MetricsLog:
    """Appends one JSON object per line to a .jsonl file, flushed at once."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until_step is None:
            self.path.write_text("")
        else:  # resuming: keep what the checkpoint covers, drop what will be recomputed
            # a torn last record (a kill inside an append) is cut here too: the run goes on from whole lines
            kept = [r for r in read_records(self.path) if r.get("step", 0) <= keep_until_step]
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


class RunDir:
    """One run directory (see the module's docstring for its files)."""

    CONFIG, CONFIG_YAML, SUMMARY = "config.json", "config.yaml", "summary.json"
    METRICS, GRAD_NORMS, CHECKPOINT = "metrics.jsonl", "grad_norms.jsonl", "checkpoint.pt"
    LOCK, TENSORBOARD = ".lock", "tensorboard"

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def of(cls, config: dict) -> "RunDir":
        """The run directory a config trains into: ``<out>/<run name>``."""
        return cls(Path(config["out"]) / RunConfig(**config).run_name())

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:  # a RunDir goes wherever a path does (open, Path, shutil)
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    # ------------------------------------------------------------------------------- reading
    def has_config(self) -> bool:
        return (self.path / self.CONFIG).exists() or (self.path / self.CONFIG_YAML).exists()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def has_summary(self) -> bool:
        return (self.path / self.SUMMARY).exists()

    def has_metrics(self) -> bool:
        return self.metrics_path.exists()

    def has_grad_norms(self) -> bool:
        return (self.path / self.GRAD_NORMS).exists()

    def config(self) -> dict:
        """config.json as the trainer wrote it (:class:`~plainrnn.train.checkpoint.CorruptFile` if damaged)."""
        return read_json(self.path / self.CONFIG)

    def saved_config(self) -> dict | None:
        """The config as it was written: config.json, or config.yaml alone (a published run); None when
        the directory holds neither or it cannot be read."""
        import yaml
        try:
            if (self.path / self.CONFIG).exists():
                config = json.loads((self.path / self.CONFIG).read_text())
            elif (self.path / self.CONFIG_YAML).exists():
                config = yaml.safe_load((self.path / self.CONFIG_YAML).read_text())
            else:
                return None
        except (OSError, ValueError, yaml.YAMLError):
            return None
        return config if isinstance(config, dict) else None

    def summary(self) -> dict | None:
        """summary.json, or None when the run has not ended."""
        return read_json(self.path / self.SUMMARY) if self.has_summary() else None

    def metrics(self) -> list[dict]:
        return read_records(self.metrics_path)

    def grad_norms(self) -> list[dict]:
        return read_records(self.path / self.GRAD_NORMS)

    def last_evaluated_step(self) -> int | None:
        """The last evaluated step in metrics.jsonl, else None. Tolerant of the line a running trial
        is writing right now (and of any bad line: this only says how far a run got)."""
        if not self.has_metrics():
            return None
        steps = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                steps.append(json.loads(line).get("step"))
            except (ValueError, AttributeError):
                continue
        return next((s for s in reversed(steps) if isinstance(s, int)), None)

    def finished(self) -> bool:
        """Whether the run ended: a summary that covers its config's steps, or one of a divergence. A
        finished run being extended keeps its old summary, which covers fewer steps: not finished."""
        summary, config = self._summary_or_none(), self.saved_config()
        if summary is None:
            return False
        if summary.get("diverged") or config is None or "steps" not in summary:
            return True  # a summary that does not say how far it got is taken as the run's end
        return summary["steps"] >= config.get("steps", 0)

    def diverged_at(self) -> int | None:
        """The step at which a finished run diverged; None if it did not (or has not ended)."""
        summary = self._summary_or_none() or {}
        return (summary.get("diverged_step") or summary.get("steps") or 0) if summary.get("diverged") else None

    def progress(self) -> tuple[int, bool]:
        """How far a run got: (its last evaluated step, finished), compared in that order: a run cut at
        step 2,250 got further than a finished 1,000-step run of the same trial."""
        return self.last_evaluated_step() or 0, self.finished()

    def _summary_or_none(self) -> dict | None:
        try:
            return self.summary()
        except (OSError, ValueError):
            return None

    # ----------------------------------------------------------------------- the trial's state
    def state(self, config: dict) -> str:
        """Where a trial of ``config`` stands in this directory:

        - ``done``: its run finished (a sweep reuses it); also a run that diverged before the end of
          fewer steps than asked (more steps cannot undo a divergence);
        - ``resumable``: a checkpoint of this config, cut short (or being extended); or of this config
          with fewer ``steps``, which the sweep extends from it;
        - ``conflict``: the directory holds results of another config, which training this trial would
          delete (:meth:`conflict` says how they differ);
        - ``new``: nothing of value there.
        """
        if not (self.path / self.CONFIG).exists():
            return "new"
        diff = config_differences(self.config(), config)
        has_summary, has_checkpoint = self.has_summary(), self.has_checkpoint()
        if diff == {}:
            if has_summary and self.finished():
                return "done"
            return "resumable" if has_checkpoint else "new"
        if not (has_summary or has_checkpoint):
            return "new"  # a run that never reached its first checkpoint: nothing to lose
        if diff is not None and set(diff) == {"steps"} and diff["steps"][0] < diff["steps"][1]:
            if self.diverged_at() is not None:
                return "done"
            if has_checkpoint:
                return "resumable"
        return "conflict"

    def conflict(self, config: dict) -> str | None:
        """Why ``config`` may not train here, or None: ``"<dir> holds the results of another config
        (lr 0.0001 → 0.001)"``."""
        if self.state(config) != "conflict":
            return None
        diff = config_differences(self.config(), config)
        what = ("a config this version cannot read" if diff is None else
                ", ".join(f"{k} {old} → {new}" for k, (old, new) in sorted(diff.items())))
        return f"{self.path} holds the results of another config ({what})"

    def refuse_fresh_start(self, config: dict) -> None:
        """Raises :class:`RunDirTaken` when training ``config`` from scratch here would delete a run:
        another config's results, or this config's finished or cut run (the latter two say how to go on)."""
        state = self.state(config)
        if state == "conflict":
            raise RunDirTaken(f"{self.conflict(config)}; give this run another --name or --out to keep both")
        if state == "done":
            raise RunDirTaken(f"{self.path} already holds this config's finished run; give this run another "
                              f"--name, or lengthen that one: plainrnn train --resume {self.path} --steps N")
        if state == "resumable":
            raise RunDirTaken(f"{self.path} holds this config's run, cut at step {self.last_evaluated_step() or 0:,}; "
                              f"continue it: plainrnn train --resume {self.path}")

    # ------------------------------------------------------------------- writing (the holder)
    def hold(self):
        """The directory's lock for this process (:func:`~plainrnn.train.lock.hold_lock`)."""
        return hold_lock(self.path, self.LOCK)

    def holder(self) -> str | None:
        """The pid of the process training into this directory, else None."""
        return lock_holder(self.path, self.LOCK)

    def remove_stale_temporaries(self) -> None:
        """The temporary files of atomic writes that a killed process left (``.checkpoint.pt.x8f2`` …).
        Only called by the directory's holder, so no live writer owns them."""
        for stale in self.path.glob(".*.*"):
            if stale.is_file() and stale.name != self.LOCK and not stale.name.endswith(".flock"):
                stale.unlink(missing_ok=True)

    def begin(self, config: dict, resuming: bool) -> None:
        """Makes the directory ready for a run of ``config``: a killed write's leftovers go; a fresh
        run's old checkpoint and summary go (:meth:`refuse_fresh_start` made sure nothing of value is
        lost); a resumed run keeps both (its summary, if any, covers fewer steps than this config and
        so reads as not finished, and is replaced only by the longer run's own); then the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temporaries()
        if not resuming:
            for stale in (self.SUMMARY, self.CHECKPOINT):
                (self.path / stale).unlink(missing_ok=True)
        self.write_config(config)

    def write_config(self, config: dict) -> None:
        write_yaml(self.path / self.CONFIG_YAML, config)
        write_json(self.path / self.CONFIG, config)  # last: what the trainer and the state read

    def metrics_log(self, keep_until_step: int | None) -> MetricsLog:
        return MetricsLog(self.metrics_path, keep_until_step)

    def grad_norms_log(self, keep_until_step: int | None) -> MetricsLog:
        return MetricsLog(self.path / self.GRAD_NORMS, keep_until_step)

    def save_checkpoint(self, payload: dict) -> None:
        save_checkpoint(self.checkpoint_path, payload)

    def load_checkpoint(self) -> dict:
        return load_checkpoint(self.checkpoint_path)

    def save_artifact(self, name: str, payload) -> None:
        """A task's file kept with the run (pmnist's permutation)."""
        save_checkpoint(self.path / name, payload)

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / self.SUMMARY, summary)

    # -------------------------------------------------------------------------------- copying
    def extend_into(self, target: "RunDir", config: dict, finished: bool) -> None:
        """Copies this run into ``target`` as the beginning (or the whole, when ``finished``) of the
        trial ``config``: metrics, checkpoint, figures and a task's artifacts; the summary only when
        ``finished``; the config last, so the copy is whole before it counts."""
        summary = self.summary() if finished else None
        for path in self.path.iterdir():
            if path.is_file() and path.name not in (self.CONFIG, self.CONFIG_YAML, self.SUMMARY, self.LOCK):
                shutil.copy2(path, target.path / path.name)
        if summary is not None:
            target.write_summary(dict(summary, run_dir=str(target.path)))
        # the run's own kernel (KEPT_FROM_THE_RUN): its checkpoint goes on as it was computed
        target.write_config(RunConfig(**kept_from_the_run(config, self.saved_config() or {})).to_dict())

    def publish_into(self, target: "RunDir", checkpoint: bool) -> bool:
        """Copies this run into a results folder: config.yaml alone, the summary when it finished,
        metrics.jsonl up to its last whole line, and with ``checkpoint`` the checkpoint of a run cut
        short. Returns whether it was published finished."""
        target.path.mkdir(parents=True, exist_ok=True)
        # every key it meant, written out (WRITTEN_BEFORE): a published config reruns as it ran
        write_yaml(target.path / self.CONFIG_YAML, {**WRITTEN_BEFORE, **self.saved_config()})
        # Whether it finished, before its metrics: a run writes its summary after its last line.
        finished = self.finished()
        # The checkpoint before the metrics: a run still training writes its metrics line, then its
        # checkpoint, at each evaluation. Taken in this order the metrics reach at least the
        # checkpoint's step, and a resume keeps exactly the lines the checkpoint covers; in the other
        # order a checkpoint newer than the metrics would resume past a line that is not there.
        resumable = checkpoint and not finished and self.has_checkpoint()
        if resumable:
            _copy_whole(self.checkpoint_path, target.checkpoint_path)
        write_text(target.metrics_path, _whole_lines(self.metrics_path))
        if not resumable:  # an older checkpoint would resume behind the metrics just written
            target.checkpoint_path.unlink(missing_ok=True)
        if finished:
            write_text(target.path / self.SUMMARY, (self.path / self.SUMMARY).read_text())
        else:
            (target.path / self.SUMMARY).unlink(missing_ok=True)  # a shorter run's summary would count it as done
        (target.path / self.CONFIG).unlink(missing_ok=True)  # config.yaml alone: the one copy of the config
        return finished


def _whole_lines(path: Path) -> str:
    """An append-only file up to its last complete line: a run being trained may be writing the next one."""
    text = path.read_text() if path.exists() else ""
    return text[:text.rfind("\n") + 1]


def _copy_whole(src: Path, dst: Path) -> None:
    """``src`` to ``dst`` through a temporary file: a reader never sees half a checkpoint."""
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def runs_in(folder) -> list[RunDir]:
    """The run directories in ``folder`` (those with a config), in name order; ``folder`` itself if it is one."""
    folder = RunDir(folder)
    if folder.saved_config() is not None:
        return [folder]
    if not folder.path.is_dir():
        return []
    return [RunDir(p) for p in sorted(folder.path.iterdir()) if p.is_dir() and RunDir(p).saved_config() is not None]


# Module-level forms, for a config (what sweeps and the CLI hold) rather than a directory.
def trial_state(config: dict) -> str:
    return RunDir.of(config).state(config)


def trial_conflict(config: dict) -> str | None:
    return RunDir.of(config).conflict(config)


def refuse_fresh_start(config: dict) -> None:
    RunDir.of(config).refuse_fresh_start(config)


def hold_run_dir(run_dir):
    """Holds ``run_dir`` for this process while the ``with`` block runs (:meth:`RunDir.hold`)."""
    return RunDir(run_dir).hold()


def run_dir_holder(run_dir) -> str | None:
    return RunDir(run_dir).holder()


@contextlib.contextmanager
def holding(*run_dirs: RunDir):
    """Several run directories held together (a copy holds its source and its target)."""
    with contextlib.ExitStack() as stack:
        for run_dir in run_dirs:
            stack.enter_context(run_dir.hold())
        yield
