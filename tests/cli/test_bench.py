"""`plainrnn bench --quick --json`: a smoke test of the harness and its JSON shape, never the numbers."""
import json
import subprocess
import sys

from plainrnn.experiments.bench import TARGETS


def test_quick_bench_json_shape():
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--quick", "--json", "--repeats", "1"],
                         capture_output=True, text=True, check=True, timeout=600)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == set(TARGETS)
    for key, entry in result.items():
        assert {"ratio", "target", "met", "machine"} <= set(entry), key
        assert entry["ratio"] > 0
        sides = ("ours_s", "baseline_s") if "times" in entry else ("ours_kib", "baseline_kib")
        nested = entry.get("times") or entry.get("memory")
        assert all(nested[side] > 0 for side in sides), key
        assert {"cores", "torch", "date"} <= set(entry["machine"])
        if "times" in entry:
            assert entry["conclusive"] == (entry["flag"] is None)
        spread = entry["spread"]
        assert {"q1", "median", "q3", "min", "max", "width", "rounds", "ci_low", "ci_high", "ci_width"} <= set(spread)
        assert spread["min"] <= spread["q1"] <= spread["q3"] <= spread["max"], key
        assert spread["min"] <= spread["ci_low"] <= spread["median"] <= spread["ci_high"] <= spread["max"], key


def test_bench_rejects_an_unknown_case():
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--only", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("plainrnn bench: error: unknown case 'nope'")


def test_profile_prints_both_sides_and_rejects_an_unknown_case():
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--quick", "--profile", "path_sgd_overhead"],
                         capture_output=True, text=True, check=True, timeout=300)
    assert "== path_sgd_overhead: ours" in out.stdout and "== path_sgd_overhead: baseline" in out.stdout
    assert "Optimizer.step#PathSGD.step" in out.stdout and "Optimizer.step#SGD.step" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--profile", "nope"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("plainrnn bench: error: --profile: unknown case 'nope'")


def test_spread_is_the_quartiles_of_the_per_round_ratios():
    from plainrnn.experiments.bench import ratio_spread
    spread = ratio_spread([1.0, 1.2, 0.9, 1.1, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert (spread["min"], spread["q1"], spread["median"], spread["q3"], spread["max"]) == (0.9, 1.0, 1.1, 1.2, 2.0)
    assert spread["width"] == round(0.2 / 1.1, 4) and spread["rounds"] == 5


def test_a_wide_interval_is_inconclusive_and_a_win_on_more_work_is_noise():
    from plainrnn.experiments.bench import verdict
    narrow = dict(q1=0.95, median=0.98, q3=1.01, width=0.06, ci_low=0.97, ci_high=0.99, ci_width=0.02, rounds=45)
    assert "noise" in verdict("path_sgd_overhead", 0.98, narrow, 0.05)
    assert verdict("relurnn_vs_torch", 0.98, narrow, 0.05) is None  # two implementations: a real win
    assert verdict("path_sgd_overhead", 1.0, dict(narrow, ci_low=0.99, ci_high=1.01), 0.05) is None
    # a wide IQR with a narrow interval is a measurement; a wide interval is not, whatever the IQR
    assert verdict("path_sgd_overhead", 1.1, dict(narrow, q1=0.9, q3=1.3, width=0.36, ci_low=1.09, ci_high=1.11),
                   0.05) is None
    wide = dict(narrow, ci_low=1.0, ci_high=1.2, ci_width=0.18, processes=3)
    assert verdict("path_sgd_overhead", 1.1, wide, 0.05) == \
        "inconclusive: the median's 95 % interval is 18 % of the ratio (> 5 %) after 45 rounds in 3 processes"


def test_the_median_interval_is_the_binomial_order_statistics():
    """Against the exact binomial: the interval [x(j), x(k)] covers the median with probability
    P(j ≤ Binomial(n, ½) < k), which must be at least 95 % and is close to it."""
    from math import comb

    from plainrnn.experiments.bench import median_interval
    for n in (6, 10, 20, 45, 100):
        low, high = median_interval([float(v) for v in range(1, n + 1)])
        j, k = int(low), int(high)
        coverage = sum(comb(n, i) for i in range(j, k)) / 2 ** n
        assert 0.94 <= coverage <= 0.99, (n, j, k, coverage)
        assert j + k == n + 1  # symmetric ranks
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0) and median_interval([2.0]) == (2.0, 2.0)


def test_rounds_go_on_until_the_interval_is_narrow(monkeypatch):
    """A fake clock: the first round's ours takes twice its baseline, every later round the same. The
    median's interval first leaves out the one ratio of 2 at the ninth round (ranks 2 and 8 of 9)."""
    import plainrnn.experiments.bench as bench
    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    ours_durations = iter([1.0, 1.0, 2.0] + [1.0] * 40)  # warmup, round 0, round 1, ...

    def ours():
        clock[0] += next(ours_durations)

    def base():
        clock[0] += 1.0

    t_ours, _ = bench._time_pair(ours, base, repeats=2, min_seconds=1e-9, max_width=0.05, max_rounds=30)
    assert len(t_ours) == 9
    ours_durations = iter([1.0, 1.0, 2.0] + [1.0] * 40)
    t_ours, _ = bench._time_pair(ours, base, repeats=2, min_seconds=1e-9, max_width=0.05, max_rounds=4)
    assert len(t_ours) == 4  # the cap: reported as inconclusive


def test_compare_says_where_two_runs_agree(tmp_path):
    """Two runs agree on a key when their IQRs overlap (touching counts); a key one run lacks, or an
    entry without a spread (the JSON before it had one), cannot be told."""
    from plainrnn.cli import main
    from plainrnn.experiments.bench import compare
    entry = lambda r, q1, q3: dict(ratio=r, spread=dict(q1=q1, q3=q3))  # noqa: E731
    a = dict(same=entry(1.0, 0.98, 1.02), touch=entry(1.0, 0.99, 1.01), apart=entry(1.0, 0.99, 1.01),
             old=dict(ratio=1.0), only_a=entry(1.0, 0.9, 1.1))
    b = dict(same=entry(1.01, 0.99, 1.03), touch=entry(1.02, 1.01, 1.03), apart=entry(1.05, 1.02, 1.08),
             old=entry(1.0, 0.9, 1.1), only_b=entry(1.0, 0.9, 1.1))
    rows = {r["key"]: r["agree"] for r in compare(a, b)}
    assert rows == dict(same=True, touch=True, apart=False, old=None, only_a=None, only_b=None)
    assert {r["key"]: r["agree"] for r in compare(b, a)} == rows  # symmetric
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--compare", str(tmp_path / "a.json"),
                          str(tmp_path / "b.json")], capture_output=True, text=True, check=True)
    assert "apart" in out.stdout and "NO" in out.stdout
    assert out.stdout.strip().endswith("2 of 3 keys agree (their IQRs overlap); 3 cannot be told (missing in a run, or no IQR)")
    (tmp_path / "bad.json").write_text("[1, 2]")
    bad = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--compare", str(tmp_path / "a.json"),
                          str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("plainrnn bench: error: --compare:") and "bad.json is not the JSON" in bad.stderr
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 2


