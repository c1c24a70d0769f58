"""What each command does once its arguments are parsed: read them, call the library, print."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def fail(command: str, message) -> int:
    print(f"plainrnn {command}: error: {message}", file=sys.stderr)
    return 2


def _given(args, command_fields=("config", "set", "resume", "json", "quiet", "func", "command")) -> dict:
    return {k: v for k, v in vars(args).items() if k not in command_fields}


def train(args) -> int:
    from ..experiments.plots import run_figures
    from ..train import resume, train as train_run
    from ..train.config import load_config, parse_overrides
    progress = False if args.quiet else None
    say = lambda folder: _say_where(Path(folder), args.quiet)  # noqa: E731 – once the run is set up
    if args.resume:
        changed = sorted(f"--{k.replace('_', '-')}" for k, v in _given(args).items() if v is not None and k != "steps")
        changed += ["--config"] * bool(args.config) + ["--set"] * bool(args.set)
        if changed:
            raise ValueError(f"--resume continues a run with its own config; {', '.join(changed)} would change it "
                             "(only --steps may be given, to lengthen it); train a new run without --resume")
        summary = resume(args.resume, progress=progress, steps=vars(args).get("steps"), on_start=say)
    else:
        cfg = load_config(args.config, {**_given(args), **parse_overrides(args.set or [])})
        summary = train_run(cfg, progress=progress, resume_from=_cut_run_of(cfg), on_start=say)
    run_figures(summary["run_dir"])
    if args.json:
        print(json.dumps(summary))
    else:
        status = (f"diverged at step {summary['diverged_step']} ({summary['diverged_reason']})" if summary["diverged"]
                  else f"test {summary['metric']} {summary['test_metric']:.6g} (baseline {summary['baseline']:.4g})")
        print(f"{summary['run_dir']}: {status}; {summary['wall_s']:.1f} s")
    return 0


def _say_where(folder: Path, quiet: bool, what: str = "run directory") -> None:
    """The folder written to, resolved, so a relative --out (or `out: ../x` in a shared config) is seen at once."""
    if not quiet:
        print(f"{what}: {folder.resolve()}", file=sys.stderr)


def _cut_run_of(cfg):
    """The run directory of ``cfg`` when it holds this config cut short (the same command again after a
    crash, or with more --steps): it resumes, as a sweep's trial does. Anything else in the way is
    refused by train() in one line; nothing is ever replaced."""
    from ..train.rundir import RunDir
    config = cfg.to_dict()
    run_dir = RunDir.of(config)
    if run_dir.state(config) != "resumable":
        return None
    print(f"{run_dir}: resuming this config's run from step {run_dir.last_evaluated_step() or 0:,}", file=sys.stderr)
    return run_dir.path


def sweep(args) -> int:
    from ..experiments.planning import parse_grid
    from ..experiments.sweep import run_sweep
    from ..train.config import load_config, parse_overrides
    base = load_config(args.config, parse_overrides(args.set or []))
    result = run_sweep(base, parse_grid(args.grid or []), seeds=args.seeds, backend=args.backend, workers=args.workers,
                       address=args.address, name=args.name, progress=not args.quiet, extend=args.extend_from,
                       on_start=lambda folder: _say_where(folder, args.quiet, "sweep directory"))
    _say_extended(result, args.extend_from)
    print(result["table"])
    if result["selected"].get("setting") is not None:
        print(f"\nselected on the validation metric: {result['selected']['setting']} → test "
              f"{result['selected']['test_metric']:.6g}; trials in {result['dir']}")
    else:
        print(f"\nno trial finished; trials in {result['dir']}")
    _say_busy(result)
    return _say_failed(result)


def _say_extended(result: dict, source) -> None:
    if result.get("extended"):
        print(f"{len(result['extended'])} trial(s) taken from their runs in {', '.join(source)} "
              "instead of starting over", file=sys.stderr)


def _say_failed(result: dict) -> int:
    """Failed trials, each with its reason on one line; the exit status 1 says the sweep is not whole
    (130 when Ctrl-C stopped it: the table above is what finished)."""
    if result.get("interrupted"):
        print(f"interrupted: {result['interrupted']} trial(s) not run or stopped at a checkpoint; the same command "
              "continues them", file=sys.stderr)
        return 130
    failed = [r for r in result["results"] if r.status == "failed"]
    for r in failed:
        print(f"failed: {r.run_dir or '?'}: {r.error or 'no reason recorded'}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(result['results'])} trial(s) failed (reasons above, also in trials.jsonl)",
              file=sys.stderr)
    return 1 if failed else 0


def _say_busy(result: dict) -> None:
    """Trials that another process was training are not in the table: say so, and how to get them in."""
    busy = [r for r in result["results"] if r.status == "busy"]
    if busy:
        dirs = ", ".join(r.run_dir for r in busy[:3]) + (", …" if len(busy) > 3 else "")
        print(f"{len(busy)} trial(s) left out of this table, being trained by another process ({dirs}): "
              "rerun this command when they finish to include them", file=sys.stderr)


def report(args) -> int:
    from ..experiments.report import curves_table, pivot_table, report as report_table
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise ValueError(f"--plots {args.plots}: a file, not a folder; give the folder the PNGs go in")
    if args.wall and not args.columns:
        raise ValueError("--wall goes with --columns (the table without it has a median wall (s) column already)")
    if args.columns:
        if args.reach is None:
            raise ValueError("--columns needs --reach X: its cells count the seeds that reached X")
        print(pivot_table(args.runs, args.columns, args.reach, args.scale, plots_dir=args.plots, wall=args.wall))
        return 0
    text = report_table(args.runs, fmt=args.format, plots_dir=args.plots, reach=args.reach,
                        at_best_valid=args.at_best_valid, epoch_steps=args.epoch_steps, spectrum=args.spectrum)
    print(text + ("\n\n" + curves_table(args.runs) if args.curves else ""))
    return 0


def publish(args) -> int:
    from ..experiments.publish import describe, publish as publish_runs
    print(describe(publish_runs(args.source, args.dest, checkpoints=args.checkpoints), args.dest))
    return 0


def demo(args) -> int:
    from ..experiments.demo import run_demo
    return run_demo(out=args.out, steps=args.steps, quiet=args.quiet)


def bench(args) -> int:
    from ..experiments import bench as b
    if args.compare:
        runs = []
        for path in args.compare:
            try:
                runs.append(json.loads(Path(path).read_text()))
            except (OSError, ValueError) as e:
                return fail("bench", f"--compare: {path} is not the JSON of `plainrnn bench --json` ({e})")
            if not isinstance(runs[-1], dict) or not all(isinstance(v, dict) and "ratio" in v for v in runs[-1].values()):
                return fail("bench", f"--compare: {path} is not the JSON of `plainrnn bench --json` "
                                     "(expected {key: {ratio, spread, ...}})")
        print(b.format_comparison(b.compare(*runs), names=tuple(Path(p).name for p in args.compare)))
        return 0
    unknown = [k for k in (args.only or []) if k not in b.TARGETS]
    if unknown:
        return fail("bench", f"unknown case {unknown[0]!r}; allowed: {', '.join(b.TARGETS)}")
    if args.profile:
        if args.profile not in b.CASES:
            return fail("bench", f"--profile: unknown case {args.profile!r}; allowed: {', '.join(b.CASES)}")
        print(b.profile_case(args.profile, quick=args.quick))
        return 0
    # Progress goes to stderr in both modes, so `--json` keeps stdout to the one JSON object.
    say = lambda key: print(f"measuring {key} ...", file=sys.stderr, flush=True)  # noqa: E731
    results = b.run_bench(quick=args.quick, repeats=args.repeats, only=args.only, progress=say,
                          max_width=args.max_width, max_rounds=args.max_rounds, processes=args.processes)
    print(json.dumps(results) if args.json else b.format_table(results))
    return 0


def reproduce(args) -> int:
    from ..experiments import reproduce as r
    from ..experiments.recipes import RECIPES
    from ..train.config import parse_overrides
    if args.recipe in r.ANALYSES:
        print(r.ANALYSES[args.recipe](args.seeds).run(parse_overrides(args.set or []), args.json))
        return 0
    try:
        plan = r.plan(args.recipe, args.budget, args.seeds, args.set or [], args.only or [], args.extend_from or [])
    except ValueError as e:
        return fail("reproduce", e)
    if args.list:
        print("\n".join(r.list_trials(plan, args.extend_from or [])))
        return 0
    result = r.reproduce(plan, args.backend, args.workers, args.address, args.extend_from,
                         on_start=lambda folder: _say_where(folder, False, "sweep directory"))
    _say_extended(result, args.extend_from)
    print(result["table"])
    print(f"\nselected on validation: {result['selected']['setting']} → test {result['selected']['test_metric']:.6g}")
    print(f"the paper: {RECIPES[args.recipe]['paper']}")
    print(f"trials in {result['dir']}; `plainrnn report {result['dir']}` prints the table again")
    _say_busy(result)
    return _say_failed(result)


def data(args) -> int:
    from ..tasks.data import DATASETS, cache_dir, fetch, status
    if args.action == "list":
        print(f"cache: {cache_dir(args.data_dir)}")
        for name, ds in DATASETS.items():
            print(f"  {name:<12} {status(name, args.data_dir):<8} {ds.note}")
        return 0
    if not args.name:
        return fail("data fetch", "name a dataset: " + ", ".join(DATASETS))
    fetch(args.name, args.data_dir, source_file=args.source, force=args.force,
          say=lambda msg: print(msg, file=sys.stderr, flush=True))
    return 0
