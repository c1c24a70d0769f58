"""PathNormalized and the spectral optimizer are torch optimizers: step hooks fire, LR schedulers
change the lr the inner optimizer uses, ``state`` is one stable mapping, and bad state_dicts say why."""
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
    prefix = r"expected the state_dict of a Combined optimizer of 2 optimizers \(\{'optimizers': \[\.\.\.\]\}\), got "
    with pytest.raises(ValueError, match=prefix + "dict with 1$"):
        comb.load_state_dict({"optimizers": [{}]})
    with pytest.raises(ValueError, match=prefix + "dict$"):
        comb.load_state_dict({"state": {}})
    with pytest.raises(ValueError, match=prefix + "list$"):
        comb.load_state_dict([{}, {}])


def test_combined_names_its_optimizers():
    assert repr(_spectral()[1]) == "Combined(StiefelSGD, RMSprop)"


def test_param_groups_go_where_they_make_sense():
    torch.manual_seed(0)
    model = pr.ReLURNN(2, 6, 1)
    model.weight_out.requires_grad_(False)  # frozen at construction, unfrozen later
    opt = pr.optim.PathNormalized(torch.optim.SGD, model, seq_len=5, lr=0.1)
    model.weight_out.requires_grad_(True)
    opt.add_param_group({"params": [model.weight_out], "lr": 0.01})
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
