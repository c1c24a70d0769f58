"""One writer per run directory: the advisory lock that :class:`~plainrnn.train.rundir.RunDir` holds.

Two processes training into one run directory interleave their metrics and overwrite each other's
checkpoints: it happens as soon as a sweep is started twice (two terminals, or a second `reproduce`
launched to share the cores while the first still runs). :func:`hold_lock` takes an advisory lock
(``flock`` on the run directory's lock file) for as long as a run trains; a second process gets
:class:`RunDirBusy` at once, and a sweep skips that trial instead of training it twice. The operating
system drops the lock when its process ends, however it ends, so a crash never leaves a stale lock
behind and a killed run resumes as before. The lock is per process and re-entrant within one (a
sweep's trial holds it around ``train``, which takes it too).

Where ``fcntl`` does not exist (Windows) runs are not locked.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_held: dict[Path, int] = {}  # run directories this process holds, with how many times it entered each


class RunDirBusy(RuntimeError):
    """Another process is training into this run directory."""


def _pid_in(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def hold_lock(run_dir, lock_name: str):
    """Holds ``run_dir`` (created if missing) for this process while the ``with`` block runs, through
    ``flock`` on ``run_dir/lock_name``.

    Raises:
        RunDirBusy: another process holds it; the message names the directory and that process's pid.
    """
    path = Path(run_dir).resolve()
    if fcntl is None or path in _held:
        _held[path] = _held.get(path, 0) + 1
        try:
            yield path
        finally:
            _held[path] -= 1
            if not _held[path]:
                del _held[path]
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / lock_name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirBusy(f"{run_dir} is being trained by another process (pid {_pid_in(path / lock_name)}); "
                         "wait for it to finish, or give this run another name or output folder") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _held[path] = 1
        yield path
    finally:
        _held.pop(path, None)
        os.close(fd)  # releases the lock; the file stays (removing it would race with a process opening it)


def lock_holder(run_dir, lock_name: str) -> str | None:
    """The pid (as written in the lock file) of the process that holds ``run_dir``, or None when no
    process holds it. Never creates anything."""
    path = Path(run_dir).resolve() / lock_name
    if fcntl is None or not path.exists():
        return None
    if path.parent in _held:
        return str(os.getpid())
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(path)
    finally:
        os.close(fd)  # a shared lock we got is released with the descriptor
    return None
