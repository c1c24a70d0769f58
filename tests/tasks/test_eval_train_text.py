"""--eval-train on a language model: the training-set metric of the 2016 paper's Fig. 2 (training and test
perplexity), computed on the training stream, read back by the report as a table and a figure."""
import json

import pytest
import torch

from plainrnn.cli import main
from plainrnn.experiments.report import curves_table, report
from plainrnn.tasks import make_task
from plainrnn.train import RunConfig
from plainrnn.train.build import build_model
from plainrnn.train.checkpoint import load_checkpoint


@pytest.fixture
def text8_cache(tmp_path, make_text8):
    from plainrnn.tasks.data import fetch
    make_text8(tmp_path / "text8")
    fetch("text8", tmp_path / "cache", source_file=str(tmp_path / "text8"))
    return tmp_path / "cache"


def test_eval_train_on_a_language_model_measures_the_training_stream(text8_cache, tmp_path, capsys):
    torch.manual_seed(0)
    code = main(["train", "--task", "text8", "--seq-len", "20", "--data-dir", str(text8_cache), "--out",
                 str(tmp_path / "runs"), "--hidden", "8", "--steps", "4", "--eval-every", "2", "--eval-limit", "30",
                 "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-2", "--eval-train", "--train-eval-limit", "25", "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = tmp_path / "runs" / summary["run_dir"].split("/")[-1]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in records] == [2, 4] and all("train_eval_metric" in r for r in records)

    # The oracle: the final model (its checkpoint at step 4) on the first 25 windows of the training stream.
    cfg = RunConfig(**json.loads((run / "config.json").read_text()))
    task = make_task("text8", 20, text8_cache)
    model = build_model(cfg, task.spec)
    model.load_state_dict(load_checkpoint(run / "checkpoint.pt")["model"])
    model.eval()
    loss, bpc = task.evaluate(model, "train", limit=25)
    assert records[-1]["train_eval_loss"] == pytest.approx(loss, rel=1e-6)
    assert records[-1]["train_eval_metric"] == pytest.approx(bpc, rel=1e-6)
    valid_loss, _ = task.evaluate(model, "valid", limit=25)
    assert loss != pytest.approx(valid_loss, rel=1e-6)  # another split, not the validation one again

    table = curves_table([str(run)])
    assert f"{records[0]['train_eval_metric']:.4g} / {records[0]['test_metric']:.4g}" in table
    report([str(run)], plots_dir=str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "text8_train_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "plots" / "text8_panels.png").exists()  # the classifiers' panels are not for BPC


def test_eval_train_on_a_task_without_a_training_set_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="eval_train needs a task with a fixed training set"):
        RunConfig(task="adding", eval_train=True).validate()
    assert main(["train", "--task", "copy", "--eval-train", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval_train" in err[0] and "copy" in err[0]


def test_a_limited_language_model_evaluation_spreads_its_windows_over_the_split(text8_cache):
    """A limit takes windows evenly spaced over the split, not the first ones: PTB's training text, for
    one, starts harder than the rest, so its head would be a biased sample of training perplexity."""
    task = make_task("text8", 20, text8_cache)
    stream = task.streams["train"]
    n = (len(stream) - 1) // 20
    x, y = next(task.eval_batches("train", 1000, limit=25))
    starts = [k * n // 25 * 20 for k in range(25)]
    assert len(x) == 25 and starts[-1] > 0.9 * len(stream)
    assert torch.equal(x, torch.stack([stream[s:s + 20].long() for s in starts]))
    assert torch.equal(y, torch.stack([stream[s + 1:s + 21].long() for s in starts]))
    every = torch.cat([b for b, _ in task.eval_batches("train", 500)])  # no limit: every window, in order
    assert len(every) == n and torch.equal(every[1], stream[20:40].long())
