"""κ and γ² of torch.nn models (plainrnn.path.generic) against independent oracles, in float64:
brute-force path enumeration, autograd Hessians of explicitly unrolled matrices, and our own
Hessian-checked ReLURNN with the same weights. Plus Theorem 2 for PathSGD on an nn.Sequential."""
import copy
import itertools

import pytest
import torch
from torch import nn

import plainrnn as pr


def _half_hessian_diagonal(f, params):
    """½ diag ∂²f/∂p² for every entry of every tensor in ``params`` (autograd, entry by entry)."""
    flat = torch.cat([p.detach().reshape(-1) for p in params]).requires_grad_(True)
    shapes = [p.shape for p in params]

    def unflat(v):
        out, i = [], 0
        for shape in shapes:
            n = int(torch.tensor(shape).prod()) if len(shape) else 1
            out.append(v[i:i + n].reshape(shape))
            i += n
        return out

    hessian = torch.autograd.functional.hessian(lambda v: f(*unflat(v)), flat)
    return unflat(0.5 * hessian.diagonal())


def _mlp(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-1, 1)
    return net


def _brute_force_gamma2(W1, b1, W2, b2):
    """Σ over input→output and bias→output paths of the product of squared weights."""
    total = 0
    for o in range(W2.shape[0]):
        total = total + b2[o] ** 2
        for h in range(W1.shape[0]):
            total = total + W2[o, h] ** 2 * b1[h] ** 2
            for i in range(W1.shape[1]):
                total = total + W2[o, h] ** 2 * W1[h, i] ** 2
    return total


