"""The 2017 paper's PTB tables give accuracy beside bits per character: next-character accuracy over
real characters (padding never counts), recorded at every evaluation and reported at the best
validation point."""
import json

import pytest
import torch

from plainrnn.cli import main
from plainrnn.experiments.report import report
from plainrnn.tasks import make_task


def test_sentence_accuracy_counts_real_characters_only(real_data):
    task = make_task("ptb-sentences", 75, real_data)
    V = task.spec.vocab_size

    def repeat_the_last_character(x):  # a "model" whose every prediction is known: next = this one
        return torch.nn.functional.one_hot(x, V).float()

    extras = {}
    task.evaluate(repeat_the_last_character, "valid", limit=300, extras=extras)
    right = total = 0
    for sentence in task.sentences["valid"][:300]:  # the oracle: count repeats sentence by sentence
        s = sentence.long()
        right += int((s[1:] == s[:-1]).sum())
        total += len(s) - 1
    assert extras["accuracy"] == pytest.approx(right / total, abs=1e-12)
    assert 0 < extras["accuracy"] < 0.2  # some doubled letters ("ll", "ss"), not most characters


def test_a_language_model_run_records_accuracy_and_the_report_gives_it_at_the_best_validation_point(
        real_data, tmp_path, capsys):
    code = main(["train", "--task", "ptb-sentences", "--seq-len", "75", "--data-dir", str(real_data), "--out",
                 str(tmp_path / "runs"), "--hidden", "8", "--steps", "4", "--eval-every", "2", "--eval-limit", "40",
                 "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-2", "--quiet", "--json"])
    assert code == 0
    run = tmp_path / "runs" / json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"].split("/")[-1]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert all(0 <= r["valid_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1 for r in records)
    best = min(records, key=lambda r: r["valid_metric"])
    table = report([str(run)], at_best_valid=True)
    assert "test accuracy there (median)" in table.splitlines()[0]
    assert table.splitlines()[2].endswith(f" {best['test_metric']:.5g} | {best['test_accuracy']:.5g} |")
