"""A sweep's plan: its settings (a grid or a list), its trials (:class:`~plainrnn.experiments.trials.Trial`),
and for each trial the run it can start from: its own run directory's state, or a run of another
sweep (``--extend-from``) that is this trial or its beginning.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from ..train.config import RunConfig, config_from_mapping
from ..train.rundir import RunDir, RunDirBusy, config_differences, holding, runs_in, trial_state
from .trials import Trial


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """["lr=1e-2,1e-3", "init=identity,uniform"] → {"lr": [...], "init": [...]}; keys are checked later."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--grid expects key=v1,v2,..., got {item!r}")
        key, values = item.split("=", 1)
        key = key.strip().replace("-", "_")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ValueError(f"--grid {key}: no values")
        if key in ("seed", "name", "out"):
            raise ValueError(f"--grid {key}: not a sweepable key (use --seeds for seeds)")
        grid[key] = vals
    return grid


def setting_label(values: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items()) or "base"


def settings_of(grid: dict | list[dict]) -> list[dict]:
    """The settings a sweep runs: every combination of a grid {key: [values]}, or, given a list of
    dicts, exactly those settings (when values belong together, like each optimizer's own lr)."""
    if isinstance(grid, list):
        return [dict(case) for case in grid]
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def only_settings(base: RunConfig, grid: dict | list[dict], only: dict[str, str | list[str]]) -> list[dict]:
    """The settings of ``grid`` whose value of each key in ``only`` equals the given one (or one of the
    given ones), compared as the config types them (so ``lr=0.001`` picks a setting written
    ``lr="1e-3"``); a key a setting leaves alone takes the base config's value. Keys narrow each other;
    values of one key add up: ``--only seq_len=750 --only margin=0 --only margin=1`` keeps T = 750 with
    margin 0 or 1.

    Raises:
        ValueError: a key that is not a config key, or a value no setting has (the message lists the
            values there are).
    """
    def typed(values: dict) -> dict:
        return dataclasses.asdict(config_from_mapping({**dataclasses.asdict(base), **values}, source="--only"))

    settings = settings_of(grid)
    configs = [typed(values) for values in settings]
    kept = list(range(len(settings)))
    for key, values in only.items():
        key = key.replace("-", "_")
        wanted = []
        for value in [values] if isinstance(values, str) else values:
            want = typed({key: value})[key]  # an unknown key or a bad value raises here
            if not any(configs[i][key] == want for i in kept):
                have = sorted({str(configs[i][key]) for i in kept})
                raise ValueError(f"--only {key}={value}: no setting has it; {key} takes " + ", ".join(have))
            wanted.append(want)
        kept = [i for i in kept if configs[i][key] in wanted]
    return [settings[i] for i in kept]


def build_trials(base: RunConfig, grid: dict | list[dict], seeds: int, sweep_dir: Path) -> list[Trial]:
    """Every setting of ``grid`` × ``seeds`` (seeds base.seed, base.seed + 1, …) as a typed, validated
    :class:`~plainrnn.experiments.trials.Trial` whose run directory is ``sweep_dir/<setting>-s<seed>``."""
    trials = []
    for values in settings_of(grid):
        for i in range(seeds):
            mapping = {**dataclasses.asdict(base), **values}
            cfg = config_from_mapping(mapping, source="--grid")  # typed and key-checked
            cfg.seed = base.seed + i
            label = setting_label(values)
            cfg.out, cfg.name = str(sweep_dir), f"{label.replace('=', '-').replace(',', '_').replace('/', '_')}-s{cfg.seed}"
            cfg.validate()
            trials.append(Trial(setting=label, config=dataclasses.asdict(cfg)))
    return trials


# How long a run goes and how often it is judged. A run that differs from a trial in these alone, with
# fewer steps, is that trial's beginning: `--extend-from` continues it instead of training it again.
RUN_LENGTH_KEYS = ("steps", "eval_every")


def source_folders(source_dirs) -> list[Path]:
    return [Path(source_dirs)] if isinstance(source_dirs, (str, Path)) else [Path(d) for d in source_dirs]


