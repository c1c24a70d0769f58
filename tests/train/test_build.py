"""build_model's MLP inits: the 2015 paper's balanced and unbalanced networks compute the same function."""
import pytest
import torch

from plainrnn.tasks.base import TaskSpec
from plainrnn.train import RunConfig
from plainrnn.train.build import build_model, init_generator


def _spec():
    return TaskSpec(name="mnist", input_size=784, output_size=10, output="last", seq_len=1, vocab_size=None,
                    metric_name="accuracy", lower_is_better=False, baseline=0.1)


def _build(init, seed, hidden=4000):
    cfg = RunConfig(task="mnist", model="mlp", hidden=hidden, layers=2, seed=seed, init=init).validate()
    return build_model(cfg, _spec(), init_generator(seed))


def test_unbalanced_mlp_is_the_balanced_one_rescaled():
    balanced, unbalanced = _build("balanced", 1), _build("unbalanced", 1)
    default = _build("identity", 1)  # the recurrent default stands for balanced
    for p, q in zip(balanced.parameters(), default.parameters()):
        assert torch.equal(p, q)
    ratio = unbalanced.layers[0].weight.abs().max() / balanced.layers[0].weight.abs().max()
    assert ratio > 1e10  # some units really were scaled by 10^c
    x = torch.rand(8, 784)
    with torch.no_grad():
        torch.testing.assert_close(unbalanced.double()(x.double()), balanced.double()(x.double()),
                                   rtol=1e-5, atol=1e-6)


def test_an_unbalanced_init_that_overflows_float32_says_so():
    # at seed 0 picks of one unit compound to 10^42.4: float32 weights of 0.016 · 10^42 are inf
    with pytest.raises(ValueError, match=r"unbalanced init overflows torch.float32 at seed 0: .*10\^42.4"):
        _build("unbalanced", 0)


def test_the_adding_study_options_reach_the_model_and_the_optimizer():
    from plainrnn.tasks import make_task
    from plainrnn.train.build import build_model, build_optimizer
    from plainrnn.train.config import RunConfig
    cfg = RunConfig(bias=False, optimizer="path-sgd", path_momentum=0.9, path_lr_scale="path_norm_now",
                    max_path_growth=0.1, seq_len=10, hidden=8).validate()
    spec = make_task("adding", 10).spec
    model = build_model(cfg, spec)
    assert [n for n, _ in model.named_parameters()] == ["weight_ih_l0", "weight_hh_l0", "weight_out"]
    opt = build_optimizer(cfg, model, 10)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.max_path_growth == 0.1
    assert opt.geometry.scale_rule == "path_norm_now"
    for bad, message in ((dict(path_momentum=0.9, optimizer="sgd"), "path_momentum is Path-SGD's momentum"),
                         (dict(bias=False, model="lstm"), "bias=false is for the plain RNNs"),
                         (dict(path_lr_scale="sometimes"), "path_lr_scale must be path_norm, path_norm_now, z_rms "
                          r"\(invariant-adam\) or none"),
                         (dict(path_lr_scale="z_rms"), "path_lr_scale z_rms is not a scale of optimizer sgd")):
        with pytest.raises(ValueError, match=message):
            RunConfig(**bad).validate()


@pytest.mark.parametrize("model", ["spectral", "relu"])
@pytest.mark.parametrize("written", ["none", "None", "NONE"])
def test_nonlinearity_none_is_the_linear_recurrence_not_the_default(model, written):
    """`nonlinearity: none` (YAML, --set, --grid, a recipe) asks for the identity transition. Read as
    "unset", it silently became tanh, and the 2017 copy runs trained a tanh network."""
    from plainrnn.train.config import load_config
    cfg = load_config(None, {"model": model, "nonlinearity": written, "task": "copy", "seq_len": 5})
    assert cfg.nonlinearity == "none" and cfg.resolved_nonlinearity() == "none"
    spec = TaskSpec(name="copy", input_size=10, output_size=9, output="all", seq_len=25, metric_name="copy_accuracy",
                    lower_is_better=False)
    assert build_model(cfg, spec, init_generator(0)).nonlinearity == "none"
    unset = load_config(None, {"model": model, "nonlinearity": None})
    assert unset.nonlinearity is None and unset.resolved_nonlinearity() == ("tanh" if model == "spectral" else "relu")
    assert load_config(None, {"margin": written}).margin is None  # where "none" means unset, it still does


def test_the_2017_copy_recipes_run_without_a_transition_nonlinearity(tmp_path):
    from plainrnn.experiments.recipes import RECIPES, plan_of
    from plainrnn.experiments.sweep import build_trials
    from plainrnn.train.config import load_config
    for name in ("orth-copy", "orth-copy-500", "orth-fig2", "orth-fig4a", "orth-fig4b", "orth-fig4c", "orth-fig4d"):
        plan = plan_of(name)
        base = load_config(None, {**RECIPES[name]["base"], **plan["overrides"], "out": str(tmp_path)})
        assert {t.config["nonlinearity"] for t in build_trials(base, plan["grid"], 1, tmp_path)} == {"none"}, name
        # Fig. 4's soft constraints on a cost summed over time (the recipes say why); Figs. 1-2 on the mean
        assert base.loss_over_time == ("sum" if name.startswith("orth-fig4") else "mean"), name
