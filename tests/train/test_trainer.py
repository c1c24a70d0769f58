import json
import math

import pytest
import torch

from plainrnn.train import RunConfig, train


def _cfg(tmp_path, **kw):
    base = dict(seq_len=20, hidden=32, steps=60, eval_every=20, out=str(tmp_path), optimizer="adam", lr=3e-3,
                input_scale=0.1)
    base.update(kw)
    return RunConfig(**base)


def test_same_seed_same_metrics(tmp_path):
    a = train(_cfg(tmp_path / "a"), progress=False)
    b = train(_cfg(tmp_path / "b"), progress=False)
    ma = [json.loads(l) for l in open(a["run_dir"] + "/metrics.jsonl")]
    mb = [json.loads(l) for l in open(b["run_dir"] + "/metrics.jsonl")]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]
    assert strip(ma) == strip(mb) and len(ma) == 3
    c = train(_cfg(tmp_path / "c", seed=1), progress=False)
    assert c["test_metric"] != a["test_metric"]


def test_a_short_run_learns_the_adding_problem(tmp_path):
    s = train(_cfg(tmp_path, steps=600, eval_every=200), progress=False)
    assert not s["diverged"]
    assert s["test_metric"] < 0.08  # clearly below the 0.167 of always predicting 1


def test_divergence_is_recorded(tmp_path):
    s = train(_cfg(tmp_path, optimizer="sgd", lr=1e6, steps=50), progress=False)
    assert s["diverged"] and s["diverged_step"] is not None and "non-finite" in s["diverged_reason"]


def test_a_finite_explosion_is_a_divergence(tmp_path):
    # No model is near MSE 0.01 after 5 steps, so this threshold flags the first evaluation.
    s = train(_cfg(tmp_path, steps=20, eval_every=5, diverge_above=0.01), progress=False)
    assert s["diverged"] and s["diverged_step"] == 5 and s["diverged_reason"].startswith("exploded: validation loss")
    calm = train(_cfg(tmp_path, steps=20, eval_every=5, name="calm"), progress=False)
    assert not calm["diverged"]


def test_spectral_and_path_runs_end_to_end(tmp_path):
    s = train(_cfg(tmp_path, model="spectral", margin=0.1, optimizer="rmsprop", orth_lr=1e-3, steps=20,
                   orth_penalty=0.1, sv_prior=0.1, weight_decay=1e-4, task="copy", seq_len=10), progress=False)
    last = [json.loads(l) for l in open(s["run_dir"] + "/metrics.jsonl")][-1]
    assert {"sv_min", "sv_max", "sv_mean", "sv_std", "orth_error"} <= set(last)
    assert 0.9 - 1e-6 <= last["sv_min"] <= last["sv_max"] <= 1.1 + 1e-6
    for opt in ("path-sgd", "path-adam"):
        cfg = _cfg(tmp_path, optimizer=opt, lr=1e-4, steps=10, kappa2=True)
        s = train(cfg, progress=False)
        assert not s["diverged"]
        # Oracle: the same init, batches and optimizer stepped by hand give the trainer's weights.
        from plainrnn.tasks import make_task
        from plainrnn.train.build import build_model, build_optimizer, init_generator
        from plainrnn.train.checkpoint import load_checkpoint
        task = make_task(cfg.task, cfg.seq_len)
        model = build_model(cfg, task.spec, init_generator(cfg.seed))
        optimizer = build_optimizer(cfg, model, task.spec.seq_len)
        data = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.steps):
            x, y = task.train_batch(cfg.batch_size, data)
            optimizer.zero_grad()
            task.loss(model(x), y).backward()
            optimizer.step()
        trained = load_checkpoint(s["run_dir"] + "/checkpoint.pt")["model"]
        for name, value in model.state_dict().items():
            assert torch.equal(trained[name], value), f"{opt}: {name} is not what {cfg.steps} Path steps give"
        assert not torch.equal(trained["weight_hh_l0"] if "weight_hh_l0" in trained else next(iter(trained.values())),
                               build_model(cfg, task.spec, init_generator(cfg.seed)).state_dict()[
                                   "weight_hh_l0" if "weight_hh_l0" in trained else next(iter(trained))])


def test_tensorboard_scalars(tmp_path):
    s = train(_cfg(tmp_path, steps=20, eval_every=10, tensorboard=True), progress=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(s["run_dir"] + "/tensorboard")
    acc.Reload()
    steps = [e.step for e in acc.Scalars("test_metric")]
    assert steps == [10, 20]


def test_gradient_norm_of_huge_but_finite_gradients_is_finite():
    from plainrnn.train.loop import gradient_norm
    grads = [torch.full((3, 4), 3e25), torch.tensor([-4e25])]
    exact = math.sqrt(12 * 9e50 + 16e50)
    assert gradient_norm(grads).item() == pytest.approx(exact, rel=1e-6)
    assert gradient_norm([torch.ones(2), torch.tensor([3.0])]).item() == pytest.approx(math.sqrt(11), rel=1e-6)
    assert not math.isfinite(gradient_norm([torch.tensor([float("inf"), 1.0])]).item())


def test_a_loss_summed_over_time_is_sgd_with_t_times_the_step_and_the_penalty_t_times_lighter(tmp_path):
    """loss_over_time="sum" trains on Σ_t ℓ_t (mean over the batch): for plain SGD, lr η with penalty λ
    is exactly the mean loss at lr ηT with penalty λ/T, T the outputs per sequence (copy: seq_len + 20)."""
    from plainrnn.train.checkpoint import load_checkpoint
    T = 5 + 20
    common = dict(task="copy", seq_len=5, hidden=6, steps=3, eval_every=3, optimizer="sgd", momentum=0.0,
                  input_scale=0.1)
    summed = train(_cfg(tmp_path / "s", **common, lr=1e-3, orth_penalty=0.5, loss_over_time="sum"), progress=False)
    meaned = train(_cfg(tmp_path / "m", **common, lr=1e-3 * T, orth_penalty=0.5 / T), progress=False)
    plain = train(_cfg(tmp_path / "p", **common, lr=1e-3, orth_penalty=0.5), progress=False)
    weights = [load_checkpoint(f"{r['run_dir']}/checkpoint.pt")["model"] for r in (summed, meaned, plain)]
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=2e-5, atol=1e-6)
    assert any(not torch.allclose(weights[0][n], weights[2][n]) for n in weights[0])  # the option does something
    with pytest.raises(ValueError, match="loss_over_time must be mean or sum"):
        RunConfig(loss_over_time="total").validate()
