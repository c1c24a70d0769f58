"""Models written the way public PyTorch examples write them: functional ops, a final log_softmax,
tied weights, ``forward(input, hidden)``. Each is either given the exact path geometry (checked against
oracles that do not use the squared pass: explicit path sums and autograd Hessians) or refused before
any step, in one line naming the op and the line of the forward."""
import itertools
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plainrnn as pr
from plainrnn.path.generic import SquaredNetwork

def _randomize(model, seed=0, low=-1.0, high=1.0):
    model.double()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(low, high)
    return model


class FunctionalCNN(nn.Module):
    """pytorch/examples' MNIST net, with average pooling: conv → F.relu → conv → F.relu → F.avg_pool2d →
    dropout → torch.flatten → fc → F.relu → dropout → fc → F.log_softmax."""

    def __init__(self, log_softmax=True, functional_pool=True):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 2, 3, 1), nn.Conv2d(2, 3, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(3 * 2 * 2, 4), nn.Linear(4, 3)
        self.pool = None if functional_pool else nn.AvgPool2d(2)
        self.log_softmax = log_softmax

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.avg_pool2d(x, 2) if self.pool is None else self.pool(x)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1) if self.log_softmax else x


class WordLM(nn.Module):
    """pytorch/examples' word_language_model with RNN_RELU: encoder, dropout, nn.RNN, decoder (tied to the
    encoder when ``tie``), forward(input, hidden) → (log_softmax of the decoded output, hidden)."""

    def __init__(self, ntoken=5, ninp=3, nlayers=1, tie=True, log_softmax=True):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.RNN(ninp, ninp, nlayers, nonlinearity="relu")
        self.decoder = nn.Linear(ninp, ntoken)
        if tie:
            self.decoder.weight = self.encoder.weight
        self.nlayers, self.nhid, self.log_softmax = nlayers, ninp, log_softmax

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return (F.log_softmax(decoded, dim=1) if self.log_softmax else decoded), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def _half_hessian_diagonal(f, params):
    """½ diag ∂²f/∂p² entry by entry (autograd), for every tensor in ``params``."""
    flat = torch.cat([p.detach().reshape(-1) for p in params]).requires_grad_(True)
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]

    def unflat(v):
        return [chunk.reshape(shape) for chunk, shape in zip(torch.split(v, sizes), shapes)]

    hessian = torch.autograd.functional.hessian(lambda v: f(*unflat(v)), flat)
    return unflat(0.5 * hessian.diagonal())


def test_a_final_log_softmax_gives_the_geometry_of_the_logits():
    """The CNN that ends in F.log_softmax gets exactly the κ of the same CNN returning logits, which the
    nn.AvgPool2d variant confirms (the module and the functional pool give the same κ); γ² > 0, κ ≥ 0."""
    x = torch.zeros(1, 1, 8, 8)
    logits = _randomize(FunctionalCNN(log_softmax=False, functional_pool=False))
    with_softmax = FunctionalCNN(log_softmax=True, functional_pool=True).double()
    with_softmax.load_state_dict(logits.state_dict())
    expected, got = pr.path.kappa(logits, example_input=x), pr.path.kappa(with_softmax, example_input=x)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-13, atol=0)
        assert bool((got[name] >= 0).all())
    assert pr.path.path_norm(with_softmax, example_input=x) > 0


