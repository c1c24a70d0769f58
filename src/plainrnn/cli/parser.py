"""The command line's parsers: one function a command, the training flags read from RunConfig's knobs."""
from __future__ import annotations

import argparse
import dataclasses
import textwrap

SUPPRESS = argparse.SUPPRESS


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line: 'plainrnn train: error: ...'."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def number(kind, minimum=None, strict=False):
    """An argparse type: an int or a float, at least (or above) ``minimum``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}")
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


def choice(allowed):
    def parse(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {text!r}; allowed: {', '.join(allowed)}")
        return text
    return parse


def add_knob_flags(p: argparse.ArgumentParser) -> None:
    """A flag for each RunConfig knob, its help and bounds from the knob's declaration. Every flag
    defaults to 'not given', so that --config FILE and --set can supply the rest; --help shows
    RunConfig's defaults."""
    from ..nets.init import RECURRENT_INITS
    from ..train.config import RunConfig, choices_of
    from ..train.rundir import RunDir
    kinds = {"int": int, "float": float}
    for f in dataclasses.fields(RunConfig):
        m = f.metadata
        choices = choices_of(f)
        help = m["help"].format(choices=", ".join(choices or ()), recurrent=", ".join(RECURRENT_INITS),
                               grad_norms=RunDir.GRAD_NORMS)
        help = f"{help} (default: {'off' if m['shown'] is False else m['shown']})"
        kind = kinds.get(str(f.type).split("|")[0].strip())
        if str(f.type) == "bool":
            action = "store_false" if (m.get("flag") or "").startswith("--no-") else "store_true"
            p.add_argument(m.get("flag") or f"--{f.name.replace('_', '-')}", dest=f.name, default=SUPPRESS,
                           help=help, action=action)
            continue
        if choices:
            kw = dict(type=choice(choices))
        elif kind is not None:
            low, strict = (m["above"], True) if m.get("above") is not None else (m.get("at_least"), False)
            kw = dict(type=number(kind, low, strict))
        else:
            kw = {}
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=SUPPRESS, help=help, **kw)


def _add_extend_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extend-from", metavar="DIR", action="append", default=None,
                   help="another sweep's folder (e.g. runs/adding-study-cpu): a new trial that ran there (found by "
                        "its config) takes that run as it is, or continues it from its checkpoint if it had fewer "
                        "steps (and another eval_every) or was stopped before its end, instead of starting over; "
                        "that folder is left as it was; a published folder (results/table2_adding_cpu) gives "
                        "its finished runs on a new machine (repeatable: the longest run found is taken)")


def _add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """Where the trials of a sweep (or a reproduction recipe) run."""
    p.add_argument("--backend", type=choice(("local", "ray")), default="local",
                   help="local: a process pool sized to the cores; ray: a Ray cluster (default: %(default)s)")
    p.add_argument("--workers", type=number(int, 1), default=None, help="local pool size (default: the cores)")
    p.add_argument("--address", default=None, help="Ray cluster address for ray.init (default: start one locally)")


def add_demo(sub) -> argparse.ArgumentParser:
    demo = sub.add_parser("demo", help="the adding problem at T=100, four setups side by side (about 3 minutes on 2 cores)",
                          description="Trains the adding problem at T=100 with IRNN+SGD, ReLU RNN+Adam, "
                                      "ReLU RNN+Path-SGD (per-unit trust region) and Path-Adam, each at its best setting in "
                                      "the adding study; prints a table of test MSE, a learning-curve PNG and the "
                                      "study's findings.")
    demo.add_argument("--out", default="runs", help="parent directory of the demo's runs (default: %(default)s)")
    demo.add_argument("--steps", type=number(int, 1), default=None, help="override the steps per setup")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return demo


def add_train(sub) -> argparse.ArgumentParser:
    train = sub.add_parser("train", help="train one model on one task",
                           description="Train one model on one task. Settings come from the flags, or from "
                                       "--config FILE (YAML) with --set key=value overrides.")
    train.add_argument("--config", help="YAML file of RunConfig keys (see docs/experiments.md)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--json", action="store_true", help="print the run summary as one JSON object on the last line")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_knob_flags(train)
    return train


