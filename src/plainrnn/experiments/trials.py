"""A sweep's two records: the trials it plans (:class:`Trial`) and what each gave (:class:`Outcome`).

The planner (:mod:`~plainrnn.experiments.planning`) makes Trials; a backend
(:mod:`~plainrnn.experiments.backends`) turns each into an Outcome, in this process, in a pool worker or
on a Ray node (both records pickle); the sweep (:mod:`~plainrnn.experiments.sweep`) sums Outcomes into
its table and logs each as one line of ``trials.jsonl`` (:meth:`Outcome.log_line`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Trial:
    """One run a sweep plans: the label of its setting (``lr=1e-2,init=uniform``, the grid's values) and
    its whole config (a :class:`~plainrnn.train.config.RunConfig` as a dict, its run directory
    ``out/name`` included)."""

    setting: str
    config: dict

    @property
    def seed(self) -> int:
        return self.config["seed"]


# How a trial ended: trained from scratch, resumed from its checkpoint, or reused finished; failed (the
# error says why); busy (another process trains it: left to that one); interrupted (the sweep stopped
# before it ended: the same command continues it).
STATUSES = ("ok", "resumed", "reused", "failed", "busy", "interrupted")


@dataclass(frozen=True)
class Outcome:
    """What one trial gave: its status (:data:`STATUSES`) and, when it ran, its summary's numbers."""

    status: str
    run_dir: str | None = None
    diverged: bool = False
    diverged_step: int | None = None
    diverged_reason: str | None = None
    valid_metric: float = math.nan
    test_metric: float = math.nan
    best_valid_metric: float | None = None
    wall_s: float = 0.0
    steps: int | None = None  # how far it ran (a diverged run: where it stopped)
    lower_is_better: bool = True
    error: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @classmethod
    def of_summary(cls, summary: dict, status: str) -> "Outcome":
        """From a run's summary.json (what :func:`~plainrnn.train.train` returns)."""
        keys = {f.name for f in dataclasses.fields(cls)} - {"status", "error"}
        return cls(status=status, **{k: summary[k] for k in keys if k in summary})

    @classmethod
    def failed(cls, error: BaseException, run_dir: str | None = None) -> "Outcome":
        return cls(status="failed", error=f"{error.__class__.__name__}: {error}", run_dir=run_dir)

    @property
    def is_result(self) -> bool:
        """Whether the sweep's table counts it: not while another process trains it or the sweep stopped."""
        return self.status not in ("busy", "interrupted")

    def log_line(self, trial: Trial) -> dict:
        """Its line of ``trials.jsonl``."""
        return dict(setting=trial.setting, seed=trial.seed, status=self.status, error=self.error,
                    diverged=self.diverged, diverged_step=self.diverged_step, diverged_reason=self.diverged_reason,
                    valid_metric=self.valid_metric, test_metric=self.test_metric, wall_s=self.wall_s,
                    run_dir=self.run_dir)
