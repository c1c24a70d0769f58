import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from plainrnn.experiments.report import report
from plainrnn.experiments.sweep import parse_grid, run_sweep
from plainrnn.train.config import load_config, parse_overrides

BASE = ["seq_len=10", "hidden=8", "steps=30", "eval_every=10"]


def _base(tmp_path, *extra):
    return load_config(None, parse_overrides(BASE + [f"out={tmp_path}", *extra]))


def test_absurd_lr_is_diverged_failures_are_contained_and_selection_is_on_validation(tmp_path):
    base = _base(tmp_path, "model=spectral", "nonlinearity=oplu", "optimizer=rmsprop")
    res = run_sweep(base, parse_grid(["lr=1e-2,1e12", "hidden=8,7"]), seeds=2, workers=2, progress=False)
    rows = {r["setting"]: r for r in res["rows"]}
    assert rows["lr=1e12,hidden=8"]["diverged"] == 2
    assert rows["lr=1e-2,hidden=7"]["failed"] == 2  # OPLU needs an even width: the trial raises
    assert rows["lr=1e-2,hidden=8"]["diverged"] == 0 and math.isfinite(rows["lr=1e-2,hidden=8"]["median_test"])
    assert res["selected"]["setting"] == "lr=1e-2,hidden=8"
    trials = [json.loads(l) for l in open(tmp_path / "sweep" / "trials.jsonl")]
    failed = [t for t in trials if t["status"] == "failed"]
    assert len(failed) == 4 and all("hidden_size must be even" in t["error"] for t in failed)
    # Running it again reuses every finished trial.
    again = run_sweep(base, parse_grid(["lr=1e-2,1e12", "hidden=8,7"]), seeds=2, workers=2, progress=False)
    assert sum(r.status == "reused" for r in again["results"]) == 4  # failed trials are retried


def test_report_counts_diverged_and_writes_curves(tmp_path):
    base = _base(tmp_path)
    run_sweep(base, parse_grid(["optimizer=sgd,adam", "lr=1e-3,1e12"]), seeds=2, workers=2, progress=False)
    md = report([str(tmp_path / "sweep")], plots_dir=str(tmp_path / "plots"))
    assert "2/2" in md and "0/2" in md
    assert (tmp_path / "plots" / "adding_learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(report([str(tmp_path / "sweep")], fmt="json"))
    assert len(rows) == 4 and sum(r["diverged"] for r in rows) == 4
    assert report([str(tmp_path / "sweep")], fmt="csv").splitlines()[0].startswith("setting,metric,runs")


def test_config_errors_are_one_clear_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1e-3\nsteps: 10\nsed: 3\n")
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "train", "--config", str(cfg)], capture_output=True,
                         text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "unknown key 'sed'; valid keys: task, model" in out.stderr
    cfg.write_text("lr: -1\n")
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "train", "--config", str(cfg)], capture_output=True,
                         text=True)
    assert out.returncode == 2 and out.stderr.strip() == f"plainrnn train: error: lr must be > 0, got -1.0"
    with pytest.raises(ValueError, match="optimizer must be one of"):
        load_config(None, {"optimizer": "lbfgs"})
    with pytest.raises(ValueError, match="--grid expects key=v1,v2"):
        parse_grid(["lr"])


def test_yaml_config_and_overrides_are_saved_resolved(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seq_len: 10\nhidden: 8\nsteps: 5\neval_every: 5\noptimizer: adam\nlr: 3e-3\n")
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "train", "--config", str(cfg), "--set", "lr=1e-2",
                          "--out", str(tmp_path), "--name", "r", "--quiet", "--json"], capture_output=True, text=True,
                         check=True)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["lr"] == 1e-2 and saved["optimizer"] == "adam" and saved["hidden"] == 8
    import yaml
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text()) == saved


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def isolated_ray(tmp_path, monkeypatch):
    """Ray state of the test's own: HOME (so ~/.ray/auth_token is ours, whatever the user's holds) and a
    short temp dir (Ray's unix sockets need a short path). Yields a function that starts a head node
    with extra environment variables and returns its address; every node is stopped afterwards."""
    import tempfile
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    exe = shutil.which("ray", path=str(Path(sys.executable).parent))
    temp_dir = tempfile.mkdtemp(prefix="/tmp/pr-ray-")

    def start(**env):
        port = _free_port()
        subprocess.run([exe, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                        f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True, timeout=180, env={**os.environ, **env})
        return f"127.0.0.1:{port}"

    yield home, start
    subprocess.run([exe, "stop", "--force"], capture_output=True, timeout=120, env=dict(os.environ))
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.parametrize("scenario", ["token file from an earlier local run", "RAY_AUTH_TOKEN, auth mode token"])
def test_ray_backend_reaches_a_token_authenticated_cluster(tmp_path, isolated_ray, monkeypatch, scenario):
    """Ray 2.59+ starts clusters with token authentication; a client that connects by address must use
    the token too. Either the token file that a local Ray run leaves in ~/.ray, with a plain
    `ray start`, or a token in the environment with RAY_AUTH_MODE=token on the cluster as Ray
    documents. Either way the sweep gives the local table."""
    home, start = isolated_ray
    token = "0123456789abcdef" * 4
    if scenario.startswith("token file"):
        (home / ".ray").mkdir()
        (home / ".ray" / "auth_token").write_text(token)
        address = start()
    else:
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)
        address = start(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    grid = parse_grid(["lr=1e-2,1e-3,1e12"])
    local = run_sweep(_base(tmp_path / "local"), grid, seeds=2, workers=2, progress=False)
    remote = run_sweep(_base(tmp_path / "ray"), grid, seeds=2, backend="ray", address=address, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "median_wall_s"} for r in rows]
    assert json.dumps(strip(local["rows"])) == json.dumps(strip(remote["rows"]))
    assert local["selected"] == remote["selected"]
    assert "RAY_AUTH_MODE" not in os.environ  # the client's mode is set for the connection only


