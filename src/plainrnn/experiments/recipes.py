"""The papers' experiments as sweeps: `plainrnn reproduce NAME` runs one (with --set to shorten it).

Each recipe is a base config (the paper's protocol) and a grid; selection on validation and the
test report come from :mod:`plainrnn.experiments.sweep`. Budgets (steps) are ours: the papers give
epochs or curves, not step counts, so pass ``--set steps=N`` to match your compute.
"""
from __future__ import annotations

RECIPES: dict[str, dict] = {
    # 2016 paper, Table 2 (adding column) and Fig. 3: IRNN (identity init, SGD) vs RNN-Path, one layer of
    # 100 units, non-recurrent weights U[-0.01, 0.01], lr grid {1e-2, 1e-3, 1e-4}, 10 initializations.
    # The paper states no clipping threshold; gradient-norm clipping at 1 is what lets every optimizer
    # here leave the 0.167 plateau without blowing up (docs/results.md).
    "table2-adding": dict(
        base=dict(task="adding", seq_len=100, hidden=100, init="identity", input_scale=0.01, batch_size=50,
                  clip=1.0, steps=100_000, eval_every=1000),
        grid=dict(optimizer=["sgd", "path-sgd"], lr=["1e-2", "1e-3", "1e-4"]), seeds=10,
        paper="test MSE×100 at T=100/400/750: IRNN 0/16.7/16.7, RNN-Path 0/0/0"),
    # 2016 paper, Table 2 (sMNIST column).
    "table2-smnist": dict(
        base=dict(task="smnist", hidden=100, init="identity", input_scale=0.01, batch_size=50, clip=1.0,
                  steps=200_000, eval_every=5000),
        grid=dict(optimizer=["sgd", "path-sgd"], lr=["1e-2", "1e-3", "1e-4"]), seeds=10,
        paper="test error %: IRNN 5.0, RNN-Path 3.1"),
    # 2016 paper, Table 3: PTB-c (and text8 with --set task=text8 seq_len=180), one layer of 2048 units.
    "table3-ptbc": dict(
        base=dict(task="ptb-char", seq_len=50, hidden=2048, init="uniform", init_scale=0.01, input_scale=0.2,
                  batch_size=128, steps=100_000, eval_every=2000),
        grid=dict(optimizer=["adam", "path-adam"], lr=["1e-3", "5e-4", "1e-4"]), seeds=1,
        paper="test BPC PTB-c / text8: RNN-ReLU 1.55/1.65, RNN-tanh 1.58/1.70, RNN-Path 1.47/1.58, LSTM 1.41/1.52"),
    # 2017 paper, Tables 1 and 2: spectral margins on sequential (and, with --set task=pmnist, permuted) MNIST.
    "orth-table1": dict(
        base=dict(task="smnist", model="spectral", hidden=128, nonlinearity="relu", init="orthogonal",
                  optimizer="rmsprop", lr=1e-4, orth_lr=1e-6, weight_decay=1e-4, clip=100.0, batch_size=50,
                  steps=200_000, eval_every=5000),
        grid=dict(margin=["0", "0.001", "0.01", "0.1", "1", "none"]), seeds=1,
        paper="sMNIST / pMNIST accuracy %, best 94.10 / 91.44 at m = 0.1; LSTM 97.30 / 92.62"),
    # 2017 paper, Fig. 1: the copy task at T=200 with spectral margins.
    "orth-copy": dict(
        base=dict(task="copy", seq_len=200, model="spectral", hidden=128, nonlinearity="none", init="orthogonal",
                  optimizer="rmsprop", lr=1e-4, orth_lr=1e-6, weight_decay=1e-4, clip=100.0, batch_size=50,
                  steps=20_000, eval_every=500),
        grid=dict(margin=["0", "0.001", "0.01", "0.1", "1", "none"]), seeds=1,
        paper="copy accuracy curves (Fig. 1); converges for small margins"),
}
