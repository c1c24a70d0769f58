"""Every numeric knob takes what its type says, or one line: an int field refuses a fraction (it is
not truncated), every number refuses inf and nan, and --resume refuses a flag that would change the run."""
import pytest

from plainrnn.cli import main
from plainrnn.train.config import load_config, parse_overrides


@pytest.mark.parametrize("item, message", [
    ("hidden=100.5", "hidden must be an int, got '100.5'"),
    ("batch_size=inf", "batch_size must be an int, got 'inf'"),
    ("lr=inf", "lr must be a finite number, got inf"),
    ("lr=nan", "lr must be a finite number, got nan"),
    ("clip=-inf", "clip must be a finite number, got -inf"),
    ("init_scale=inf", "init_scale must be a finite number, got inf")])
def test_a_number_outside_its_type_is_refused_word_for_word(item, message):
    with pytest.raises(ValueError) as caught:
        load_config(None, parse_overrides(["task=adding", item])).validate()
    assert str(caught.value) == message


def test_an_int_field_keeps_a_whole_number_written_as_a_float():
    assert load_config(None, parse_overrides(["hidden=64.0"])).hidden == 64


def test_resume_refuses_flags_that_would_change_the_run(tmp_path, capsys):
    base = ["train", "--task", "adding", "--seq-len", "6", "--hidden", "4", "--steps", "4", "--eval-every", "2",
            "--out", str(tmp_path), "--name", "r", "--quiet"]
    assert main(base) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r"), "--hidden", "64", "--lr", "0.5", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "plainrnn train: error: --resume continues a run with its own config; --hidden, --lr would change it "
        "(only --steps may be given, to lengthen it); train a new run without --resume")
    assert main(["train", "--resume", str(tmp_path / "r"), "--set", "lr=2", "--quiet"]) == 2
    assert "--set would change it" in capsys.readouterr().err