def add_sweep(sub) -> argparse.ArgumentParser:
    sweep = sub.add_parser("sweep", help="run a grid × seeds, select on validation, report test",
                           description="Runs every combination of the --grid values for --seeds seeds, on a local "
                                       "process pool or a Ray cluster, selects the best setting on the validation "
                                       "metric (median over seeds) and reports its test metric. Finished trials are "
                                       "reused when a sweep is run again.")
    sweep.add_argument("config", nargs="?", help="YAML file of RunConfig keys (default: the built-in defaults)")
    sweep.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", help="values to sweep (repeatable)")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    sweep.add_argument("--seeds", type=number(int, 1), default=1, help="seeds per setting (default: %(default)s)")
    _add_extend_argument(sweep)
    _add_backend_arguments(sweep)
    sweep.add_argument("--name", default=None, help="sweep directory name under the config's out (default: sweep)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    return sweep


def add_report(sub) -> argparse.ArgumentParser:
    rep = sub.add_parser("report", help="tables and learning curves from run directories",
                         description="One row per setting (all config keys but the seed): best and median test "
                                     "metric over seeds, diverged count, wall time; plus learning-curve PNGs.")
    rep.add_argument("runs", nargs="+", help="run directories, or folders holding them (a sweep directory)")
    rep.add_argument("--format", type=choice(("md", "csv", "json")), default="md", help="md, csv or json (default: md)")
    rep.add_argument("--plots", default=None, metavar="DIR",
                     help="write learning-curve PNGs here (default: none); with --columns, the table as a figure: "
                          "a panel per column, every seed's test curve")
    rep.add_argument("--curves", action="store_true",
                     help="also print each run's evaluations: test metric, and for runs with --eval-train the training "
                          "metric beside it (image sets: training cross-entropy, training error and test error "
                          "(%%) per epoch)")
    rep.add_argument("--reach", type=number(float), default=None, metavar="X",
                     help="add the steps each setting needed to first reach test metric X (≤ X for losses, ≥ X "
                          "for accuracies), median over the seeds that did, e.g. --reach 0.01 on adding")
    rep.add_argument("--at-best-valid", action="store_true",
                     help="add each setting's test metric at its best validation point, median over seeds "
                          "(what the papers report for MNIST and PTB)")
    rep.add_argument("--spectrum", action="store_true",
                     help="add W's singular values: min … max (mean ± std) at the last evaluation, and min … max "
                          "over the run, median over seeds (runs of models with a square W)")
    rep.add_argument("--epoch-steps", type=number(int, 1), default=None, metavar="N",
                     help="with --plots: a top axis in epochs of N training steps (sMNIST at batch 50: 1100)")
    rep.add_argument("--columns", default=None, metavar="KEY",
                     help="instead, a table of settings × the values of config KEY (e.g. seq_len, the 2016 "
                          "paper's Table 2); each cell: seeds that reached --reach / seeds · their median step "
                          "· the median final test metric × --scale")
    rep.add_argument("--scale", type=number(float, 0, True), default=1.0,
                     help="multiply the final test metric in --columns cells (100: the paper's MSE×100)")
    rep.add_argument("--wall", action="store_true",
                     help="with --columns: add the median wall time of a seed to each cell (seconds, minutes, or "
                          "hours from 2 h; it depends on how many runs shared the machine)")
    return rep


def add_publish(sub) -> argparse.ArgumentParser:
    from ..train.rundir import RunDir
    files = f"{RunDir.CONFIG_YAML}, {RunDir.SUMMARY} (when it finished) and {RunDir.METRICS}"
    pub = sub.add_parser("publish", help="copy a sweep's evidence into results/ (config, summary, metrics; "
                                         "--checkpoints: cut runs resume elsewhere)",
                         description=f"Copy each run of SOURCE into DEST/<run>: {files}; what results/ keeps "
                                     "(REPRODUCTION.md). A run cut short goes with its metrics as they stand and no "
                                     "summary (and, with --checkpoints, its checkpoint). A published run that got "
                                     "further is kept; another config under a run's name stops it before anything "
                                     "is written.",
                         epilog="example: plainrnn publish runs/table2-adding-cpu results/table2_adding_cpu "
                                "--checkpoints   (then, on any machine: plainrnn reproduce table2-adding --budget cpu "
                                "--extend-from results/table2_adding_cpu)")
    pub.add_argument("source", help="a sweep's folder (runs/<sweep>) or one run directory")
    pub.add_argument("dest", help="the folder to publish into (results/<experiment>)")
    pub.add_argument("--checkpoints", action="store_true",
                     help=f"publish each cut run's {RunDir.CHECKPOINT} too, so that --extend-from DEST resumes it on "
                          "another machine (a run that spans sessions); without it, a cut run's earlier published "
                          "checkpoint is removed, since it would resume behind the metrics. Finished runs never "
                          "keep one")
    return pub


def add_reproduce(sub) -> argparse.ArgumentParser:
    from ..experiments.recipes import BUDGET_NAMES, RECIPES
    from ..experiments.reproduce import ANALYSIS_WHAT, NAMES
    lines = [f"{name}{' (budgets: ' + ', '.join(RECIPES[name]['budgets']) + ')' if 'budgets' in RECIPES.get(name, {}) else ''}"
             f": {what}" for name, what in {**ANALYSIS_WHAT, **{k: v["paper"] for k, v in RECIPES.items()}}.items()]
    # One recipe a paragraph: a reflowed wall of 22 descriptions is where nobody finds theirs.
    repro = sub.add_parser("reproduce", help="rerun a table or figure of the papers",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="\n".join(textwrap.fill(line, 100, subsequent_indent="    ") for line in lines)
                                       + "\n\nThe training recipes are sweeps: a rerun reuses finished trials and "
                                         "resumes cut ones;\nshorten one with --set steps=N.")
    repro.add_argument("recipe", type=choice(NAMES), help=f"one of: {', '.join(NAMES)}")
    repro.add_argument("--seeds", type=number(int, 1), default=None, help="seeds (default: the paper's; kappa-table 3)")
    repro.add_argument("--budget", type=choice(BUDGET_NAMES), default=None,
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
    return repro


def add_bench(sub) -> argparse.ArgumentParser:
    bench = sub.add_parser("bench", help="side-by-side overhead ratios of our optimizers and models",
                           description="Times each of our methods against its baseline on the same shapes, "
                                       "interleaved, and prints median ratios (ours / baseline) with their targets.")
    bench.add_argument("--quick", action="store_true", help="small shapes, few repeats (a smoke test; ratios not meaningful)")
    bench.add_argument("--json", action="store_true", help="print one JSON object: {key: {ratio, target, met, what, spread, conclusive, flag, "
                       "times | memory, machine}}")
    bench.add_argument("--repeats", type=number(int, 1), default=None, help="interleaved rounds per process, each about 0.3 s of calls per side (default 5; 3 with --quick)")
    bench.add_argument("--max-width", type=number(float, 0, True), default=0.05,
                       help="repeat until the 95 %% confidence interval of the ratio (the median of the rounds) "
                            "is within this fraction of it, else report the ratio as inconclusive (default 0.05)")
    bench.add_argument("--max-rounds", type=number(int, 1), default=None,
                       help="the most rounds per process while the spread is too wide (default 3 × --repeats)")
    bench.add_argument("--processes", type=number(int, 1), default=None,
                       help="time each case in this many fresh processes and pool their rounds, so the spread "
                            "holds the noise between processes too (default 3; 1 with --quick: this process)")
    bench.add_argument("--only", nargs="+", metavar="KEY", help="run only these cases")
    bench.add_argument("--profile", metavar="KEY", help="instead of timing, print torch.profiler's table of both "
                                                        "sides of one case (where its ratio comes from)")
    bench.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                       help="instead of timing, compare two saved `--json` runs key by key: they agree where "
                            "their interquartile ranges overlap")
    return bench


def add_data(sub) -> argparse.ArgumentParser:
    from ..tasks.data import DATASETS
    data = sub.add_parser("data", help="fetch and list the real datasets (cache outside the repository)",
                          description="Fetch datasets into the cache (default ~/.cache/plainrnn, or $PLAINRNN_DATA, "
                                      "or --data-dir) with their checksums verified, or list what is there.")
    data.add_argument("action", type=choice(("fetch", "list")), help="fetch or list")
    data.add_argument("name", nargs="?", type=choice(tuple(DATASETS)), help=f"dataset: {', '.join(DATASETS)}")
    data.add_argument("--from", dest="source", metavar="FILE",
                      help="install a file you downloaded (text8, cifar10, cifar100; for svhn a folder)")
    data.add_argument("--data-dir", default=None, help="cache folder (default: $PLAINRNN_DATA or ~/.cache/plainrnn)")
    data.add_argument("--force", action="store_true", help="fetch again even if present")
    return data
