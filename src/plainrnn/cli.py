"""`plainrnn demo | train | sweep | report | reproduce | bench | data` – the command line.

Bad input gets one line naming the flag and what is allowed, exit status 2, and no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .nets.init import MLP_INITS, RECURRENT_INITS
from .train.config import MODELS, NONLINEARITIES, OPTIMIZERS, RunConfig

SUPPRESS = argparse.SUPPRESS


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line: 'plainrnn train: error: ...'."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(command: str, message) -> int:
    print(f"plainrnn {command}: error: {message}", file=sys.stderr)
    return 2


def _number(kind, minimum=None, strict=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}")
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


def _choice(allowed):
    def parse(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {text!r}; allowed: {', '.join(allowed)}")
        return text
    return parse


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Every flag defaults to 'not given', so that --config FILE and --set can supply the rest; the
    defaults shown in --help are RunConfig's."""
    from .tasks import TASKS
    d = RunConfig()

    def add(flag, help, default=None, show_default=True, **kw):
        if show_default:
            help = f"{help} (default: {default})"
        p.add_argument(flag, default=SUPPRESS, help=help, **kw)

    add("--task", f"benchmark task: {', '.join(TASKS)}; real datasets are fetched into the cache on first use",
        d.task, type=_choice(TASKS))
    add("--model", "relu: plain ReLU RNN; tanh: plain tanh RNN; lstm: LSTM baseline; spectral: W = U diag(s) Vᵀ "
        "with geodesic steps on U, V; mlp: ReLU MLP for the image sets", d.model, type=_choice(MODELS))
    add("--seq-len", "sequence length T, at least 2", "the task's: adding/copy 100, ptb-char 50, ptb-word 20, "
        "ptb-sentences 75, text8/shakespeare 180; smnist/pmnist are 784", type=_number(int, 2))
    add("--hidden", "hidden units per layer", d.hidden, type=_number(int, 1))
    add("--layers", "recurrent layers (MLP: hidden layers)", d.layers, type=_number(int, 1))
    add("--nonlinearity", "relu or tanh; with --model spectral also none, oplu, prelu", "the model's",
        type=_choice(NONLINEARITIES))
    add("--init", f"recurrent init: {', '.join(RECURRENT_INITS)} (identity = IRNN); MLP: balanced (the "
        "default) or unbalanced (the 2015 paper's: 2000 random hidden units rescaled by 10^c, c log-normal)", d.init,
        type=_choice(RECURRENT_INITS + MLP_INITS))
    add("--no-bias", "plain RNNs without biases, as the 2016 paper's equations are written", "with biases",
        dest="bias", action="store_false")
    add("--init-scale", "a of the uniform recurrent init U[-a, a]", d.init_scale, type=_number(float, 0, True))
    add("--input-scale", "non-recurrent weights from U[-s, s], as in the 2016 paper", d.input_scale,
        type=_number(float, 0, True))
    add("--optimizer", "sgd, momentum (SGD+0.9), adam, adagrad, rmsprop, path-sgd (Path-SGD), "
        "path-adam (Adam on path-normalized gradients), invariant-adam (Adam in the path-normalized coordinates "
        "√κ·w: rescaling-invariant)", d.optimizer, type=_choice(OPTIMIZERS))
    add("--lr", "learning rate, > 0", d.lr, type=_number(float, 0, True))
    add("--momentum", "momentum of --optimizer momentum", d.momentum, type=_number(float, 0))
    add("--kappa2", "Path-SGD with the second-order term κ2 (exact ½∂²γ²/∂p²)", "off", show_default=True,
        action="store_true")
    add("--path-lr-scale", "Path-SGD step scale: path_norm (η·γ²(w0), rescaling-invariant), path_norm_now (η·γ² "
        "re-estimated at every κ pass, also invariant) or none (raw eq. 8); invariant-adam: path_norm (η·√γ²(w0)), "
        "z_rms (η·RMS of √κ·w at w0) or none", d.path_lr_scale,
        type=_choice(("path_norm", "path_norm_now", "z_rms", "none")))
    add("--path-momentum", "momentum on Path-SGD's path-normalized direction", d.path_momentum,
        type=_number(float, 0))
    add("--max-path-growth", "Path-SGD's (and invariant-adam's) γ² safeguard: a step that raises the path norm γ²_net by more than this "
        "fraction is undone and retried at half the size (rescaling-invariant)", "off", type=_number(float, 0, True))
    add("--max-unit-step", "Path-SGD's (and invariant-adam's) per-unit trust region ρ: each unit's incoming step is at most ρ times its "
        "incoming weights, measured in the κ metric (rescaling-invariant)", "off", type=_number(float, 0, True))
    add("--path-lr-nonrecurrent", "Path-SGD on a plain RNN: lr multiplier of every parameter but the recurrent "
        "matrix (eq. 8 moves the recurrent rows far faster; a fixed factor keeps rescaling invariance)",
        d.path_lr_nonrecurrent, type=_number(float, 0, True))
    add("--margin", "spectral model: singular values in [1-m, 1+m] (eq. 10); unset: free singular values",
        "unset", type=_number(float, 0))
    add("--orth-lr", "spectral model: geodesic SGD learning rate on U and V (the 2017 paper's)", d.orth_lr,
        type=_number(float, 0, True))
    add("--orth-penalty", "add λ‖WᵀW − I‖² to the loss (any recurrent model)", d.orth_penalty, type=_number(float, 0))
    add("--loss-over-time", "mean or sum: how a task with an output at every step (copy, language models) "
        "combines its per-step losses for training; sum multiplies the gradient by T, as a cost summed over "
        "time steps does, against the penalties and for SGD's step", d.loss_over_time, type=_choice(("mean", "sum")))
    add("--sv-prior", "add λ Σ(s_i − 1)², a mean-one Gaussian prior on W's singular values", d.sv_prior,
        type=_number(float, 0))
    add("--weight-decay", "add λ‖W‖² on the composite recurrent matrix (the 2017 paper uses 1e-4)", d.weight_decay,
        type=_number(float, 0))
    add("--dropout", "MLP dropout on hidden units (the 2015 paper uses 0.5)", d.dropout, type=_number(float, 0))
    add("--batch-size", "minibatch size", d.batch_size, type=_number(int, 1))
    add("--steps", "training steps", d.steps, type=_number(int, 1))
    add("--clip", "clip the gradient norm at this value", "off", type=_number(float, 0, True))
    add("--diverge-above", "end the run as diverged when the validation loss exceeds this", d.diverge_above,
        type=_number(float, 0, True))
    add("--eval-every", "evaluate on the validation and test sets every N steps", d.eval_every, type=_number(int, 1))
    add("--eval-limit", "evaluate on at most N validation and test examples", "all", type=_number(int, 1))
    add("--eval-train", "real data: also evaluate on the training set (the 2015 paper's training cross-entropy "
        "and error, the 2016 paper's training perplexity)", "off", action="store_true")
    add("--train-eval-limit", "with --eval-train: at most N training examples (an image set's first N; N windows "
        "spread over a text)", "--eval-limit", type=_number(int, 1))
    add("--full-train", "image sets: train on the validation split too (the 2015 paper, once the step size is "
        "chosen); validation numbers are then not held out", "off", action="store_true")
    add("--checkpoint-every", "write an atomic checkpoint every N steps", "at every evaluation", type=_number(int, 1))
    add("--grad-norms-every", "every N steps, record ‖∂L/∂h_t‖ for each t in grad_norms.jsonl", "off",
        type=_number(int, 0))
    add("--tensorboard", "also log scalars for TensorBoard in <run dir>/tensorboard", "off", action="store_true")
    add("--seed", "random seed: same seed, same numbers", d.seed, type=_number(int, 0))
    add("--data-dir", "dataset cache", "$PLAINRNN_DATA or ~/.cache/plainrnn")
    add("--device", "where the model trains: cpu, cuda, cuda:N, or auto (cuda when torch sees a GPU); the κ "
        "passes and Cayley steps follow the model, the C++ kernel is the CPU route", d.device)
    add("--out", "parent directory of run directories", d.out)
    add("--name", "run directory name", "built from the settings")


