"""PathNormalized and the spectral optimizer are torch optimizers: step hooks fire, LR schedulers
change the lr the inner optimizer uses, ``state`` is one stable mapping, and bad state_dicts say why."""
import copy
import io

import pytest
import torch

import plainrnn as pr


def _path_normalized():
    torch.manual_seed(0)
    model = pr.ReLURNN(2, 6, 1)
    return model, pr.optim.PathNormalized(torch.optim.SGD, model, seq_len=5, lr=0.1, momentum=0.9)


def _spectral():
    torch.manual_seed(0)
    model = pr.SpectralRNN(2, 6, 1, margin=0.1)
    return model, pr.optim.spectral_optimizer(model, lr=0.1, orth_lr=1e-3)


def _step(model, opt):
    x = torch.randn(4, 5, 2)
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()


@pytest.mark.parametrize("make", [_path_normalized, _spectral], ids=["PathNormalized", "Combined"])
def test_step_hooks_fire_in_order(make):
    model, opt = make()
    assert isinstance(opt, torch.optim.Optimizer)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    _step(model, opt)
    _step(model, opt)
    assert calls == ["pre", "post", "pre", "post"]


@pytest.mark.parametrize("make", [_path_normalized, _spectral], ids=["PathNormalized", "Combined"])
def test_a_scheduler_changes_the_lr_the_inner_optimizer_uses(make):
    model, opt = make()
    inner = opt.inner if hasattr(opt, "inner") else opt.optimizers[-1]
    before = [g["lr"] for g in inner.param_groups]
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _step(model, opt)
    sched.step()
    assert [g["lr"] for g in inner.param_groups] == [lr / 2 for lr in before]
    assert opt.state is opt.state  # one stable mapping, not a new dict per access
    assert len(opt.state) > 0 and all(p in opt.state for p in inner.state)


def test_bad_state_dicts_are_named():
    _, opt = _path_normalized()
    with pytest.raises(ValueError, match="expected the state_dict of a PathNormalized optimizer"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    _, comb = _spectral()
    prefix = (r"expected the state_dict of a Combined optimizer of 2 optimizers \(state, param_groups and "
              r"group_counts with 2 entries\), got ")
    with pytest.raises(ValueError, match=prefix + r"\['optimizers'\]$"):
        comb.load_state_dict({"optimizers": [{}]})
    with pytest.raises(ValueError, match=prefix + r"\['state'\]$"):
        comb.load_state_dict({"state": {}})
    with pytest.raises(ValueError, match=prefix + "list$"):
        comb.load_state_dict([{}, {}])
    with pytest.raises(ValueError, match=prefix + r"\['group_counts', 'param_groups', 'state'\]$"):
        comb.load_state_dict({"state": {}, "param_groups": [], "group_counts": [1, 1]})


def test_combined_names_its_optimizers():
    assert repr(_spectral()[1]) == "Combined(StiefelSGD, RMSprop)"


def test_param_groups_go_where_they_make_sense():
    torch.manual_seed(0)
    model = pr.ReLURNN(2, 6, 1)
    model.weight_out.requires_grad_(False)  # frozen at construction: in the optimizer all the same, as in torch.optim
    opt = pr.optim.PathNormalized(torch.optim.SGD, model, seq_len=5, lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [model.weight_out], "lr": 0.01})
    model.weight_in = torch.nn.Parameter(torch.ones(2))  # a parameter the model gains later
    opt.geometry.names[model.weight_in] = "weight_in"
    opt.add_param_group({"params": [model.weight_in], "lr": 0.01})
    assert opt.param_groups[-1]["lr"] == 0.01 and opt.inner.param_groups is opt.param_groups
    with pytest.raises(ValueError, match="must be parameters of its model"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})
    _, comb = _spectral()
    with pytest.raises(TypeError, match="add it to one of"):
        comb.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})


def test_combined_follows_its_inner_optimizers_through_a_reload_and_a_new_group():
    """torch replaces an optimizer's state and groups on load_state_dict: the Combined view must
    follow, or a scheduler would change dead groups after a resume."""
    model, opt = _spectral()
    _step(model, opt)
    saved = opt.state_dict()
    model2, opt2 = _spectral()
    opt2.load_state_dict(saved)
    sched = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    before = [g["lr"] for g in opt2.optimizers[-1].param_groups]
    _step(model2, opt2)
    sched.step()
    assert [g["lr"] for g in opt2.optimizers[-1].param_groups] == [lr / 2 for lr in before]
    assert all(p in opt2.state for p in opt2.optimizers[-1].state)  # the reloaded states, not the old ones
    extra = torch.nn.Parameter(torch.ones(3))
    opt2.optimizers[-1].add_param_group({"params": [extra], "lr": 0.5})
    assert opt2.param_groups[-1]["params"] == [extra]


