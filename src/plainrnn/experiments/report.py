"""`plainrnn report`: one row per setting over seeds, and learning curves that compare optimizers.

A setting is a run's config without its seed, name and output folder. For each: the number of runs,
how many diverged ("IRNN+SGD: 7/10 diverged"), the best and the median test metric over the seeds that
did not diverge, and the median wall time. With ``reach=X``, also the number of steps each run needed
to first reach a test metric of X (at or below X for losses, at or above for accuracies): the median
over the seeds that reached it, and how many did ("time to solve", e.g. X = 0.01 on the adding problem).
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
import sys
from pathlib import Path

from ..train.rundir import RunDir
from .tables import markdown_table

from .plots import (plot_column_panels, plot_gradient_heatmaps, plot_learning_curves, plot_mlp_panels,
                    plot_spectrum_panels, read_metrics)

_IGNORED = ("seed", "name", "out", "data_dir", "recurrence")  # recurrence: the kernel, equal to rounding
# The order in which a label names what varies; any other config key that varies is named after them
# (:func:`_label_keys`), so that two settings never share a label.
_LABEL_KEYS = ("task", "seq_len", "model", "init", "optimizer", "lr", "kappa2", "margin", "hidden", "layers",
               "input_scale", "clip", "steps", "nonlinearity", "batch_size", "bias", "path_lr_scale", "path_momentum",
               "max_path_growth", "max_unit_step", "orth_penalty", "sv_prior", "weight_decay")


# A number in a run folder's name as the sweep writes it: "1e-2", "0.1", "100", the seed's "10" of "s10".
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")


def natural_key(name: str) -> tuple:
    """Sort key of a run folder's name that reads its numbers as numbers, words after them: the rows of
    a sweep over λ ∈ {1e-4, …, 100} come out as 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100 (not 0.1, 1, 10, 100,
    1e-2, …), margin=none after the numeric margins, seed 10 after seed 2.

    >>> sorted(["p-0.1-s0", "p-1e-2-s0", "p-none-s0", "p-10-s0"], key=natural_key)
    ['p-1e-2-s0', 'p-0.1-s0', 'p-10-s0', 'p-none-s0']
    """
    key, at = [], 0
    for match in _NUMBER.finditer(name):
        if match.start() > at:
            key.append((1, name[at:match.start()], 0.0))
        key.append((0, "", float(match.group())))
        at = match.end()
    if at < len(name):
        key.append((1, name[at:], 0.0))
    return tuple(key)


def find_runs(paths: list[str]) -> list[Path]:
    """The finished run folders given, or under the sweep folders given, each sweep's
    runs in :func:`natural_key` order."""
    runs = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such run directory")
        if RunDir(p).has_summary():
            runs.append(p)
        else:
            runs.extend(sorted((q for q in p.iterdir() if q.is_dir() and RunDir(q).has_summary()),
                               key=lambda r: natural_key(r.name)))
    if not runs:
        raise ValueError(f"no runs (folders with {RunDir.SUMMARY}) under {', '.join(paths)}")
    readable = [run for run in runs if _readable(run)]
    if not readable:
        raise ValueError(f"none of the {len(runs)} run(s) under {', '.join(paths)} could be read (see above)")
    return readable


def _readable(run: Path) -> bool:
    """Whether a run's summary, metrics and config parse and its summary covers its config's steps; if
    not, one line names it and it is left out, so one damaged run (or one being extended) does not
    hide the healthy ones beside it."""
    try:
        summary = RunDir(run).summary()
        RunDir(run).metrics()
        read_config(run)
    except (ValueError, OSError) as e:
        print(f"skipping {run}: {e}", file=sys.stderr)
        return False
    if not RunDir(run).finished():
        print(f"skipping {run}: being extended (its summary covers step {summary.get('steps', 0):,} of "
              f"{read_config(run)['steps']:,})", file=sys.stderr)
        return False
    return True


def read_config(run: Path) -> dict:
    """A run's config: config.json as the trainer writes it, or config.yaml alone (what results/ keeps).
    Keys added to RunConfig since the run was made take their defaults, so that runs of one setting made
    by different versions group together."""
    import dataclasses

    from ..train.config import saved_run_config
    config = RunDir(run).saved_config()
    if config is None:
        raise ValueError(f"{run}: no readable {RunDir.CONFIG} or {RunDir.CONFIG_YAML}")
    try:
        return dataclasses.asdict(saved_run_config(config))
    except TypeError:  # a key RunConfig no longer has: the config as written
        return config


def _setting(config: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in config.items() if k not in _IGNORED))


# What a run *is* (named whenever it varies, default or not: "init=identity" beside "init=glorot"), as
# against the options a run switches on (named only when not at their defaults).
_ALWAYS_NAMED = ("task", "model", "init", "optimizer", "lr")


def _label_keys(varying: set) -> list[str]:
    """The varying keys a label may name: _LABEL_KEYS's order first, then every other varying config key
    (a key left out would give two settings one name) except where a run was kept or shown."""
    unnamed = set(_IGNORED) | {"device", "tensorboard", "checkpoint_every"}
    return [k for k in _LABEL_KEYS if k in varying] + sorted(k for k in varying - set(_LABEL_KEYS) - unnamed)


def _label(config: dict, varying: set) -> str:
    """The keys that tell this setting from the others; an option at its default is left out, so that
    "clip=None max_unit_step=None ..." does not bury what changed, but the model, init, optimizer and
    lr are always named when they vary."""
    import dataclasses

    from ..train.config import RunConfig
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    keys = [k for k in _label_keys(varying)
            if k in _ALWAYS_NAMED or k not in defaults or config.get(k) != defaults[k]]
    # A setting whose varying keys all sit at their defaults (margin=None beside margin=0.1) is named by
    # them, not by a key that is the same in every row.
    keys = keys or _label_keys(varying) or ["optimizer"]
    return " ".join(f"{k}={config[k]}" for k in keys)


def steps_to_reach(run: Path, threshold: float, lower_is_better: bool) -> int | None:
    """The first evaluated step whose test metric reaches ``threshold``, or None."""
    for row in read_metrics(run):
        value = row.get("test_metric")
        if value is not None and math.isfinite(value) and (value <= threshold if lower_is_better else value >= threshold):
            return row["step"]
    return None


def best_valid_record(run: Path, lower_is_better: bool) -> dict | None:
    """The evaluation with the best validation metric (the first, on a tie), or None when no
    evaluation has both a validation and a test metric."""
    best = None
    for row in read_metrics(run):
        valid, test = row.get("valid_metric"), row.get("test_metric")
        if valid is None or test is None or not math.isfinite(valid):
            continue
        if best is None or (valid < best["valid_metric"] if lower_is_better else valid > best["valid_metric"]):
            best = row
    return best


def spectrum_summary(run: Path) -> dict | None:
    """W's singular values as a run recorded them (the ``sv_*`` fields): min, max, mean and std at its
    last evaluation, and the lowest and highest over the whole run; None when the run recorded none."""
    records = [r for r in read_metrics(run) if "sv_mean" in r]
    if not records:
        return None
    last = records[-1]
    return dict(end_min=last["sv_min"], end_max=last["sv_max"], end_mean=last["sv_mean"], end_std=last["sv_std"],
                run_min=min(r["sv_min"] for r in records), run_max=max(r["sv_max"] for r in records))


def _extra_test_metrics(record: dict) -> dict[str, float]:
    """A record's further test metrics (test_accuracy beside a language model's bpc), by name."""
    return {k[len("test_"):]: v for k, v in record.items()
            if k.startswith("test_") and k not in ("test_metric", "test_loss") and isinstance(v, (int, float))}


def collect(runs: list[Path], reach: float | None = None) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for run in runs:
        config = read_config(run)
        summary = RunDir(run).summary()
        g = groups.setdefault(_setting(config), dict(config=config, runs=[], summaries=[]))
        g["runs"].append(run)
        g["summaries"].append(summary)
    configs = [g["config"] for g in groups.values()]
    varying = {k for k in configs[0] if len({json.dumps(c.get(k)) for c in configs}) > 1} if len(configs) > 1 else set()
    rows = []
    for g in groups.values():
        ok = [s for s in g["summaries"] if not s["diverged"] and math.isfinite(s["test_metric"])]
        lower = g["summaries"][0].get("lower_is_better", True)
        tests = [s["test_metric"] for s in ok]
        rows.append(dict(setting=_label(g["config"], varying), metric=g["summaries"][0]["metric"], runs=len(g["runs"]),
                         diverged=sum(s["diverged"] for s in g["summaries"]),
                         best_test=(min(tests) if lower else max(tests)) if tests else math.nan,
                         median_test=statistics.median(tests) if tests else math.nan,
                         median_best_valid=statistics.median(s["best_valid_metric"] for s in g["summaries"]
                                                             if s.get("best_valid_metric") is not None)
                         if any(s.get("best_valid_metric") is not None for s in g["summaries"]) else math.nan,
                         median_wall_s=statistics.median(s["wall_s"] for s in g["summaries"]),
                         run_dirs=[str(r) for r in g["runs"]], task=g["config"]["task"], lower_is_better=lower))
        best_records = [r for r in (best_valid_record(run, lower) for run in g["runs"]) if r is not None]
        rows[-1]["median_test_at_best_valid"] = (statistics.median(r["test_metric"] for r in best_records)
                                                 if best_records else math.nan)
        extras = sorted({name for r in best_records for name in _extra_test_metrics(r)})
        rows[-1]["extras_at_best_valid"] = {  # e.g. PTB's accuracy at the point its bpc is reported
            name: statistics.median(_extra_test_metrics(r)[name] for r in best_records if name in _extra_test_metrics(r))
            for name in extras}
        spectra = [x for x in map(spectrum_summary, g["runs"]) if x is not None]
        rows[-1]["spectrum"] = ({k: statistics.median(x[k] for x in spectra) for k in spectra[0]}
                                if spectra else None)  # medians over the seeds
        if reach is not None:
            steps = [steps_to_reach(run, reach, lower) for run in g["runs"]]
            reached = [k for k in steps if k is not None]
            rows[-1].update(reach=reach, reached=len(reached),
                            median_steps_to_reach=statistics.median(reached) if reached else None)
    return rows


def report(paths: list[str], fmt: str = "md", plots_dir: str | None = None, reach: float | None = None,
           at_best_valid: bool = False, epoch_steps: int | None = None, spectrum: bool = False) -> str:
    rows = collect(find_runs(paths), reach)
    if plots_dir:
        for task in sorted({r["task"] for r in rows}):
            curves, grads = {}, {}
            task_rows = [r for r in rows if r["task"] == task]
            for r in task_rows:
                # The median run over seeds of each setting, so one axis compares the optimizers.
                per_run = [(RunDir(d).summary()["test_metric"], d) for d in r["run_dirs"]]
                finite = sorted((m, d) for m, d in per_run if math.isfinite(m)) or per_run
                median_run = Path(finite[len(finite) // 2][1])
                curves[r["setting"]] = read_metrics(median_run)
                if RunDir(median_run).has_grad_norms():
                    grads[r["setting"]] = RunDir(median_run).grad_norms()
            # The 2017 paper's Figs. 2 and 3, one panel per setting, when the runs recorded them.
            if any("sv_mean" in rec for records in curves.values() for rec in records):
                plot_spectrum_panels(curves, Path(plots_dir) / f"{task}_spectra.png", title=f"{task}: singular values of W")
            if grads and all(grads.values()):
                plot_gradient_heatmaps(grads, Path(plots_dir) / f"{task}_gradient_heatmaps.png",
                                       title=f"{task}: ‖∂L/∂h_t‖, normalized over t")
            # Losses span decades (log axis); accuracies live in [0, 1] and are read on a linear one.
            plot_learning_curves(curves, Path(plots_dir) / f"{task}_learning_curves.png",
                                 ylabel=f"test {task_rows[0]['metric']}", title=task,
                                 log_y=task_rows[0]["lower_is_better"], epoch_steps=epoch_steps)
            if not task_rows[0]["lower_is_better"] and any("test_loss" in rec for records in curves.values() for rec in records):
                # classifiers: the test cross-entropy as well, which the 2017 paper's Fig. 6 draws for s/pMNIST
                plot_learning_curves(curves, Path(plots_dir) / f"{task}_loss_curves.png", metric="test_loss",
                                     ylabel="test cross-entropy", title=f"{task}: test loss", epoch_steps=epoch_steps)
            if any("train_eval_loss" in rec for records in curves.values() for rec in records):
                if task_rows[0]["lower_is_better"]:  # language models: training perplexity/BPC (2016, Fig. 2)
                    plot_learning_curves(curves, Path(plots_dir) / f"{task}_train_curves.png",
                                         metric="train_eval_metric", ylabel=f"training {task_rows[0]['metric']}",
                                         title=f"{task}: on the training set", epoch_steps=epoch_steps)
                else:  # classifiers: the 2015 paper's three panels
                    plot_mlp_panels(curves, Path(plots_dir) / f"{task}_panels.png", title=task)
    if fmt == "json":
        return json.dumps([{k: v for k, v in r.items() if k != "run_dirs"} for r in rows], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        extra = (["reached", "median_steps_to_reach"] if reach is not None else []) + (
            ["median_test_at_best_valid"] if at_best_valid else [])
        w.writerow(["setting", "metric", "runs", "diverged", "best_test", "median_test", "median_best_valid",
                    "median_wall_s", *extra])
        for r in rows:
            w.writerow([r["setting"], r["metric"], r["runs"], r["diverged"], r["best_test"], r["median_test"],
                        r["median_best_valid"], r["median_wall_s"], *(r[k] for k in extra)])
        return buf.getvalue().rstrip("\n")
    return _markdown_rows(rows, reach, at_best_valid, spectrum)


def _markdown_rows(rows: list[dict], reach: float | None, at_best_valid: bool, spectrum: bool) -> str:
    """The report's table: one row a setting, with the columns the flags add."""
    header = ["setting", "metric", "diverged", "best test", "median test", "best valid (median)", "median wall (s)"]
    if reach is not None:
        header.append(f"steps to test {'≤' if rows[0]['lower_is_better'] else '≥'} {reach:g} (reached)")
    extra_names = sorted({name for r in rows for name in r["extras_at_best_valid"]}) if at_best_valid else []
    if at_best_valid:
        header += ["test at best valid (median)", *(f"test {name} there (median)" for name in extra_names)]
    if spectrum:
        header += ["singular values at the end: min … max (mean ± std)", "over the run: min … max"]
    cells = []
    for r in rows:
        row = [r["setting"], r["metric"], f"{r['diverged']}/{r['runs']}", f"{r['best_test']:.5g}",
               f"{r['median_test']:.5g}", f"{r['median_best_valid']:.5g}", f"{r['median_wall_s']:.1f}"]
        if reach is not None:
            steps = "never" if r["median_steps_to_reach"] is None else f"{r['median_steps_to_reach']:g}"
            row.append(f"{steps} ({r['reached']}/{r['runs']})")
        if at_best_valid:
            row.append(f"{r['median_test_at_best_valid']:.5g}")
            row += [f"{r['extras_at_best_valid'][n]:.5g}" if n in r["extras_at_best_valid"] else "–" for n in extra_names]
        if spectrum:
            sv = r["spectrum"]
            row += ([f"{sv['end_min']:.4f} … {sv['end_max']:.4f} ({sv['end_mean']:.4f} ± {sv['end_std']:.4f})",
                     f"{sv['run_min']:.4f} … {sv['run_max']:.4f}"] if sv else ["–", "–"])
        cells.append(row)
    return markdown_table(header, cells)


