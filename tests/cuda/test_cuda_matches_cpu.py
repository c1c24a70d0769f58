"""The CUDA side, against the CPU in float64: our relu/tanh recurrence (and torch's on the GPU), κ (κ1,
κ2; ours and a user's model), the Path-SGD,
PathNormalized, InvariantAdam and spectral steps, and a whole `plainrnn train --device cuda` run.
Skipped where torch sees no GPU; tools/gpu_check.sh runs them on a lent GPU (docs/performance.md)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plainrnn as pr
from plainrnn.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")


def _rnn():
    torch.manual_seed(0)
    model = pr.ReLURNN(3, 6, 2, num_layers=2).double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.5, 0.5)
    return model


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 7, 3, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
@pytest.mark.parametrize("recurrence", ["plainrnn", "torch"])
def test_the_recurrence_on_cuda_equals_ours_on_the_cpu(nonlinearity, recurrence):
    """Our loops run on the GPU as eager torch ops (the C++ loops are the CPU's); torch's kernel there
    is cuDNN's. Both against our CPU route, values and every gradient."""
    torch.manual_seed(0)
    cpu = pr.ReLURNN(3, 6, 2, num_layers=2, nonlinearity=nonlinearity).double()
    with torch.no_grad():
        for p in cpu.parameters():
            p.uniform_(-0.5, 0.5)
    gpu = pr.ReLURNN(3, 6, 2, num_layers=2, nonlinearity=nonlinearity, recurrence=recurrence).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x, _ = _batch()
    a, b = cpu(x), gpu(x.cuda())
    torch.testing.assert_close(b.cpu(), a, rtol=1e-12, atol=1e-12)
    for (name, _), ga, gb in zip(cpu.named_parameters(), torch.autograd.grad(a.square().sum(), list(cpu.parameters())),
                                 torch.autograd.grad(b.square().sum(), list(gpu.parameters()))):
        torch.testing.assert_close(gb.cpu(), ga, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("second_order", [False, True])
def test_kappa_of_a_relu_rnn(second_order):
    cpu = _rnn()
    gpu = copy.deepcopy(cpu).cuda()
    a = pr.path.kappa(cpu, seq_len=7, second_order=second_order)
    b = pr.path.kappa(gpu, seq_len=7, second_order=second_order)
    for name in a:
        assert b[name].device.type == "cuda"
        torch.testing.assert_close(b[name].cpu(), a[name], rtol=1e-12, atol=1e-300)


def test_kappa_of_a_functional_cnn_with_a_final_log_softmax():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2 * 3 * 3, 3)

        def forward(self, x):
            return F.log_softmax(self.fc(torch.flatten(F.avg_pool2d(F.relu(self.conv(x)), 2), 1)), dim=1)

    torch.manual_seed(0)
    cpu = Net().double()
    gpu = copy.deepcopy(cpu).cuda()
    a = pr.path.kappa(cpu, example_input=torch.zeros(1, 1, 8, 8))
    b = pr.path.kappa(gpu, example_input=torch.zeros(1, 1, 8, 8, device="cuda"))
    for name in a:
        torch.testing.assert_close(b[name].cpu(), a[name], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("make", [
    lambda m: pr.optim.PathSGD(m, lr=0.05, seq_len=7, second_order=True, max_unit_step=0.05),
    lambda m: pr.optim.PathSGD(m, lr=0.05, seq_len=7, max_path_growth=0.05),
    lambda m: pr.optim.PathNormalized(torch.optim.Adam, m, seq_len=7, lr=1e-3),
    lambda m: pr.optim.InvariantAdam(m, lr=1e-4, seq_len=7, max_unit_step=0.05)],
    ids=["path-sgd-unit-step", "path-sgd-backtracking", "path-adam", "invariant-adam"])
def test_path_optimizer_steps(make):
    cpu = _rnn()
    gpu = copy.deepcopy(cpu).cuda()
    opts = make(cpu), make(gpu)
    for seed in range(5):
        x, y = _batch(seed)
        for model, opt, device in ((cpu, opts[0], "cpu"), (gpu, opts[1], "cuda")):
            opt.zero_grad()
            F.mse_loss(model(x.to(device)), y.to(device)).backward()
            opt.step()
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-10, atol=1e-12)


def test_path_sgd_on_an_mlp_takes_the_unfused_route_on_cuda_and_agrees():
    torch.manual_seed(0)
    cpu = pr.MLP(5, [7, 6], 3).double()
    gpu = copy.deepcopy(cpu).cuda()
    opts = pr.optim.PathSGD(cpu, lr=0.05, fused=False), pr.optim.PathSGD(gpu, lr=0.05)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(3, (16,), generator=g)
    for model, opt, device in ((cpu, opts[0], "cpu"), (gpu, opts[1], "cuda")):
        for _ in range(4):
            opt.zero_grad()
            F.cross_entropy(model(x.to(device)), y.to(device)).backward()
            opt.step()
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-10, atol=1e-12)


def test_the_spectral_step_and_spectral_under_adam():
    torch.manual_seed(0)
    cpu = pr.SpectralRNN(3, 8, 2, margin=0.1).double()
    gpu = copy.deepcopy(cpu).cuda()
    opts = (pr.optim.spectral_optimizer(cpu, lr=1e-3, orth_lr=1e-2),
            pr.optim.spectral_optimizer(gpu, lr=1e-3, orth_lr=1e-2))
    for seed in range(3):
        x, y = _batch(seed)
        for model, opt, device in ((cpu, opts[0], "cpu"), (gpu, opts[1], "cuda")):
            opt.zero_grad()
            F.mse_loss(model(x.to(device)), y.to(device)).backward()
            opt.step()
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-9, atol=1e-11)
    rnn = pr.stiefel.spectral_(nn.RNN(3, 8).double().cuda(), "weight_hh_l0", margin=0.1)
    opt = torch.optim.Adam(rnn.parameters(), lr=0.05)
    for seed in range(20):
        x, _ = _batch(seed)
        opt.zero_grad()
        rnn(x.cuda().transpose(0, 1))[0].square().mean().backward()
        opt.step()
    s = torch.linalg.svdvals(rnn.weight_hh_l0.detach())
    assert s.min() >= 0.9 - 1e-9 and s.max() <= 1.1 + 1e-9


def test_a_whole_training_run_on_cuda(tmp_path):
    for optimizer in ("path-sgd", "invariant-adam"):
        assert main(["train", "--device", "cuda", "--task", "adding", "--seq-len", "20", "--hidden", "16",
                     "--steps", "40", "--eval-every", "20", "--optimizer", optimizer, "--lr", "1e-3",
                     "--out", str(tmp_path), "--name", optimizer, "--quiet"]) == 0
