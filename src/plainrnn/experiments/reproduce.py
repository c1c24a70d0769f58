"""`plainrnn reproduce NAME`: an analysis that prints a table, or a recipe that runs a sweep.

The analyses (:data:`ANALYSES`) compute one table from a config and print it; the recipes
(:data:`~plainrnn.experiments.recipes.RECIPES`) are sweeps in ``runs/<recipe>-<budget>``, planned here
(budget, ``--only``, ``--set``), listed without running (:func:`list_trials`) or run (:func:`reproduce`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..train.config import load_config, parse_overrides
from .recipes import RECIPES, plan_of


@dataclass(frozen=True)
class Analysis:
    """A table computed from one config: ``compute(config) → rows``, ``to_markdown(rows) → str``."""

    defaults: dict
    compute: Callable
    to_markdown: Callable

    def run(self, overrides: dict, as_json: bool) -> str:
        rows = self.compute(load_config(None, {**self.defaults, **overrides}))
        return json.dumps(rows, indent=1) if as_json else self.to_markdown(rows)


def _kappa_table(seeds):
    from .kappa_ratio import kappa_ratio_table, to_markdown
    return Analysis({},
                    lambda cfg: kappa_ratio_table(seeds=seeds), to_markdown)


def _step_scales():
    from . import step_scales
    return Analysis({"task": "adding"},
                    step_scales.step_scales, step_scales.to_markdown)


def _first_steps():
    from . import first_steps

    def compute(cfg):
        if cfg.optimizer != "path-sgd":
            raise ValueError(f"first-steps measures Path-SGD's steps: optimizer must be path-sgd, got {cfg.optimizer}")
        return first_steps.first_steps(cfg)
    return Analysis({"task": "adding", "optimizer": "path-sgd", "seed": 1}, compute, first_steps.to_markdown)


def _invariance_gap():
    from . import invariance_gap
    return Analysis({"task": "mnist", "model": "mlp", "hidden": 1000, "layers": 2, "lr": 1e-3, "batch_size": 100,
                     "steps": 300, "seed": 1}, invariance_gap.invariance_gap, invariance_gap.to_markdown)


# name → a function of the seeds that builds it (imports stay lazy: `plainrnn --help` loads none of them)
ANALYSES: dict[str, Callable[[int], Analysis]] = {
    "kappa-table": lambda seeds: _kappa_table(seeds or 3),
    "step-scales": lambda seeds: _step_scales(),
    "first-steps": lambda seeds: _first_steps(),
    "invariance-gap": lambda seeds: _invariance_gap(),
}
ANALYSIS_WHAT = {  # for --help, without building any
    "kappa-table": "‖κ2‖/‖κ1‖ over T × H at uniform[-0.1, 0.1] init (2016, Fig. 2)",
    "step-scales": "the spread of the factor s/κ that multiplies a Path-SGD step, per parameter, at a run's init "
                   "(default: adding, T=100; --set any run key)",
    "first-steps": "Path-SGD's first steps in the κ metric, the whole step against the largest step of one unit "
                   "(default: adding, T=100, lr 1e-3, no clipping; --set any run key)",
    "invariance-gap": "how far Path-SGD runs from the balanced and the unbalanced MNIST MLP drift apart, beside a "
                      "control nudged by float32's rounding, in float32 and float64",
}
NAMES = (*ANALYSES, *RECIPES)


@dataclass
class Plan:
    """A recipe made concrete: its base config, its settings, seeds and sweep folder."""

    recipe: str
    base: object
    grid: object
    seeds: int
    dir: str

    @property
    def sweep_dir(self) -> Path:
        return Path(self.base.out) / self.dir


def plan(recipe: str, budget: str | None, seeds: int | None, sets: list[str], only: list[str],
         extend_from: list[str]) -> Plan:
    """The recipe at a budget (``runs/<recipe>-<budget>``: budgets never collide), ``--set`` on top, the
    settings ``--only`` keeps (in the same sweep folder: the table sees them all)."""
    from .planning import only_settings
    chosen = plan_of(recipe, budget)
    base = load_config(None, {**RECIPES[recipe]["base"], **chosen["overrides"], **parse_overrides(sets)})
    grid = chosen["grid"]
    if only:
        wanted: dict[str, list[str]] = {}
        for item in only:  # a key given twice keeps either value
            for key, value in parse_overrides([item], flag="--only").items():
                wanted.setdefault(key, []).append(value)
        grid = only_settings(base, grid, wanted)
    for folder in extend_from:
        if not Path(folder).is_dir():
            raise ValueError(f"--extend-from {folder}: no such folder; give a sweep's folder, e.g. runs/{recipe}-cpu")
    return Plan(recipe, base, grid, seeds or chosen["seeds"], chosen["dir"])


def list_trials(p: Plan, extend_from: list[str]) -> list[str]:
    """One line a trial (done, resumable, running, conflict or new, and why), then the tally."""
    from .planning import build_trials
    trials = build_trials(p.base, p.grid, p.seeds, p.sweep_dir)
    states: dict[str, int] = {}
    lines = []
    for trial in trials:
        state, where = _where(trial.config, extend_from)
        lines.append(f"{state:<10} {trial.setting}  seed {trial.seed}{where}")
        states[state] = states.get(state, 0) + 1
    tally = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))  # how far the recipe got
    return lines + [f"{len(trials)} trials in {p.sweep_dir}" + (f" ({tally})" if trials else "")]


def _where(config: dict, extend_from: list[str]) -> tuple[str, str]:
    from ..train.rundir import RunDir
    from .planning import continues_from, earlier_run
    run_dir = RunDir.of(config)
    state, holder = run_dir.state(config), run_dir.holder()
    reached = run_dir.last_evaluated_step() if state == "resumable" or holder else None
    where = f"  (evaluated to step {reached:,} of {config['steps']:,})" if reached else ""
    if holder:
        return "running", where + f"  by pid {holder}"
    if state == "conflict":  # the sweep would refuse to start: say what is in the way
        return state, f"  ({run_dir.conflict(config)})"
    if state == "new" and extend_from and (source := earlier_run(config, extend_from)):
        start, finished = continues_from(source)
        diverged = RunDir(source).diverged_at() if finished else None
        return state, (f"  (takes {source} as it is)" if finished and start == config["steps"] else
                       f"  (takes {source}: it diverged, at step {diverged:,})" if diverged is not None else
                       f"  (continues {source} from step {start:,})")
    return state, where


def reproduce(p: Plan, backend: str, workers: int | None, address: str | None, extend_from: list[str] | None,
              on_start=None) -> dict:
    from .sweep import run_sweep
    return run_sweep(p.base, p.grid, seeds=p.seeds, backend=backend, workers=workers, address=address,
                     name=p.dir, progress=True, extend=extend_from, on_start=on_start)
