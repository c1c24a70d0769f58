"""path_norm and the lp scales against brute-force enumeration of every path."""
import math

import pytest
import torch

import plainrnn as pr
from oracles import enumerate_paths, mlp_paths, unrolled_rnn_edges


@pytest.mark.parametrize("layers,output,bias", [(1, "last", True), (2, "all", True), (2, "last", False)])
def test_rnn_path_norm_equals_enumeration(layers, output, bias):
    model = pr.ReLURNN(2, 2, 2, num_layers=layers, output=output, bias=bias).double()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
    T = 3
    edges, sources = unrolled_rnn_edges(model, T)
    paths = enumerate_paths(edges, sources)
    brute = sum(math.prod(edges[i][2] ** 2 for i in path) for path in paths)
    assert len(paths) > 20
    assert math.isclose(pr.path.path_norm(model, seq_len=T).item(), brute, rel_tol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_mlp_lp_scales_equal_enumeration(p):
    model = pr.MLP(2, [3, 2], 2).double()
    with torch.no_grad():
        for prm in model.parameters():
            prm.uniform_(-1, 1)
    edges, paths = mlp_paths(model)
    total = sum(math.prod(abs(edges[i][2]) ** p for i in path) for path in paths)
    assert math.isclose(pr.path.path_norm(model, p=p).item(), total, rel_tol=1e-12)
    # γ_p(w, e) = (Σ_{paths ∋ e} Π_{e' ≠ e} |w_e'|^p)^{2/p} (Algorithm 1, line 7).
    through = [0.0] * len(edges)
    for path in paths:
        for i in path:
            through[i] += math.prod(abs(edges[j][2]) ** p for j in path if j != i)
    scales = pr.path.kappa(model, p=p)
    for i, (_, _, _, (name, index)) in enumerate(edges):
        assert math.isclose(scales[name][index].item(), through[i] ** (2 / p), rel_tol=1e-10), (name, index)


def test_unsupported_model_and_missing_seq_len():
    with pytest.raises(ValueError, match="example_input is required for a Linear"):
        pr.path.kappa(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"layer '1' \(Tanh\) breaks the path geometry"):
        pr.path.kappa(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh()), example_input=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="seq_len"):
        pr.path.kappa(pr.ReLURNN(2, 3, 1))
    with pytest.raises(ValueError, match="lp Path-SGD"):
        pr.path.kappa(pr.ReLURNN(2, 3, 1), seq_len=3, p=3)


def test_the_eager_sweep_reuses_one_buffer_per_layer_and_renews_it_when_the_layer_changes():
    """|W|^p goes into a persistent buffer (a fresh 64 MB tensor per step costs page faults): the
    same tensor comes back while shape and dtype hold, a new one when either changes."""
    from plainrnn.path.mlp import _workspace_buffer
    workspace, like = {}, torch.zeros(3, 4)
    assert _workspace_buffer(None, 0, like) is None
    buf = _workspace_buffer(workspace, 0, like)
    assert buf.shape == (3, 4) and buf.dtype == torch.float32 and buf.is_contiguous() and workspace[0] is buf
    assert _workspace_buffer(workspace, 0, torch.ones(3, 4)) is buf
    assert _workspace_buffer(workspace, 1, like) is not buf  # another layer, another buffer
    wider = _workspace_buffer(workspace, 0, like.double())
    assert wider is not buf and wider.dtype == torch.float64 and workspace[0] is wider
    taller = _workspace_buffer(workspace, 0, torch.zeros(5, 4, dtype=torch.float64))
    assert taller.shape == (5, 4) and taller is not wider
    assert _workspace_buffer({}, 0, torch.zeros(4, 3).t()).is_contiguous()  # a transposed layer gets a dense buffer
