"""`plainrnn bench`: every figure is a ratio of ours over a baseline, timed side by side in one process.

Each case builds both sides on the same shapes, warms them up, then alternates ours / baseline for
``repeats`` rounds so that machine noise hits both, and reports the median over the rounds of each
round's ours / baseline (the times printed beside it are each side's median, for reference).

**Processes.** A full run times each case in three fresh processes, one after another, and pools their
rounds. Two quiet runs timed in one process each disagreed on three keys by 10–25 %, each with an IQR
under 5 %: a process's heap layout and core placement move a ratio, and rounds inside one process
never sample that. Pooled, the spread holds both kinds of noise.

**Spread.** Each round gives one ratio (its ours over its baseline, timed back to back). Their
quartiles are the ratio's spread: the interquartile range (IQR) says how far one round strays, and
relative to the median it is the *width*. How well the median itself is known is its 95 % confidence
interval (:func:`median_interval`), which narrows as rounds are added: while its relative width
``ci_width`` is above ``max_width`` (default 0.05) more rounds are run, up to ``max_rounds`` per
process; a ratio whose interval stays wider is reported as inconclusive, not as a measurement. A
ratio whose whole interval lies below 1 for a step that does strictly more work than its baseline
(:data:`STRICTLY_MORE_WORK`) is flagged as noise: it cannot be a win. Two runs agree on a key when
their IQRs overlap (:func:`compare`).
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from ..nets import ReLURNN
from ..optim import PathSGD
from .bench_cases import BENCH, _ce, _path_sgd_shapes, _rnn_step

# The cases' targets and descriptions, and their builders, come from the one registry of bench_cases.
TARGETS = {key: (case.target, case.what) for key, case in BENCH.items()}
CASES = {key: case.build for key, case in BENCH.items() if case.build is not None}


# Cases whose side "ours" does the baseline's work and more (the same step, plus κ, a check, a geodesic
# step ...): a ratio below 1 there is machine noise. relurnn_vs_torch compares two implementations.
STRICTLY_MORE_WORK = frozenset(k for k in TARGETS if k not in ("relurnn_vs_torch", "path_sgd_peak_memory")
                               and not k.startswith(("spectral_", "recurrence_")))


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95 % confidence interval of the median of ``values``: the order statistics
    of ranks round(n/2 − h) and round(n/2 + 1 + h), h = 1.96·√n/2 (the count of values below the
    median is binomial(n, ½); this is its normal approximation). For n = 10 that is the 2nd and 9th
    value; for n ≤ 5 it is the min and max.

    >>> median_interval([float(v) for v in range(1, 11)])
    (2.0, 9.0)
    """
    xs = sorted(values)
    n = len(xs)
    h = 1.96 * math.sqrt(n) / 2
    low_rank, high_rank = max(1, round(n / 2 - h)), min(n, round(n / 2 + 1 + h))
    return xs[low_rank - 1], xs[high_rank - 1]


def ratio_spread(t_ours: list[float], t_base: list[float]) -> dict:
    """The per-round ratios ours/baseline (rounds are interleaved pairs): their quartiles, min and max,
    and the *width* (q3 − q1) / median, which is how far one round strays; and the 95 % confidence
    interval of their median (:func:`median_interval`) with its ``ci_width`` (ci_high − ci_low) /
    median, which is how well the reported ratio is known and shrinks as rounds are added."""
    ratios = sorted(o / b for o, b in zip(t_ours, t_base))
    if len(ratios) >= 2:
        q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    else:
        q1 = median = q3 = ratios[0]
    ci_low, ci_high = median_interval(ratios)
    return dict(q1=round(q1, 4), median=round(median, 4), q3=round(q3, 4), min=round(ratios[0], 4),
                max=round(ratios[-1], 4), width=round((q3 - q1) / median, 4), rounds=len(ratios),
                ci_low=round(ci_low, 4), ci_high=round(ci_high, 4), ci_width=round((ci_high - ci_low) / median, 4))


def verdict(key: str, ratio: float, spread: dict, max_width: float) -> str | None:
    """None for a measurement that can be read; else why it cannot."""
    if spread["ci_width"] > max_width:
        where = f" in {spread['processes']} processes" if spread.get("processes", 1) > 1 else ""
        return f"inconclusive: the median's 95 % interval is {100 * spread['ci_width']:.0f} % of the ratio " \
               f"(> {100 * max_width:.0f} %) after {spread['rounds']} rounds{where}"
    if key in STRICTLY_MORE_WORK and spread["ci_high"] < 1:
        return "noise: below 1 for a step that does strictly more work than its baseline"
    return None