def test_sequential_kappa_and_path_norm_match_path_enumeration():
    net = _mlp()
    params = list(net.parameters())
    expected = _half_hessian_diagonal(_brute_force_gamma2, params)
    kappa = pr.path.kappa(net, example_input=torch.zeros(1, 3))
    for (name, _), want in zip(net.named_parameters(), expected):
        torch.testing.assert_close(kappa[name], want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(pr.path.path_norm(net, example_input=torch.zeros(1, 3)),
                               _brute_force_gamma2(*params).detach(), rtol=1e-12, atol=0)


def test_a_batch_of_b_counts_the_paths_b_times():
    net = _mlp()
    one = pr.path.path_norm(net, example_input=torch.zeros(1, 3))
    torch.testing.assert_close(pr.path.path_norm(net, example_input=torch.zeros(5, 3)), 5 * one)


def test_conv_avgpool_kappa_matches_the_unrolled_network():
    """Conv1d → ReLU → AvgPool1d → Flatten → Linear against the same network written as dense matrices
    built by hand (a shared conv weight appears at every position; a pooling edge weighs 1/k)."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(2, 3, kernel_size=3, padding=1), nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(),
                        nn.Linear(3 * 3, 2)).double()
    L = 6  # input length; conv keeps it (padding 1), pooling halves it

    def gamma2(conv_w, conv_b, out_w, out_b):
        # Squared conv as a dense (3·L) × (2·L) matrix: output (c, t) ← input (d, t + j − 1).
        rows = []
        for c, t in itertools.product(range(3), range(L)):
            full = []
            for d in range(2):
                for s in range(L):
                    j = s - t + 1
                    full.append(conv_w[c, d, j] ** 2 if 0 <= j < 3 else conv_w.new_zeros(()))
            rows.append(torch.stack(full))
        conv = torch.stack(rows)                                   # (3L) × (2L)
        a = conv @ torch.ones(2 * L, dtype=torch.float64) + (conv_b ** 2).repeat_interleave(L)
        pool = torch.zeros(3 * (L // 2), 3 * L, dtype=torch.float64)
        for c, u in itertools.product(range(3), range(L // 2)):
            pool[c * (L // 2) + u, c * L + 2 * u: c * L + 2 * u + 2] = 0.5 ** 2
        return (out_w ** 2 @ (pool @ a) + out_b ** 2).sum()

    params = list(net.parameters())
    expected = _half_hessian_diagonal(gamma2, params)
    kappa = pr.path.kappa(net, example_input=torch.zeros(1, 2, L))
    for (name, _), want in zip(net.named_parameters(), expected):
        torch.testing.assert_close(kappa[name], want, rtol=1e-12, atol=1e-14)


class _Wrapped(nn.Module):
    """A user's model: a two-layer ReLU nn.RNN read out at the last step."""

    def __init__(self, batch_first=True):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = nn.RNN(3, 5, num_layers=2, nonlinearity="relu", batch_first=batch_first)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.head(h[:, -1] if self.batch_first else h[-1])


def _ours_with_the_same_paths(wrapped):
    """Our ReLURNN with the wrapped weights. nn.RNN's two biases are two edges from the bias node; one
    bias of √(b_ih² + b_hh²) carries the same squared paths."""
    ours = pr.ReLURNN(3, 5, 2, num_layers=2).double()
    with torch.no_grad():
        for k in range(2):
            getattr(ours, f"weight_ih_l{k}").copy_(getattr(wrapped.rnn, f"weight_ih_l{k}"))
            getattr(ours, f"weight_hh_l{k}").copy_(getattr(wrapped.rnn, f"weight_hh_l{k}"))
            b = (getattr(wrapped.rnn, f"bias_ih_l{k}") ** 2 + getattr(wrapped.rnn, f"bias_hh_l{k}") ** 2).sqrt()
            getattr(ours, f"bias_l{k}").copy_(b)
        ours.weight_out.copy_(wrapped.head.weight)
        ours.bias_out.copy_(wrapped.head.bias)
    return ours


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("second_order", [False, True])
def test_a_wrapped_two_layer_rnn_matches_our_hessian_checked_kappa(batch_first, second_order):
    torch.manual_seed(2)
    wrapped = _Wrapped(batch_first).double()
    with torch.no_grad():
        for p in wrapped.parameters():
            p.uniform_(-0.6, 0.6)
    T = 6
    example = torch.zeros(1, T, 3) if batch_first else torch.zeros(T, 1, 3)
    kappa = pr.path.kappa(wrapped, example_input=example, second_order=second_order)
    ours = _ours_with_the_same_paths(wrapped)
    want = pr.path.kappa(ours, seq_len=T, second_order=second_order)
    for k in range(2):
        for kind in ("ih", "hh"):
            torch.testing.assert_close(kappa[f"rnn.weight_{kind}_l{k}"], want[f"weight_{kind}_l{k}"], rtol=1e-10,
                                       atol=1e-14)
        for kind in ("ih", "hh"):  # each bias edge sees what the one bias sees
            torch.testing.assert_close(kappa[f"rnn.bias_{kind}_l{k}"], want[f"bias_l{k}"], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(kappa["head.weight"], want["weight_out"], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(pr.path.path_norm(wrapped, example_input=example), pr.path.path_norm(ours, seq_len=T),
                               rtol=1e-12, atol=0)


def test_an_embedding_is_a_linear_layer_on_one_hot_tokens():
    torch.manual_seed(3)
    V, E = 7, 4
    emb_net = nn.Sequential(nn.Embedding(V, E), nn.Flatten(), nn.ReLU(), nn.Linear(3 * E, 2)).double()
    lin_net = nn.Sequential(nn.Linear(V, E, bias=False), nn.Flatten(), nn.ReLU(), nn.Linear(3 * E, 2)).double()
    with torch.no_grad():
        lin_net[0].weight.copy_(emb_net[0].weight.t())
        lin_net[3].load_state_dict(emb_net[3].state_dict())
    k_emb = pr.path.kappa(emb_net, example_input=torch.zeros(1, 3, dtype=torch.long))
    k_lin = pr.path.kappa(lin_net, example_input=torch.zeros(1, 3, V))
    torch.testing.assert_close(k_emb["0.weight"], k_lin["0.weight"].t(), rtol=1e-12, atol=0)
    torch.testing.assert_close(k_emb["3.weight"], k_lin["3.weight"], rtol=1e-12, atol=0)


def _rescale_hidden_(net, alphas):
    """Theorem 1 on Linear → ReLU → Linear → ReLU → Linear: unit j of hidden layer l by α_l[j]."""
    with torch.no_grad():
        for layer, alpha in zip((net[0], net[2]), alphas):
            layer.weight.mul_(alpha.unsqueeze(1))
            layer.bias.mul_(alpha)
        for layer, alpha in zip((net[2], net[4]), alphas):
            layer.weight.div_(alpha.unsqueeze(0))


@pytest.mark.parametrize("make", ["path-sgd", "path-sgd-unit-step", "path-adam"])
def test_path_sgd_on_a_sequential_is_invariant_to_rescaling(make):
    torch.manual_seed(4)
    a = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    b = copy.deepcopy(a)
    g = torch.Generator().manual_seed(5)
    _rescale_hidden_(b, [torch.exp(2 * torch.randn(6, generator=g, dtype=torch.float64)),
                         torch.exp(2 * torch.randn(5, generator=g, dtype=torch.float64))])
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    assert (a(x) - b(x)).abs().max() < 1e-12 and (a[0].weight - b[0].weight).abs().max() > 0.1
    start = a(x).detach()
    for net in (a, b):
        if make == "path-adam":
            opt = pr.optim.PathNormalized(torch.optim.SGD, net, example_input=x, lr=0.05)
        else:
            opt = pr.optim.PathSGD(net, lr=0.05, example_input=x,
                                   max_unit_step=0.05 if make == "path-sgd-unit-step" else None)
        for _ in range(20):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    assert (a(x) - start).abs().max() > 1e-2  # it trained
    torch.testing.assert_close(a(x), b(x), rtol=1e-9, atol=1e-10)


def test_plain_sgd_on_the_sequential_is_not_invariant():
    torch.manual_seed(4)
    a = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    b = copy.deepcopy(a)
    _rescale_hidden_(b, [torch.full((6,), 3.0, dtype=torch.float64), torch.full((5,), 0.5, dtype=torch.float64)])
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    for net in (a, b):
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        for _ in range(20):
            opt.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    assert (a(x) - b(x)).abs().max() > 1e-4


@pytest.mark.parametrize("layer, name", [
    (nn.Tanh(), "Tanh"), (nn.MaxPool1d(2), "MaxPool1d"), (nn.BatchNorm1d(4), "BatchNorm1d"),
    (nn.LayerNorm(4), "LayerNorm"), (nn.MultiheadAttention(4, 1), "MultiheadAttention"),
    (nn.LSTM(4, 4), "LSTM"), (nn.Sigmoid(), "Sigmoid")])
def test_a_layer_that_breaks_the_geometry_is_named(layer, name):
    net = nn.Sequential(nn.Linear(3, 4), layer)
    with pytest.raises(TypeError, match=rf"layer '1' \({name}\) breaks the path geometry"):
        pr.optim.PathSGD(net, lr=0.1, example_input=torch.zeros(1, 3))


def test_a_tanh_rnn_and_missing_or_misplaced_arguments_are_named():
    with pytest.raises(TypeError, match="nonlinearity='tanh'"):
        pr.path.kappa(nn.RNN(3, 4), example_input=torch.zeros(5, 1, 3))
    with pytest.raises(ValueError, match="example_input is required for a Sequential"):
        pr.optim.PathSGD(_mlp(), lr=0.1)
    with pytest.raises(ValueError, match="seq_len is for plainrnn.ReLURNN"):
        pr.optim.PathSGD(_mlp(), lr=0.1, seq_len=5, example_input=torch.zeros(1, 3))


def test_a_users_models_train_with_hooks_and_schedulers():
    """PathSGD and PathNormalized on an nn.Sequential and a wrapped nn.RNN: the loss goes down, step
    hooks run, a scheduler changes the learning rate."""
    torch.manual_seed(6)
    mlp = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    rnn = _Wrapped().float()
    xs = torch.rand(16, 8, 3)
    ys = xs[:, :2, 0].sum(1, keepdim=True).repeat(1, 2)
    for model, inputs, targets in ((mlp, x, y), (rnn, xs, ys)):
        for make in (lambda m: pr.optim.PathSGD(m, lr=0.05, example_input=inputs),
                     lambda m: pr.optim.PathNormalized(torch.optim.Adam, m, example_input=inputs, lr=1e-2)):
            net = copy.deepcopy(model)
            opt = make(net)
            calls = []
            opt.register_step_pre_hook(lambda *_: calls.append("pre"))
            opt.register_step_post_hook(lambda *_: calls.append("post"))
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.1)
            first = nn.functional.mse_loss(net(inputs), targets).item()
            for _ in range(40):
                opt.zero_grad()
                nn.functional.mse_loss(net(inputs), targets).backward()
                opt.step()
                sched.step()
            assert nn.functional.mse_loss(net(inputs), targets).item() < 0.9 * first
            assert calls[:2] == ["pre", "post"] and len(calls) == 80
            assert opt.param_groups[0]["lr"] == pytest.approx(sched.base_lrs[0] * 0.01)


def test_a_model_that_reads_h_n_gets_its_paths():
    """h_n of the squared nn.RNN is its last state: a read-out of h_n sees the same paths as one of h[:, -1]."""
    class ReadsHn(_Wrapped):
        def forward(self, x):
            _, h_n = self.rnn(x)
            return self.head(h_n[-1])

    torch.manual_seed(2)
    a = _Wrapped().double()
    b = ReadsHn().double()
    b.load_state_dict(a.state_dict())
    example = torch.zeros(1, 6, 3)
    for second_order in (False, True):
        ka = pr.path.kappa(a, example_input=example, second_order=second_order)
        kb = pr.path.kappa(b, example_input=example, second_order=second_order)
        for name in ka:
            torch.testing.assert_close(ka[name], kb[name], rtol=1e-12, atol=0)


@pytest.mark.parametrize("second_order", [False, True])
def test_an_rnn_example_batch_of_two_counts_its_paths_twice(second_order):
    """κ (κ1 and κ2) of an nn.RNN is a sum over the example batch: two identical sequences give twice
    the κ of one, so each sequence of the batch is summed (not the last one kept)."""
    torch.manual_seed(2)
    wrapped = _Wrapped(True).double()
    with torch.no_grad():
        for p in wrapped.parameters():
            p.uniform_(-0.6, 0.6)
    one = pr.path.kappa(wrapped, example_input=torch.zeros(1, 5, 3), second_order=second_order)
    two = pr.path.kappa(wrapped, example_input=torch.zeros(2, 5, 3), second_order=second_order)
    for name in one:
        torch.testing.assert_close(two[name], 2 * one[name], rtol=1e-12, atol=0, msg=name)


def test_unit_groups_of_a_users_model_name_each_layers_incoming_edges():
    """The per-unit trust region groups, for each layer of units, the parameters whose unit dimension
    indexes the same units: a layer's weight and bias (dimension 0), each layer of an nn.RNN (both
    matrices and both biases), and an embedding's columns (dimension 1)."""
    from plainrnn.path.generic import layer_unit_groups

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 3)
            self.rnn = nn.RNN(3, 4, num_layers=2, nonlinearity="relu")
            self.bare = nn.RNN(4, 4, bias=False, nonlinearity="relu")
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2, bias=False))

    assert layer_unit_groups(Net()) == [
        [("emb.weight", 1)],
        [("rnn.weight_ih_l0", 0), ("rnn.weight_hh_l0", 0), ("rnn.bias_ih_l0", 0), ("rnn.bias_hh_l0", 0)],
        [("rnn.weight_ih_l1", 0), ("rnn.weight_hh_l1", 0), ("rnn.bias_ih_l1", 0), ("rnn.bias_hh_l1", 0)],
        [("bare.weight_ih_l0", 0), ("bare.weight_hh_l0", 0)],
        [("head.1.weight", 0)]]
    assert layer_unit_groups(nn.Conv1d(2, 3, 3)) == [[("weight", 0), ("bias", 0)]]  # the model is the layer
    assert layer_unit_groups(nn.Embedding(4, 2)) == [[("weight", 1)]]
    assert layer_unit_groups(nn.RNN(2, 3, nonlinearity="relu")) == [
        [("weight_ih_l0", 0), ("weight_hh_l0", 0), ("bias_ih_l0", 0), ("bias_hh_l0", 0)]]


