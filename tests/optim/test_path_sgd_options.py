"""PathSGD's torch.optim.SGD options (momentum, dampening, Nesterov, weight decay) and κ2, against an
oracle: torch.optim.SGD itself, fed the path-normalized gradient (grad + λ·w) / κ that plainrnn.path.kappa
computes. Plus the constructor's defaults and its messages, word for word (they are the API a user meets
first)."""
import copy

import pytest
import torch

import plainrnn as pr
from oracles import regression_batches, small_relu_rnn

SEQ_LEN = 7


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


@pytest.mark.parametrize("second_order", [False, True])
@pytest.mark.parametrize("options", [dict(momentum=0.9), dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
                                     dict(momentum=0.5, nesterov=True, weight_decay=0.01), dict(weight_decay=0.1),
                                     dict()])
def test_options_are_torch_sgd_on_the_path_normalized_gradient(options, second_order):
    model = small_relu_rnn(2, "last", 0)
    oracle_model = copy.deepcopy(model)
    ours = pr.optim.PathSGD(model, lr=0.02, seq_len=SEQ_LEN, second_order=second_order, lr_scale=None, **options)
    sgd_options = {k: v for k, v in options.items() if k != "weight_decay"}
    oracle = torch.optim.SGD(oracle_model.parameters(), lr=0.02, **sgd_options)
    decay = options.get("weight_decay", 0.0)
    for x, y in regression_batches(4):
        ours.zero_grad()
        _loss(model, x, y).backward()
        ours.step()
        oracle.zero_grad()
        _loss(oracle_model, x, y).backward()
        kappa = pr.path.kappa(oracle_model, seq_len=SEQ_LEN, second_order=second_order)
        for name, p in oracle_model.named_parameters():
            p.grad = (p.grad + decay * p.detach()) / kappa[name]
        oracle.step()
    for (name, p), q in zip(model.named_parameters(), oracle_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)


def test_defaults_are_torch_sgds_plus_the_path_state():
    opt = pr.optim.PathSGD(small_relu_rnn(1, "last", 0), lr=0.1, seq_len=SEQ_LEN)
    assert opt.defaults == dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                                path_scale=None, path_steps=0, path_backtracks=0, path_unit_clips=0)
    assert opt.max_backtracks == 10 and opt.max_path_growth is None and opt.max_unit_step is None
    given = pr.optim.PathSGD(small_relu_rnn(1, "last", 0), lr=0.1, seq_len=SEQ_LEN, momentum=0.5, dampening=0.1,
                             weight_decay=0.2, max_path_growth=0.3, max_backtracks=0)
    assert {k: given.defaults[k] for k in ("momentum", "dampening", "weight_decay")} == \
        dict(momentum=0.5, dampening=0.1, weight_decay=0.2)
    assert given.max_backtracks == 0 and given.max_path_growth == 0.3  # 0 backtracks: check, never undo


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(lr=0), ValueError, "Invalid learning rate: 0 (must be > 0)"),
    (dict(momentum=-0.1), ValueError, "Invalid momentum value: -0.1 (must be >= 0)"),
    (dict(weight_decay=-1), ValueError, "Invalid weight_decay value: -1 (must be >= 0)"),
    (dict(nesterov=True), ValueError, "Nesterov momentum requires a momentum and zero dampening"),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
     "Nesterov momentum requires a momentum and zero dampening"),
    (dict(nesterov=True, momentum=0.5, dampening=1.0), ValueError,
     "Nesterov momentum requires a momentum and zero dampening"),
    (dict(max_path_growth=0), ValueError, "max_path_growth must be None or a number > 0, got 0"),
    (dict(max_backtracks=-1), ValueError, "max_backtracks must be an integer >= 0, got -1"),
    (dict(max_unit_step=0.0), ValueError, "max_unit_step must be None or a number > 0, got 0.0"),
    (dict(fused=True, max_unit_step=0.1), ValueError,
     "fused=True cannot take max_path_growth or max_unit_step: both act on the whole step before or after the update"),
    (dict(fused="yes"), ValueError, "fused must be None, True or False, got 'yes'"),
])
def test_constructor_messages_word_for_word(kwargs, error, message):
    kwargs = dict(dict(lr=0.1), **kwargs)
    with pytest.raises(error) as caught:
        pr.optim.PathSGD(small_relu_rnn(1, "last", 0), seq_len=SEQ_LEN, **kwargs)
    assert str(caught.value) == message


def test_nesterov_with_momentum_under_one_is_accepted():
    pr.optim.PathSGD(small_relu_rnn(1, "last", 0), lr=0.1, seq_len=SEQ_LEN, momentum=0.5, nesterov=True)


def test_fused_with_momentum_is_refused_word_for_word():
    with pytest.raises(ValueError) as caught:
        pr.optim.PathSGD(pr.MLP(3, [4], 2), lr=0.1, momentum=0.9, fused=True)
    assert str(caught.value) == "fused=True needs momentum=0: the fused route has no momentum buffer"


