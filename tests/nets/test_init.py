import pytest
import torch

import plainrnn as pr
from plainrnn.nets import init_recurrent_, recurrent_matrix


def test_identity_and_orthogonal():
    torch.testing.assert_close(recurrent_matrix("identity", 4), torch.eye(4))
    Q = recurrent_matrix("orthogonal", 50, dtype=torch.float64)
    torch.testing.assert_close(Q.t() @ Q, torch.eye(50, dtype=torch.float64), atol=1e-12, rtol=0)


def test_uniform_range_and_glorot_scale():
    g = torch.Generator().manual_seed(1)
    U = recurrent_matrix("uniform", 200, a=0.3, generator=g)
    assert U.abs().max() <= 0.3 and U.abs().max() > 0.29
    G = recurrent_matrix("glorot", 400, generator=g, dtype=torch.float64)
    assert abs(G.var().item() - 1 / 400) < 0.05 / 400


def test_nprnn_is_positive_definite_with_top_eigenvalue_one():
    W = recurrent_matrix("nprnn", 60, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(W, W.t())
    eig = torch.linalg.eigvalsh(W)
    assert eig.min() > 0
    assert abs(eig.max().item() - 1.0) < 1e-12


def test_seeded_and_applied_to_every_recurrent_model():
    a = recurrent_matrix("orthogonal", 8, generator=torch.Generator().manual_seed(3))
    b = recurrent_matrix("orthogonal", 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    rnn = pr.ReLURNN(2, 8, 1, num_layers=2)
    init_recurrent_(rnn, "nprnn")
    assert abs(torch.linalg.eigvalsh(rnn.recurrent_weight(1).double()).max().item() - 1) < 1e-5
    lstm = pr.LSTM(2, 8, 1)
    init_recurrent_(lstm, "identity")
    torch.testing.assert_close(lstm.recurrent_weight(0), torch.eye(8).repeat(4, 1))
    with pytest.raises(ValueError, match="unknown recurrent init"):
        recurrent_matrix("zeros", 3)