def test_the_ratio_is_the_median_of_the_rounds_and_lies_in_its_iqr(monkeypatch):
    """Rounds (ours, base) = (1, 1), (10, 10), (10, 1): the per-round ratios are 1, 1, 10, so the ratio
    is 1, while median(ours) / median(base) would be 10, outside the IQR."""
    import plainrnn.experiments.bench as bench
    monkeypatch.setattr(bench, "CASES", {"path_sgd_overhead": lambda quick: (None, None)})
    monkeypatch.setattr(bench, "_time_pair", lambda *a, **k: ([1.0, 10.0, 10.0], [1.0, 10.0, 1.0]))
    result = bench.run_bench(only=["path_sgd_overhead"], max_width=100.0, processes=1)["path_sgd_overhead"]
    assert result["ratio"] == 1.0 and result["spread"]["q1"] <= result["ratio"] <= result["spread"]["q3"]
    assert result["times"] == dict(ours_s=10.0, baseline_s=1.0, repeats=3)


def test_rounds_of_several_processes_are_pooled(monkeypatch):
    """Three processes whose rounds read 1.0, 1.2 and 1.4: each alone is narrow, pooled they are wide,
    so the run reports the spread between processes and calls the ratio inconclusive."""
    import plainrnn.experiments.bench as bench
    reads = iter([1.0, 1.2, 1.4])
    calls = []

    def fake_process(key, quick, repeats, max_width, max_rounds):
        calls.append((key, quick, repeats, max_width, max_rounds))
        r = next(reads)
        return [r, r * 1.001, r * 0.999], [1.0, 1.0, 1.0]
    monkeypatch.setattr(bench, "_time_case_in_fresh_process", fake_process)
    result = bench.run_bench(only=["path_sgd_overhead"], repeats=3, processes=3)["path_sgd_overhead"]
    assert calls == [("path_sgd_overhead", False, 3, 0.05, 9)] * 3
    assert result["spread"]["rounds"] == 9 and result["spread"]["processes"] == 3
    assert result["ratio"] == 1.2 and result["spread"]["min"] == 0.999 and result["spread"]["max"] == 1.4014
    assert (result["spread"]["ci_low"], result["spread"]["ci_high"]) == (1.0, 1.4)  # ranks 2 and 8 of 9
    assert not result["conclusive"] and "in 3 processes" in result["flag"]


def test_a_case_timed_in_fresh_processes_returns_their_rounds():
    """The real child processes, on the quick shapes: two processes of two rounds each."""
    from plainrnn.experiments.bench import run_bench
    result = run_bench(quick=True, only=["relurnn_vs_torch"], repeats=2, max_rounds=2, processes=2)
    spread = result["relurnn_vs_torch"]["spread"]
    assert spread["rounds"] == 4 and spread["processes"] == 2 and spread["min"] > 0