def test_ray_auth_mode_follows_the_token_and_a_failed_connection_is_one_line(tmp_path, monkeypatch):
    from plainrnn.experiments import sweep
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    assert sweep.ray_auth_environment("127.0.0.1:1") == {}  # no token: Ray's own default
    assert sweep.ray_auth_environment(None) == {}  # a local instance manages its own token
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t")
    assert sweep.ray_auth_environment("127.0.0.1:1") == {"RAY_AUTH_MODE": "token"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert sweep.ray_auth_environment("127.0.0.1:1") == {}  # the user's choice stands
    import ray
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def refuse(**kw):
        raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:1")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(RuntimeError, match=r"could not reach the Ray cluster at 127.0.0.1:1 \(Failed to connect"):
        sweep._run_ray([], "127.0.0.1:1", progress=False)


def test_every_reproduction_recipe_is_a_valid_sweep(tmp_path):
    from plainrnn.experiments.recipes import RECIPES, plan_of
    from plainrnn.experiments.sweep import build_trials
    for name, recipe in RECIPES.items():
        for budget in [None, *recipe.get("budgets", {})]:
            plan = plan_of(name, budget)
            base = load_config(None, {**recipe["base"], **plan["overrides"], "out": str(tmp_path)})
            trials = build_trials(base, plan["grid"], plan["seeds"], tmp_path / name)
            grid = plan["grid"]
            n = len(grid) if isinstance(grid, list) else 1
            for values in ([] if isinstance(grid, list) else grid.values()):
                n *= len(values)
            assert len(trials) == n * plan["seeds"], name
            assert len({t.config["name"] for t in trials}) == len(trials), f"{name}: two trials share a run directory"
            assert "grid" not in plan["overrides"] and "seeds" not in plan["overrides"], name


def test_a_budget_may_run_its_own_grid_and_seeds_and_the_rest_overrides_the_config():
    from plainrnn.experiments.recipes import RECIPES, budget_of, plan_of
    full, cpu = plan_of("table2-smnist", "full"), plan_of("table2-smnist", "cpu")
    assert full["grid"] is RECIPES["table2-smnist"]["grid"] and full["seeds"] == 3
    assert cpu["seeds"] == 1 and len(cpu["grid"]) == 10 and cpu["overrides"] == dict(steps=2200, eval_every=550, eval_limit=2000)
    assert budget_of("table2-smnist", "cpu") == ("table2-smnist-cpu", cpu["overrides"])
    # a budget that only sets steps keeps the recipe's grid and seeds; a recipe without budgets has its own
    adding = plan_of("adding-study", "cpu")
    assert adding["grid"] is RECIPES["adding-study"]["grid"] and adding["seeds"] == 3
    assert plan_of("orth-copy") == dict(dir="orth-copy", overrides={}, grid=RECIPES["orth-copy"]["grid"], seeds=1)
    # PTB-c's cpu budget: every row at two widths, the LSTM at half the RNNs' width as in the paper
    widths = {(c.get("model", "relu"), c["hidden"]) for c in plan_of("table3-ptbc", "cpu")["grid"]}
    assert widths == {("relu", 128), ("tanh", 128), ("lstm", 64), ("relu", 256), ("tanh", 256), ("lstm", 128)}


def test_only_keeps_the_settings_with_a_value_compared_as_the_config_types_it(tmp_path):
    from plainrnn.experiments.recipes import RECIPES
    from plainrnn.experiments.sweep import only_settings
    recipe = RECIPES["table2-adding"]
    base = load_config(None, {**recipe["base"], "out": str(tmp_path)})
    kept = only_settings(base, recipe["grid"], {"seq_len": "750.0", "lr": "1.0e-4"})
    assert kept == [dict(optimizer="adam", lr="1e-4", clip=1.0, seq_len=750),
                    dict(optimizer="path-adam", lr="1e-4", clip=1.0, seq_len=750)]
    # a key a setting leaves alone is compared at the base config's value (every row has hidden 100)
    assert len(only_settings(base, recipe["grid"], {"hidden": "100"})) == len(recipe["grid"])
    assert only_settings(base, dict(lr=["1e-2", "1e-3"], init=["identity", "uniform"]), {"init": "uniform"}) == [
        dict(lr="1e-2", init="uniform"), dict(lr="1e-3", init="uniform")]
    # values of one key add up, keys narrow each other
    assert only_settings(base, recipe["grid"], {"seq_len": ["100", "750"], "optimizer": "path-adam", "lr": "1e-4"}) == [
        dict(optimizer="path-adam", lr="1e-4", clip=1.0, seq_len=100), dict(optimizer="path-adam", lr="1e-4", clip=1.0, seq_len=750)]
    with pytest.raises(ValueError, match=r"^--only seq_len=500: no setting has it; seq_len takes 100, 400, 750$"):
        only_settings(base, recipe["grid"], {"seq_len": "500"})
    with pytest.raises(ValueError, match="--only: unknown key 'sq'"):
        only_settings(base, recipe["grid"], {"sq": "1"})


def test_reproduce_lists_its_trials_as_done_resumable_or_new_and_runs_only_what_only_keeps(tmp_path):
    from plainrnn.experiments.recipes import RECIPES
    from plainrnn.experiments.sweep import build_trials, trial_state
    cli = [sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--seeds", "1", "--set", "steps=4",
           "--set", "eval_every=2", "--set", "seq_len=6", "--set", "hidden=4", "--set", f"out={tmp_path}"]
    out = subprocess.run(cli + ["--only", "margin=0.1"], capture_output=True, text=True, check=True)
    assert out.stdout.count("| margin=") == 1 and "| margin=0.1 " in out.stdout
    base = load_config(None, {**RECIPES["orth-copy"]["base"], "steps": 4, "eval_every": 2, "seq_len": 6, "hidden": 4,
                              "out": str(tmp_path)})
    trials = {t.setting: t.config for t in build_trials(base, RECIPES["orth-copy"]["grid"], 1, tmp_path / "orth-copy")}
    cut_short = tmp_path / "orth-copy" / f"margin-1-s{base.seed}"  # a trial killed before its summary
    cut_short.mkdir()
    (cut_short / "config.json").write_text(json.dumps(trials["margin=1"]))
    (cut_short / "checkpoint.pt").touch()
    (cut_short / "metrics.jsonl").write_text(json.dumps(dict(step=2, test_metric=0.5)) + "\n")
    assert [trial_state(trials[m]) for m in ("margin=0.1", "margin=1", "margin=0")] == ["done", "resumable", "new"]
    listed = subprocess.run(cli + ["--list"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert listed[:6] == [f"{state:<10} margin={m}  seed {base.seed}" + ("  (evaluated to step 2 of 4)" if m == "1" else "")
                          for state, m in [("new", "0"), ("new", "0.001"), ("new", "0.01"), ("done", "0.1"),
                                           ("resumable", "1"), ("new", "none")]]
    assert listed[6] == f"6 trials in {tmp_path / 'orth-copy'} (1 done, 4 new, 1 resumable)"
    two = subprocess.run(cli + ["--only", "margin=0", "--only", "margin=none", "--list"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert [line.split()[1] for line in two[:-1]] == ["margin=0", "margin=none"]  # --only repeated: either value
    assert not (tmp_path / "orth-copy" / f"margin-0-s{base.seed}").exists()  # --list runs nothing


def test_a_sweep_gives_each_worker_the_threads_omp_num_threads_allows_else_its_share_of_the_cores(monkeypatch):
    from plainrnn.experiments.sweep import threads_per_worker
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [threads_per_worker(w) for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two sweeps side by side, each told its share
    assert threads_per_worker(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_worker(2) == 3
    for junk in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert threads_per_worker(2) == 4


def _alive(pid: int) -> bool:
    try:  # a zombie (state Z) has ended; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_sweep_takes_its_workers_with_it(tmp_path):
    """`kill -9` of a local sweep: its worker stops within seconds instead of training on, unseen,
    into a run directory that the next run of the sweep writes to as well."""
    import signal
    import time
    script = (f"from plainrnn.experiments.sweep import run_sweep\n"
              f"from plainrnn.train.config import load_config\n"
              f"base = load_config(None, dict(task='adding', seq_len=20, hidden=8, steps=10**8, eval_every=10**7, "
              f"out={str(tmp_path)!r}))\n"
              f"run_sweep(base, dict(lr=['1e-3']), workers=1, name='s', progress=False)\n")
    sweep = subprocess.Popen([sys.executable, "-c", script])
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while not (tmp_path / "s" / "lr-1e-3-s0" / "config.json").exists():  # the worker is training
            assert time.time() < deadline and sweep.poll() is None, "the sweep never started its trial"
            time.sleep(0.2)
        workers = [int(p) for p in Path(f"/proc/{sweep.pid}/task/{sweep.pid}/children").read_text().split()]
        assert workers
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        deadline = time.time() + 30
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "a worker outlived its sweep"
    finally:
        sweep.kill()
        for pid in workers:  # a red run leaves no runaway trainer behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_explicit_settings_pair_values_that_belong_together(tmp_path):
    """A list of settings runs exactly those (each optimizer with its own lr), not their product."""
    from plainrnn.experiments.sweep import build_trials
    base = load_config(None, {"out": str(tmp_path)})
    trials = build_trials(base, [dict(optimizer="sgd", lr="1"), dict(optimizer="adam", lr="1e-3")], 2, tmp_path)
    assert [(t.config["optimizer"], t.config["lr"], t.config["seed"]) for t in trials] == [
        ("sgd", 1.0, 0), ("sgd", 1.0, 1), ("adam", 1e-3, 0), ("adam", 1e-3, 1)]


def test_a_budget_that_is_not_one_is_one_clear_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--budget", "tiny"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--budget" in out.stderr and "'tiny'" in out.stderr and "cpu, full" in out.stderr


def test_a_recipe_of_one_protocol_takes_either_budget_and_keeps_its_directory(tmp_path):
    """orth-copy runs the paper's whole schedule on a CPU: `--budget cpu` and `--budget full` are it."""
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--budget", "cpu",
                          "--list", "--set", f"out={tmp_path}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"6 trials in {tmp_path / 'orth-copy'}" in out.stdout


def test_reproduce_runs_a_recipe_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "plainrnn.cli", "reproduce", "orth-copy", "--seeds", "1",
                          "--set", "steps=10", "--set", "eval_every=10", "--set", "seq_len=8", "--set", "hidden=8",
                          "--set", f"out={tmp_path}", "--workers", "2"], capture_output=True, text=True, check=True)
    assert "selected on validation:" in out.stdout and out.stdout.count("| margin=") == 6


def _fake_run(root, name, optimizer, seed, curve, lower=True):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(dict(task="adding", optimizer=optimizer, seed=seed)))
    (run / "summary.json").write_text(json.dumps(dict(metric="mse", diverged=False, test_metric=curve[-1],
                                                      wall_s=1.0, lower_is_better=lower)))
    (run / "metrics.jsonl").write_text("".join(json.dumps(dict(step=100 * (i + 1), test_metric=v)) + "\n"
                                               for i, v in enumerate(curve)))


def test_report_steps_to_reach_a_threshold(tmp_path):
    _fake_run(tmp_path, "a0", "adam", 0, [0.2, 0.05, 0.009, 0.02])     # first ≤ 0.01 at step 300
    _fake_run(tmp_path, "a1", "adam", 1, [0.2, 0.008, 0.001, 0.001])   # at step 200
    _fake_run(tmp_path, "a2", "adam", 2, [0.2, 0.1, 0.1, 0.1])         # never
    _fake_run(tmp_path, "s0", "sgd", 0, [0.2, 0.2, 0.2, 0.2])
    rows = {r["setting"]: r for r in json.loads(report([str(tmp_path)], fmt="json", reach=0.01))}
    assert rows["optimizer=adam"]["reached"] == 2 and rows["optimizer=adam"]["median_steps_to_reach"] == 250
    assert rows["optimizer=sgd"]["reached"] == 0 and rows["optimizer=sgd"]["median_steps_to_reach"] is None
    md = report([str(tmp_path)], reach=0.01)
    assert "steps to test ≤ 0.01 (reached)" in md and "| 250 (2/3) |" in md and "| never (0/1) |" in md


def test_report_lists_a_sweeps_rows_in_the_order_of_their_numbers(tmp_path):
    """A sweep over λ ∈ {1e-4, …, 100} writes folders orth_penalty-1e-4-s0 … orth_penalty-100-s0; sorted
    as strings they read 0.1, 1, 10, 100, 1e-2, 1e-3, 1e-4, a table and a legend nobody can scan."""
    for value in ("100", "1e-2", "0.1", "1e-4", "10", "1", "1e-3"):
        run = tmp_path / f"orth_penalty-{value}-s0"
        run.mkdir()
        (run / "config.json").write_text(json.dumps(dict(task="copy", orth_penalty=float(value), seed=0)))
        (run / "summary.json").write_text(json.dumps(dict(metric="copy_accuracy", diverged=False, test_metric=0.5,
                                                          wall_s=1.0, lower_is_better=False)))
        (run / "metrics.jsonl").write_text(json.dumps(dict(step=100, test_metric=0.5)) + "\n")
    rows = json.loads(report([str(tmp_path)], fmt="json"))
    assert [r["setting"] for r in rows] == [f"orth_penalty={v}" for v in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)]


def test_report_names_every_key_that_tells_settings_apart(tmp_path):
    """Two settings that differ only in a key outside the label's usual list (a new option such as
    path_lr_nonrecurrent, or loss_over_time) get two names, not one name twice; where a run was kept
    (out, device) is never named."""
    from plainrnn.train import RunConfig
    for i, (factor, loss_over_time) in enumerate(((1.0, "mean"), (30.0, "mean"), (1.0, "sum"))):
        run = tmp_path / f"r{i}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps(RunConfig(
            optimizer="path-sgd", path_lr_nonrecurrent=factor, loss_over_time=loss_over_time, out=f"o{i}",
            device=("cpu", "auto")[i % 2]).to_dict()))
        (run / "summary.json").write_text(json.dumps(dict(metric="mse", diverged=False, test_metric=0.1 * (i + 1),
                                                          wall_s=1.0, lower_is_better=True)))
        (run / "metrics.jsonl").write_text(json.dumps(dict(step=100, test_metric=0.1)) + "\n")
    labels = [r["setting"] for r in json.loads(report([str(tmp_path)], fmt="json"))]
    assert labels == ["loss_over_time=mean path_lr_nonrecurrent=1.0", "path_lr_nonrecurrent=30.0", "loss_over_time=sum"]


def test_report_spectrum_gives_the_singular_values_at_the_end_and_over_the_run_median_over_seeds(tmp_path):
    def run(name, seed, records):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(dict(task="copy", margin=0.1, seed=seed)))
        (d / "summary.json").write_text(json.dumps(dict(metric="copy_accuracy", diverged=False, test_metric=1.0,
                                                        wall_s=1.0, lower_is_better=False)))
        (d / "metrics.jsonl").write_text("".join(json.dumps(dict(step=100 * (i + 1), test_metric=1.0, **r)) + "\n"
                                                 for i, r in enumerate(records)))

    def sv(lo, hi, mean, std):
        return dict(sv_min=lo, sv_max=hi, sv_mean=mean, sv_std=std)
    run("margin-0.1-s0", 0, [sv(0.8, 1.3, 1.0, 0.1), sv(0.9, 1.1, 1.0, 0.05)])  # widest mid-run
    run("margin-0.1-s1", 1, [sv(0.95, 1.05, 1.0, 0.02), sv(0.93, 1.07, 1.02, 0.03)])
    run("margin-0.1-s2", 2, [sv(0.97, 1.02, 1.0, 0.01), sv(0.97, 1.03, 1.01, 0.01)])
    (row,) = json.loads(report([str(tmp_path)], fmt="json"))
    assert row["spectrum"] == pytest.approx(dict(end_min=0.93, end_max=1.07, end_mean=1.01, end_std=0.03,
                                                 run_min=0.93, run_max=1.07))
    md = report([str(tmp_path)], spectrum=True)
    assert "| 0.9300 … 1.0700 (1.0100 ± 0.0300) | 0.9300 … 1.0700 |" in md
    run("lstm-s0", 0, [dict()])  # no square W: no spectrum
    (tmp_path / "lstm-s0" / "config.json").write_text(json.dumps(dict(task="copy", model="lstm", seed=0)))
    (lstm,) = [line for line in report([str(tmp_path)], spectrum=True).splitlines() if "model=lstm" in line]
    assert lstm.endswith("| – | – |")


