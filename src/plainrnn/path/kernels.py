"""The squared sweep: one pass over an MLP weight matrix that updates it and computes its κ products.

    squared_sweep_(W, gin, gout, grad=G, row_factor=r, col_factor=c, lr=η)

    W ← W − η · G ∘ (r ⊗ c)                      (optional: Path-SGD's step, eq. 8, with κ = rows ⊗ cols,
                                                   r = s/rows and c = 1/cols)
    returns  |W|^p gin   and   |W|^pᵀ gout        (Algorithm 1 of the 2015 paper, lines 3 and 5)

r, c, gin and gout are in W's dtype, or in float64 for a float32 W (the "wide" route, for rescaled
networks whose factors leave float32's range; see :func:`plainrnn.path.mlp.mlp_pass`).

For the 784-4000-4000-10 MLP at batch 100, every one of these is bound by memory traffic over the
64 MB matrix, not by arithmetic: done as separate torch ops (square into a buffer, two mat-vecs, an
``addcmul_``) they read W four times and write it twice, which costs a quarter of an SGD step on a
2-core CPU. The C++ kernel in ``csrc/squared_sweep.cpp`` reads G and W once and writes W once, the
same traffic as SGD's own ``p.add_(grad)``, and computes the products of the *updated* W from
registers; an optimizer then has the next step's κ for free.

The kernel is compiled on first use with ``torch.utils.cpp_extension`` (g++ and ninja, about 30 s,
once per machine; cached under ``$XDG_CACHE_HOME/plainrnn``). Where it cannot be built (no compiler),
or for p ≠ 2, other dtypes or devices, the same function runs as eager torch ops, which give the same
numbers up to rounding. ``PLAINRNN_KERNELS=0`` turns the kernel off.
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

_SOURCE = Path(__file__).with_name("csrc") / "squared_sweep.cpp"
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
    """The build's name covers the source, the flags, torch and this CPU: -march=native code must never
    be loaded on another CPU that shares the cache directory."""
    digest = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), " ".join(_FLAGS).encode(), torch.__version__.encode(),
                 _cpu_model().encode(), sys.version.encode()):
        digest.update(part)
    return f"plainrnn_squared_sweep_{digest.hexdigest()[:12]}"


def _build_directory(name: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "plainrnn" / "kernels" / name


def _compile():
    from torch.utils import cpp_extension

    name = _build_name()
    directory = _build_directory(name)
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / f"{name}.so").exists():
        print("plainrnn: compiling the squared-sweep kernel for Path-SGD on MLPs "
              "(once per machine, about 30 s)", file=sys.stderr, flush=True)
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
            return cpp_extension.load(name, [str(_SOURCE)], extra_cflags=_FLAGS, extra_ldflags=["-fopenmp"],
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
            print("plainrnn: waiting for another process that is building the squared-sweep kernel",
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
                warnings.warn("plainrnn: no C++ compiler found; Path-SGD on MLPs uses the slower eager "
                              "torch ops", RuntimeWarning, stacklevel=2)
            else:
                try:
                    _module = _compile()
                except Exception as error:  # a failed build must never stop training: the eager path is exact
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    warnings.warn(f"plainrnn: could not build the squared-sweep kernel ({first}); Path-SGD on "
                                  "MLPs uses the slower eager torch ops", RuntimeWarning, stacklevel=2)
    return _module


def uses_kernel(W: torch.Tensor, p: float) -> bool:
    """Whether :func:`squared_sweep_` runs the compiled kernel for this matrix (else eager torch ops)."""
    return _kernel_for(W, p) is not None


def _kernel_for(W: torch.Tensor, p: float):
    if p != 2.0 or W.device.type != "cpu" or W.dtype not in (torch.float32, torch.float64) or not W.is_contiguous():
        return None
    return kernel()


def _powered(W: torch.Tensor, p: float, dtype: torch.dtype, buffer: torch.Tensor | None) -> torch.Tensor:
    W = W if W.dtype == dtype else W.to(dtype)  # the wide eager route squares in float64
    if p == 2.0:
        return torch.square(W, out=buffer) if buffer is not None and buffer.dtype == dtype else W.square()
    return W.abs().pow_(p)


def _vector_dtype(weight: torch.Tensor, *vectors) -> torch.dtype:
    """The one dtype of the factors and vectors: W's, or float64 for a float32 W (the wide route)."""
    dtypes = {v.dtype for v in vectors if v is not None}
    if len(dtypes) > 1:
        raise ValueError(f"the factors and vectors must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop() if dtypes else weight.dtype
    if dtype not in (weight.dtype, torch.float64):
        raise ValueError(f"the factors and vectors must have W's dtype ({weight.dtype}) or float64, got {dtype}")
    return dtype


def squared_sweep_(weight: torch.Tensor, gin: torch.Tensor | None = None, gout: torch.Tensor | None = None, *,
                   p: float = 2.0, grad: torch.Tensor | None = None, row_factor: torch.Tensor | None = None,
                   col_factor: torch.Tensor | None = None, lr: float = 0.0,
                   buffer: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Optionally W ← W − lr · grad ∘ (row_factor ⊗ col_factor), in place; then (|W|^p gin, |W|^pᵀ gout),
    each None when its vector is None. ``weight`` is a detached parameter and ``grad`` has its dtype.

    The factors and vectors share one dtype: W's ("narrow"), or float64 for a float32 W ("wide"). Wide,
    the update G·r·c is formed in float64 and rounded once into W, and the squares and sums are taken in
    float64: the route for networks whose factors s/κ leave float32's range (a node-wise rescaling by
    10^c moves them by 10^±2c) while W and the step itself stay inside it.

    ``buffer`` (W's shape, the vectors' dtype) spares the eager path a fresh allocation for |W|^p."""
    if grad is not None and (row_factor is None or col_factor is None):
        raise ValueError("an update needs both row_factor and col_factor")
    dtype = _vector_dtype(weight, gin, gout, row_factor, col_factor)
    module = _kernel_for(weight, p)
    if module is not None and (grad is None or grad.is_contiguous()):
        rows, cols = module.squared_sweep(weight, gin, gout, grad, row_factor, col_factor, float(lr))
        if grad is not None:  # the kernel writes through a pointer; autograd must still see W changed
            torch.autograd.graph.increment_version(weight)
        return (rows if gin is not None else None), (cols if gout is not None else None)
    if grad is not None:
        if dtype == weight.dtype:
            weight.addcmul_(grad * row_factor.unsqueeze(1), col_factor, value=-lr)
        else:
            step = grad.to(dtype).mul_((lr * row_factor).unsqueeze(1)).mul_(col_factor)
            weight.copy_(weight.to(dtype).sub_(step))
    if gin is None and gout is None:
        return None, None
    powered = _powered(weight, p, dtype, buffer)
    return (powered @ gin if gin is not None else None), (powered.t() @ gout if gout is not None else None)