def test_functional_cnn_kappa_matches_the_hessian_of_its_explicit_path_sum():
    """A tiny functional CNN (conv1d → F.relu → F.avg_pool1d → flatten → linear → log_softmax) against
    ½ diag of the Hessian of γ² written as dense path matrices by hand (no squared pass)."""
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv1d(1, 2, 2), nn.Linear(2 * 2, 2)

        def forward(self, x):
            x = F.avg_pool1d(F.relu(self.conv(x)), 2)
            return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=-1)

    net = _randomize(Tiny(), seed=3)
    L = 5  # conv (kernel 2) → 4 positions, pool 2 → 2

    def gamma2(cw, cb, fw, fb):
        a = torch.stack([torch.stack([(cw[c, 0] ** 2).sum() + cb[c] ** 2 for _ in range(L - 1)]) for c in range(2)])
        pooled = torch.stack([torch.stack([(a[c, 2 * u] + a[c, 2 * u + 1]) * 0.5 ** 2 for u in range(2)])
                              for c in range(2)]).reshape(-1)
        return (fw ** 2 @ pooled + fb ** 2).sum()

    params = list(net.parameters())
    expected = _half_hessian_diagonal(gamma2, params)
    got = pr.path.kappa(net, example_input=torch.zeros(1, 1, L))
    for (name, _), want in zip(net.named_parameters(), expected):
        torch.testing.assert_close(got[name], want, rtol=1e-12, atol=1e-15, msg=name)


@pytest.mark.parametrize("count_include_pad, ceil_mode, padding", [(False, False, 1), (True, True, 0),
                                                                   (False, True, 1), (True, False, 1)])
@pytest.mark.parametrize("functional", [False, True])
def test_each_average_pool_window_is_divided_by_its_own_divisor(count_include_pad, ceil_mode, padding, functional):
    """avg pool (k = 3, stride 2) → linear on a length-6 input: each output u averages its window's real
    inputs with torch's divisor d_u, so γ² = Σ_o b_o² + Σ_{o,u} w_ou² · n_u / d_u², n_u the window's real
    inputs. The divisors are read off torch's pooling of one-hot inputs, not from our code."""
    kwargs = dict(kernel_size=3, stride=2, padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    L = 6
    eye = torch.eye(L, dtype=torch.float64).reshape(L, 1, L)
    edges = F.avg_pool1d(eye, **kwargs).reshape(L, -1).t()  # edges[u, i]: weight of input i in output u
    pool = nn.AvgPool1d(**kwargs)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(edges.shape[0], 2)

        def forward(self, x):
            pooled = F.avg_pool1d(x, **kwargs) if functional else pool(x)
            return self.fc(pooled.flatten(1))

    net = _randomize(Net(), seed=5)
    w, b = net.fc.weight.detach(), net.fc.bias.detach()
    expected = (w.square() @ edges.square().sum(1)).sum() + b.square().sum()
    torch.testing.assert_close(pr.path.path_norm(net, example_input=torch.zeros(1, 1, L)), expected, rtol=1e-13, atol=0)


def test_adaptive_average_pooling_is_its_windows_average():
    """AdaptiveAvgPool2d((2, 2)) on a 4 × 4 map is AvgPool2d(2): the same κ."""
    def net(pool):
        torch.manual_seed(0)
        return _randomize(nn.Sequential(nn.Conv2d(1, 2, 1), pool, nn.Flatten(), nn.Linear(8, 2)), seed=1)
    x = torch.zeros(1, 1, 4, 4)
    a = pr.path.kappa(net(nn.AdaptiveAvgPool2d((2, 2))), example_input=x)
    b = pr.path.kappa(net(nn.AvgPool2d(2)), example_input=x)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-13, atol=0)


