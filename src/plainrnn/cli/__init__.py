"""`plainrnn demo | train | sweep | report | publish | reproduce | bench | data` – the command line.

It parses (:mod:`.parser`) and dispatches (:mod:`.commands`); the work is the library's. Bad input
gets one line naming the flag and what is allowed, exit status 2, and no traceback.
"""
from __future__ import annotations

import os
import sys

from . import commands
from .parser import Parser, add_bench, add_data, add_demo, add_publish, add_report, add_reproduce, add_sweep, add_train

__all__ = ["main", "build_parser"]


def build_parser() -> Parser:
    parser = Parser(prog="plainrnn", description="Plain ReLU RNNs with Path-SGD and spectrally constrained "
                                                  "RNNs: train, sweep, report, reproduce, bench.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add, run in ((add_demo, commands.demo), (add_train, commands.train), (add_sweep, commands.sweep),
                     (add_report, commands.report), (add_publish, commands.publish),
                     (add_reproduce, commands.reproduce), (add_bench, commands.bench), (add_data, commands.data)):
        add(sub).set_defaults(func=run)
    return parser


def _input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input was wrong" (or the machine cannot run it), which every
    command reports as one line and exit status 2. Anything else is a bug and keeps its traceback."""
    import torch

    from ..tasks import DataError
    from ..train.checkpoint import CheckpointError
    return (ValueError, TypeError, OSError, DataError, CheckpointError, RuntimeError, torch.OutOfMemoryError)


_OS_HINTS = {"ENOSPC": "; free some space, then continue with --resume RUN_DIR (the last checkpoint is intact)",
             "EDQUOT": "; free some space, then continue with --resume RUN_DIR (the last checkpoint is intact)",
             "EACCES": "; choose a folder you can write (--out, --data-dir)",
             "EROFS": "; choose a folder you can write (--out, --data-dir)",
             "ENOTDIR": "; a part of this path is a file, not a folder",
             "EEXIST": "; a file stands where a folder should be"}


def message(error: BaseException) -> str:
    """Our own errors as they were written (a data error's second line says how to fetch it); torch's
    runtime errors by their first line, which names the problem; a file-system error with its path and
    what to do."""
    import errno

    import torch
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, torch.OutOfMemoryError):
        return f"out of memory ({first}); lower --hidden, --seq-len or --batch-size, or use a device with more memory"
    if isinstance(error, FileNotFoundError) and error.filename and not text.startswith(str(error.filename)):
        return f"{error.filename}: {error.strerror or first}"
    if isinstance(error, OSError) and error.errno is not None:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or first}{_OS_HINTS.get(errno.errorcode.get(error.errno, ''), '')}"
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
        return commands.fail(command, message(e))
