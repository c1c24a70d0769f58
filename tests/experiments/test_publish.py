"""`plainrnn publish`: a sweep's evidence into results/ (config.yaml, summary.json, metrics.jsonl; a cut
run's checkpoint only with --checkpoints), without ever losing a published run that got further or
replacing another config's."""
import json

import pytest
from machine_lost import train_until_the_machine_goes

from plainrnn.cli import main
from plainrnn.experiments.publish import describe, publish
from plainrnn.experiments.report import report
from plainrnn.experiments.sweep import build_trials, parse_grid, run_sweep
from plainrnn.train.config import load_config, parse_overrides

SMALL = ["task=adding", "seq_len=6", "hidden=4", "eval_every=2"]


def _base(out, *extra):
    return load_config(None, parse_overrides(SMALL + [f"out={out}", *extra]))


def _cut_run(out, steps=8, at_evaluation=2):
    """A trial stopped at an evaluation, as a machine lost at the end of a session leaves it."""
    (trial,) = build_trials(_base(out, f"steps={steps}"), parse_grid(["lr=1e-2"]), 1, out / "s")
    train_until_the_machine_goes(trial.config, at_evaluation)
    return out / "s" / "lr-1e-2-s0"


def test_publish_copies_the_evidence_and_no_checkpoint_and_the_report_reads_it_alike(tmp_path):
    run_sweep(_base(tmp_path / "runs", "steps=4"), parse_grid(["lr=1e-2,1e-3"]), workers=1, name="s", progress=False)
    done = publish(tmp_path / "runs" / "s", tmp_path / "results")
    assert done == {"finished": ["lr-1e-2-s0", "lr-1e-3-s0"], "cut": [], "kept": [],
                    "not evaluated": []}
    for name in done["finished"]:
        assert sorted(p.name for p in (tmp_path / "results" / name).iterdir()) == ["config.yaml", "metrics.jsonl",
                                                                                   "summary.json"]
    assert not list((tmp_path / "results").glob("*.md"))  # the sweep's table is the report's to make
    assert report([str(tmp_path / "results")]) == report([str(tmp_path / "runs" / "s")])