def _given(args, command_fields=("config", "set", "resume", "json", "quiet", "func", "command")) -> dict:
    return {k: v for k, v in vars(args).items() if k not in command_fields}


def _cmd_train(args) -> int:
    from .experiments.plots import run_figures
    from .train import resume, train
    from .train.config import load_config, parse_overrides
    if args.resume:
        changed = sorted(f"--{k.replace('_', '-')}" for k, v in _given(args).items() if v is not None and k != "steps")
        changed += ["--config"] * bool(args.config) + ["--set"] * bool(args.set)
        if changed:
            raise ValueError(f"--resume continues a run with its own config; {', '.join(changed)} would change it "
                             "(only --steps may be given, to lengthen it); train a new run without --resume")
        summary = resume(args.resume, progress=False if args.quiet else None, steps=vars(args).get("steps"))
    else:
        overrides = parse_overrides(args.set or [])
        cfg = load_config(args.config, {**_given(args), **overrides})
        summary = train(cfg, progress=False if args.quiet else None, resume_from=_cut_run_of(cfg))
    run_figures(summary["run_dir"])
    if args.json:
        print(json.dumps(summary))
    else:
        status = (f"diverged at step {summary['diverged_step']} ({summary['diverged_reason']})" if summary["diverged"]
                  else f"test {summary['metric']} {summary['test_metric']:.6g} (baseline {summary['baseline']:.4g})")
        print(f"{summary['run_dir']}: {status}; {summary['wall_s']:.1f} s")
    return 0


