"""`plainrnn reproduce first-steps`: the κ-metric sizes of Path-SGD's first steps."""
import json

from plainrnn.cli import main
from plainrnn.experiments.first_steps import first_steps
from plainrnn.train.config import load_config


def _cfg(**overrides):
    return load_config(None, {"task": "adding", "seq_len": 30, "hidden": 16, "optimizer": "path-sgd", "seed": 1,
                              **overrides})


def test_the_trust_region_bounds_every_unit_step_that_the_plain_step_exceeds():
    free = first_steps(_cfg(lr="1"), steps=3)
    bounded = first_steps(_cfg(lr="1", max_unit_step="0.01"), steps=3)
    assert max(r["largest_unit_step"] for r in free) > 1  # a unit moved by more than its weights
    assert all(r["largest_unit_step"] <= 0.01 * (1 + 1e-5) for r in bounded)  # float32 weights: rounding
    assert bounded[0]["gamma2"] == free[0]["gamma2"] and bounded[0]["loss"] == free[0]["loss"]  # same start


def test_the_command_prints_a_table_or_json_and_names_a_wrong_optimizer(capsys):
    assert main(["reproduce", "first-steps", "--set", "seq_len=20", "--set", "hidden=8", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert main(["reproduce", "first-steps", "--set", "optimizer=adam"]) == 2
    assert "optimizer must be path-sgd, got adam" in capsys.readouterr().err