def test_constants_and_signs_are_squared_edges():
    """y = W2 relu(0.5 · W1 x − 3 + x_sum/4) − b: edge weights 0.5, a bias 3 from the bias node, 1/4 on a
    sum node, a bias of sign −1. γ² written by hand: Σ_o [b_o² + Σ_h W2_oh² (0.25 Σ_i W1_hi² + 9 + n/16)]."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)
            self.b = nn.Parameter(torch.ones(2))

        def forward(self, x):
            h = F.relu(0.5 * self.fc1(x) - 3 + x.sum(-1, keepdim=True) / 4)
            return self.fc2(h) - self.b

    net = _randomize(Net(), seed=2)
    W1, W2, b = (p.detach() for p in (net.fc1.weight, net.fc2.weight, net.b))
    hidden = 0.25 * W1.square().sum(1) + 9 + 3 / 16
    expected = (W2.square() @ hidden).sum() + b.square().sum()
    torch.testing.assert_close(pr.path.path_norm(net, example_input=torch.zeros(1, 3)), expected, rtol=1e-13, atol=0)


def _explicit_lm_gamma2(enc, w_ih, w_hh, b_ih, b_hh, dec, dec_b, T):
    """γ² of the word LM's squared network written out: every position receives Σ_v E[v]², then the linear
    recurrence from a_0 = 0, then the decoder at every step."""
    drive = enc.square().sum(0) @ w_ih.square().t() + b_ih.square() + b_hh.square()
    a, total = torch.zeros_like(drive), 0
    for _ in range(T):
        a = drive + a @ w_hh.square().t()
        total = total + (dec.square() @ a + dec_b.square()).sum()
    return total


def test_tied_weights_get_their_exact_kappa1_and_second_order_is_refused():
    """The tied LM (decoder = encoder, forward(input, hidden), log_softmax): κ1 = ∂γ²/∂q against the
    explicit squared LM (autograd in q); with second_order=True the tied matrix lies twice on paths: refused."""
    T, B = 4, 2
    lm = _randomize(WordLM(tie=True), seed=4, low=-0.7, high=0.7)
    tokens, hidden = torch.zeros(T, B, dtype=torch.long), lm.init_hidden(B)
    got = pr.path.kappa(lm, example_input=(tokens, hidden))
    q = {name: p.detach().square().requires_grad_(True) for name, p in lm.named_parameters()}
    root = {name: t.sqrt() for name, t in q.items()}  # the explicit γ² squares again: γ²(√q)
    gamma2 = B * _explicit_lm_gamma2(root["encoder.weight"], root["rnn.weight_ih_l0"], root["rnn.weight_hh_l0"],
                                     root["rnn.bias_ih_l0"], root["rnn.bias_hh_l0"], root["encoder.weight"],
                                     root["decoder.bias"], T)
    grads = torch.autograd.grad(gamma2, list(q.values()))
    for (name, _), want in zip(q.items(), grads):
        torch.testing.assert_close(got[name], want, rtol=1e-12, atol=1e-15, msg=name)
    with pytest.raises(TypeError) as caught:
        pr.optim.PathSGD(lm, lr=0.1, second_order=True, example_input=(tokens, hidden))
    assert str(caught.value) == ("parameter 'encoder.weight' is read at 2 places of the forward (tied or reused weights), "
                                 "so it lies twice on some paths and its κ2 is not computed; use second_order=False "
                                 "(κ1, exact)")


def test_untied_lm_second_order_matches_the_explicit_hessian():
    """Untied, the LM's κ1 + κ2 is exact: ½ diag of the Hessian of the explicit γ² on every parameter."""
    T, B = 3, 1
    lm = _randomize(WordLM(tie=False), seed=6, low=-0.7, high=0.7)
    params = list(lm.parameters())
    names = [name for name, _ in lm.named_parameters()]
    expected = _half_hessian_diagonal(
        lambda enc, w_ih, w_hh, b_ih, b_hh, dec, dec_b: B * _explicit_lm_gamma2(enc, w_ih, w_hh, b_ih, b_hh, dec,
                                                                                 dec_b, T), params)
    got = pr.path.kappa(lm, example_input=(torch.zeros(T, B, dtype=torch.long), lm.init_hidden(B)),
                        second_order=True)
    for name, want in zip(names, expected):
        torch.testing.assert_close(got[name], want, rtol=1e-11, atol=1e-14, msg=name)


def test_a_layer_called_twice_is_refused_with_second_order():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(F.relu(self.fc(x)))

    pr.path.kappa(Twice(), example_input=torch.zeros(1, 3))  # κ1 is defined
    with pytest.raises(TypeError, match=r"^parameter 'fc.weight' is read at 2 places"):
        pr.path.kappa(Twice(), example_input=torch.zeros(1, 3), second_order=True)