def _cut_run_of(cfg):
    """The run directory of ``cfg`` when it holds this config cut short (the same command again after a
    crash, or with more --steps): it resumes, as a sweep's trial does. Anything else in the way is
    refused by train() in one line; nothing is ever replaced."""
    from .train.rundir import last_evaluated_step, run_dir_of, trial_state
    config = cfg.to_dict()
    if trial_state(config) != "resumable":
        return None
    run_dir = run_dir_of(config)
    print(f"{run_dir}: resuming this config's run from step {last_evaluated_step(run_dir) or 0:,}", file=sys.stderr)
    return run_dir


def _cmd_sweep(args) -> int:
    from .experiments.sweep import parse_grid, run_sweep
    from .train.config import load_config, parse_overrides
    base = load_config(args.config, parse_overrides(args.set or []))
    grid = parse_grid(args.grid or [])
    result = run_sweep(base, grid, seeds=args.seeds, backend=args.backend, workers=args.workers,
                       address=args.address, name=args.name, progress=not args.quiet, extend=args.extend_from)
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
              "instead of starting over",
              file=sys.stderr)


def _say_failed(result: dict) -> int:
    """Failed trials, each with its reason on one line; the exit status 1 says the sweep is not whole
    (130 when Ctrl-C stopped it: the table above is what finished)."""
    if result.get("interrupted"):
        print(f"interrupted: {result['interrupted']} trial(s) not run or stopped at a checkpoint; the same command "
              "continues them", file=sys.stderr)
        return 130
    failed = [r for r in result["results"] if r.get("status") == "failed"]
    for r in failed:
        print(f"failed: {r['run_dir']}: {r.get('error', 'no reason recorded')}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(result['results'])} trial(s) failed (reasons above, also in trials.jsonl)",
              file=sys.stderr)
    return 1 if failed else 0


def _say_busy(result: dict) -> None:
    """Trials that another process was training are not in the table: say so, and how to get them in."""
    busy = [r for r in result["results"] if r.get("status") == "busy"]
    if busy:
        dirs = ", ".join(r["run_dir"] for r in busy[:3]) + (", …" if len(busy) > 3 else "")
        print(f"{len(busy)} trial(s) left out of this table, being trained by another process ({dirs}): "
              "rerun this command when they finish to include them", file=sys.stderr)


def _cmd_report(args) -> int:
    from .experiments.report import pivot_table, report
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise ValueError(f"--plots {args.plots}: a file, not a folder; give the folder the PNGs go in")
    if args.wall and not args.columns:
        raise ValueError("--wall goes with --columns (the table without it has a median wall (s) column already)")
    if args.columns:
        if args.reach is None:
            raise ValueError("--columns needs --reach X: its cells count the seeds that reached X")
        print(pivot_table(args.runs, args.columns, args.reach, args.scale, plots_dir=args.plots, wall=args.wall))
        return 0
    text = report(args.runs, fmt=args.format, plots_dir=args.plots, reach=args.reach, at_best_valid=args.at_best_valid,
                  epoch_steps=args.epoch_steps, spectrum=args.spectrum)
    if args.curves:
        from .experiments.report import curves_table
        text += "\n\n" + curves_table(args.runs)
    print(text)
    return 0


def _cmd_publish(args) -> int:
    from .experiments.publish import describe, publish
    print(describe(publish(args.source, args.dest, checkpoints=args.checkpoints), args.dest))
    return 0


def _cmd_demo(args) -> int:
    from .experiments.demo import run_demo
    return run_demo(out=args.out, steps=args.steps, quiet=args.quiet)