def test_a_cut_run_goes_without_summary_and_never_replaces_a_run_that_got_further(tmp_path):
    """On a new machine a sweep starts its cut runs over: publishing it halfway keeps the old machine's
    longer run, and publishing it when it has got further replaces it."""
    whole = run_sweep(_base(tmp_path / "old", "steps=8"), parse_grid(["lr=1e-2"]), workers=1, name="s",
                      progress=False)
    assert whole["results"][0].status == "ok"
    publish(tmp_path / "old" / "s", tmp_path / "results")
    published = tmp_path / "results" / "lr-1e-2-s0"
    before = {p.name: p.read_bytes() for p in published.iterdir()}
    cut = _cut_run(tmp_path / "new")
    assert publish(cut.parent, tmp_path / "results") == {"finished": [], "cut": [], "kept": ["lr-1e-2-s0"],
                                                            "not evaluated": []}
    assert {p.name: p.read_bytes() for p in published.iterdir()} == before
    # into an empty folder the cut run goes as it stands: config and metrics, no summary
    assert publish(cut.parent, tmp_path / "fresh") == {"finished": [], "cut": ["lr-1e-2-s0"], "kept": [],
                                                            "not evaluated": []}
    fresh = tmp_path / "fresh" / "lr-1e-2-s0"
    assert sorted(p.name for p in fresh.iterdir()) == ["config.yaml", "metrics.jsonl"]
    assert [json.loads(line)["step"] for line in (fresh / "metrics.jsonl").read_text().splitlines()] == [2]
    # the run, resumed to its end, replaces its cut copy
    res = run_sweep(_base(tmp_path / "new", "steps=8"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False)
    assert res["results"][0].status == "resumed"
    assert publish(cut.parent, tmp_path / "fresh") == {"finished": ["lr-1e-2-s0"], "cut": [], "kept": [],
                                                            "not evaluated": []}
    assert (fresh / "summary.json").exists()


def test_another_config_under_a_runs_name_stops_it_before_a_file_is_written(tmp_path):
    run_sweep(_base(tmp_path / "a", "steps=4"), parse_grid(["lr=1e-2,1e-3"]), workers=1, name="s", progress=False)
    run_sweep(_base(tmp_path / "b", "steps=4", "clip=1"), parse_grid(["lr=1e-2,1e-3"]), workers=1, name="s",
              progress=False)
    publish(tmp_path / "a" / "s", tmp_path / "results")
    before = {p: p.read_bytes() for p in (tmp_path / "results").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"^\S+/results/lr-1e-2-s0 holds the results of another config "
                                         r"\(clip None → 1\.0\); nothing was published"):
        publish(tmp_path / "b" / "s", tmp_path / "results")
    assert {p: p.read_bytes() for p in (tmp_path / "results").rglob("*") if p.is_file()} == before


def test_cli_publish_prints_what_it_did_and_bad_input_is_one_line(tmp_path, capsys):
    run_sweep(_base(tmp_path / "runs", "steps=4"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False)
    assert main(["publish", str(tmp_path / "runs" / "s"), str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out.startswith(f"published 1 run(s) to {tmp_path / 'results'}: 1 finished, 0 cut short")
    assert main(["publish", str(tmp_path / "nope"), str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: no such folder" in err and "Traceback" not in err
    assert main(["publish", str(tmp_path / "results"), str(tmp_path / "results")]) == 2
    assert "the source itself" in capsys.readouterr().err


def test_a_line_being_written_is_left_out(tmp_path):
    """A run still training may be halfway through its next metrics line: only whole lines go."""
    cut = _cut_run(tmp_path / "runs")
    with open(cut / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "train_lo')
    publish(cut.parent, tmp_path / "results")
    lines = (tmp_path / "results" / cut.name / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2]


def test_a_run_stopped_before_its_first_evaluation_is_not_published(tmp_path):
    cut = _cut_run(tmp_path / "runs", at_evaluation=1)
    assert publish(cut.parent, tmp_path / "results") == {"finished": [], "cut": [], "kept": [],
                                                         "not evaluated": ["lr-1e-2-s0"]}
    assert not (tmp_path / "results" / cut.name).exists()


def test_with_checkpoints_a_cut_run_resumes_on_a_new_machine_to_the_numbers_of_a_run_made_whole(tmp_path):
    """A cell cut at a session's end, published with its checkpoint, is continued by `--extend-from
    results/…` on a machine that has no runs/ at all, and ends on the numbers of the run made in one go.
    Once finished and published again, it keeps no checkpoint; without the flag none goes."""
    cut = _cut_run(tmp_path / "old", at_evaluation=3)  # evaluated at steps 2 and 4, checkpoint at 4
    assert publish(cut.parent, tmp_path / "plain")["cut"] == [cut.name]
    assert not (tmp_path / "plain" / cut.name / "checkpoint.pt").exists()
    done = publish(cut.parent, tmp_path / "results", checkpoints=True)
    published = tmp_path / "results" / cut.name
    assert done["cut"] == [cut.name] and (published / "checkpoint.pt").read_bytes() == (cut / "checkpoint.pt").read_bytes()
    assert "(with its checkpoint" in describe(done, tmp_path / "results")
    (tmp_path / "old").rename(tmp_path / "lost")  # the old machine's runs/ is gone
    res = run_sweep(_base(tmp_path / "new", "steps=8"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False,
                    extend=tmp_path / "results")
    assert [r.status for r in res["results"]] == ["resumed"]
    whole = run_sweep(_base(tmp_path / "whole", "steps=8"), parse_grid(["lr=1e-2"]), workers=1, name="s",
                      progress=False)
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "wall_s"}  # noqa: E731
                          for line in path.read_text().splitlines()]
    resumed = tmp_path / "new" / "s" / cut.name
    assert strip(resumed / "metrics.jsonl") == strip(tmp_path / "whole" / "s" / cut.name / "metrics.jsonl")
    assert publish(resumed.parent, tmp_path / "results", checkpoints=True)["finished"] == [cut.name]
    # (.lock: the resume held the published run while it took it; git ignores it)
    assert sorted(p.name for p in published.iterdir()) == [".lock", "config.yaml", "metrics.jsonl", "summary.json"]


def test_the_checkpoint_is_taken_before_the_metrics_so_a_resume_never_skips_a_line(tmp_path, monkeypatch):
    """A run still training writes a metrics line, then its checkpoint, at each evaluation. If it
    evaluates between publish's two reads, whichever comes first, the published metrics must still
    reach the published checkpoint's step (a resume keeps the lines up to it and recomputes the rest)."""
    import torch

    import plainrnn.train.rundir as owner
    cut = _cut_run(tmp_path / "runs", at_evaluation=3)  # checkpoint and metrics at step 4
    evaluated = []

    def the_run_evaluates_step_6():
        if evaluated:
            return
        evaluated.append(1)
        with open(cut / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 6}) + "\n")
        ckpt = torch.load(cut / "checkpoint.pt", weights_only=False)
        torch.save(dict(ckpt, step=6), cut / "checkpoint.pt")

    def after(read):
        def wrapped(*args):
            out = read(*args)
            the_run_evaluates_step_6()
            return out
        return wrapped
    monkeypatch.setattr(owner, "_copy_whole", after(owner._copy_whole))
    monkeypatch.setattr(owner, "_whole_lines", after(owner._whole_lines))
    publish(cut.parent, tmp_path / "results", checkpoints=True)
    assert evaluated
    ckpt_step = torch.load(tmp_path / "results" / cut.name / "checkpoint.pt", weights_only=False)["step"]
    published = (tmp_path / "results" / cut.name / "metrics.jsonl").read_text().splitlines()
    assert json.loads(published[-1])["step"] >= ckpt_step


def test_a_finished_shorter_run_never_replaces_a_cut_run_that_got_further(tmp_path):
    """A cut run at step 6 of 12, published with its checkpoint; then a finished 4-step run of the same
    trial: steps decide before finishedness, so the published run, its 3 metrics rows and its checkpoint
    stay as they were."""
    cut = _cut_run(tmp_path / "long", steps=12, at_evaluation=4)
    assert publish(cut.parent, tmp_path / "results", checkpoints=True)["cut"] == ["lr-1e-2-s0"]
    published = tmp_path / "results" / "lr-1e-2-s0"
    before = {p.name: p.read_bytes() for p in published.iterdir()}
    assert [json.loads(line)["step"] for line in (published / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]
    assert "checkpoint.pt" in before
    run_sweep(_base(tmp_path / "short", "steps=4"), parse_grid(["lr=1e-2"]), workers=1, name="s", progress=False)
    assert publish(tmp_path / "short" / "s", tmp_path / "results") == {
        "finished": [], "cut": [], "kept": ["lr-1e-2-s0"], "not evaluated": []}
    assert {p.name: p.read_bytes() for p in published.iterdir()} == before