@pytest.mark.parametrize("make", [_path_normalized, _spectral], ids=["PathNormalized", "Combined"])
def test_zero_grad_follows_torch(make):
    """As torch.optim: zero_grad() sets the gradients to None, zero_grad(False) to zeros."""
    model, opt = make()
    _step(model, opt)
    model(torch.randn(4, 5, 2)).square().mean().backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_spectral_optimizer_gives_each_parameter_its_learning_rate():
    """U and V: StiefelSGD at orth_lr (default the paper's 1e-6) with orth_method; the rest: the inner
    optimizer at lr with its own keyword arguments; each spectrum p at lr / 2m (eq. 10 scales its
    gradient by 2m), or at lr where m = 0 or there is no margin."""
    model = pr.SpectralRNN(2, 4, 1, num_layers=2, margin=0.25)
    opt = pr.optim.spectral_optimizer(model, lr=1e-3, orth_method="solve", alpha=0.5)
    stiefel, inner = opt.optimizers
    assert stiefel.defaults["lr"] == 1e-6 and stiefel.defaults["method"] == "solve"
    assert {id(p) for g in stiefel.param_groups for p in g["params"]} == {id(p) for p in model.orthogonal_parameters()}
    assert [g["lr"] for g in inner.param_groups] == [1e-3, 1e-3 / 0.5, 1e-3 / 0.5]
    assert all(g["alpha"] == 0.5 for g in inner.param_groups)
    assert [g["params"] for g in inner.param_groups[1:]] == [[model.spectrum(0)], [model.spectrum(1)]]
    # a user's weight alone (no other parameter), with m = 0 and with no margin
    for margin, want in ((0.0, 1e-3), (None, 1e-3)):
        layer = torch.nn.Linear(3, 3, bias=False)
        pr.stiefel.spectral_(layer, margin=margin)
        inner = pr.optim.spectral_optimizer(layer, lr=1e-3).optimizers[1]
        assert [g["lr"] for g in inner.param_groups] == [want]
    with pytest.raises(ValueError, match=r"^Linear has no spectral factors: apply plainrnn\.stiefel\.spectral_\(module, "
                                         r"name, margin\) to a square weight first$"):
        pr.optim.spectral_optimizer(torch.nn.Linear(3, 3), lr=1e-3)


GEOMETRY_NEEDS_THE_MODEL = (
    "the path geometry needs the model (a torch.nn.Module), not a generator: κ and γ² depend on how the "
    "parameters connect, so PathSGD and PathNormalized take the model itself (to hold parameters still, "
    "requires_grad_(False))")