def test_report_gives_the_test_metric_at_the_best_validation_point(tmp_path):
    """The papers' MNIST and PTB numbers: test where validation was best, not at the last step."""
    def run(name, seed, valid, test, lower=True):
        _fake_run(tmp_path, name, "adam", seed, test, lower)
        (tmp_path / name / "metrics.jsonl").write_text("".join(
            json.dumps(dict(step=100 * (i + 1), valid_metric=v, test_metric=t)) + "\n" for i, (v, t) in enumerate(zip(valid, test))))
    run("a0", 0, [3.0, 2.0, 2.5, 2.0], [3.1, 2.2, 2.4, 1.9])     # best valid at step 200 (a tie later is not taken)
    run("a1", 1, [float("nan"), 3.0, 1.0, 1.5], [0.1, 3.0, 1.2, 1.4])  # a non-finite valid is never the best
    run("a2", 2, [3.0, 2.5, 2.0, 1.0], [3.0, 2.5, 2.0, 0.5])     # the last
    row = json.loads(report([str(tmp_path)], fmt="json"))[0]
    assert row["median_test_at_best_valid"] == 1.2 and row["median_test"] == 1.4
    md = report([str(tmp_path)], at_best_valid=True)
    assert md.splitlines()[0].endswith("| test at best valid (median) |") and md.splitlines()[2].endswith("| 1.2 |")
    assert "test at best valid" not in report([str(tmp_path)])
    from plainrnn.experiments.report import best_valid_record
    assert best_valid_record(tmp_path / "a0", True)["test_metric"] == 2.2
    assert best_valid_record(tmp_path / "a2", False)["test_metric"] == 3.0