@pytest.mark.parametrize("pool, edges_per_output, edge_weight", [
    (nn.AvgPool2d(2), 4, 1 / 4), (nn.AvgPool2d((2, 3)), 6, 1 / 6), (nn.AvgPool2d(2, divisor_override=3), 4, 1 / 3),
    (nn.AvgPool1d(3), 3, 1 / 3)])
def test_an_average_pool_is_k_edges_of_weight_one_over_its_divisor(pool, edges_per_output, edge_weight):
    """γ² of pool → flatten → linear, with non-overlapping windows: each pooled output collects
    ``edges_per_output`` paths of squared weight edge_weight², so γ² = Σ w² · k · edge_weight² + Σ b²."""
    torch.manual_seed(4)
    shape = (1, 1, 4, 6) if isinstance(pool, nn.AvgPool2d) else (1, 1, 6)
    pooled = pool(torch.zeros(shape)).numel()
    net = nn.Sequential(pool, nn.Flatten(), nn.Linear(pooled, 2)).double()
    w, b = net[2].weight.detach(), net[2].bias.detach()
    expected = (w.square().sum() * edges_per_output * edge_weight ** 2 + b.square().sum()).double()
    torch.testing.assert_close(pr.path.path_norm(net, example_input=torch.zeros(shape)), expected, rtol=1e-12, atol=0)


