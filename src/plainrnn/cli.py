"""`plainrnn demo | train | bench` – the command line.

Bad input gets one line naming the flag and what is allowed, exit status 2, and no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from .nets.init import RECURRENT_INITS
from .train.config import MODELS, NONLINEARITIES, OPTIMIZERS, RunConfig


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line: 'plainrnn train: error: ...'."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind, name, minimum=None, strict=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}")
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    return parse


def _choice(name, allowed):
    def parse(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {text!r}; allowed: {', '.join(allowed)}")
        return text
    return parse


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    from .tasks import TASKS
    d = RunConfig()
    p.add_argument("--task", type=_choice("--task", TASKS), default=d.task,
                   help=f"benchmark task: {', '.join(TASKS)} (default: %(default)s). Real datasets are fetched "
                        "into the cache on first use")
    p.add_argument("--model", type=_choice("--model", MODELS), default=d.model,
                   help="relu: plain ReLU RNN; tanh: plain tanh RNN; lstm: LSTM baseline; spectral: W = U diag(s) Vᵀ "
                        "with geodesic steps on U, V (default: %(default)s)")
    p.add_argument("--seq-len", type=_number(int, "--seq-len", 2), default=None,
                   help="sequence length T, at least 2 (default: the task's: adding/copy 100, ptb-char 50, "
                        "ptb-word 20, ptb-sentences 75, text8/shakespeare 180; smnist/pmnist are 784)")
    p.add_argument("--hidden", type=_number(int, "--hidden", 1), default=d.hidden, help="hidden units per layer (default: %(default)s)")
    p.add_argument("--dropout", type=_number(float, "--dropout", 0), default=0.0, help="MLP dropout on hidden units (default: 0)")
    p.add_argument("--data-dir", default=None, help="dataset cache (default: $PLAINRNN_DATA or ~/.cache/plainrnn)")
    p.add_argument("--layers", type=_number(int, "--layers", 1), default=d.layers, help="recurrent layers (default: %(default)s)")
    p.add_argument("--nonlinearity", type=_choice("--nonlinearity", NONLINEARITIES), default=None,
                   help="override the model's nonlinearity: relu, tanh; with --model spectral also none, oplu, prelu")
    p.add_argument("--init", type=_choice("--init", RECURRENT_INITS), default=d.init,
                   help=f"recurrent init: {', '.join(RECURRENT_INITS)} (default: %(default)s = IRNN)")
    p.add_argument("--init-scale", type=_number(float, "--init-scale", 0, True), default=d.init_scale,
                   help="a of the uniform recurrent init U[-a, a] (default: %(default)s)")
    p.add_argument("--input-scale", type=_number(float, "--input-scale", 0, True), default=d.input_scale,
                   help="non-recurrent weights from U[-s, s] (default: %(default)s, as in the 2016 paper)")
    p.add_argument("--optimizer", type=_choice("--optimizer", OPTIMIZERS), default=d.optimizer,
                   help="sgd, momentum (SGD+0.9), adam, adagrad, rmsprop, path-sgd (Path-SGD), "
                        "path-adam (Adam on path-normalized gradients) (default: %(default)s)")
    p.add_argument("--lr", type=_number(float, "--lr", 0, True), default=d.lr, help="learning rate, > 0 (default: %(default)s)")
    p.add_argument("--kappa2", action="store_true", help="Path-SGD with the second-order term κ2 (exact ½∂²γ²/∂p²)")
    p.add_argument("--path-lr-scale", type=_choice("--path-lr-scale", ("path_norm", "none")), default=d.path_lr_scale,
                   help="Path-SGD step scale: path_norm (η·γ²(w0), rescaling-invariant) or none (raw eq. 8) "
                        "(default: %(default)s)")
    p.add_argument("--margin", type=_number(float, "--margin", 0), default=None,
                   help="spectral model: keep singular values in [1-m, 1+m] (eq. 10); unset: free singular values")
    p.add_argument("--orth-lr", type=_number(float, "--orth-lr", 0, True), default=d.orth_lr,
                   help="spectral model: geodesic SGD learning rate on U and V (default: %(default)g, the 2017 paper's)")
    p.add_argument("--orth-penalty", type=_number(float, "--orth-penalty", 0), default=d.orth_penalty,
                   help="add λ‖WᵀW − I‖² to the loss, any recurrent model (default: 0)")
    p.add_argument("--sv-prior", type=_number(float, "--sv-prior", 0), default=d.sv_prior,
                   help="add λ Σ(s_i − 1)², a mean-one Gaussian prior on W's singular values (default: 0)")
    p.add_argument("--weight-decay", type=_number(float, "--weight-decay", 0), default=d.weight_decay,
                   help="add λ‖W‖² on the composite recurrent matrix (default: 0; the 2017 paper uses 1e-4)")
    p.add_argument("--batch-size", type=_number(int, "--batch-size", 1), default=d.batch_size, help="minibatch size (default: %(default)s)")
    p.add_argument("--steps", type=_number(int, "--steps", 1), default=d.steps, help="training steps (default: %(default)s)")
    p.add_argument("--clip", type=_number(float, "--clip", 0, True), default=None, help="clip the gradient norm at this value (default: off)")
    p.add_argument("--eval-every", type=_number(int, "--eval-every", 1), default=d.eval_every,
                   help="evaluate on the validation and test sets every N steps (default: %(default)s)")
    p.add_argument("--grad-norms-every", type=_number(int, "--grad-norms-every", 0), default=0,
                   help="every N steps, record ‖∂L/∂h_t‖ for every time step t in grad_norms.jsonl (default: off)")
    p.add_argument("--eval-limit", type=_number(int, "--eval-limit", 1), default=None,
                   help="evaluate on at most N validation and test examples (default: all)")
    p.add_argument("--seed", type=_number(int, "--seed", 0), default=d.seed, help="random seed: same seed, same numbers (default: %(default)s)")
    p.add_argument("--out", default=d.out, help="parent directory of run directories (default: %(default)s)")
    p.add_argument("--name", default=None, help="run directory name (default: built from the settings)")
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON object on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_from(args) -> RunConfig:
    fields = RunConfig.fields()
    return RunConfig(**{k: v for k, v in vars(args).items() if k in fields})


def _cmd_train(args) -> int:
    from .train import train
    cfg = _config_from(args)
    try:
        cfg.validate()
    except ValueError as e:
        print(f"plainrnn train: error: {e}", file=sys.stderr)
        return 2
    from .tasks import DataError
    try:
        summary = train(cfg, progress=False if args.quiet else None)
    except DataError as e:
        print(f"plainrnn train: error: {e}", file=sys.stderr)
        return 2
    if not args.json:
        status = f"diverged at step {summary['diverged_step']} ({summary['diverged_reason']})" if summary["diverged"] \
            else f"test {summary['metric']} {summary['test_metric']:.6g} (baseline {summary['baseline']:.4g})"
        print(f"{cfg.run_name()}: {status}; {summary['wall_s']:.1f} s; run dir {summary['run_dir']}")
    print(json.dumps(summary) if args.json else "", end="\n" if args.json else "")
    return 0


def _cmd_demo(args) -> int:
    from .experiments.demo import run_demo
    return run_demo(out=args.out, steps=args.steps, quiet=args.quiet)


def _cmd_bench(args) -> int:
    from .experiments.bench import CASES, TARGETS, format_table, run_bench
    unknown = [k for k in (args.only or []) if k not in TARGETS]
    if unknown:
        print(f"plainrnn bench: error: unknown case {unknown[0]!r}; allowed: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    say = None if args.json else (lambda key: print(f"measuring {key} ...", file=sys.stderr, flush=True))
    results = run_bench(quick=args.quick, repeats=args.repeats, only=args.only, progress=say)
    print(json.dumps(results) if args.json else format_table(results))
    return 0


def _cmd_reproduce(args) -> int:
    if args.recipe == "kappa-table":
        from .experiments.kappa_ratio import kappa_ratio_table, to_markdown
        table = kappa_ratio_table(seeds=args.seeds)
        print(json.dumps(table, indent=1) if args.json else to_markdown(table))
        return 0
    return 2


def _cmd_data(args) -> int:
    from .tasks.data import DATASETS, DataError, cache_dir, fetch, status
    if args.action == "list":
        root = cache_dir(args.data_dir)
        print(f"cache: {root}")
        for name, ds in DATASETS.items():
            print(f"  {name:<12} {status(name, args.data_dir):<8} {ds.note}")
        return 0
    if not args.name:
        print("plainrnn data fetch: error: name a dataset: " + ", ".join(DATASETS), file=sys.stderr)
        return 2
    try:
        fetch(args.name, args.data_dir, source_file=args.source, force=args.force,
              say=lambda msg: print(msg, file=sys.stderr, flush=True))
    except DataError as e:
        print(f"plainrnn data fetch: error: {e}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plainrnn", description="Plain ReLU RNNs with Path-SGD: train, demo, bench.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="the adding problem at T=100, three setups side by side (under 3 minutes)",
                          description="Trains the adding problem at T=100 with IRNN+SGD, ReLU RNN+Adam and "
                                      "ReLU RNN+Path-SGD; prints a table of test MSE and writes a learning-curve PNG.")
    demo.add_argument("--out", default="runs", help="parent directory of the demo's runs (default: %(default)s)")
    demo.add_argument("--steps", type=_number(int, "--steps", 1), default=None, help="override the steps per setup")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)

    bench = sub.add_parser("bench", help="side-by-side overhead ratios of our optimizers and models",
                           description="Times each of our methods against its baseline on the same shapes, "
                                       "interleaved, and prints median ratios (ours / baseline) with their targets.")
    bench.add_argument("--quick", action="store_true", help="small shapes, few repeats (a smoke test; ratios not meaningful)")
    bench.add_argument("--json", action="store_true", help="print one JSON object: {key: {ratio, target, times, machine}}")
    bench.add_argument("--repeats", type=_number(int, "--repeats", 1), default=None, help="interleaved repeats per case (default 7; 3 with --quick)")
    bench.add_argument("--only", nargs="+", metavar="KEY", help="run only these cases")
    bench.set_defaults(func=_cmd_bench)

    rep = sub.add_parser("reproduce", help="rerun a table or figure of the papers",
                         description="Rerun one of the papers' tables. kappa-table: ‖κ2‖/‖κ1‖ over T ∈ {10, 20, 50, 100} "
                                     "× H ∈ {50, 100, 200} at uniform[-0.1, 0.1] init (2016 paper, Fig. 2).")
    rep.add_argument("recipe", type=_choice("recipe", ("kappa-table",)), help="which table: kappa-table")
    rep.add_argument("--seeds", type=_number(int, "--seeds", 1), default=3, help="initializations to average (default: %(default)s)")
    rep.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    rep.set_defaults(func=_cmd_reproduce)

    from .tasks.data import DATASETS
    data = sub.add_parser("data", help="fetch and list the real datasets (cache outside the repository)",
                          description="Fetch datasets into the cache (default ~/.cache/plainrnn, or $PLAINRNN_DATA, "
                                      "or --data-dir) with their checksums verified, or list what is there.")
    data.add_argument("action", type=_choice("action", ("fetch", "list")), help="fetch or list")
    data.add_argument("name", nargs="?", type=_choice("dataset", tuple(DATASETS)), help=f"dataset: {', '.join(DATASETS)}")
    data.add_argument("--from", dest="source", metavar="FILE",
                      help="install a file you downloaded (text8, cifar10, cifar100; for svhn a folder)")
    data.add_argument("--data-dir", default=None, help="cache folder (default: $PLAINRNN_DATA or ~/.cache/plainrnn)")
    data.add_argument("--force", action="store_true", help="fetch again even if present")
    data.set_defaults(func=_cmd_data)

    train = sub.add_parser("train", help="train one model on one task", description="Train one model on one task.")
    _add_train_arguments(train)
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
