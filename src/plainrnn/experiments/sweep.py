"""Sweeps: every grid combination × seeds, on a local process pool or a Ray cluster.

Each trial is one ``train`` run in ``<out>/<sweep>/<setting>-s<seed>``. A trial that raises is
recorded as failed and never stops the others; a diverged trial is a result, counted in the table.
A trial whose ``summary.json`` already exists with the same config is reused, and one with only a
checkpoint resumes from it, so re-running a sweep after a crash only runs what is missing.

Selection follows the papers: for each setting, the median validation metric over its seeds
(diverged seeds count as the worst); the setting with the best median is selected and its test
metric (median over seeds) is reported.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import json
import math
import os
import shutil
import statistics
import sys
from pathlib import Path

from tqdm import tqdm

from ..train.config import RunConfig, config_from_mapping
from ..train.rundir import (config_differences, last_evaluated_step, run_dir_of as _run_dir,  # noqa: F401
                            trial_conflict, trial_state)


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


def build_trials(base: RunConfig, grid: dict | list[dict], seeds: int, sweep_dir: Path) -> list[dict]:
    trials = []
    for values in settings_of(grid):
        for i in range(seeds):
            mapping = {**dataclasses.asdict(base), **values}
            cfg = config_from_mapping(mapping, source="--grid")  # typed and key-checked
            cfg.seed = base.seed + i
            label = setting_label(values)
            cfg.out, cfg.name = str(sweep_dir), f"{label.replace('=', '-').replace(',', '_').replace('/', '_')}-s{cfg.seed}"
            cfg.validate()
            trials.append(dict(setting=label, config=dataclasses.asdict(cfg)))
    return trials


# Keys that say where and how a run is kept, not what it computes: the same trial read from another
# folder or resumed on another device, with or without TensorBoard, is the same trial.
# How long a run goes and how often it is judged. A run that differs from a trial in these alone, with
# fewer steps, is that trial's beginning: `--extend-from` continues it instead of training it again.
RUN_LENGTH_KEYS = ("steps", "eval_every")


def _folders(source_dirs) -> list[Path]:
    return [Path(source_dirs)] if isinstance(source_dirs, (str, Path)) else [Path(d) for d in source_dirs]


def saved_runs(source_dirs) -> list[tuple[Path, dict]]:
    """(run directory, its config as written) for each run in ``source_dirs`` (folders of runs)."""
    from ..train.checkpoint import read_saved_config
    runs = []
    for folder in _folders(source_dirs):
        for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            saved = read_saved_config(run_dir)  # a published run (results/) keeps config.yaml alone
            if saved is not None:
                runs.append((run_dir, saved))
    return runs


def earlier_run(config: dict, source_dirs, runs: list[tuple[Path, dict]] | None = None) -> Path | None:
    """This trial's run in ``source_dirs`` (other sweeps' folders: the cpu budget's for the full one,
    another recipe that ran the same trial, a probe cut short), found by its config, not its folder
    name: the same config finished (the trial itself, taken as it is), or the trial's beginning with
    its checkpoint: a finished run with fewer ``steps`` (and perhaps another ``eval_every``), or a run
    of the same or fewer steps that was stopped before its end; or a finished shorter run that diverged,
    with or without its checkpoint, since more steps cannot undo a divergence. Of several, the one that
    got furthest. None if there is none."""
    found: list[tuple[int, Path]] = []
    for run_dir, saved in saved_runs(source_dirs) if runs is None else runs:
        diff = config_differences(saved, config)
        if diff is None:
            continue
        diff.pop("name", None)  # the folder's name: another grid names the same trial otherwise
        if not set(diff) <= set(RUN_LENGTH_KEYS):
            continue
        had, wants = diff.get("steps", (config["steps"], config["steps"]))
        finished, resumable = (run_dir / "summary.json").exists(), (run_dir / "checkpoint.pt").exists()
        # a shorter run that diverged is the trial's end, checkpoint or not (a published one has none)
        if finished and (had == wants and not diff or had < wants and (resumable or diverged_at(run_dir) is not None)):
            found.append((had, run_dir))
        elif not finished and resumable and had <= wants and (reached := last_evaluated_step(run_dir)) is not None:
            found.append((reached, run_dir))
    return max(found, key=lambda f: f[0])[1] if found else None


def diverged_at(run_dir: Path) -> int | None:
    """The step at which a finished run (one with summary.json) diverged; None if it did not."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return (summary.get("diverged_step") or summary.get("steps") or 0) if summary.get("diverged") else None


