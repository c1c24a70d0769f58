"""A run directory's state: whether a config may train into it, resume it, or must stay out of it.

Every entry point that trains (``plainrnn train``, sweeps, ``reproduce``) asks :func:`trial_state`
while it holds the directory's lock, so no run ever replaces another one: a different config that
would delete results is a ``conflict`` named in one line, a finished run of the same config is
``done``, a cut one ``resumable``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .checkpoint import read_json
from .config import RunConfig


class RunDirTaken(ValueError):
    """The run directory holds results that training this config afresh would delete."""


_INCIDENTAL = ("out", "data_dir", "device", "tensorboard", "checkpoint_every")


def config_differences(saved: dict, config: dict) -> dict[str, tuple] | None:
    """The keys in which a run directory's config differs from this trial's, as ``{key: (saved, wanted)}``.
    A key added to RunConfig since the run was made takes its default, so a new option does not set a
    run apart from the trial it was; None when the saved config has a key RunConfig no longer has."""
    try:
        old = dataclasses.asdict(RunConfig(**saved))
    except TypeError:
        return None
    return {k: (old.get(k), v) for k, v in config.items() if k not in _INCIDENTAL and old.get(k) != v}


def run_dir_of(config: dict) -> Path:
    return Path(config["out"]) / RunConfig(**config).run_name()


def trial_state(config: dict) -> str:
    """Where a trial stands in its run directory:

    - ``done``: its summary is there (a sweep reuses it); also a run that diverged before the end of
      fewer steps than asked (more steps cannot undo a divergence);
    - ``resumable``: a checkpoint of this config, cut short; or of this config with fewer ``steps``,
      which the sweep extends from it (``--set steps=N`` on a finished sweep lengthens its runs);
    - ``conflict``: the directory holds results of another config, which training this trial would
      delete (:func:`trial_conflict` says how they differ);
    - ``new``: nothing of value there.
    """
    run_dir = run_dir_of(config)
    config_file = run_dir / "config.json"
    if not config_file.exists():
        return "new"
    saved = read_json(config_file)
    diff = config_differences(saved, config)
    has_summary, has_checkpoint = (run_dir / "summary.json").exists(), (run_dir / "checkpoint.pt").exists()
    if diff == {}:
        return "done" if has_summary else ("resumable" if has_checkpoint else "new")
    if not (has_summary or has_checkpoint):
        return "new"  # a run that never reached its first checkpoint: nothing to lose
    if diff is not None and set(diff) == {"steps"} and diff["steps"][0] < diff["steps"][1]:
        if has_summary and read_json(run_dir / "summary.json").get("diverged"):
            return "done"
        if has_checkpoint:
            return "resumable"
    return "conflict"


def trial_conflict(config: dict) -> str | None:
    """Why this trial may not train in its run directory, or None: ``"<run dir> holds the results of
    another config (lr 0.0001 → 0.001)"``."""
    if trial_state(config) != "conflict":
        return None
    run_dir = run_dir_of(config)
    diff = config_differences(read_json(run_dir / "config.json"), config)
    what = ("a config this version cannot read" if diff is None else
            ", ".join(f"{k} {old} → {new}" for k, (old, new) in sorted(diff.items())))
    return f"{run_dir} holds the results of another config ({what})"


def last_evaluated_step(run_dir: Path) -> int | None:
    """The last evaluated step in a run directory's metrics.jsonl, else None."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return None
    steps = []
    for line in metrics.read_text().splitlines():
        try:
            steps.append(json.loads(line).get("step"))
        except ValueError:  # blank, or the line a running trial is writing right now
            continue
    return next((s for s in reversed(steps) if isinstance(s, int)), None)


def refuse_fresh_start(config: dict) -> None:
    """Raises :class:`RunDirTaken` when training ``config`` from scratch would delete a run: another
    config's results, or this config's finished or cut run (the latter two say how to go on)."""
    state = trial_state(config)
    run_dir = run_dir_of(config)
    if state == "conflict":
        raise RunDirTaken(f"{trial_conflict(config)}; give this run another --name or --out to keep both")
    if state == "done":
        raise RunDirTaken(f"{run_dir} already holds this config's finished run; give this run another --name, "
                          f"or lengthen that one: plainrnn train --resume {run_dir} --steps N")
    if state == "resumable":
        raise RunDirTaken(f"{run_dir} holds this config's run, cut at step {last_evaluated_step(run_dir) or 0:,}; continue it: "
                          f"plainrnn train --resume {run_dir}")