def _machine() -> dict:
    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                torch_threads=torch.get_num_threads(), torch=torch.__version__, python=platform.python_version(),
                date=time.strftime("%Y-%m-%d"))


def _time_pair(ours: Callable, base: Callable, repeats: int, warmup: int = 1, min_seconds: float = 0.3,
               max_width: float | None = None, max_rounds: int | None = None) -> tuple[list[float], list[float]]:
    """Seconds per call of each side, one entry per round. Each timing runs enough consecutive calls to
    last about ``min_seconds`` (a single 150 ms step jitters by ±10 % here), and the sides alternate,
    the first side swapping every round, so that drift in machine load hits both. With ``max_width``,
    rounds go on past ``repeats`` (up to ``max_rounds``) until the 95 % interval of the per-round
    ratios' median is that narrow relative to it."""
    start = time.perf_counter()
    for _ in range(warmup):
        ours()
        base()
    per_call = (time.perf_counter() - start) / (2 * warmup)
    inner = max(1, round(min_seconds / max(per_call, 1e-6)))

    def timed(fn):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner

    t_ours, t_base = [], []
    r = 0
    while r < repeats or (max_width is not None and r < (max_rounds or repeats)
                          and ratio_spread(t_ours, t_base)["ci_width"] > max_width):
        order = ((ours, t_ours), (base, t_base)) if r % 2 == 0 else ((base, t_base), (ours, t_ours))
        for fn, sink in order:
            sink.append(timed(fn))
        r += 1
    return t_ours, t_base


def _peak_rss_kib() -> int:
    """Peak resident memory of this process, in KiB. VmHWM belongs to the process's own address space;
    ru_maxrss does not do here: Linux carries it across fork and exec, so a probe started by a large
    bench process would report the bench's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource  # not Linux: the best we have
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_step_memory(kind: str, quick: bool) -> tuple[int, int]:
    """In this process: build *one* side of the path_sgd_overhead case (model, batch, optimizer), run
    3 steps, and return (peak RSS, peak RSS before the model was built) in KiB. Run it in a fresh
    process (``_memory_probe``): a peak is a high-water mark, so the other side must never have run there."""
    before = _peak_rss_kib()
    H, T, B = _path_sgd_shapes(quick)
    torch.manual_seed(0)
    model = ReLURNN(1, H, 10)
    x, y = torch.rand(B, T, 1), torch.randint(10, (B,))
    optimizer = (PathSGD(model, lr=1e-4, seq_len=T) if kind == "ours"
                 else torch.optim.SGD(model.parameters(), lr=1e-4))
    step = _rnn_step(model, optimizer, x, y, _ce)
    for _ in range(3):
        step()
    return _peak_rss_kib(), before


def _memory_probe(kind: str, quick: bool) -> tuple[int, int]:
    code = ("from plainrnn.experiments.bench import measure_step_memory; "
            f"print(*measure_step_memory({kind!r}, {quick}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, before = out.stdout.strip().splitlines()[-1].split()
    return int(peak), int(before)


def time_case(key: str, quick: bool, repeats: int, max_width: float | None = None,
              max_rounds: int | None = None) -> tuple[list[float], list[float]]:
    """Build one case in this process and time its two sides (:func:`_time_pair`): seconds per call,
    one entry per round; on the case's own thread count, if it has one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BENCH[key].threads or threads)
    try:
        ours, base = CASES[key](quick)
        return _time_pair(ours, base, repeats, min_seconds=0.02 if quick else 0.3, max_width=max_width,
                          max_rounds=max_rounds)
    finally:
        torch.set_num_threads(threads)


def _time_case_in_fresh_process(key: str, quick: bool, repeats: int, max_width: float | None,
                                max_rounds: int | None) -> tuple[list[float], list[float]]:
    """:func:`time_case` in a new Python process with this one's torch thread count. A process draws
    its own heap layout and core placement, which shift a ratio by up to 25 % here (two quiet runs read
    1.13 and 0.885 for one key, each with an IQR under 5 %): rounds within one process cannot see it."""
    code = ("import json, sys, torch; from plainrnn.experiments.bench import time_case; "
            f"torch.set_num_threads({torch.get_num_threads()}); "
            f"print(json.dumps(time_case({key!r}, {quick}, {repeats}, {max_width!r}, {max_rounds!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench case {key} failed in its process:\n{out.stderr.strip()}")
    t_ours, t_base = json.loads(out.stdout.strip().splitlines()[-1])
    return t_ours, t_base