def _cmd_bench(args) -> int:
    from .experiments.bench import TARGETS, format_table, run_bench
    if args.compare:
        from .experiments.bench import compare, format_comparison
        runs = []
        for path in args.compare:
            try:
                runs.append(json.loads(Path(path).read_text()))
            except (OSError, ValueError) as e:
                return _fail("bench", f"--compare: {path} is not the JSON of `plainrnn bench --json` ({e})")
            if not isinstance(runs[-1], dict) or not all(isinstance(v, dict) and "ratio" in v for v in runs[-1].values()):
                return _fail("bench", f"--compare: {path} is not the JSON of `plainrnn bench --json` "
                                      "(expected {key: {ratio, spread, ...}})")
        print(format_comparison(compare(*runs), names=tuple(Path(p).name for p in args.compare)))
        return 0
    unknown = [k for k in (args.only or []) if k not in TARGETS]
    if unknown:
        return _fail("bench", f"unknown case {unknown[0]!r}; allowed: {', '.join(TARGETS)}")
    if args.profile:
        from .experiments.bench import CASES, profile_case
        if args.profile not in CASES:
            return _fail("bench", f"--profile: unknown case {args.profile!r}; allowed: {', '.join(CASES)}")
        print(profile_case(args.profile, quick=args.quick))
        return 0
    # Progress goes to stderr in both modes, so `--json` keeps stdout to the one JSON object.
    say = lambda key: print(f"measuring {key} ...", file=sys.stderr, flush=True)  # noqa: E731
    results = run_bench(quick=args.quick, repeats=args.repeats, only=args.only, progress=say,
                        max_width=args.max_width, max_rounds=args.max_rounds, processes=args.processes)
    print(json.dumps(results) if args.json else format_table(results))
    return 0


def _cmd_reproduce(args) -> int:
    if args.recipe == "kappa-table":
        from .experiments.kappa_ratio import kappa_ratio_table, to_markdown
        table = kappa_ratio_table(seeds=args.seeds or 3)
        print(json.dumps(table, indent=1) if args.json else to_markdown(table))
        return 0
    if args.recipe == "step-scales":
        from .experiments import step_scales
        from .train.config import load_config, parse_overrides
        cfg = load_config(None, {"task": "adding", **parse_overrides(args.set or [])})
        result = step_scales.step_scales(cfg)
        print(json.dumps(result, indent=1) if args.json else step_scales.to_markdown(result))
        return 0
    if args.recipe == "first-steps":
        from .experiments import first_steps
        from .train.config import load_config, parse_overrides
        cfg = load_config(None, {"task": "adding", "optimizer": "path-sgd", "seed": 1,
                                 **parse_overrides(args.set or [])})
        if cfg.optimizer != "path-sgd":
            raise ValueError(f"first-steps measures Path-SGD's steps: optimizer must be path-sgd, got {cfg.optimizer}")
        records = first_steps.first_steps(cfg)
        print(json.dumps(records, indent=1) if args.json else first_steps.to_markdown(records))
        return 0
    if args.recipe == "invariance-gap":
        from .experiments import invariance_gap
        from .train.config import load_config, parse_overrides
        defaults = {"task": "mnist", "model": "mlp", "hidden": 1000, "layers": 2, "lr": 1e-3, "batch_size": 100,
                    "steps": 300, "seed": 1}
        cfg = load_config(None, {**defaults, **parse_overrides(args.set or [])})
        rows = invariance_gap.invariance_gap(cfg)
        print(json.dumps(rows, indent=1) if args.json else invariance_gap.to_markdown(rows))
        return 0
    from .experiments.recipes import RECIPES, plan_of
    from .experiments.sweep import only_settings, run_sweep
    from .train.config import load_config, parse_overrides
    recipe = RECIPES[args.recipe]
    try:
        plan = plan_of(args.recipe, args.budget)  # runs/<recipe>-<budget>: budgets never collide
    except ValueError as e:
        return _fail("reproduce", e)
    base = load_config(None, {**recipe["base"], **plan["overrides"], **parse_overrides(args.set or [])})
    grid = plan["grid"]
    if args.only:  # a subset of the recipe's settings, in the same sweep directory (the table sees them all)
        wanted: dict[str, list[str]] = {}
        for item in args.only:  # a key given twice keeps either value
            for key, value in parse_overrides([item], flag="--only").items():
                wanted.setdefault(key, []).append(value)
        grid = only_settings(base, grid, wanted)
    for folder in args.extend_from or []:  # before --list reads them
        if not Path(folder).is_dir():
            raise ValueError(f"--extend-from {folder}: no such folder; give a sweep's folder, "
                             f"e.g. runs/{args.recipe}-cpu")
    if args.list:
        from .experiments.sweep import (build_trials, continues_from, diverged_at, earlier_run, trial_conflict,
                                        trial_holder, trial_progress, trial_state)
        trials = build_trials(base, grid, args.seeds or plan["seeds"], Path(base.out) / plan["dir"])
        states: dict[str, int] = {}
        for trial in trials:
            state, holder = trial_state(trial["config"]), trial_holder(trial["config"])
            reached = trial_progress(trial["config"]) if state == "resumable" or holder else None
            where = f"  (evaluated to step {reached:,} of {trial['config']['steps']:,})" if reached else ""
            if holder:
                state, where = "running", where + f"  by pid {holder}"
            elif state == "conflict":  # the sweep would refuse to start: say what is in the way
                where = f"  ({trial_conflict(trial['config'])})"
            elif state == "new" and args.extend_from and (source := earlier_run(trial["config"], args.extend_from)):
                start, finished = continues_from(source)
                diverged = diverged_at(source) if finished else None
                where = (f"  (takes {source} as it is)" if finished and start == trial["config"]["steps"] else
                         f"  (takes {source}: it diverged, at step {diverged:,})" if diverged is not None else
                         f"  (continues {source} from step {start:,})")
            print(f"{state:<10} {trial['setting']}  seed {trial['config']['seed']}{where}")
            states[state] = states.get(state, 0) + 1
        tally = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))  # how far the recipe got
        print(f"{len(trials)} trials in {Path(base.out) / plan['dir']}" + (f" ({tally})" if trials else ""))
        return 0
    result = run_sweep(base, grid, seeds=args.seeds or plan["seeds"], backend=args.backend,
                       workers=args.workers, address=args.address, name=plan["dir"], progress=True,
                       extend=args.extend_from)
    _say_extended(result, args.extend_from)
    print(result["table"])
    print(f"\nselected on validation: {result['selected']['setting']} → test {result['selected']['test_metric']:.6g}")
    print(f"the paper: {recipe['paper']}")
    print(f"trials in {result['dir']}; `plainrnn report {result['dir']}` prints the table again")
    _say_busy(result)
    return _say_failed(result)


