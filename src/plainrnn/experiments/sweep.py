"""Sweeps: every grid combination × seeds, on a local process pool or a Ray cluster.

Each trial is one ``train`` run in ``<out>/<sweep>/<setting>-s<seed>``. A trial that raises is
recorded as failed and never stops the others; a diverged trial is a result, counted in the table.
A trial whose ``summary.json`` already exists with the same config is reused, and one with only a
checkpoint resumes from it, so re-running a sweep after a crash only runs what is missing.

Planning (the settings, the trials, what each starts from) is :mod:`~plainrnn.experiments.planning`;
running them, :mod:`~plainrnn.experiments.backends`; the records between them,
:mod:`~plainrnn.experiments.trials`. This module runs a sweep and sums it up.

Selection follows the papers: for each setting, the median validation metric over its seeds
(diverged seeds count as the worst); the setting with the best median is selected and its test
metric (median over seeds) is reported.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..train.config import RunConfig
from ..train.rundir import trial_conflict, trial_state
from .backends import _run_local, _run_ray
from .planning import build_trials, extend_from, source_folders
# The face of sweeps: with run_sweep, the planner's and the backends' names a sweep's user reaches for.
from .backends import ray_auth_environment, run_trial, threads_per_worker
from .planning import (RUN_LENGTH_KEYS, continues_from, earlier_run, only_settings, parse_grid, saved_runs,
                       setting_label, settings_of, trial_holder, trial_progress)
from .tables import markdown_table
from .trials import Outcome, Trial

__all__ = ["run_sweep", "summarize", "markdown", "Trial", "Outcome", "build_trials", "extend_from", "run_trial",
           "ray_auth_environment", "threads_per_worker", "RUN_LENGTH_KEYS", "continues_from", "earlier_run",
           "only_settings", "parse_grid", "saved_runs", "setting_label", "settings_of", "trial_holder",
           "trial_progress", "trial_conflict", "trial_state"]


def summarize(trials: list[Trial], results: list[Outcome]) -> tuple[list[dict], dict]:
    """The sweep's table, one row per setting (median validation and test metric over its seeds, the
    best test, diverged and failed counts), and the setting selected on validation."""
    rows: dict[str, dict] = {}
    for trial, res in zip(trials, results):
        if not res.is_result:  # trained by another process, or stopped: not a result yet
            continue
        row = rows.setdefault(trial.setting, dict(setting=trial.setting, trials=0, diverged=0, failed=0,
                                                  valid=[], test=[], wall=[]))
        row["trials"] += 1
        row["lower_is_better"] = res.lower_is_better
        if res.status == "failed":
            row["failed"] += 1
            continue
        if res.diverged:
            row["diverged"] += 1
            continue
        row["valid"].append(res.valid_metric)
        row["test"].append(res.test_metric)
        row["wall"].append(res.wall_s)
    table = []
    for row in rows.values():
        lower = row.get("lower_is_better", True)
        worst = math.inf if lower else -math.inf
        # Diverged or failed seeds count as the worst value in the median: instability is penalized.
        padded = row["valid"] + [worst] * (row["diverged"] + row["failed"])
        table.append(dict(
            setting=row["setting"], trials=row["trials"], diverged=row["diverged"], failed=row["failed"],
            median_valid=statistics.median(padded) if padded else math.nan,
            best_test=(min(row["test"]) if lower else max(row["test"])) if row["test"] else math.nan,
            median_test=statistics.median(row["test"]) if row["test"] else math.nan,
            median_wall_s=statistics.median(row["wall"]) if row["wall"] else math.nan, lower_is_better=lower))
    finite = [r for r in table if math.isfinite(r["median_valid"])]
    pick = min if (table and table[0]["lower_is_better"]) else max
    selected = pick(finite, key=lambda r: r["median_valid"]) if finite else dict(setting="none", median_test=math.nan)
    return table, dict(setting=selected["setting"], test_metric=selected["median_test"])


def markdown(table: list[dict]) -> str:
    return markdown_table(
        ["setting", "diverged", "failed", "median valid", "best test", "median test", "median wall (s)"],
        [[r["setting"], f"{r['diverged']}/{r['trials']}", f"{r['failed']}", f"{r['median_valid']:.5g}",
          f"{r['best_test']:.5g}", f"{r['median_test']:.5g}", f"{r['median_wall_s']:.1f}"] for r in table])


def run_sweep(base: RunConfig, grid: dict, seeds: int = 1, backend: str = "local", workers: int | None = None,
              address: str | None = None, name: str | None = None, progress: bool = True,
              extend: str | Path | list | None = None, on_start=None) -> dict:
    """Every trial of ``grid`` × ``seeds`` in ``base.out/name``: finished ones reused, cut ones resumed.
    ``extend``: other sweeps' folders (one or a list) whose runs of these trials the new ones take or
    continue (:func:`extend_from`; e.g. the cpu budget's 20,000-step runs for the full budget's 100,000).
    ``on_start(sweep_dir)`` is called once the sweep is checked and about to train (the CLI prints it)."""
    sweep_dir = Path(base.out) / (name or "sweep")
    trials = build_trials(base, grid, seeds, sweep_dir)
    conflicts = [c for c in (trial_conflict(t.config) for t in trials) if c]
    if conflicts:  # before anything runs: training them would delete those results
        more = f" (and {len(conflicts) - 1} more trial(s))" if len(conflicts) > 1 else ""
        raise ValueError(f"{conflicts[0]}{more}; give this sweep its own folder (--set out=DIR, or another "
                         "--name) or move those runs away")
    for folder in source_folders(extend) if extend is not None else []:
        if not folder.is_dir():
            raise ValueError(f"--extend-from {folder}: no such folder; give a sweep's folder, "
                             "e.g. runs/adding-study-cpu")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if on_start is not None:
        on_start(sweep_dir)
    extended = extend_from(trials, extend) if extend is not None else []
    if backend == "local":
        results = _run_local(trials, workers, progress)
    elif backend == "ray":
        results = _run_ray(trials, address, progress)
    else:
        raise ValueError(f"backend must be local or ray, got {backend!r}")
    table, selected = summarize(trials, results)
    with open(sweep_dir / "trials.jsonl", "w") as f:
        for trial, res in zip(trials, results):
            f.write(json.dumps(res.log_line(trial)) + "\n")
    (sweep_dir / "table.md").write_text(markdown(table) + "\n")
    (sweep_dir / "selected.json").write_text(json.dumps(selected, indent=2) + "\n")
    return dict(table=markdown(table), rows=table, selected=selected, dir=str(sweep_dir), results=results,
                extended=[str(d) for d in extended],
                interrupted=sum(r.status == "interrupted" for r in results))