def saved_runs(source_dirs) -> list[tuple[RunDir, dict]]:
    """(run directory, its config as written) for each run in ``source_dirs`` (folders of runs); a
    published run (results/) keeps config.yaml alone."""
    return [(run, run.saved_config()) for folder in source_folders(source_dirs) if folder.is_dir()
            for run in runs_in(folder) if run.path != folder]


def earlier_run(config: dict, source_dirs, runs: list[tuple[RunDir, dict]] | None = None) -> Path | None:
    """This trial's run in ``source_dirs`` (other sweeps' folders: the cpu budget's for the full one,
    another recipe that ran the same trial, a probe cut short), found by its config, not its folder
    name: the same config finished (the trial itself, taken as it is), or the trial's beginning with
    its checkpoint: a finished run with fewer ``steps`` (and perhaps another ``eval_every``), or a run
    of the same or fewer steps that was stopped before its end; or a finished shorter run that diverged,
    with or without its checkpoint, since more steps cannot undo a divergence. Of several, the one that
    got furthest. None if there is none."""
    found: list[tuple[int, RunDir]] = []
    for run_dir, saved in saved_runs(source_dirs) if runs is None else runs:
        diff = config_differences(saved, config)
        if diff is None:
            continue
        diff.pop("name", None)  # the folder's name: another grid names the same trial otherwise
        if not set(diff) <= set(RUN_LENGTH_KEYS):
            continue
        had, wants = diff.get("steps", (config["steps"], config["steps"]))
        finished, resumable = run_dir.finished(), run_dir.has_checkpoint()
        # a shorter run that diverged is the trial's end, checkpoint or not (a published one has none)
        if finished and (had == wants and not diff or had < wants and (resumable or run_dir.diverged_at() is not None)):
            found.append((had, run_dir))
        elif not finished and resumable and had <= wants and (reached := run_dir.last_evaluated_step()) is not None:
            found.append((reached, run_dir))
    return max(found, key=lambda f: f[0])[1].path if found else None


def continues_from(source) -> tuple[int, bool]:
    """Where a trial taken from :func:`earlier_run`'s ``source`` starts: (step, finished). A finished run
    starts its trial at its own ``steps``; a run stopped before its end at its last evaluation, from
    its checkpoint."""
    source = RunDir(source)
    if not source.finished():
        return source.last_evaluated_step() or 0, False
    return source.saved_config()["steps"], True


def extend_from(trials: list[Trial], source_dirs) -> list[Path]:
    """Take each new trial's :func:`earlier_run` in ``source_dirs`` (a folder or several) into the trial's
    run directory under the trial's own config: the same run as it is (the trial is done), a shorter one
    or one stopped before its end (a probe cut short) with its checkpoint and metrics, so that the
    sweep resumes it from there (``resumable``). The
    source is left as it was. The result is the run made that long in one go: batches come from the
    run's own generator, saved in the checkpoint, and evaluations never touch training (the first steps
    keep the source's evaluation points). A shorter run that diverged is taken whole, with its summary:
    more steps cannot undo a divergence. Trials being trained elsewhere, or whose source is, are left
    alone. Returns the run directories that were filled."""
    runs = saved_runs(source_dirs)
    taken = []
    for trial in trials:
        config = trial.config
        source = earlier_run(config, source_dirs, runs)
        if source is None or trial_state(config) != "new":
            continue
        source = RunDir(source)
        target = RunDir.of(config)
        try:
            with holding(source, target):
                if trial_state(config) != "new":  # read while held: another sweep may have started it
                    continue
                start, source_finished = continues_from(source)  # a run cut short goes on from its checkpoint
                finished = source_finished and (source.diverged_at() is not None or start == config["steps"])
                source.extend_into(target, config, finished)
        except RunDirBusy:
            continue
        taken.append(target.path)
    return taken


def trial_holder(config: dict) -> str | None:
    """The pid of the process training this trial right now (another sweep), else None."""
    return RunDir.of(config).holder()


def trial_progress(config: dict) -> int | None:
    """The last evaluated step of a trial's run directory (how far a resumable trial got), else None."""
    return RunDir.of(config).last_evaluated_step()