def curves_table(paths: list[str]) -> str:
    """Each run's evaluations as a markdown table, one row per run: per epoch (image sets evaluated on
    their training set: "training CE / training error % / test error %") or per evaluated step (the
    test metric; "training / test" metric for language models evaluated on their training set). A
    diverged run ends in its reason."""
    runs = find_runs(paths)
    configs = [read_config(run) for run in runs]
    varying = {k for k in configs[0] if len({json.dumps(c.get(k)) for c in configs}) > 1} if configs else set()
    rows, columns = [], []
    for run, config in zip(runs, configs):
        cells = {}
        end = ""
        for record in read_metrics(run):
            if record.get("diverged"):
                end = f"diverged at step {record['step']} ({record.get('reason', '')})"
                continue
            if "train_eval_metric" in record and "epoch" not in record:  # language models: train / test
                cells[f"step {record['step']}"] = f"{record['train_eval_metric']:.4g} / {record['test_metric']:.4g}"
            elif "train_eval_metric" in record:
                key = f"epoch {record['epoch']:g}"
                cells[key] = (f"{record['train_eval_loss']:.4g} / {100 * (1 - record['train_eval_metric']):.2f} / "
                              f"{100 * (1 - record['test_metric']):.2f}")
            elif "test_metric" in record:
                cells[f"step {record['step']}"] = f"{record['test_metric']:.4g}"
        columns.extend(k for k in cells if k not in columns)
        rows.append((_label(config, varying), cells, end))
    return markdown_table(["run", *columns, "end"], [[label, *(cells.get(c, "") for c in columns), end or "finished"]
                                                     for label, cells, end in rows])


