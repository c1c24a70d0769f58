"""plainrnn's C++ kernels: one extension module, compiled on first use with ``torch.utils.cpp_extension``.

It holds the squared sweep of Path-SGD on MLPs (:mod:`plainrnn.path.kernels`) and the two loops of the
ReLU/tanh recurrence (:mod:`plainrnn.nets.recurrence`). g++ and ninja build it in about 30–60 s, once
per machine, CPU and version (cached under ``$XDG_CACHE_HOME/plainrnn/kernels``). Where it cannot be
built (no compiler) a warning says so once and every caller runs the same arithmetic as eager torch
ops, which give the same numbers (bit for bit for the recurrence, to rounding for the sweep).
``PLAINRNN_KERNELS=0`` turns it off.

It lives at the bottom of the package (it imports torch alone) so that nets/, path/ and optim/ can
all call it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import sys
import threading
import warnings
from pathlib import Path

import torch

_SOURCES = [Path(__file__).with_name("csrc") / name for name in ("squared_sweep.cpp", "recurrence.cpp")]
# -fopenmp makes at::parallel_for parallel (it is a header template); the library it links is the
# libgomp torch has already loaded. 512-bit vectors keep the sweep bound by memory, not by arithmetic.
# -ffp-contract=off: left to itself, g++ fuses a·b + c into one FMA in some variants of the sweep and
# not in others (on an AVX2 CPU, the update variant's row sums differed from a fresh sweep's in the last
# bit), and the optimizer's reuse of the update's products as the next κ relies on them being equal.
# It costs about 10 % of the kernel alone (4000×4000 float32, measured beside training runs); the MLP
# step as a whole stays at its target (`plainrnn bench --only mlp_path_sgd_overhead`: 1.011, 2026-11-23).
_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"] + (["-mprefer-vector-width=512"] if platform.machine() == "x86_64" else [])
_lock = threading.Lock()
_module = None
_tried = False


def _cpu_model() -> str:
    """The CPU's name and instruction-set flags (what -march=native compiles for)."""
    lines = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key = line.split(":")[0].strip()
                if key in ("model name", "flags") and key not in lines:
                    lines[key] = line
    except OSError:  # not Linux: the platform string is the best we have
        pass
    return "".join(lines.values()) or platform.processor() or platform.machine()


def _build_name() -> str:
    """The build's name covers where the sources are and what they say, the flags, torch and this CPU:
    -march=native code must never be loaded on another CPU that shares the cache directory."""
    digest = hashlib.sha256()
    # The sources' folder too: torch's build files name the sources by absolute path, so two checkouts
    # of one version sharing the cache would rebuild the module for each other, minutes at a time,
    # while every other plainrnn process waits on the build's lock.
    for part in (str(_SOURCES[0].parent.resolve()).encode(), *(source.read_bytes() for source in _SOURCES),
                 " ".join(_FLAGS).encode(), torch.__version__.encode(), _cpu_model().encode(), sys.version.encode()):
        digest.update(part)
    return f"plainrnn_kernels_{digest.hexdigest()[:12]}"


def _build_directory(name: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "plainrnn" / "kernels" / name


def _compile():
    from torch.utils import cpp_extension

    name = _build_name()
    directory = _build_directory(name)
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / f"{name}.so").exists():
        print("plainrnn: compiling its C++ kernels (Path-SGD's step on MLPs, the relu/tanh recurrence; "
              "once per machine, about a minute)", file=sys.stderr, flush=True)
    # torch runs `ninja` from PATH; the ninja wheel puts it next to this interpreter, which is not on
    # PATH when the venv is not activated.
    path = os.environ.get("PATH", "")
    try:
        import ninja
        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, path])
    except ImportError:
        pass
    try:
        with _builder(directory):
            return cpp_extension.load(name, [str(source) for source in _SOURCES], extra_cflags=_FLAGS, extra_ldflags=["-fopenmp"],
                                      build_directory=str(directory), verbose=False)
    finally:
        os.environ["PATH"] = path


@contextlib.contextmanager
def _builder(directory: Path):
    """Holds an OS lock on ``directory`` while torch builds or loads the kernel, and clears torch's
    stale ``lock`` file first.

    torch marks a build with a bare ``lock`` file and waits, without end and without a word, for it to
    go away. A build that is interrupted (Ctrl-C, a killed job) leaves it behind, and every later
    Path-SGD run on an MLP then hangs. Every plainrnn process builds under an ``flock`` on
    ``build.flock``, which the OS releases when its holder dies; so whoever holds it knows that a
    ``lock`` file it finds has no live owner."""
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's own lock alone
        yield
        return
    with open(directory / "build.flock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("plainrnn: waiting for another process that is building its C++ kernels",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        (directory / "lock").unlink(missing_ok=True)  # no live owner: its builder held build.flock
        yield  # closing the file releases the flock


def kernel():
    """The compiled module, or None (``PLAINRNN_KERNELS=0``, or it cannot be built here: a warning says why)."""
    global _module, _tried
    if os.environ.get("PLAINRNN_KERNELS", "1") == "0":
        return None
    with _lock:
        if not _tried:
            _tried = True
            if shutil.which("c++") is None and shutil.which("g++") is None:
                warnings.warn("plainrnn: no C++ compiler found; Path-SGD on MLPs and the relu/tanh recurrence "
                              "use the slower eager torch ops", RuntimeWarning, stacklevel=2)
            else:
                try:
                    _module = _compile()
                except Exception as error:  # a failed build must never stop training: the eager path is exact
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    warnings.warn(f"plainrnn: could not build its C++ kernels ({first}); Path-SGD on MLPs and "
                                  "the relu/tanh recurrence use the slower eager torch ops", RuntimeWarning,
                                  stacklevel=2)
    return _module