def continues_from(source: Path) -> tuple[int, bool]:
    """Where a trial taken from :func:`earlier_run`'s ``source`` starts: (step, finished). A finished run
    starts its trial at its own ``steps``; a run stopped before its end (no summary) at its last
    evaluation, from its checkpoint."""
    if not (source / "summary.json").exists():
        return last_evaluated_step(source) or 0, False
    from ..train.checkpoint import read_saved_config
    return read_saved_config(source)["steps"], True


def extend_from(trials: list[dict], source_dirs) -> list[Path]:
    """Take each new trial's :func:`earlier_run` in ``source_dirs`` (a folder or several) into the trial's
    run directory under the trial's own config: the same run as it is (the trial is done), a shorter one
    or one stopped before its end (a probe cut short) with its checkpoint and metrics, so that the
    sweep resumes it from there (``resumable``). The
    source is left as it was. The result is the run made that long in one go: batches come from the
    run's own generator, saved in the checkpoint, and evaluations never touch training (the first steps
    keep the source's evaluation points). A shorter run that diverged is taken whole, with its summary:
    more steps cannot undo a divergence. Trials being trained elsewhere, or whose source is, are left
    alone. Returns the run directories that were filled."""
    from ..train.checkpoint import write_json, write_yaml
    from ..train.lock import RunDirBusy, hold_run_dir
    runs = saved_runs(source_dirs)
    taken = []
    for trial in trials:
        config = trial["config"]
        source = earlier_run(config, source_dirs, runs)
        if source is None or trial_state(config) != "new":
            continue
        target = _run_dir(config)
        try:
            with hold_run_dir(source), hold_run_dir(target):
                if trial_state(config) != "new":  # read while held: another sweep may have started it
                    continue
                start, source_finished = continues_from(source)  # a run cut short goes on from its checkpoint
                summary = json.loads((source / "summary.json").read_text()) if source_finished else {}
                finished = source_finished and (summary.get("diverged") or start == config["steps"])
                for path in source.iterdir():  # metrics, checkpoint, figures, a task's artifacts
                    if path.is_file() and path.name not in ("config.json", "config.yaml", "summary.json", ".lock"):
                        shutil.copy2(path, target / path.name)
                if finished:
                    write_json(target / "summary.json", dict(summary, run_dir=str(target)))
                write_yaml(target / "config.yaml", RunConfig(**config).to_dict())
                write_json(target / "config.json", RunConfig(**config).to_dict())  # last: the copy is whole
        except RunDirBusy:
            continue
        taken.append(target)
    return taken


def trial_holder(config: dict) -> str | None:
    """The pid of the process training this trial right now (another sweep), else None."""
    from ..train.lock import run_dir_holder
    return run_dir_holder(_run_dir(config))


def trial_progress(config: dict) -> int | None:
    """The last evaluated step of a trial's run directory (how far a resumable trial got), else None."""
    return last_evaluated_step(_run_dir(config))


def run_trial(config: dict, threads: int = 1) -> dict:
    """One trial in the current process; exceptions become a 'failed' record."""
    import torch
    torch.set_num_threads(threads)  # workers × threads ≤ cores: no oversubscription
    from ..train import train
    from .plots import run_figures
    from ..train.lock import RunDirBusy, hold_run_dir
    cfg = RunConfig(**config)
    run_dir = Path(cfg.out) / cfg.run_name()
    try:
        with hold_run_dir(run_dir):
            state = trial_state(config)  # read while held: another sweep may have finished it meanwhile
            if state == "done":
                return dict(json.loads((run_dir / "summary.json").read_text()), status="reused")
            if state == "conflict":  # run_sweep refuses these up front; here only if one appeared since
                raise ValueError(trial_conflict(config))
            resuming = state == "resumable"  # a trial cut short (killed, machine lost)
            summary = train(cfg, progress=False, resume_from=run_dir if resuming else None)
            run_figures(run_dir)
            return dict(summary, status="resumed" if resuming else "ok")
    except RunDirBusy as e:  # another sweep trains it: left to that one, not counted here
        return dict(status="busy", error=str(e), run_dir=str(run_dir), diverged=False, test_metric=math.nan,
                    valid_metric=math.nan, best_valid_metric=None, wall_s=0.0)
    except Exception as e:  # noqa: BLE001 – one failing trial must never kill the sweep
        return dict(status="failed", error=f"{e.__class__.__name__}: {e}", run_dir=str(run_dir), diverged=False,
                    test_metric=math.nan, valid_metric=math.nan, best_valid_metric=None, wall_s=0.0)