def _plot_pivot(runs, configs, cells, rows, values, column, reach, plots_dir) -> None:
    """The pivot table as a figure per task: a panel per column value, every seed's test curve."""
    for task in sorted({c.get("task") for c in configs.values()}):
        of_task = [d for d in runs if configs[d].get("task") == task]
        panels = {f"{column} = {v}": {row: [read_metrics(d) for d in cells[(row, v)]["dirs"] if d in of_task]
                                      for row in rows if (row, v) in cells} for v in values}
        panels = {p: {row: seeds for row, seeds in by_row.items() if seeds} for p, by_row in panels.items()}
        panels = {p: by_row for p, by_row in panels.items() if by_row}  # a column this task never ran
        summary = RunDir(of_task[0]).summary()
        plot_column_panels(panels, Path(plots_dir) / f"{task}_by_{column}.png",
                           ylabel=f"test {summary.get('metric', 'metric')}", threshold=reach,
                           baseline=summary.get("baseline"), title=f"{task}: {len(rows)} settings by {column}")


def _duration(seconds: float) -> str:
    """A wall time as a table shows it: seconds below a minute, minutes below two hours, else hours."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def pivot_table(paths: list[str], column: str, reach: float, scale: float = 1.0, plots_dir: str | None = None,
                wall: bool = False) -> str:
    """Settings as rows, the values of one config key as columns (Table 2 of the 2016 paper: the
    methods against T). Each cell: seeds that reached test metric ``reach`` / seeds, the median step at
    which they first did, and the median final test metric × ``scale`` over every seed (a diverged
    seed counts as the worst); with ``wall``, also the median wall time of a seed (``wall_s`` of its
    summary: the time it trained, resumes included, so a seed that diverged early counts short). With
    ``plots_dir``, the same table as a figure, ``{task}_by_{column}.png``: a panel per column, every seed's test curve (:func:`plot_column_panels`)."""
    runs = find_runs(paths)
    cells: dict[tuple, dict] = {}
    configs = {run: read_config(run) for run in runs}
    if not all(column in c for c in configs.values()):
        raise ValueError(f"--columns {column}: not a config key of every run")
    rest = [{k: v for k, v in c.items() if k != column} for c in configs.values()]
    varying = {k for k in rest[0] if len({json.dumps(r.get(k)) for r in rest}) > 1}
    values = sorted({c[column] for c in configs.values()}, key=lambda v: (v is None, v))
    for run, config in configs.items():
        summary = RunDir(run).summary()
        lower = summary.get("lower_is_better", True)
        row = _label({k: v for k, v in config.items() if k != column}, varying - {column})
        cell = cells.setdefault((row, config[column]), dict(runs=0, reached=[], finals=[], lower=lower, dirs=[],
                                                            walls=[]))
        cell["runs"] += 1
        if summary.get("wall_s") is not None:
            cell["walls"].append(summary["wall_s"])
        cell["dirs"].append(run)
        step = steps_to_reach(run, reach, lower)
        if step is not None:
            cell["reached"].append(step)
        final = summary["test_metric"]
        cell["finals"].append(final if not summary["diverged"] and math.isfinite(final)
                              else (math.inf if lower else -math.inf))
    rows = list(dict.fromkeys(row for row, _ in cells))
    if plots_dir:
        _plot_pivot(runs, configs, cells, rows, values, column, reach, plots_dir)
    table = []
    for row in rows:
        out = []
        for v in values:
            cell = cells.get((row, v))
            if cell is None:
                out.append("not run")
                continue
            step = f"{statistics.median(cell['reached']):g}" if cell["reached"] else "–"
            final = statistics.median(cell["finals"])
            shown = f"{final * scale:.3g}" if math.isfinite(final) else "diverged"
            text = f"{len(cell['reached'])}/{cell['runs']} · {step} · {shown}"
            if wall and cell["walls"]:
                text += f" · {_duration(statistics.median(cell['walls']))}"
            out.append(text)
        table.append([row, *out])
    return markdown_table(["setting", *(f"{column} = {v}" for v in values)], table)