def _cmd_data(args) -> int:
    from .tasks.data import DATASETS, DataError, cache_dir, fetch, status
    if args.action == "list":
        print(f"cache: {cache_dir(args.data_dir)}")
        for name, ds in DATASETS.items():
            print(f"  {name:<12} {status(name, args.data_dir):<8} {ds.note}")
        return 0
    if not args.name:
        return _fail("data fetch", "name a dataset: " + ", ".join(DATASETS))
    fetch(args.name, args.data_dir, source_file=args.source, force=args.force,
          say=lambda msg: print(msg, file=sys.stderr, flush=True))
    return 0


def _add_extend_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extend-from", metavar="DIR", action="append", default=None,
                   help="another sweep's folder (e.g. runs/adding-study-cpu): a new trial that ran there (found by "
                        "its config) takes that run as it is, or continues it from its checkpoint if it had fewer "
                        "steps (and another eval_every) or was stopped before its end, instead of starting over; "
                        "that folder is left as it was; a published folder (results/table2_adding_cpu) gives "
                        "its finished runs on a new machine (repeatable: the longest run found is taken)")


def _add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """Where the trials of a sweep (or a reproduction recipe) run."""
    p.add_argument("--backend", type=_choice(("local", "ray")), default="local",
                   help="local: a process pool sized to the cores; ray: a Ray cluster (default: %(default)s)")
    p.add_argument("--workers", type=_number(int, 1), default=None, help="local pool size (default: the cores)")
    p.add_argument("--address", default=None, help="Ray cluster address for ray.init (default: start one locally)")