def _exit_with(parent: int, every_s: float = 1.0) -> None:
    """A pool worker's initializer: end the worker when the sweep that started it is gone. `kill PID`
    (or a crash) of a sweep otherwise leaves its workers training, unseen, into the run directories
    that a rerun of the sweep writes to as well."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-sweep").start()


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` trial processes: OMP_NUM_THREADS when the user set it (two
    sweeps side by side, each told its share), else the cores split evenly. Workers × threads above the
    cores makes every OpenMP thread wait on the others: two one-worker sweeps at two threads each
    beside two one-thread runs trained at a quarter of their speed on 2 cores."""
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return max(1, (os.cpu_count() or 1) // workers)


def _run_local(trials, workers, progress):
    workers = workers or os.cpu_count() or 1
    threads = threads_per_worker(workers)
    results = [None] * len(trials)
    import multiprocessing as mp
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_exit_with,
                                initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_trial, t["config"], threads): i for i, t in enumerate(trials)}
        bar = tqdm(total=len(trials), desc="sweep", disable=not progress or None, leave=False)
        try:
            for fut in cf.as_completed(futures):
                results[futures[fut]] = _outcome(fut)
                bar.update()
        except KeyboardInterrupt:  # Ctrl-C: no queued trial starts; a running one checkpoints and stops
            _interrupt(pool, futures)
            for fut, i in futures.items():
                results[i] = _outcome(fut) if fut.done() and not fut.cancelled() else None
        bar.close()
    return [r if r is not None else dict(status="interrupted", diverged=False, test_metric=math.nan,
                                         valid_metric=math.nan, wall_s=0.0) for r in results]


def _outcome(fut) -> dict | None:
    try:
        return fut.result()
    except KeyboardInterrupt:  # the trial stopped at Ctrl-C, after a checkpoint: rerun to continue it
        return None
    except Exception as e:  # noqa: BLE001 – a worker that died (e.g. killed) fails only its trial
        return dict(status="failed", error=f"{e.__class__.__name__}: {e}", diverged=False,
                    test_metric=math.nan, valid_metric=math.nan, wall_s=0.0)


def _interrupt(pool, futures) -> None:
    """Cancel the queued trials, pass the Ctrl-C on to the running ones (a terminal's Ctrl-C reached
    them already; a `kill -INT` of this process alone did not), and wait for them to checkpoint."""
    import signal
    for fut in futures:
        fut.cancel()  # the pool hands a worker one trial ahead, which no longer cancels: the loop stops it
    while not all(f.done() for f in futures):
        for process in list(getattr(pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGINT)
            except (ProcessLookupError, OSError):
                pass  # that worker has just exited: nothing left to stop
        cf.wait([f for f in futures if not f.done()], timeout=2)


def ray_auth_environment(address: str | None) -> dict[str, str]:
    """Environment for a Ray client that connects to ``address``.

    Since Ray 2.59 a cluster started by ``ray start`` uses token authentication by default, with the
    token in ``~/.ray/auth_token`` (or ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``), but a client that
    connects by address sends no token unless ``RAY_AUTH_MODE=token``: it is refused with
    InvalidAuthToken and ray.init ends in "Failed to connect". Ray's documented setup is the same
    RAY_AUTH_MODE everywhere; a token-mode client also reaches a cluster without authentication. So
    when the user has not chosen a mode and a token is at hand, the client runs in token mode."""
    if address is None or "RAY_AUTH_MODE" in os.environ:
        return {}
    has_token = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                 or (Path.home() / ".ray" / "auth_token").is_file())
    return {"RAY_AUTH_MODE": "token"} if has_token else {}