@pytest.mark.parametrize("body, op, why", [
    (lambda self, x: F.max_pool1d(self.fc(x), 2), "max_pool1d", "is not a sum of path products (the largest input of a window is not a sum of paths): use average pooling"),
    (lambda self, x: F.layer_norm(self.fc(x), (4,)), "layer_norm", "is not a sum of path products (it divides by a statistic"),
    (lambda self, x: torch.tanh(self.fc(x)), "tanh", "is not a sum of path products (the units of a ReLU network are piecewise linear): use relu"),
    (lambda self, x: self.fc(x) * self.fc(x), "mul", "multiplies two activations"),
    (lambda self, x: x @ (self.fc.weight.t() @ self.fc.weight), "matmul", "computes a weight from the parameter fc.weight"),
    (lambda self, x: self.fc(x).data, ".data", "leaves autograd's graph"),
    (lambda self, x: F.log_softmax(self.fc(x), -1).sum(-1, keepdim=True), "sum", "reads the output of a log_softmax"),
])
def test_an_op_outside_the_geometry_is_refused_with_its_line(body, op, why):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        forward = body

    with pytest.raises(TypeError) as caught:
        pr.optim.PathSGD(Net(), lr=0.1, example_input=torch.zeros(1, 1, 4))
    message = str(caught.value)
    assert re.match(rf"^{re.escape(op)} at \S*test_users_models\.py:\d+ {re.escape(why)}", message), message
    assert message.endswith("(docs/own_model.md)") and "\n" not in message


def test_the_refusal_names_the_users_line_word_for_word():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.max_pool1d(self.fc(x), 2)  # THE LINE

    line = next(i for i, text in enumerate(open(__file__), 1) if text.rstrip().endswith("# THE LINE"))
    with pytest.raises(TypeError) as caught:
        pr.path.kappa(Net(), example_input=torch.zeros(1, 1, 4))
    assert str(caught.value) == (
        f"max_pool1d at tests/path/test_users_models.py:{line} is not a sum of path products (the largest input of "
        "a window is not a sum of paths): use average pooling; the path geometry "
        "accepts linear maps and convolutions (F.linear, conv, matmul with a parameter), ReLU, average pooling, "
        "dropout, embedding, sums and means, adding or scaling by constants, reshaping, indexing and concatenation, "
        "nn.RNN(relu), and a final log_softmax/softmax (docs/own_model.md)")


def test_a_parametrized_rnn_is_refused_in_one_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = pr.stiefel.spectral_(nn.RNN(2, 4, nonlinearity="relu", batch_first=True), "weight_hh_l0", 0.1)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    with pytest.raises(TypeError) as caught:
        pr.optim.PathSGD(Net(), lr=0.1, example_input=torch.zeros(1, 5, 2))
    assert str(caught.value) == (
        "layer 'rnn' (RNN) is parametrized (weight_hh_l0 computed from other tensors): the path geometry needs each "
        "weight as a parameter of its own, since κ of a computed weight is not the squared network's; remove the "
        "parametrization, or train it with plainrnn.optim.spectral_optimizer or a torch optimizer")


def test_a_wrong_shape_example_input_says_so():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError) as caught:
        pr.path.kappa(net, example_input=torch.zeros(2, 5))
    assert str(caught.value) == ("example_input of shape (2, 5) does not fit the forward of Sequential: mat1 and mat2 "
                                 "shapes cannot be multiplied (2x5 and 3x4)")


def test_a_zero_network_is_an_error_not_a_step():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    with pytest.raises(ArithmeticError, match=r"gave γ² = 0: no path carries weight"):
        pr.optim.PathSGD(net, lr=0.1, example_input=torch.zeros(1, 3))


@pytest.mark.parametrize("make, batch_dim", [
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), 0),
    (lambda: WordLM(tie=False), 1)])  # (T, B) tokens: the batch is dimension 1
