"""Every committed result regenerates: `plainrnn report results/<experiment>` reads each run that
results/ holds (config.yaml, summary.json, metrics.jsonl; REPRODUCTION.md) and draws its figures."""
import json
from pathlib import Path

import pytest

from plainrnn.experiments.report import find_runs, report

RESULTS = Path(__file__).resolve().parents[2] / "results"
EXPERIMENTS = sorted(p for p in RESULTS.iterdir() if p.is_dir() and list(p.glob("*/summary.json"))) if RESULTS.exists() else []


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda p: p.name)
def test_each_committed_experiment_regenerates_its_table_and_figures(experiment, tmp_path):
    runs = find_runs([str(experiment)])
    for run in runs:
        assert not (run / "checkpoint.pt").exists(), f"{run}: results/ never holds checkpoints"
        assert (run / "config.yaml").exists() and (run / "metrics.jsonl").exists()
    rows = json.loads(report([str(experiment)], fmt="json", plots_dir=str(tmp_path)))
    assert sum(r["runs"] for r in rows) == len(runs)
    assert list(tmp_path.glob("*_learning_curves.png"))


def test_the_demos_findings_are_the_results_pages():
    """The adding study's findings are one file, which `plainrnn demo` prints and docs/results.md shows
    between its findings markers: the two never drift apart."""
    from plainrnn.experiments.demo import FINDINGS_FILE
    page = (RESULTS.parent / "docs" / "results.md").read_text()
    start = page.index("<!-- findings: src/plainrnn/experiments/findings/adding_study.md")
    block = page[page.index("-->\n", start) + 4:page.index("\n<!-- /findings -->", start)]
    assert block == FINDINGS_FILE.read_text().rstrip("\n")