@pytest.mark.parametrize("lr_scale", [0, -1.0, True, "huge"])
def test_a_bad_step_scale_is_refused_word_for_word(lr_scale):
    with pytest.raises(ValueError) as caught:
        pr.optim.PathSGD(small_relu_rnn(1, "last", 0), lr=0.1, seq_len=SEQ_LEN, lr_scale=lr_scale)
    assert str(caught.value) == ("lr_scale must be one of 'path_norm', 'path_norm_now', None or a positive number, "
                                 f"got {lr_scale!r}")


def _assert_one_step_is(make_optimizer, lr, scale=1.0, second_order=False):
    """One step of ``make_optimizer(model)`` on a fresh model moves every parameter by lr·s·grad/κ (eq. 8)."""
    model = small_relu_rnn(1, "last", 0)
    _loss(model, *regression_batches(1)[0]).backward()
    kappa = pr.path.kappa(model, seq_len=SEQ_LEN, second_order=second_order)
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    make_optimizer(model).step()
    for n, p in model.named_parameters():
        w, g = before[n]
        torch.testing.assert_close(p.detach(), w - lr * scale * g / kappa[n], rtol=1e-12, atol=1e-15)


def test_a_number_as_step_scale_multiplies_the_raw_step():
    """lr_scale = 0.5 (a number under 1, so neither 1 nor a rule could pass for it): half the raw eq. 8 step."""
    _assert_one_step_is(lambda m: pr.optim.PathSGD(m, lr=0.01, seq_len=SEQ_LEN, lr_scale=0.5), 0.01, scale=0.5)


def test_steps_are_counted_and_a_parameter_without_gradient_is_skipped_not_the_rest():
    model = small_relu_rnn(1, "last", 0)
    opt = pr.optim.PathSGD(model, lr=0.01, seq_len=SEQ_LEN, lr_scale=None)
    batches = regression_batches(3)
    for x, y in batches[:2]:
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    assert [g["path_steps"] for g in opt.param_groups] == [2]
    opt.zero_grad()
    _loss(model, *batches[2]).backward()
    kappa = pr.path.kappa(model, seq_len=SEQ_LEN)
    first, *rest = list(model.named_parameters())
    first[1].grad = None  # the first parameter gets no gradient this step
    before = {n: (p.detach().clone(), None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
    opt.step()
    assert opt.param_groups[0]["path_steps"] == 3
    assert torch.equal(first[1].detach(), before[first[0]][0])
    for n, p in rest:
        w, g = before[n]
        torch.testing.assert_close(p.detach(), w - 0.01 * g / kappa[n], rtol=1e-12, atol=1e-15)


def test_a_parameter_outside_the_model_is_named_word_for_word():
    model = small_relu_rnn(1, "last", 0)
    opt = pr.optim.PathSGD(model, lr=0.01, seq_len=SEQ_LEN)
    stranger = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt.add_param_group(dict(params=[stranger]))
    _loss(model, *regression_batches(1)[0]).backward()
    stranger.grad = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError) as caught:
        opt.step()
    assert str(caught.value) == "a parameter passed to the optimizer is not a parameter of its model"


def test_the_fused_route_counts_its_steps():
    torch.manual_seed(0)
    model = pr.MLP(4, [5], 3)
    opt = pr.optim.PathSGD(model, lr=0.01, fused=True)
    x, y = torch.rand(6, 4), torch.randint(3, (6,))
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert opt.param_groups[0]["path_steps"] == 3


def test_path_normalized_takes_kappa2_when_asked():
    """PathNormalized(SGD, second_order=True) steps by lr · grad / (κ1 + κ2), not by κ1 alone."""
    _assert_one_step_is(lambda m: pr.optim.PathNormalized(torch.optim.SGD, m, seq_len=SEQ_LEN, second_order=True,
                                                          lr_scale=None, lr=0.01), 0.01, second_order=True)


@pytest.mark.parametrize("kappa_every", [0, -2, 1.5])
def test_kappa_every_must_be_a_positive_integer(kappa_every):
    with pytest.raises(ValueError) as caught:
        pr.optim.PathSGD(small_relu_rnn(1, "last", 0), lr=0.1, seq_len=SEQ_LEN, kappa_every=kappa_every)
    assert str(caught.value) == f"kappa_every must be a positive integer, got {kappa_every!r}"


def test_the_unit_clip_count_counts_only_limited_units():
    """A trust region far wider than any step limits nothing: the count stays 0. A tight one limits
    units at every step and the count grows; every param group reports the same count."""
    def clips(max_unit_step):
        model = small_relu_rnn(1, "last", 0)
        params = list(model.parameters())
        opt = pr.optim.PathSGD(model, lr=0.01, seq_len=SEQ_LEN, max_unit_step=max_unit_step)
        opt.param_groups[0]["params"] = params[:2]
        opt.add_param_group(dict(params=params[2:]))
        for x, y in regression_batches(3):
            opt.zero_grad()
            _loss(model, x, y).backward()
            opt.step()
        counts = {g["path_unit_clips"] for g in opt.param_groups}
        assert len(counts) == 1, counts
        return counts.pop()
    assert clips(1e6) == 0
    assert clips(1e-6) > 0


def test_combined_needs_optimizers():
    from plainrnn.optim import Combined
    for bad in ([], [object()]):
        with pytest.raises(TypeError, match="^Combined needs torch.optim.Optimizer instances, got "):
            Combined(*bad)