def build_parser() -> argparse.ArgumentParser:
    from .tasks.data import DATASETS
    parser = _Parser(prog="plainrnn", description="Plain ReLU RNNs with Path-SGD and spectrally constrained "
                                                   "RNNs: train, sweep, report, reproduce, bench.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="the adding problem at T=100, four setups side by side (about 3 minutes on 2 cores)",
                          description="Trains the adding problem at T=100 with IRNN+SGD, ReLU RNN+Adam, "
                                      "ReLU RNN+Path-SGD (per-unit trust region) and Path-Adam, each at its best setting in "
                                      "the adding study; prints a table of test MSE, a learning-curve PNG and the "
                                      "study's findings.")
    demo.add_argument("--out", default="runs", help="parent directory of the demo's runs (default: %(default)s)")
    demo.add_argument("--steps", type=_number(int, 1), default=None, help="override the steps per setup")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser("train", help="train one model on one task",
                           description="Train one model on one task. Settings come from the flags, or from "
                                       "--config FILE (YAML) with --set key=value overrides.")
    train.add_argument("--config", help="YAML file of RunConfig keys (see docs/experiments.md)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--json", action="store_true", help="print the run summary as one JSON object on the last line")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_train_arguments(train)
    train.set_defaults(func=_cmd_train)

    sweep = sub.add_parser("sweep", help="run a grid × seeds, select on validation, report test",
                           description="Runs every combination of the --grid values for --seeds seeds, on a local "
                                       "process pool or a Ray cluster, selects the best setting on the validation "
                                       "metric (median over seeds) and reports its test metric. Finished trials are "
                                       "reused when a sweep is run again.")
    sweep.add_argument("config", nargs="?", help="YAML file of RunConfig keys (default: the built-in defaults)")
    sweep.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", help="values to sweep (repeatable)")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    sweep.add_argument("--seeds", type=_number(int, 1), default=1, help="seeds per setting (default: %(default)s)")
    _add_extend_argument(sweep)
    _add_backend_arguments(sweep)
    sweep.add_argument("--name", default=None, help="sweep directory name under the config's out (default: sweep)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_cmd_sweep)

    rep = sub.add_parser("report", help="tables and learning curves from run directories",
                         description="One row per setting (all config keys but the seed): best and median test "
                                     "metric over seeds, diverged count, wall time; plus learning-curve PNGs.")
    rep.add_argument("runs", nargs="+", help="run directories, or folders holding them (a sweep directory)")
    rep.add_argument("--format", type=_choice(("md", "csv", "json")), default="md", help="md, csv or json (default: md)")
    rep.add_argument("--plots", default=None, metavar="DIR",
                     help="write learning-curve PNGs here (default: none); with --columns, the table as a figure: "
                          "a panel per column, every seed's test curve")
    rep.add_argument("--curves", action="store_true",
                     help="also print each run's evaluations: test metric, and for runs with --eval-train the training "
                          "metric beside it (image sets: training cross-entropy, training error and test error "
                          "(%%) per epoch)")
    rep.add_argument("--reach", type=_number(float), default=None, metavar="X",
                     help="add the steps each setting needed to first reach test metric X (≤ X for losses, ≥ X "
                          "for accuracies), median over the seeds that did, e.g. --reach 0.01 on adding")
    rep.add_argument("--at-best-valid", action="store_true",
                     help="add each setting's test metric at its best validation point, median over seeds "
                          "(what the papers report for MNIST and PTB)")
    rep.add_argument("--spectrum", action="store_true",
                     help="add W's singular values: min … max (mean ± std) at the last evaluation, and min … max "
                          "over the run, median over seeds (runs of models with a square W)")
    rep.add_argument("--epoch-steps", type=_number(int, 1), default=None, metavar="N",
                     help="with --plots: a top axis in epochs of N training steps (sMNIST at batch 50: 1100)")
    rep.add_argument("--columns", default=None, metavar="KEY",
                     help="instead, a table of settings × the values of config KEY (e.g. seq_len, the 2016 "
                          "paper's Table 2); each cell: seeds that reached --reach / seeds · their median step "
                          "· the median final test metric × --scale")
    rep.add_argument("--scale", type=_number(float, 0, True), default=1.0,
                     help="multiply the final test metric in --columns cells (100: the paper's MSE×100)")
    rep.add_argument("--wall", action="store_true",
                     help="with --columns: add the median wall time of a seed to each cell (seconds, minutes, or "
                          "hours from 2 h; it depends on how many runs shared the machine)")
    rep.set_defaults(func=_cmd_report)

    pub = sub.add_parser("publish", help="copy a sweep's evidence into results/ (config, summary, metrics; "
                                         "--checkpoints: cut runs resume elsewhere)",
                         description="Copy each run of SOURCE into DEST/<run>: config.yaml, summary.json (when it "
                                     "finished) and metrics.jsonl; what results/ keeps (REPRODUCTION.md). A run cut "
                                     "short goes with its metrics as they stand and no summary (and, with "
                                     "--checkpoints, its checkpoint). A published run that got further is kept; "
                                     "another config under a run's name stops it before anything is written.",
                         epilog="example: plainrnn publish runs/table2-adding-cpu results/table2_adding_cpu "
                                "--checkpoints   (then, on any machine: plainrnn reproduce table2-adding --budget cpu "
                                "--extend-from results/table2_adding_cpu)")
    pub.add_argument("source", help="a sweep's folder (runs/<sweep>) or one run directory")
    pub.add_argument("dest", help="the folder to publish into (results/<experiment>)")
    pub.add_argument("--checkpoints", action="store_true",
                     help="publish each cut run's checkpoint.pt too, so that --extend-from DEST resumes it on another "
                          "machine (a run that spans sessions); without it, a cut run's earlier published checkpoint "
                          "is removed, since it would resume behind the metrics. Finished runs never keep one")
    pub.set_defaults(func=_cmd_publish)

    from .experiments.recipes import BUDGET_NAMES, RECIPES
    names = ("kappa-table", "step-scales", "first-steps", "invariance-gap", *RECIPES)
    analyses = {
        "kappa-table": "‖κ2‖/‖κ1‖ over T × H at uniform[-0.1, 0.1] init (2016, Fig. 2)",
        "step-scales": "the spread of the factor s/κ that multiplies a Path-SGD step, per parameter, at a run's "
                       "init (default: adding, T=100; --set any run key)",
        "first-steps": "Path-SGD's first steps in the κ metric, the whole step against the largest step of one "
                       "unit (default: adding, T=100, lr 1e-3, no clipping; --set any run key)",
        "invariance-gap": "how far Path-SGD runs from the balanced and the unbalanced MNIST MLP drift apart, beside "
                          "a control nudged by float32's rounding, in float32 and float64",
    }
    import textwrap
    lines = [f"{name}{' (budgets: ' + ', '.join(RECIPES[name]['budgets']) + ')' if 'budgets' in RECIPES.get(name, {}) else ''}"
             f": {what}" for name, what in {**analyses, **{k: v["paper"] for k, v in RECIPES.items()}}.items()]
    # One recipe a paragraph: a reflowed wall of 22 descriptions is where nobody finds theirs.
    repro = sub.add_parser("reproduce", help="rerun a table or figure of the papers",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="\n".join(textwrap.fill(line, 100, subsequent_indent="    ") for line in lines)
                                       + "\n\nThe training recipes are sweeps: a rerun reuses finished trials and "
                                         "resumes cut ones;\nshorten one with --set steps=N.")
    repro.add_argument("recipe", type=_choice(names), help=f"one of: {', '.join(names)}")
    repro.add_argument("--seeds", type=_number(int, 1), default=None, help="seeds (default: the paper's; kappa-table 3)")
    repro.add_argument("--budget", type=_choice(BUDGET_NAMES), default=None,
                       help="cpu: the reduced budget that docs/results.md shows; full: the paper's protocol "
                            "(default: full); long: past the paper's, where a recipe has it (table2-adding: 10⁶ steps at "
                            "T = 100, resumable across sessions). A recipe of one protocol that fits a CPU "
                            "(orth-copy, orth-fig2, the probes) is cpu and full both")
    repro.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the recipe (repeatable)")
    repro.add_argument("--list", action="store_true",
                       help="print the trials (done, resumable, running, conflict or new) without running them")
    repro.add_argument("--only", action="append", metavar="KEY=VALUE",
                       help="run only the recipe's settings with this value (repeatable: keys narrow, values of one "
                            "key add up; e.g. --only seq_len=750 --only margin=0 --only margin=1)")
    _add_extend_argument(repro)
    _add_backend_arguments(repro)
    repro.add_argument("--json", action="store_true", help="kappa-table, step-scales: print JSON instead of a markdown table")
    repro.set_defaults(func=_cmd_reproduce)

    bench = sub.add_parser("bench", help="side-by-side overhead ratios of our optimizers and models",
                           description="Times each of our methods against its baseline on the same shapes, "
                                       "interleaved, and prints median ratios (ours / baseline) with their targets.")
    bench.add_argument("--quick", action="store_true", help="small shapes, few repeats (a smoke test; ratios not meaningful)")
    bench.add_argument("--json", action="store_true", help="print one JSON object: {key: {ratio, target, met, what, spread, conclusive, flag, "
                       "times | memory, machine}}")
    bench.add_argument("--repeats", type=_number(int, 1), default=None, help="interleaved rounds per process, each about 0.3 s of calls per side (default 5; 3 with --quick)")
    bench.add_argument("--max-width", type=_number(float, 0, True), default=0.05,
                       help="repeat until the 95 %% confidence interval of the ratio (the median of the rounds) "
                            "is within this fraction of it, else report the ratio as inconclusive (default 0.05)")
    bench.add_argument("--max-rounds", type=_number(int, 1), default=None,
                       help="the most rounds per process while the spread is too wide (default 3 × --repeats)")
    bench.add_argument("--processes", type=_number(int, 1), default=None,
                       help="time each case in this many fresh processes and pool their rounds, so the spread "
                            "holds the noise between processes too (default 3; 1 with --quick: this process)")
    bench.add_argument("--only", nargs="+", metavar="KEY", help="run only these cases")
    bench.add_argument("--profile", metavar="KEY", help="instead of timing, print torch.profiler's table of both "
                                                        "sides of one case (where its ratio comes from)")
    bench.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                       help="instead of timing, compare two saved `--json` runs key by key: they agree where "
                            "their interquartile ranges overlap")
    bench.set_defaults(func=_cmd_bench)

    data = sub.add_parser("data", help="fetch and list the real datasets (cache outside the repository)",
                          description="Fetch datasets into the cache (default ~/.cache/plainrnn, or $PLAINRNN_DATA, "
                                      "or --data-dir) with their checksums verified, or list what is there.")
    data.add_argument("action", type=_choice(("fetch", "list")), help="fetch or list")
    data.add_argument("name", nargs="?", type=_choice(tuple(DATASETS)), help=f"dataset: {', '.join(DATASETS)}")
    data.add_argument("--from", dest="source", metavar="FILE",
                      help="install a file you downloaded (text8, cifar10, cifar100; for svhn a folder)")
    data.add_argument("--data-dir", default=None, help="cache folder (default: $PLAINRNN_DATA or ~/.cache/plainrnn)")
    data.add_argument("--force", action="store_true", help="fetch again even if present")
    data.set_defaults(func=_cmd_data)
    return parser


