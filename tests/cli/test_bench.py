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
        assert ("ours_s" in entry and "baseline_s" in entry) or ("ours_kib" in entry and "baseline_kib" in entry)
        assert {"cores", "torch", "date"} <= set(entry["machine"])


def test_bench_rejects_an_unknown_case():
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "bench", "--only", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("plainrnn bench: error: unknown case 'nope'")