def test_a_layer_no_path_reaches_gets_zero_kappa_not_an_error():
    """A model that reads the first layer's h_n of a two-layer nn.RNN: no path leaves the second layer,
    whose states then get no gradient at all; its κ1 and κ2 are zero, the first layer's are not."""
    class ReadsFirstLayer(_Wrapped):
        def forward(self, x):
            _, h_n = self.rnn(x)
            return self.head(h_n[0])

    torch.manual_seed(2)
    model = ReadsFirstLayer().double()
    kappa = pr.path.kappa(model, example_input=torch.zeros(1, 6, 3), second_order=True)
    assert all(kappa[f"rnn.{kind}_l1"].abs().max() == 0 for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    assert kappa["rnn.weight_hh_l0"].abs().min() > 0


def test_p_and_seq_len_on_a_users_model_are_named_and_its_squared_network_is_built_once(monkeypatch):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    example = torch.zeros(1, 3)
    with pytest.raises(ValueError, match=r"^p = 1\.0: lp Path-SGD \(Algorithm 1\) is defined for plainrnn\.MLP; "
                                         r"other models use p = 2$"):
        pr.path.kappa(net, p=1.0, example_input=example)
    with pytest.raises(ValueError, match=r"^seq_len is for plainrnn\.ReLURNN; for a Sequential the example_input's "
                                         r"shape sets the unrolled length$"):
        pr.path.kappa(net, seq_len=5, example_input=example)
    import plainrnn.path as path
    built = []
    real = path.SquaredNetwork
    monkeypatch.setattr(path, "SquaredNetwork", lambda *a, **k: built.append(1) or real(*a, **k))
    opt = pr.optim.PathSGD(net, lr=0.1, example_input=example)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).square().mean().backward()
        opt.step()
    assert len(built) == 1  # every κ pass of the optimizer reuses it