def test_the_optimizer_takes_one_example_and_gets_the_whole_batchs_kappa(make, batch_dim):
    model = _randomize(make(), seed=7, low=-0.7, high=0.7)
    if isinstance(model, WordLM):
        example = (torch.zeros(4, 6, dtype=torch.long), model.init_hidden(6))
    else:
        example = torch.zeros(6, 3)
    whole = SquaredNetwork(model, example)
    cheap = SquaredNetwork(model, example, one_example=True)
    assert cheap.factor == 6 and whole.factor == 1
    shape = (example[0] if isinstance(example, tuple) else example).shape
    assert cheap.args[0].shape[batch_dim] == 1 and cheap.args[0].shape[1 - batch_dim] == shape[1 - batch_dim]
    (k_whole, g_whole), (k_cheap, g_cheap) = whole.kappa(model), cheap.kappa(model)
    torch.testing.assert_close(g_cheap, g_whole, rtol=1e-12, atol=0)
    for name in k_whole:
        torch.testing.assert_close(k_cheap[name], k_whole[name], rtol=1e-12, atol=0)


def test_the_tied_lm_trains_under_path_sgd_and_path_adam():
    """The smallest change a user makes to the LM example's loop: the loss goes down, nothing is NaN."""
    torch.manual_seed(0)
    lm = WordLM(ntoken=7, ninp=6, tie=True).double().eval()  # dropout off: the loss is then a clean signal
    data = torch.randint(0, 7, (9, 4))
    for make in (lambda: pr.optim.PathSGD(lm, lr=0.05, example_input=(data[:-1], lm.init_hidden(4))),
                 lambda: pr.optim.PathNormalized(torch.optim.Adam, lm, lr=1e-2,
                                                 example_input=(data[:-1], lm.init_hidden(4)))):
        opt = make()
        losses = []
        for _ in range(30):
            opt.zero_grad()
            output, _ = lm(data[:-1], lm.init_hidden(4))
            loss = F.nll_loss(output, data[1:].reshape(-1))
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(v == v for v in losses) and sum(losses[-5:]) < sum(losses[:5]), losses


@pytest.mark.parametrize("count_include_pad, ceil_mode", [(False, True), (True, True), (False, False)])
def test_a_2d_average_pool_with_padding_and_partial_windows_divides_each_window_by_its_own_divisor(
        count_include_pad, ceil_mode):
    """As the 1-d case, on a 5 × 5 map with kernel 2, stride 2, padding 1: torch's own pooling of one-hot
    maps gives every edge weight 1/d_u; γ² = Σ_o b_o² + Σ_{o,u} w_ou² Σ_i edges[u, i]²."""
    kwargs = dict(kernel_size=2, stride=2, padding=1, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    n = 25
    edges = F.avg_pool2d(torch.eye(n, dtype=torch.float64).reshape(n, 1, 5, 5), **kwargs).reshape(n, -1).t()
    net = _randomize(nn.Sequential(nn.AvgPool2d(**kwargs), nn.Flatten(), nn.Linear(edges.shape[0], 2)), seed=8)
    w, b = net[2].weight.detach(), net[2].bias.detach()
    expected = (w.square() @ edges.square().sum(1)).sum() + b.square().sum()
    torch.testing.assert_close(pr.path.path_norm(net, example_input=torch.zeros(1, 1, 5, 5)), expected,
                               rtol=1e-13, atol=0)


def test_a_final_log_softmax_module_is_the_functional_one():
    """nn.LogSoftmax at the end of an nn.Sequential: the geometry of the logits, as F.log_softmax."""
    torch.manual_seed(0)
    logits = _randomize(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    with_module = nn.Sequential(*logits, nn.LogSoftmax(dim=-1))
    a = pr.path.kappa(logits, example_input=torch.zeros(1, 3))
    b = pr.path.kappa(with_module, example_input=torch.zeros(1, 3))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-13, atol=0)
