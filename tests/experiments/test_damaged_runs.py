"""A damaged run never hides the healthy ones: report names it in one line and goes on; a torn last
metrics line (a kill inside an append) is left out; a corrupt line before the last is named with the
file and its line number."""
import json

import pytest

from plainrnn.cli import main
from plainrnn.train import RunConfig, train
from plainrnn.train.checkpoint import CorruptFile, read_json, read_records


def _two_runs(tmp_path):
    for name in ("a", "b"):
        train(RunConfig(task="adding", seq_len=6, hidden=4, steps=4, eval_every=2, out=str(tmp_path), name=name),
              progress=False)
    return tmp_path / "a", tmp_path / "b"


def test_report_skips_a_run_it_cannot_read_with_one_line_and_reports_the_rest(tmp_path, capsys):
    a, b = _two_runs(tmp_path)
    (b / "summary.json").write_text('{"steps": 4,')
    assert main(["report", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == (f"skipping {b}: {b / 'summary.json'}: not valid JSON (Expecting property name enclosed "
                           "in double quotes at line 1, column 13)")
    assert "0/1" in out  # a's row: one run, none diverged


def test_a_torn_last_line_is_left_out_and_a_corrupt_middle_line_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 2, "x": 1.0}, {"step": 4, "x": 2.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "x"')
    assert read_records(path) == rows
    path.write_text(json.dumps(rows[0]) + "\n" + '{"step": 4, "x' + "\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(CorruptFile, match=rf"^{path}: line 2 is not valid JSON"):
        read_records(path)
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(CorruptFile, match=rf"^{tmp_path / 'c.json'}: not valid JSON"):
        read_json(tmp_path / "c.json")


def test_resume_with_a_corrupt_config_names_the_file(tmp_path, capsys):
    a, _ = _two_runs(tmp_path)
    (a / "config.json").write_text("{oops")
    assert main(["train", "--resume", str(a), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"plainrnn train: error: {a / 'config.json'}: not valid JSON")