def test_example_input_errors_word_for_word():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError) as caught:
        pr.path.kappa(net)
    assert str(caught.value) == ("example_input is required for a Sequential: pass one batch shaped like the real "
                                 "input (the path geometry of plainrnn.ReLURNN and plainrnn.MLP needs none)")
    with pytest.raises(TypeError) as caught:
        pr.path.kappa(net, example_input=[[0.0, 0.0, 0.0]])
    assert str(caught.value) == ("example_input must be a tensor, a tuple of the forward's arguments or a dict of its "
                                 "keyword arguments, got list")


def test_a_bare_relu_rnn_is_the_relurnn_reading_every_step():
    """nn.RNN as the whole model: γ² sums its output at every step, which is plainrnn.ReLURNN with
    output="all" and an identity read-out (its squared read-out is the identity too). κ1 and κ2 of the
    recurrent weights must agree with our Hessian-checked ReLURNN (biases off: nn.RNN has two)."""
    torch.manual_seed(0)
    rnn = nn.RNN(2, 3, nonlinearity="relu", batch_first=True, bias=False).double()
    ours = pr.ReLURNN(2, 3, 3, output="all").double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(-0.6, 0.6)
        ours.weight_ih_l0.copy_(rnn.weight_ih_l0)
        ours.weight_hh_l0.copy_(rnn.weight_hh_l0)
        ours.bias_l0.zero_()
        ours.weight_out.copy_(torch.eye(3))
        ours.bias_out.zero_()
    for second_order in (False, True):
        got = pr.path.kappa(rnn, second_order=second_order, example_input=torch.zeros(1, 5, 2, dtype=torch.float64))
        expected = pr.path.kappa(ours, seq_len=5, second_order=second_order)
        for name in ("weight_ih_l0", "weight_hh_l0"):
            torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-14)


def test_layers_nested_two_deep_are_squared_where_they_sit():
    """A pool inside a Sequential inside a Sequential: κ as for the same layers flat."""
    def build(nested):
        torch.manual_seed(0)
        pool = [nn.AvgPool1d(2), nn.ReLU()]  # nested, the pool is "2.0": "0" would be the first Linear
        middle = [nn.Sequential(*pool)] if nested else pool
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), *middle, nn.Linear(2, 2)).double()
    x = torch.zeros(1, 3, dtype=torch.float64)
    flat, nested = pr.path.kappa(build(False), example_input=x), pr.path.kappa(build(True), example_input=x)
    assert len(flat) == len(nested) == 4  # the two Linear layers' weights and biases, in the same order
    for a, b in zip(flat.values(), nested.values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