def test_report_plots_accuracies_on_a_linear_axis_and_losses_on_a_log_one(tmp_path, monkeypatch):
    from plainrnn.experiments import report as report_module
    from plainrnn.train import RunConfig
    axes = {}
    monkeypatch.setattr(report_module, "plot_learning_curves",
                        lambda curves, path, **kw: axes.setdefault(path.name, kw["log_y"]))
    for task, metric, lower in (("mnist", "accuracy", False), ("adding", "mse", True)):
        for lr in (0.1, 0.01):
            run = tmp_path / f"{task}-{lr}"
            run.mkdir()
            config = RunConfig(task=task, model="mlp" if task == "mnist" else "relu", lr=lr).to_dict()
            (run / "config.json").write_text(json.dumps(config))
            (run / "summary.json").write_text(json.dumps(dict(
                test_metric=0.9, metric=metric, lower_is_better=lower, diverged=False, wall_s=1.0)))
            (run / "metrics.jsonl").write_text(json.dumps(dict(step=10, test_metric=0.9)) + "\n")
    report([str(tmp_path)], plots_dir=str(tmp_path / "plots"))
    assert axes == {"mnist_learning_curves.png": False, "adding_learning_curves.png": True}


def test_report_draws_the_2015_panels_with_each_unbalanced_curve_beside_its_twin(tmp_path, monkeypatch):
    """Runs that evaluated on the training set get the paper's three panels against epochs; the
    plotted values are the records' own (errors are 1 − accuracy)."""
    from plainrnn.experiments import plots
    from plainrnn.train import RunConfig
    drawn = []
    real_plot = plots.plt.Axes.plot

    def spy(ax, *args, **kw):
        if kw.get("marker") == "o":  # the panels' markers (the learning-curve plot uses ".")
            drawn.append((kw.get("label"), kw.get("ls"), list(args[1])))
        return real_plot(ax, *args, **kw)

    monkeypatch.setattr(plots.plt.Axes, "plot", spy)
    for init, acc in (("balanced", 0.9), ("unbalanced", 0.8)):
        run = tmp_path / init
        run.mkdir()
        (run / "config.json").write_text(json.dumps(RunConfig(task="mnist", model="mlp", init=init,
                                                              optimizer="path-sgd").to_dict()))
        (run / "summary.json").write_text(json.dumps(dict(test_metric=acc, metric="accuracy", lower_is_better=False,
                                                          diverged=False, wall_s=1.0)))
        (run / "metrics.jsonl").write_text("".join(json.dumps(dict(
            step=600 * e, epoch=float(e), test_metric=acc, train_eval_loss=0.5 / e, train_eval_metric=acc)) + "\n"
            for e in (1, 2)))
    report([str(tmp_path)], plots_dir=str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "mnist_panels.png").read_bytes()[:4] == b"\x89PNG"
    panels = drawn
    assert len(panels) == 6  # three panels × two inits
    styles = {d[0]: d[1] for d in panels}
    assert styles == {"init=balanced": "-", "init=unbalanced": "--"}
    errors = sorted(tuple(round(v, 6) for v in d[2]) for d in panels)
    assert errors == sorted([(0.5, 0.25)] * 2 + [(0.1, 0.1)] * 2 + [(0.2, 0.2)] * 2)
    from plainrnn.experiments.report import curves_table
    table = curves_table([str(tmp_path)])
    assert "| init=balanced | 0.5 / 10.00 / 10.00 | 0.25 / 10.00 / 10.00 | finished |" in table
    assert "| init=unbalanced | 0.5 / 20.00 / 20.00 | 0.25 / 20.00 / 20.00 | finished |" in table