def _input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input was wrong" (or the machine cannot run it), which every
    command reports as one line and exit status 2. Anything else is a bug and keeps its traceback."""
    import torch

    from .tasks import DataError
    from .train.checkpoint import CheckpointError
    return (ValueError, TypeError, OSError, DataError, CheckpointError, RuntimeError, torch.OutOfMemoryError)


def _message(error: BaseException) -> str:
    """Our own errors as they were written (a data error's second line says how to fetch it); torch's
    runtime errors by their first line, which names the problem."""
    import torch
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, torch.OutOfMemoryError):
        return f"out of memory ({first}); lower --hidden, --seq-len or --batch-size, or use a device with more memory"
    if isinstance(error, FileNotFoundError) and error.filename and not text.startswith(str(error.filename)):
        return f"{error.filename}: {error.strerror or first}"
    if isinstance(error, OSError) and error.errno is not None:
        import errno
        where = f"{error.filename}: " if error.filename else ""
        hint = {errno.ENOSPC: "; free some space, then continue with --resume RUN_DIR (the last checkpoint is intact)",
                errno.EDQUOT: "; free some space, then continue with --resume RUN_DIR (the last checkpoint is intact)",
                errno.EACCES: "; choose a folder you can write (--out, --data-dir)",
                errno.EROFS: "; choose a folder you can write (--out, --data-dir)",
                errno.ENOTDIR: "; a part of this path is a file, not a folder",
                errno.EEXIST: "; a file stands where a folder should be"}.get(error.errno, "")
        return f"{where}{error.strerror or first}{hint}"
    if isinstance(error, RuntimeError) and type(error).__module__.startswith("torch"):
        return first
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command if args.command != "data" else f"data {args.action}"
    try:
        return args.func(args)
    except KeyboardInterrupt as e:
        print(str(e) or "interrupted", file=sys.stderr)  # a training run names its checkpoint and the resume line
        return 130
    except BrokenPipeError:
        # `plainrnn report … | head`: the reader left; stop quietly (and keep Python's exit-time flush
        # of stdout from raising again), as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except _input_errors() as e:
        if os.environ.get("PLAINRNN_TRACEBACK"):
            raise
        return _fail(command, _message(e))


if __name__ == "__main__":
    sys.exit(main())
