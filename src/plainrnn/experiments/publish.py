"""`plainrnn publish`: a sweep's evidence into ``results/``, the way docs/results.md keeps it.

``runs/`` is scratch; ``results/<experiment>/<run>/`` is what is committed (REPRODUCTION.md): each
run's ``config.yaml``, ``summary.json`` and ``metrics.jsonl``, never a figure (``plainrnn report
results/<experiment> --plots …`` draws those again). A run cut short goes with its config and its
metrics as they stand, and no summary, so that no table counts it until it is done; with
``checkpoints=True`` (``--checkpoints``) its ``checkpoint.pt`` goes too, so that a cell cut at the end of
a session resumes on another machine (``plainrnn reproduce … --extend-from results/<experiment>``)
instead of starting over. A finished run never keeps a checkpoint there.

Publishing never loses evidence:

- a published run of another config under the same name stops everything before a file is written
  (publishing would replace one experiment's numbers with another's);
- a published run that got further than the source's (finished where the source is cut, or cut
  later) is kept as it is: on a new machine a sweep starts its cut runs over, and publishing it
  halfway must not throw away the steps the old machine had made;
- runs that are published but not in the source are left alone, so several sweeps can feed one folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..train.checkpoint import read_saved_config, write_text, write_yaml
from .report import read_config
from .sweep import RUN_LENGTH_KEYS, config_differences, last_evaluated_step, saved_runs


def _runs(source: Path) -> list[Path]:
    """The run directories of ``source``: a sweep's folder, or one run directory."""
    if read_saved_config(source) is not None:
        return [source]
    return [run_dir for run_dir, _ in saved_runs(source)]


def _difference(published: Path, source: Path) -> str | None:
    """How a published run's config differs from the source's ("lr 0.001 → 0.01"), or None if it is the
    same run (at most longer or shorter: ``steps`` and ``eval_every`` may differ, as for a run extended
    to the full budget)."""
    saved = read_saved_config(published)
    diff = None if saved is None else config_differences(saved, read_config(source))
    if diff is None:
        return "a config this version cannot read"
    changed = [f"{k} {old} → {new}" for k, (old, new) in sorted(diff.items()) if k not in RUN_LENGTH_KEYS]
    return ", ".join(changed) or None


def _progress(run_dir: Path) -> tuple[int, bool]:
    """How far a run got: (its last evaluated step, finished). Steps first: a run cut at step 2,250 got
    further than a finished 1,000-step run of the same trial, and publishing the shorter one would
    throw away 1,250 steps and the checkpoint they resume from; at the same step, finished is further."""
    return last_evaluated_step(run_dir) or 0, (run_dir / "summary.json").exists()


def _whole_lines(metrics: Path) -> str:
    """A metrics.jsonl up to its last complete line: a run being trained may be writing the next one."""
    text = metrics.read_text() if metrics.exists() else ""
    return text[:text.rfind("\n") + 1]


def _copy_whole(src: Path, dst: Path) -> None:
    """``src`` to ``dst`` through a temporary file: a reader never sees half a checkpoint."""
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def publish(source, dest, checkpoints: bool = False) -> dict:
    """Copy each run of ``source`` (a sweep's folder or one run directory) into ``dest/<run name>``:
    config.yaml, summary.json when the run finished, metrics.jsonl, and with ``checkpoints`` the
    checkpoint of a run cut short; nothing else.

    Returns ``{"finished": [...], "cut": [...], "kept": [...], "not evaluated": [...]}`` (run names): the
    runs published finished, those published cut short (metrics as they stand, no summary), those not
    published because ``dest`` holds the same run further along, and those not published because they
    stopped before their first evaluation (nothing to show). Raises ValueError, before writing anything, when
    ``source`` holds no runs or ``dest`` holds another config under a run's name.
    """
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise ValueError(f"{source}: no such folder; give a sweep's folder (runs/<sweep>) or one run directory")
    runs = _runs(source)
    if not runs:
        raise ValueError(f"{source} holds no runs (folders with config.json or config.yaml)")
    if dest.resolve() in {source.resolve(), *(r.resolve() for r in runs)}:
        raise ValueError(f"{dest}: the source itself; give the results folder to publish into")
    plan, kept, empty = [], [], []
    for run in runs:
        target = dest / run.name
        if _progress(run) == (0, False):  # started, never evaluated: no evidence yet
            empty.append(run.name)
            continue
        if read_saved_config(target) is not None or (target / "metrics.jsonl").exists():
            why = _difference(target, run)
            if why is not None:
                raise ValueError(f"{target} holds the results of another config ({why}); nothing was "
                                 "published: move it away or publish into another folder")
            if _progress(target) > _progress(run):
                kept.append(run.name)
                continue
        plan.append(run)
    done: dict[str, list[str]] = {"finished": [], "cut": [], "kept": kept, "not evaluated": empty}
    for run in plan:
        target = dest / run.name
        target.mkdir(parents=True, exist_ok=True)
        write_yaml(target / "config.yaml", read_saved_config(run))
        # Whether it finished, before its metrics: a run writes its summary after its last line.
        finished = (run / "summary.json").exists()
        # The checkpoint before the metrics: a run still training writes its metrics line, then its
        # checkpoint, at each evaluation. Taken in this order the metrics reach at least the
        # checkpoint's step, and a resume keeps exactly the lines the checkpoint covers; in the other
        # order a checkpoint newer than the metrics would resume past a line that is not there.
        resumable = checkpoints and not finished and (run / "checkpoint.pt").exists()
        if resumable:
            _copy_whole(run / "checkpoint.pt", target / "checkpoint.pt")
        write_text(target / "metrics.jsonl", _whole_lines(run / "metrics.jsonl"))
        if not resumable:  # an older checkpoint would resume behind the metrics just written
            (target / "checkpoint.pt").unlink(missing_ok=True)
        if finished:
            write_text(target / "summary.json", (run / "summary.json").read_text())
        else:
            (target / "summary.json").unlink(missing_ok=True)  # a shorter run's summary would count it as done
        (target / "config.json").unlink(missing_ok=True)  # config.yaml alone: the one copy of the config
        done["finished" if finished else "cut"].append(run.name)
    return done


def describe(done: dict, dest) -> str:
    """What :func:`publish` did, in a few lines."""
    lines = [f"published {len(done['finished']) + len(done['cut'])} run(s) to {dest}: {len(done['finished'])} "
             f"finished, {len(done['cut'])} cut short (config and metrics as they stand, no summary)"]
    dest = Path(dest)
    lines += [f"  cut short: {name}" + (" (with its checkpoint: --extend-from resumes it)"
                                        if (dest / name / "checkpoint.pt").exists() else "")
              for name in done["cut"]]
    lines += [f"  kept as published (it got further there): {name}" for name in done["kept"]]
    lines += [f"  not published (no evaluation yet): {name}" for name in done["not evaluated"]]
    return "\n".join(lines)