def test_a_trial_cut_short_resumes_from_its_checkpoint_to_the_same_numbers(tmp_path):
    from plainrnn.experiments.sweep import build_trials, run_trial
    from oracles import train_killed_after
    from plainrnn.train import RunConfig
    base = _base(tmp_path, "optimizer=path-sgd", "checkpoint_every=5", "steps=20", "eval_every=5")
    whole, cut = (build_trials(base, [dict(lr="1e-2")], 1, tmp_path / name)[0].config for name in ("a", "b"))
    reference = run_trial(whole)
    train_killed_after(RunConfig(**cut), 12)  # killed after step 12: last checkpoint at 10
    resumed = run_trial(cut)
    assert resumed.status == "resumed"
    rows = [json.loads(line) for line in open(Path(resumed.run_dir) / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert resumed.test_metric == reference.test_metric and resumed.valid_metric == reference.valid_metric


def test_a_run_made_before_a_config_key_existed_is_still_reused(tmp_path):
    from plainrnn.experiments.sweep import build_trials, run_trial
    config = build_trials(_base(tmp_path), [dict(lr="1e-2")], 1, tmp_path / "s")[0].config
    first = run_trial(config)
    saved = Path(first.run_dir) / "config.json"
    old = json.loads(saved.read_text())
    del old["max_unit_step"]  # as written by a version without that option
    saved.write_text(json.dumps(old))
    assert run_trial(config).status == "reused"
    old["removed_option"] = 1
    saved.write_text(json.dumps(old))
    res = run_trial(config)  # a config that no longer fits: its results are kept, not run over
    assert res.status == "failed" and res.error.endswith("holds the results of another config "
                                                                "(a config this version cannot read)")


def _results_run(root, name, config, finals, diverged=False, wall_s=1.0):
    """A run directory as results/ keeps it: config.yaml, summary.json, metrics.jsonl (test metric per step)."""
    import yaml
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text("".join(json.dumps(dict(step=1000 * (i + 1), test_metric=v)) + "\n"
                                               for i, v in enumerate(finals)))
    (run / "summary.json").write_text(json.dumps(dict(test_metric=math.nan if diverged else finals[-1],
                                                      diverged=diverged, lower_is_better=True, metric="mse",
                                                      wall_s=wall_s, best_valid_metric=None)))


def test_the_table2_pivot_counts_solved_seeds_median_steps_and_final_mse(tmp_path, capsys):
    from plainrnn.cli import main
    base = dict(task="adding", optimizer="adam", lr=1e-3, seed=1)
    _results_run(tmp_path, "a1", dict(base, seq_len=100), [0.1, 0.005, 0.002], wall_s=600)
    _results_run(tmp_path, "a2", dict(base, seq_len=100, seed=2), [0.1, 0.05, 0.008], wall_s=900)
    _results_run(tmp_path, "a3", dict(base, seq_len=100, seed=3), [0.2, 0.1], diverged=True, wall_s=30)
    _results_run(tmp_path, "b1", dict(base, seq_len=400), [0.17, 0.16], wall_s=9000)
    _results_run(tmp_path, "c1", dict(base, optimizer="sgd", seq_len=400), [0.17, 0.009])
    assert main(["report", str(tmp_path), "--reach", "0.01", "--columns", "seq_len", "--scale", "100"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| setting | seq_len = 100 | seq_len = 400 |"
    assert lines[2] == "| optimizer=adam | 2/3 · 2500 · 0.8 | 0/1 · – · 16 |"  # median of 0.2, 0.8 and a divergence
    assert lines[3] == "| optimizer=sgd | not run | 1/1 · 2000 · 0.9 |"
    assert main(["report", str(tmp_path), "--columns", "seq_len"]) == 2
    assert "--columns needs --reach" in capsys.readouterr().err
    # --wall: the median wall time of a seed, the diverged one included (600 s of 30, 600, 900).
    assert main(["report", str(tmp_path), "--reach", "0.01", "--columns", "seq_len", "--scale", "100", "--wall"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2] == "| optimizer=adam | 2/3 · 2500 · 0.8 · 10 min | 0/1 · – · 16 · 2.5 h |"
    assert lines[3] == "| optimizer=sgd | not run | 1/1 · 2000 · 0.9 · 1 s |"
    assert main(["report", str(tmp_path), "--wall"]) == 2
    assert "--wall goes with --columns" in capsys.readouterr().err


def test_the_table2_pivot_draws_a_panel_per_column_with_every_seeds_curve(tmp_path):
    """--plots with --columns: the table as a figure, a panel per T, each setting's seeds as curves."""
    from unittest import mock

    from plainrnn.cli import main
    from plainrnn.experiments import report as report_module
    base = dict(task="adding", optimizer="adam", lr=1e-3, seed=1)
    _results_run(tmp_path / "runs", "a1", dict(base, seq_len=100), [0.1, 0.005])
    _results_run(tmp_path / "runs", "a2", dict(base, seq_len=100, seed=2), [0.1, 0.05, 0.008])
    _results_run(tmp_path / "runs", "b1", dict(base, seq_len=400), [0.17, 0.16])
    _results_run(tmp_path / "runs", "c1", dict(base, optimizer="sgd", seq_len=400), [0.17, 0.009], diverged=True)
    drawn = {}
    real = report_module.plot_column_panels
    with mock.patch.object(report_module, "plot_column_panels",
                           side_effect=lambda panels, path, **kw: drawn.update(panels=panels, **kw) or real(panels, path, **kw)):
        assert main(["report", str(tmp_path / "runs"), "--reach", "0.01", "--columns", "seq_len",
                     "--plots", str(tmp_path / "img")]) == 0
    assert (tmp_path / "img" / "adding_by_seq_len.png").stat().st_size > 0
    panels = drawn["panels"]
    assert list(panels) == ["seq_len = 100", "seq_len = 400"] and drawn["threshold"] == 0.01
    assert list(panels["seq_len = 100"]) == ["optimizer=adam"]  # no sgd seed at T = 100: not drawn there
    assert [len(seed) for seed in panels["seq_len = 100"]["optimizer=adam"]] == [2, 3]
    assert list(panels["seq_len = 400"]) == ["optimizer=adam", "optimizer=sgd"]


def test_report_plots_into_a_file_is_one_clear_line_and_writes_nothing(tmp_path, capsys):
    from plainrnn.cli import main
    _results_run(tmp_path / "runs", "a1", dict(task="adding", optimizer="adam", lr=1e-3, seed=1, seq_len=100), [0.1])
    a_file = tmp_path / "notes.md"
    a_file.write_text("kept")
    for extra in (["--reach", "0.01", "--columns", "seq_len"], []):
        assert main(["report", str(tmp_path / "runs"), *extra, "--plots", str(a_file)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--plots {a_file}: a file, not a folder" in err and "Traceback" not in err
    assert a_file.read_text() == "kept"


def test_runs_made_before_a_config_key_existed_group_with_their_setting(tmp_path):
    base = dict(task="adding", optimizer="adam", lr=1e-3, seq_len=100)
    _results_run(tmp_path, "old", dict(base, seed=1), [0.1, 0.005])                  # written before max_unit_step
    _results_run(tmp_path, "new", dict(base, seed=2, max_unit_step=None), [0.1, 0.004])
    rows = json.loads(report([str(tmp_path)], fmt="json"))
    assert len(rows) == 1 and rows[0]["runs"] == 2


def test_each_budget_of_a_recipe_has_its_own_sweep_directory():
    """A full run must never overwrite the cpu run of the same trial (same run name, other config)."""
    from plainrnn.experiments.recipes import RECIPES, budget_of
    assert budget_of("adding-study", "cpu") == ("adding-study-cpu", dict(steps=20_000, eval_every=500))
    assert budget_of("adding-study", "full")[0] == "adding-study-full" == budget_of("adding-study")[0]
    assert budget_of("orth-copy") == budget_of("orth-copy", "cpu") == ("orth-copy", {})
    for name, recipe in RECIPES.items():
        dirs = {budget_of(name, b)[0] for b in recipe.get("budgets", {})}
        assert len(dirs) == len(recipe.get("budgets", {}))
    with pytest.raises(ValueError, match="adding-study has no tiny budget; it has cpu, full"):
        budget_of("adding-study", "tiny")


def test_a_setting_at_its_default_is_named_by_the_key_that_varies(tmp_path):
    """margin=None (the default) beside margin=0.1: the row reads margin=None, not optimizer=…, which is
    the same in every row."""
    for name, margin in (("m", 0.1), ("n", None)):
        _fake_run(tmp_path, name, "rmsprop", 0, [0.5, 0.9], lower=False)
        config = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps(dict(config, task="copy", margin=margin)))
    rows = {r["setting"] for r in json.loads(report([str(tmp_path)], fmt="json"))}
    assert rows == {"margin=0.1", "margin=None"}


def test_what_a_run_is_is_named_even_at_its_default(tmp_path):
    """The 2017 tables: glorot, orthogonal and identity (the default init) rows, and an LSTM beside the
    spectral ones. The identity row once read "model=spectral clip=100.0", silent about its init; an
    option switched off (margin=None, bias at its default) stays unnamed."""
    for name, init, model, margin in (("o", "orthogonal", "spectral", 0.1), ("g", "glorot", "spectral", None),
                                      ("i", "identity", "spectral", None), ("l", "orthogonal", "lstm", None)):
        _fake_run(tmp_path, name, "rmsprop", 0, [0.5, 0.9], lower=False)
        config = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps(dict(config, task="pmnist", model=model, init=init,
                                                                      margin=margin)))
    rows = {r["setting"] for r in json.loads(report([str(tmp_path)], fmt="json"))}
    assert rows == {"model=spectral init=orthogonal margin=0.1", "model=spectral init=glorot",
                    "model=spectral init=identity", "model=lstm init=orthogonal"}


def test_the_soft_constraints_strength_names_the_setting(tmp_path):
    """Fig. 4 of 2017: rows that differ only by the penalty's or the prior's strength."""
    for name, strength in (("a", 1e-4), ("b", 10.0)):
        _fake_run(tmp_path, name, "sgd", 0, [0.5, 0.9], lower=False)
        config = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps(dict(config, task="copy", sv_prior=strength)))
    assert {r["setting"] for r in json.loads(report([str(tmp_path)], fmt="json"))} == {"sv_prior=0.0001",
                                                                                      "sv_prior=10.0"}


def test_a_changed_config_never_replaces_the_run_in_its_directory(tmp_path):
    """A changed config into a used directory: once it would have deleted the old run's summary and
    checkpoint and trained over it; now train() refuses before touching a file, the old run stays
    done, and the trial reads as a conflict (never as done with the old run's summary)."""
    from plainrnn.experiments.sweep import trial_state
    from plainrnn.train import train
    from plainrnn.train.rundir import RunDirTaken
    old = load_config(None, dict(task="adding", seq_len=6, hidden=4, steps=4, eval_every=2, out=str(tmp_path), name="r"))
    train(old, progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    new = load_config(None, dict(task="adding", seq_len=6, hidden=4, steps=4, eval_every=2, lr="1e-2",
                                 out=str(tmp_path), name="r"))
    with pytest.raises(RunDirTaken, match=r"holds the results of another config \(lr 0.001 → 0.01\)"):
        train(new, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()} == before
    assert trial_state(dataclasses.asdict(new)) == "conflict"
    assert trial_state(dataclasses.asdict(old)) == "done"


def test_report_draws_a_classifiers_test_loss_beside_its_accuracy(tmp_path, monkeypatch):
    """The 2017 paper's Fig. 6 draws loss curves for s/pMNIST: report draws each setting's test
    cross-entropy (from the records) next to the accuracy figure, and none for a task scored by a loss."""
    from plainrnn.experiments import plots
    from plainrnn.train import RunConfig
    drawn = {}
    real = plots.plot_learning_curves

    def spy(curves, path, **kw):
        drawn[Path(path).name] = {label: [r[kw.get("metric", "test_metric")] for r in records]
                                  for label, records in curves.items()}
        return real(curves, path, **kw)

    monkeypatch.setattr("plainrnn.experiments.report.plot_learning_curves", spy)
    for task, margin, losses in (("smnist", 0.0, (2.0, 1.5)), ("smnist", 1.0, (2.1, 1.2)), ("adding", 0.0, (0.3, 0.2))):
        run = tmp_path / f"{task}-{margin}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps(RunConfig(task=task, model="spectral", margin=margin).to_dict()))
        accuracy = task != "adding"
        (run / "summary.json").write_text(json.dumps(dict(test_metric=0.5, metric="accuracy" if accuracy else "mse",
                                                          lower_is_better=not accuracy, diverged=False, wall_s=1.0)))
        (run / "metrics.jsonl").write_text("".join(json.dumps(dict(step=100 * (i + 1), test_metric=0.5, test_loss=v)) + "\n"
                                                   for i, v in enumerate(losses)))
    report([str(tmp_path)], plots_dir=str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "smnist_loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(drawn["smnist_loss_curves.png"].values()) == [[2.0, 1.5], [2.1, 1.2]]
    assert not (tmp_path / "plots" / "adding_loss_curves.png").exists()  # its learning curves are the loss already