def run_bench(quick: bool = False, repeats: int | None = None, only: list[str] | None = None,
              progress: Callable[[str], None] | None = None, max_width: float = 0.05,
              max_rounds: int | None = None, processes: int | None = None) -> dict:
    """Time every case (or those in ``only``) and return ``{key: {ratio, target, met, what, spread,
    conclusive, flag, times | memory, machine}}``.

    Args:
        quick: small shapes and few rounds: checks the harness, not the numbers.
        repeats: rounds per process before the spread is looked at (default 5; 3 with ``quick``).
        only: the keys to run (default all of :data:`TARGETS`).
        progress: called with each key as it starts.
        max_width: a process goes on past ``repeats`` rounds, up to ``max_rounds`` (default 3 ×
            ``repeats``), until the 95 % interval of its rounds' median is within this fraction of
            it; a ratio whose pooled interval stays wider is reported as inconclusive.
        processes: each case is timed in this many fresh processes, one after another, and their rounds
            are pooled (default 3; 1 with ``quick``, which times in this process). The spread then
            holds the noise between processes as well as within one.

    Returns:
        One entry per key; ``spread`` gives the quartiles, min, max, width, the median's interval
        (``ci_low``, ``ci_high``, ``ci_width``), ``rounds`` and ``processes`` of the pooled per-round
        ratios, and ``ratio`` is their median. The memory entry's spread is that of the per-probe
        ratios (one fresh process per side and probe).
    """
    repeats = repeats or (3 if quick else 5)
    max_rounds = max_rounds or 3 * repeats
    processes = processes or (1 if quick else 3)
    timer = time_case if processes == 1 else _time_case_in_fresh_process
    machine = _machine()
    results = {}
    for key in CASES:
        if only and key not in only:
            continue
        if progress:
            progress(key)
        rounds_ours, rounds_base = [], []
        for _ in range(processes):
            t_ours, t_base = timer(key, quick, repeats, max_width, max_rounds)
            rounds_ours += t_ours
            rounds_base += t_base
        t_ours, t_base = statistics.median(rounds_ours), statistics.median(rounds_base)
        target, what = TARGETS[key]
        spread = dict(ratio_spread(rounds_ours, rounds_base), processes=processes)
        # The median of the per-round ratios, not median(ours) / median(base): each round's two sides
        # are timed back to back and share its noise, and the ratio then always lies inside its IQR.
        ratio = spread["median"]
        flag = verdict(key, ratio, spread, max_width)
        results[key] = dict(ratio=round(ratio, 4), target=target, met=ratio <= target and flag is None,
                            what=what, spread=spread, conclusive=flag is None, flag=flag,
                            threads=BENCH[key].threads or torch.get_num_threads(),
                            times=dict(ours_s=t_ours, baseline_s=t_base, repeats=len(rounds_ours)), machine=machine)
    if not only or "path_sgd_peak_memory" in only:
        if progress:
            progress("path_sgd_peak_memory")
        results["path_sgd_peak_memory"] = dict(_peak_memory(quick), machine=machine)
    return results


def _peak_memory(quick: bool) -> dict:
    """The memory row: peak RSS of PathSGD steps over SGD steps, each side in fresh processes."""
    probes = {"ours": [], "base": []}
    for _ in range(1 if quick else 5):  # interleaved, like the rounds of a timed case
        for kind in ("ours", "base"):
            probes[kind].append(_memory_probe(kind, quick))
    peak = {kind: statistics.median(p for p, _ in runs) for kind, runs in probes.items()}
    added = {kind: statistics.median(p - b for p, b in runs) for kind, runs in probes.items()}
    target, what = TARGETS["path_sgd_peak_memory"]
    # Probe i of ours over probe i of the baseline, as the rounds of a timed case: a peak moves by a
    # few percent from one process to the next (the allocator's arenas), so one ratio would hide it.
    spread = ratio_spread([p for p, _ in probes["ours"]], [p for p, _ in probes["base"]])
    return dict(
        ratio=spread["median"], target=target, met=spread["median"] <= target, spread=spread, what=what,
        memory=dict(ours_kib=peak["ours"], baseline_kib=peak["base"], ours_added_kib=added["ours"],
                    baseline_added_kib=added["base"],
                    # what the model, the batch, the optimizer and its steps add to Python and torch
                    added_ratio=round(added["ours"] / max(added["base"], 1), 4)))


def profile_case(key: str, quick: bool = False, steps: int = 5, rows: int = 15) -> str:
    """torch.profiler's table (self CPU time) of both sides of one case: where the ratio comes from."""
    from torch.profiler import ProfilerActivity, profile
    ours, base = CASES[key](quick)
    out = []
    for side, fn in (("ours", ours), ("baseline", base)):
        for _ in range(2):
            fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                fn()
        averages = prof.key_averages()
        table = averages.table(sort_by="self_cpu_time_total", row_limit=rows)
        # The optimizer's step with everything it calls, whatever its rank in the self-time table.
        step_lines = [f"{event.key}: {event.cpu_time_total / 1e3 / steps:.2f} ms per call, children included"
                      for event in averages if event.key.startswith("Optimizer.step#")]
        out.append(f"== {key}: {side}, {steps} calls\n{table}" + "".join(f"{line}\n" for line in step_lines))
    return "\n".join(out)


