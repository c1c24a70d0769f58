"""Where a sweep's trials run: a local process pool or a Ray cluster, and one trial in a worker.

Both backends take the trials (:class:`~plainrnn.experiments.trials.Trial`) in order and give back
one :class:`~plainrnn.experiments.trials.Outcome` each: the trial's summary with a status (ok, resumed,
reused), or failed with the error, busy (another process trains it) or interrupted (Ctrl-C: not run,
or stopped at a checkpoint; rerunning the sweep continues it).
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ..train.config import RunConfig
from ..train.rundir import RunDir, RunDirBusy, trial_conflict, trial_state
from .trials import Outcome


def run_trial(config: dict, threads: int = 1) -> Outcome:
    """One trial (its config) in the current process; exceptions become a failed Outcome."""
    import torch
    torch.set_num_threads(threads)  # workers × threads ≤ cores: no oversubscription
    from ..train import train
    from .plots import run_figures
    cfg = RunConfig(**config)
    run_dir = RunDir.of(config)
    try:
        with run_dir.hold():
            state = trial_state(config)  # read while held: another sweep may have finished it meanwhile
            if state == "done":
                return Outcome.of_summary(run_dir.summary(), "reused")
            if state == "conflict":  # run_sweep refuses these up front; here only if one appeared since
                raise ValueError(trial_conflict(config))
            resuming = state == "resumable"  # a trial cut short (killed, machine lost)
            summary = train(cfg, progress=False, resume_from=run_dir.path if resuming else None)
            run_figures(run_dir.path)
            return Outcome.of_summary(summary, "resumed" if resuming else "ok")
    except RunDirBusy as e:  # another sweep trains it: left to that one, not counted here
        return Outcome(status="busy", error=str(e), run_dir=str(run_dir))
    except Exception as e:  # noqa: BLE001 – one failing trial must never kill the sweep
        return Outcome.failed(e, str(run_dir))


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
        futures = {pool.submit(run_trial, t.config, threads): i for i, t in enumerate(trials)}
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
    return [r if r is not None else Outcome(status="interrupted") for r in results]


def _outcome(fut) -> Outcome | None:
    try:
        return fut.result()
    except KeyboardInterrupt:  # the trial stopped at Ctrl-C, after a checkpoint: rerun to continue it
        return None
    except Exception as e:  # noqa: BLE001 – a worker that died (e.g. killed) fails only its trial
        return Outcome.failed(e)


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
        refs = [remote.remote(t.config, 1) for t in trials]
        results: list[Outcome | None] = [None] * len(refs)
        try:
            with _ctrl_c_is_ours():
                for i, ref in enumerate(tqdm(refs, desc="sweep (ray)", disable=not progress or None, leave=False)):
                    results[i] = _ray_outcome(ray, ref)
        except KeyboardInterrupt:
            # Ctrl-C: a queued trial never starts; a running one is stopped where it is, as a kill -9 would
            # stop it: its last checkpoint (atomic, at every evaluation) is where the rerun goes on.
            print("stopping: cancelling the sweep's Ray trials (the running ones resume from their last "
                  "checkpoint)", file=sys.stderr, flush=True)
            for ref in refs:
                ray.cancel(ref, force=True)
            left = [ref for ref, r in zip(refs, results) if r is None]
            ended, _ = ray.wait(left, num_returns=len(left), timeout=30)  # a stop never hangs the sweep
            for i, ref in enumerate(refs):
                if results[i] is None and ref in ended:
                    results[i] = _ray_outcome(ray, ref, stopping=True)
        return [r if r is not None else Outcome(status="interrupted") for r in results]
    finally:
        if started_here and sys.modules["ray"].is_initialized():
            sys.modules["ray"].shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _ctrl_c_is_ours():
    """Ctrl-C raises KeyboardInterrupt here, whatever handler ray.init installed: Ray's own stops the
    local instance it started at once, and every running trial then fails with NodeDiedError instead
    of being cancelled and counted as interrupted. (Only the main thread can set a handler.)"""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ray_outcome(ray, ref, stopping: bool = False) -> Outcome | None:
    """A Ray trial's result, a failed record (a lost worker fails only its trial), or None when it was
    cancelled or stopped at Ctrl-C (rerun the sweep to continue it). While ``stopping`` (after Ctrl-C)
    any error is the stop itself: a cancelled task, a killed worker, or the local Ray instance, which
    a terminal's Ctrl-C reaches too, ending under its trials."""
    try:
        return ray.get(ref)
    except (KeyboardInterrupt, ray.exceptions.TaskCancelledError):
        return None
    except Exception as e:  # noqa: BLE001 – a lost worker fails only its trial
        if stopping or isinstance(getattr(e, "cause", None), KeyboardInterrupt):
            return None
        return Outcome.failed(e)
