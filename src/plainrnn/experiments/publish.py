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

from pathlib import Path

from ..train.rundir import RunDir, config_differences, runs_in
from .report import read_config
from .planning import RUN_LENGTH_KEYS


def _difference(published: RunDir, source: RunDir) -> str | None:
    """How a published run's config differs from the source's ("lr 0.001 → 0.01"), or None if it is the
    same run (at most longer or shorter: ``steps`` and ``eval_every`` may differ, as for a run extended
    to the full budget)."""
    saved = published.saved_config()
    diff = None if saved is None else config_differences(saved, read_config(source.path))
    if diff is None:
        return "a config this version cannot read"
    changed = [f"{k} {old} → {new}" for k, (old, new) in sorted(diff.items()) if k not in RUN_LENGTH_KEYS]
    return ", ".join(changed) or None


def publish(source, dest, checkpoints: bool = False) -> dict:
    """Copy each run of ``source`` (a sweep's folder or one run directory) into ``dest/<run name>``:
    config.yaml, summary.json when the run finished, metrics.jsonl, and with ``checkpoints`` the
    checkpoint of a run cut short; nothing else (:meth:`RunDir.publish_into`).

    Returns ``{"finished": [...], "cut": [...], "kept": [...], "not evaluated": [...]}`` (run names): the
    runs published finished, those published cut short (metrics as they stand, no summary), those not
    published because ``dest`` holds the same run further along (:meth:`RunDir.progress`: steps, then
    finishedness), and those not published because they stopped before their first evaluation
    (nothing to show). Raises ValueError, before writing anything, when ``source`` holds no runs or
    ``dest`` holds another config under a run's name.
    """
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise ValueError(f"{source}: no such folder; give a sweep's folder (runs/<sweep>) or one run directory")
    runs = runs_in(source)
    if not runs:
        raise ValueError(f"{source} holds no runs (folders with {RunDir.CONFIG} or {RunDir.CONFIG_YAML})")
    if dest.resolve() in {source.resolve(), *(r.path.resolve() for r in runs)}:
        raise ValueError(f"{dest}: the source itself; give the results folder to publish into")
    plan, kept, empty = [], [], []
    for run in runs:
        target = RunDir(dest / run.name)
        if run.progress() == (0, False):  # started, never evaluated: no evidence yet
            empty.append(run.name)
            continue
        if target.saved_config() is not None or target.has_metrics():
            why = _difference(target, run)
            if why is not None:
                raise ValueError(f"{target} holds the results of another config ({why}); nothing was "
                                 "published: move it away or publish into another folder")
            if target.progress() > run.progress():
                kept.append(run.name)
                continue
        plan.append(run)
    done: dict[str, list[str]] = {"finished": [], "cut": [], "kept": kept, "not evaluated": empty}
    for run in plan:
        finished = run.publish_into(RunDir(dest / run.name), checkpoint=checkpoints)
        done["finished" if finished else "cut"].append(run.name)
    return done


def describe(done: dict, dest) -> str:
    """What :func:`publish` did, in a few lines."""
    lines = [f"published {len(done['finished']) + len(done['cut'])} run(s) to {dest}: {len(done['finished'])} "
             f"finished, {len(done['cut'])} cut short (config and metrics as they stand, no summary)"]
    dest = Path(dest)
    lines += [f"  cut short: {name}" + (" (with its checkpoint: --extend-from resumes it)"
                                        if RunDir(dest / name).has_checkpoint() else "")
              for name in done["cut"]]
    lines += [f"  kept as published (it got further there): {name}" for name in done["kept"]]
    lines += [f"  not published (no evaluation yet): {name}" for name in done["not evaluated"]]
    return "\n".join(lines)