def _run_ray(trials, address, progress):
    # Ray reads RAY_AUTH_MODE when it is imported, so the client's mode is set first.
    auth = ray_auth_environment(address)
    saved = {key: os.environ.get(key) for key in auth}
    os.environ.update(auth)
    started_here = False
    try:
        try:
            import ray
        except ImportError as e:
            raise RuntimeError("--backend ray needs Ray: pip install 'plainrnn[ray]'") from e
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except ConnectionError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                hint = ("; if the cluster uses token authentication, give this machine its token (RAY_AUTH_TOKEN, "
                        "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)" if address else "")
                raise RuntimeError(f"could not reach the Ray cluster at {address or 'a new local instance'} "
                                   f"({first}){hint}") from None
        remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        refs = [remote.remote(t["config"], 1) for t in trials]
        results = []
        for ref in tqdm(refs, desc="sweep (ray)", disable=not progress or None, leave=False):
            try:
                results.append(ray.get(ref))
            except Exception as e:  # noqa: BLE001 – a lost worker fails only its trial
                results.append(dict(status="failed", error=f"{e.__class__.__name__}: {e}", diverged=False,
                                    test_metric=math.nan, valid_metric=math.nan, wall_s=0.0))
        return results
    finally:
        if started_here and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def summarize(trials: list[dict], results: list[dict]) -> tuple[list[dict], dict]:
    rows: dict[str, dict] = {}
    for trial, res in zip(trials, results):
        if res.get("status") in ("busy", "interrupted"):  # trained by another process, or stopped: not a result yet
            continue
        row = rows.setdefault(trial["setting"], dict(setting=trial["setting"], trials=0, diverged=0, failed=0,
                                                     valid=[], test=[], wall=[]))
        row["trials"] += 1
        lower = res.get("lower_is_better", True)
        row["lower_is_better"] = lower
        if res.get("status") == "failed":
            row["failed"] += 1
            continue
        if res.get("diverged"):
            row["diverged"] += 1
            continue
        row["valid"].append(res["valid_metric"])
        row["test"].append(res["test_metric"])
        row["wall"].append(res["wall_s"])
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
    lines = ["| setting | diverged | failed | median valid | best test | median test | median wall (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['setting']} | {r['diverged']}/{r['trials']} | {r['failed']} | {r['median_valid']:.5g} | "
                     f"{r['best_test']:.5g} | {r['median_test']:.5g} | {r['median_wall_s']:.1f} |")
    return "\n".join(lines)


def run_sweep(base: RunConfig, grid: dict, seeds: int = 1, backend: str = "local", workers: int | None = None,
              address: str | None = None, name: str | None = None, progress: bool = True,
              extend: str | Path | list | None = None) -> dict:
    """Every trial of ``grid`` × ``seeds`` in ``base.out/name``: finished ones reused, cut ones resumed.
    ``extend``: other sweeps' folders (one or a list) whose runs of these trials the new ones take or
    continue (:func:`extend_from`; e.g. the cpu budget's 20,000-step runs for the full budget's 100,000)."""
    sweep_dir = Path(base.out) / (name or "sweep")
    trials = build_trials(base, grid, seeds, sweep_dir)
    conflicts = [c for c in (trial_conflict(t["config"]) for t in trials) if c]
    if conflicts:  # before anything runs: training them would delete those results
        more = f" (and {len(conflicts) - 1} more trial(s))" if len(conflicts) > 1 else ""
        raise ValueError(f"{conflicts[0]}{more}; give this sweep its own folder (--set out=DIR, or another "
                         "--name) or move those runs away")
    for folder in _folders(extend) if extend is not None else []:
        if not folder.is_dir():
            raise ValueError(f"--extend-from {folder}: no such folder; give a sweep's folder, "
                             "e.g. runs/adding-study-cpu")
    sweep_dir.mkdir(parents=True, exist_ok=True)
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
            f.write(json.dumps(dict(setting=trial["setting"], seed=trial["config"]["seed"], **{
                k: res.get(k) for k in ("status", "error", "diverged", "diverged_step", "diverged_reason",
                                        "valid_metric", "test_metric", "wall_s", "run_dir")})) + "\n")
    (sweep_dir / "table.md").write_text(markdown(table) + "\n")
    (sweep_dir / "selected.json").write_text(json.dumps(selected, indent=2) + "\n")
    return dict(table=markdown(table), rows=table, selected=selected, dir=str(sweep_dir), results=results,
                extended=[str(d) for d in extended],
                interrupted=sum(r.get("status") == "interrupted" for r in results))
