"""A run cut short the way a lost machine leaves it: stopped at an evaluation, its checkpoint kept, no
summary."""
from unittest import mock

import pytest


def train_until_the_machine_goes(config: dict, at_evaluation: int = 2) -> None:
    """Trains the trial of ``config`` (a sweep trial's config) and stops it as its ``at_evaluation``-th
    evaluation begins: the evaluations before it are in metrics.jsonl, the checkpoint of the last one
    is on disk."""
    from plainrnn.experiments.sweep import run_trial
    from plainrnn.train import loop
    real_evaluate, calls = loop.evaluate, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_evaluation:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)
    with mock.patch("plainrnn.train.loop.evaluate", side_effect=evaluate_then_die), pytest.raises(KeyboardInterrupt):
        run_trial(config)