def format_table(results: dict) -> str:
    lines = [f"{'key':<38} {'ratio':>7} {'95% interval':>13} {'IQR':>13} {'target':>7} {'met':>4}  {'ours':>10} "
             f"{'baseline':>10}"]
    notes = []
    for key, r in results.items():
        if "times" in r:
            ours, base = f"{r['times']['ours_s'] * 1e3:.1f} ms", f"{r['times']['baseline_s'] * 1e3:.1f} ms"
        else:
            ours, base = f"{r['memory']['ours_kib'] / 1024:.0f} MiB", f"{r['memory']['baseline_kib'] / 1024:.0f} MiB"
        spread = r.get("spread")
        iqr = f"{spread['q1']:.3f}–{spread['q3']:.3f}" if spread else "-"
        interval = f"{spread['ci_low']:.3f}–{spread['ci_high']:.3f}" if spread and "ci_low" in spread else "-"
        met = "?" if r.get("flag") else ("yes" if r["met"] else "NO")
        lines.append(f"{key:<38} {r['ratio']:>7.3f} {interval:>13} {iqr:>13} {r['target']:>7.2f} {met:>4}  "
                     f"{ours:>10} {base:>10}")
        if r.get("flag"):
            notes.append(f"  {key}: {r['flag']}")
    if notes:
        lines += ["", "not a measurement (met = ?):"] + notes
    return "\n".join(lines)


def compare(first: dict, second: dict) -> list[dict]:
    """Two ``plainrnn bench --json`` results, key by key: whether they agree, that is, whether their
    interquartile ranges overlap (docs/performance.md, "How to read a ratio").

    Args:
        first, second: the JSON objects of two runs.

    Returns:
        One row per key in either run: ``key``, both ``ratio`` and ``iqr`` (``None`` where a run lacks
        the key or, for runs older than the spread, the IQR) and ``agree`` (``True``, ``False``, or
        ``None`` when it cannot be told).

    >>> a = {"k": {"ratio": 1.0, "spread": {"q1": 0.98, "q3": 1.03}}}
    >>> b = {"k": {"ratio": 1.04, "spread": {"q1": 1.02, "q3": 1.06}}}
    >>> compare(a, b)[0]["agree"]
    True
    """
    rows = []
    for key in list(first) + [k for k in second if k not in first]:
        sides = [run.get(key) for run in (first, second)]
        iqrs = [(r["spread"]["q1"], r["spread"]["q3"]) if r and r.get("spread") else None for r in sides]
        agree = None if None in iqrs else iqrs[0][0] <= iqrs[1][1] and iqrs[1][0] <= iqrs[0][1]
        rows.append(dict(key=key, ratios=[r["ratio"] if r else None for r in sides], iqrs=iqrs, agree=agree))
    return rows


def format_comparison(rows: list[dict], names: tuple[str, str] = ("first", "second")) -> str:
    """The rows of :func:`compare` as a table, with a closing count of the keys that agree."""
    def cell(ratio, iqr):
        if ratio is None:
            return "-"
        return f"{ratio:.3f} ({iqr[0]:.3f}–{iqr[1]:.3f})" if iqr else f"{ratio:.3f} (no IQR)"
    width = max([38] + [len(r["key"]) for r in rows])
    lines = [f"{'key':<{width}} {names[0]:>24} {names[1]:>24}  agree"]
    for r in rows:
        agree = "?" if r["agree"] is None else ("yes" if r["agree"] else "NO")
        lines.append(f"{r['key']:<{width}} {cell(r['ratios'][0], r['iqrs'][0]):>24} "
                     f"{cell(r['ratios'][1], r['iqrs'][1]):>24}  {agree}")
    told = [r for r in rows if r["agree"] is not None]
    lines += ["", f"{sum(r['agree'] for r in told)} of {len(told)} keys agree (their IQRs overlap)"
              + (f"; {len(rows) - len(told)} cannot be told (missing in a run, or no IQR)" if len(told) < len(rows) else "")]
    return "\n".join(lines)


__all__ = ["run_bench", "time_case", "format_table", "ratio_spread", "verdict", "compare", "format_comparison", "CASES",
           "TARGETS", "STRICTLY_MORE_WORK"]
