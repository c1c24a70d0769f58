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