@pytest.mark.parametrize("make, message", [
    (lambda params: pr.optim.PathSGD(params, lr=0.1), GEOMETRY_NEEDS_THE_MODEL),
    (lambda params: pr.optim.PathNormalized(torch.optim.Adam, params, lr=0.1), GEOMETRY_NEEDS_THE_MODEL),
    (lambda params: pr.path.kappa(params, example_input=torch.zeros(1, 3)), GEOMETRY_NEEDS_THE_MODEL),
    (lambda params: pr.path.path_norm(params, example_input=torch.zeros(1, 3)), GEOMETRY_NEEDS_THE_MODEL),
    (lambda params: pr.optim.spectral_optimizer(params, lr=0.1),
     "spectral_optimizer takes the model (a torch.nn.Module), not a generator: it finds the factors U, p, V "
     "that spectral_ put in the model"),
])
def test_model_parameters_in_place_of_the_model_are_named_in_one_line(make, message):
    """The torch.optim habit, ``Opt(model.parameters(), ...)``, gets one line that says what to pass
    (not an AttributeError from deep inside the geometry)."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    with pytest.raises(TypeError) as caught:
        make(net.parameters())
    assert str(caught.value) == message


def test_an_optimizer_instance_in_place_of_its_class_is_named_in_one_line():
    model = pr.ReLURNN(2, 4, 1)
    with pytest.raises(TypeError) as caught:
        pr.optim.PathNormalized(torch.optim.SGD(model.parameters(), lr=1.0), model, seq_len=5)
    assert str(caught.value) == ("optimizer_cls must be a torch.optim.Optimizer class such as torch.optim.Adam, "
                                 "got an instance of SGD; pass the class and its arguments: "
                                 "PathNormalized(torch.optim.Adam, model, lr=...)")


@pytest.mark.parametrize("make", [_path_normalized, _spectral], ids=["PathNormalized", "Combined"])
def test_state_dicts_have_torchs_layout_fire_its_hooks_and_round_trip(make):
    """``state`` and ``param_groups`` as torch.optim's (checkpoint tools read them), the state-dict
    hooks fire, and a reloaded optimizer continues exactly as the original."""
    model, opt = make()
    _step(model, opt)
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("save-pre"))
    opt.register_state_dict_post_hook(lambda o, sd: calls.append("save-post"))
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append("load-pre"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load-post"))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint holds it: a copy, loadable with weights_only
    buffer.seek(0)
    sd = torch.load(buffer, weights_only=True)
    n = sum(1 for _ in model.parameters())
    assert sorted(i for g in sd["param_groups"] for i in g["params"]) == list(range(n))
    assert set(sd["state"]) <= set(range(n)) and len(sd["state"]) > 0
    assert all("lr" in g for g in sd["param_groups"])
    twin, other = make()
    twin.load_state_dict(model.state_dict())
    for hook in (other.register_load_state_dict_pre_hook, other.register_load_state_dict_post_hook):
        hook(lambda *a: calls.append("twin"))
    other.load_state_dict(sd)
    opt.load_state_dict(copy.deepcopy(sd))
    assert calls == ["save-pre", "save-post", "twin", "twin", "load-pre", "load-post"]
    torch.manual_seed(5)
    _step(model, opt)
    torch.manual_seed(5)
    _step(twin, other)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_the_layouts_of_earlier_checkpoints_still_load():
    model, opt = _path_normalized()
    _step(model, opt)
    sd = opt.state_dict()
    old = {"inner": {"state": sd["state"], "param_groups": sd["param_groups"]},
           **{k: sd[k] for k in ("path_scale", "path_steps", "kappa")}}
    _, again = _path_normalized()
    again.load_state_dict(old)
    assert again.state_dict()["path_steps"] == sd["path_steps"] and len(again.state) == len(opt.state)
    model, comb = _spectral()
    _step(model, comb)
    old = {"optimizers": [o.state_dict() for o in comb.optimizers]}
    _, again = _spectral()
    again.load_state_dict(old)
    assert again.state_dict()["state"].keys() == comb.state_dict()["state"].keys()


@pytest.mark.parametrize("cycle_momentum", [True, False])
def test_one_cycle_keeps_each_spectral_groups_lr_ratio(cycle_momentum):
    """OneCycleLR with one max_lr on the spectral optimizer: the geodesic lr (orth_lr) and the spectrum's
    lr / 2m follow the schedule at their own ratios to lr, instead of all becoming max_lr."""
    model, opt = _spectral()
    inner_lrs = lambda: [g["lr"] for o in opt.optimizers for g in o.param_groups]  # noqa: E731
    ratios = [lr / 0.1 for lr in inner_lrs()]  # lr=0.1, orth_lr=1e-3, spectrum 0.1 / 0.2
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=cycle_momentum)
    for _ in range(4):
        _step(model, opt)
        sched.step()
        shown = opt.param_groups[0]["lr"]
        assert all(g["lr"] == pytest.approx(shown, rel=1e-12) for g in opt.param_groups)
        for lr, ratio in zip(inner_lrs(), ratios):
            assert lr == pytest.approx(shown * ratio, rel=1e-12)
    assert shown > 0.04  # it did move: max_lr / 25 at the start, rising


@pytest.mark.parametrize("make", [
    lambda m: pr.optim.PathSGD(m, lr=0.1, seq_len=5),
    lambda m: pr.optim.PathNormalized(torch.optim.Adam, m, seq_len=5, lr=1e-2)], ids=["PathSGD", "PathNormalized"])
def test_a_parameter_frozen_at_construction_trains_once_unfrozen(make):
    """As with torch.optim: a warm-up with the read-out frozen, then fine-tuning with it unfrozen."""
    torch.manual_seed(0)
    model = pr.ReLURNN(2, 6, 1)
    model.weight_out.requires_grad_(False)
    opt = make(model)
    _step(model, opt)
    frozen = model.weight_out.detach().clone()
    assert torch.equal(model.weight_out, frozen) and model.weight_out.grad is None
    model.weight_out.requires_grad_(True)
    _step(model, opt)
    assert not torch.equal(model.weight_out, frozen)
