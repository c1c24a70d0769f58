"""The papers' experiments as sweeps: `plainrnn reproduce NAME` runs one (with --set to shorten it).

Each recipe is a base config (the paper's protocol) and a grid (or an explicit list of settings);
selection on validation and the test report come from :mod:`plainrnn.experiments.sweep`. A recipe
may name budgets: ``full`` is the paper's protocol, ``cpu`` the reduced one that docs/results.md
shows (``plainrnn reproduce NAME --budget cpu``). Steps are ours where the papers give epochs.
"""
from __future__ import annotations

# The 2015 paper's MLP runs (§5): 784-4000-4000-10, batch 100, balanced N(0, 1/fan-in) or unbalanced
# init, step 10^-α picked on a 10k validation split, then training on the full training set. An epoch
# of the 60k set is 600 steps. The step sizes below are the α our 500-step probe picked
# (`plainrnn reproduce fig2-mlp-probe`; docs/results.md): the one that reached the lowest validation
# error fastest. Path-SGD's η is relative to γ²(w0) (PathSGD's lr_scale), so it reads the same at any init.
_MLP_2015 = dict(task="mnist", model="mlp", hidden=4000, layers=2, batch_size=100, seed=1, full_train=True,
                 eval_train=True, eval_limit=10_000)
_MLP_2015_LR = {"path-sgd": "1e-3", "sgd": "1", "adagrad": "1e-2"}
_MLP_2015_CASES = [dict(optimizer=opt, lr=lr, init=init) for opt, lr in _MLP_2015_LR.items()
                   for init in ("balanced", "unbalanced")]
_PROBE_GRID = ([dict(optimizer="sgd", lr=lr) for lr in ("1", "1e-1", "1e-2", "1e-3")]
               + [dict(optimizer=opt, lr=lr) for opt in ("adagrad", "path-sgd") for lr in ("1e-1", "1e-2", "1e-3")])
# Fashion-MNIST's own probe (`plainrnn reproduce fig2-mlp-fashion-probe`) picked these.
_FASHION_LR = {"path-sgd": "1e-4", "sgd": "1e-1", "adagrad": "1e-3"}
_FASHION_CASES = [dict(optimizer=opt, lr=lr, init=init) for opt, lr in _FASHION_LR.items()
                  for init in ("balanced", "unbalanced")]
_MLP_2015_BUDGETS = {"cpu": dict(steps=3000, eval_every=600),       # 5 epochs, evaluated every epoch
                     "full": dict(steps=60_000, eval_every=600)}   # the paper's curves run to 100 epochs

# The Path-SGD adding study (issue 11, docs/results.md "Path-SGD on the adding problem"): the 2016 paper's
# RNN-Path (identity init, U[-0.01, 0.01] elsewhere, H = 100, T = 100, batch 50) as docs/results.md ran it
# (κ1, lr 1e-3, gradient norm clipped at 1) is the reference row B; each other row changes one thing, and
# every setting runs 3 seeds on one step budget. Clipping the raw gradient's norm is *not* invariant under
# node-wise rescaling (‖∂L/∂p‖ is not), so the rows that test invariant safeguards run without it.
_ADDING = dict(task="adding", seq_len=100, hidden=100, init="identity", input_scale=0.01, batch_size=50, seed=1)
_B = dict(optimizer="path-sgd", lr="1e-3", clip=1.0)
_ADDING_STUDY_CASES = [  # most decisive first: a sweep runs its trials in this order
    dict(optimizer="sgd", lr="1e-2", clip=1.0),                      # IRNN + SGD, the paper's baseline
    dict(optimizer="adam", lr="1e-3", clip=1.0),                     # the optimizer that solves it here
    _B,                                                              # B: RNN-Path as docs/results.md had it
    dict(optimizer="path-sgd", lr="1e-3"),                           # B without the non-invariant clip
    dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01),       # invariant: the per-unit trust region
    dict(optimizer="path-sgd", lr="1e-1", max_unit_step=0.01),
    dict(optimizer="path-sgd", lr="3e-2", max_path_growth=0.1),      # invariant: the γ² safeguard
    dict(optimizer="path-sgd", lr="1e-2", max_path_growth=0.1),
    dict(_B, kappa2=True),                                           # B with κ1 + κ2
    dict(_B, lr="1e-4", path_momentum=0.9),                          # B with momentum (same effective step)
    dict(_B, optimizer="path-adam", lr="1e-4"),                      # B's gradients fed to Adam
    dict(_B, path_lr_scale="path_norm_now"),                         # B with s re-estimated as training goes
    dict(_B, bias=False),                                            # B on the model as the paper writes it
    dict(optimizer="path-sgd", lr="1e-4", path_lr_scale="none"),     # raw eq. 8 at the paper's smallest lr
    dict(optimizer="adam", lr="1e-3", model="lstm", clip=1.0),       # Table 2's LSTM row
    # The lead ran the γ² safeguard *with* clipping at 1: does the rule or the clip do the work?
    dict(optimizer="path-sgd", lr="3e-2", max_path_growth=0.1, clip=1.0),
    dict(optimizer="path-sgd", lr="3e-2", clip=1.0),
    # Adam's step is blind to a fixed positive factor per coordinate, so Path-Adam is Adam up to κ's
    # drift (tests/optim/test_path_sgd.py): Adam at Path-Adam's lr is its control.
    dict(optimizer="adam", lr="1e-4", clip=1.0),
]

# Table 2's rows: the paper's baseline and competitors, RNN-Path as we ran it (κ1, and κ1 + κ2), and the
# adding study's best options: the per-unit trust region (the best invariant one, no clipping) and
# PathNormalized(Adam) (the one that solves T = 100 within 100k steps; not rescaling-invariant).
_TABLE2_ROWS = [
    dict(optimizer="sgd", lr="1e-2", clip=1.0),                              # IRNN + SGD
    dict(optimizer="adam", lr="1e-3", clip=1.0),                             # Adam
    dict(optimizer="adam", lr="1e-3", model="lstm", clip=1.0),               # LSTM
    _B,                                                                      # Path-SGD κ1
    dict(_B, kappa2=True),                                                   # Path-SGD κ1 + κ2
    dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01),               # the best invariant option
    dict(_B, optimizer="path-adam", lr="1e-4"),                              # the best path-normalized one
]

# The 2017 paper's §3 setup, shared by its experiments: RMSprop on the ordinary parameters, geodesic steps
# on U and V, batch 50, clip 100, weight decay on the composite W, 128 units.
_ORTH_2017 = dict(model="spectral", hidden=128, init="orthogonal", optimizer="rmsprop", lr=1e-4, orth_lr=1e-6,
                  weight_decay=1e-4, clip=100.0, batch_size=50)
_MARGINS_2017 = dict(margin=["0", "0.001", "0.01", "0.1", "1", "none"])
# The copy task as Fig. 1 runs it: no transition nonlinearity, 160 epochs of 100 minibatches.
_ORTH_COPY = dict(_ORTH_2017, task="copy", nonlinearity="none", steps=16_000, eval_every=100)

RECIPES: dict[str, dict] = {
    # 2015 paper, Fig. 2: no dropout. The Path-SGD curves from both inits must coincide (Theorem 2).
    "fig2-mlp": dict(base=dict(_MLP_2015, dropout=0.0), grid=_MLP_2015_CASES, seeds=1, budgets=_MLP_2015_BUDGETS,
                     paper="MNIST 2x4000: Path-SGD identical from both inits; SGD, AdaGrad hurt by the unbalanced one"),
    # 2015 paper, Fig. 3: the same with dropout 0.5 on the hidden units.
    "fig3-mlp": dict(base=dict(_MLP_2015, dropout=0.5), grid=_MLP_2015_CASES, seeds=1, budgets=_MLP_2015_BUDGETS,
                     paper="MNIST 2x4000 with dropout 0.5: the same comparison as Fig. 2"),
    # The step-size probe behind both: 500 steps on the 50k/10k split, balanced init, the 10^-α grid.
    "fig2-mlp-probe": dict(base=dict(_MLP_2015, full_train=False, eval_train=False, steps=500, eval_every=100),
                           grid=_PROBE_GRID, seeds=1,
                           paper="the step size 10^-α reaching the minimum validation error fastest"),
    # The same three on Fashion-MNIST, our stand-in for the paper's CIFAR-10/100 and SVHN (not to be had
    # here): 60k/10k 28×28 images like MNIST, so the same network and the same protocol.
    "fig2-mlp-fashion": dict(base=dict(_MLP_2015, task="fashion-mnist", dropout=0.0), grid=_FASHION_CASES, seeds=1,
                             budgets=_MLP_2015_BUDGETS, paper="a substitute data set: the claims of Fig. 2"),
    "fig3-mlp-fashion": dict(base=dict(_MLP_2015, task="fashion-mnist", dropout=0.5), grid=_FASHION_CASES, seeds=1,
                             budgets=_MLP_2015_BUDGETS, paper="a substitute data set: the claims of Fig. 3"),
    "fig2-mlp-fashion-probe": dict(base=dict(_MLP_2015, task="fashion-mnist", full_train=False, eval_train=False,
                                             steps=500, eval_every=100),
                                   # Path-SGD's best sat at the grid's edge here: 1e-4, then 1e-5 were added
                                   grid=_PROBE_GRID + [dict(optimizer="path-sgd", lr=lr) for lr in ("1e-4", "1e-5")],
                                   seeds=1,
                                   paper="the step size 10^-α reaching the minimum validation error fastest"),
    # 2016 paper, Table 2 (adding columns): the methods against T = 100, 400, 750, 3 seeds each, the same
    # step budget everywhere (cpu: 20k steps; full: the 100k the study asks "solved within"). Each row at
    # its best setting in the adding study; `plainrnn report runs/table2-adding-cpu --reach 0.01 --columns
    # seq_len --scale 100` prints the table as docs/results.md shows it.
    "table2-adding": dict(
        base=dict(_ADDING, steps=100_000, eval_every=1000),
        grid=[dict(case, seq_len=T) for T in (100, 400, 750) for case in _TABLE2_ROWS], seeds=3,
        budgets={"cpu": dict(steps=20_000, eval_every=500), "full": dict(steps=100_000, eval_every=1000)},
        paper="test MSE×100 at T=100/400/750: IRNN 0/16.7/16.7, LSTM 0/2/16.7, RNN-Path 0/0/0"),
    # Issue 11: every hypothesis on T = 100, 3 seeds, one budget (cpu: 20k steps; full: the 100k of Table 2).
    "adding-study": dict(base=dict(_ADDING, clip=None, steps=100_000, eval_every=1000), grid=_ADDING_STUDY_CASES,
                         seeds=3, budgets={"cpu": dict(steps=20_000, eval_every=500),
                                           "full": dict(steps=100_000, eval_every=1000)},
                         paper="RNN-Path solves adding (test MSE×100 = 0) at T = 100, 400 and 750 (Table 2)"),
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
        base=dict(_ORTH_2017, task="smnist", nonlinearity="relu", steps=200_000, eval_every=5000),
        grid=_MARGINS_2017, seeds=1,
        paper="sMNIST / pMNIST accuracy %, best 94.10 / 91.44 at m = 0.1; LSTM 97.30 / 92.62"),
    # 2017 paper, Fig. 1: the copy task at T=200 with spectral margins, the paper's whole schedule: 160
    # epochs of 100 minibatches, evaluated after every epoch (it fits a CPU: 14-22 minutes a margin here).
    "orth-copy": dict(base=dict(_ORTH_COPY, seq_len=200), grid=_MARGINS_2017, seeds=1,
                      paper="copy accuracy curves (Fig. 1); converges for small margins"),
    # The same at T=500 (Fig. 1, right): 2.5 times longer a step, so the cpu budget runs 40 of the 160 epochs.
    "orth-copy-500": dict(base=dict(_ORTH_COPY, seq_len=500), grid=_MARGINS_2017, seeds=1,
                          budgets={"cpu": dict(steps=4_000, eval_every=100), "full": dict(steps=16_000, eval_every=100)},
                          paper="copy accuracy curves at T = 500 (Fig. 1)"),
}


def budget_of(name: str, budget: str | None = None) -> tuple[str, dict]:
    """The sweep directory's name and the config overrides of recipe ``name`` at ``budget``.

    A recipe with budgets runs in ``runs/<name>-<budget>`` (default budget: ``full``), so that a
    full run never overwrites the cpu run of the same trial; a recipe without budgets runs in
    ``runs/<name>`` and takes no budget.

    Args:
        name: a key of :data:`RECIPES`.
        budget: ``"cpu"``, ``"full"`` or ``None`` for the recipe's default.

    Returns:
        ``(sweep directory name, overrides of the recipe's base config)``.

    Raises:
        ValueError: the recipe has no such budget.

    >>> budget_of("adding-study", "cpu")
    ('adding-study-cpu', {'steps': 20000, 'eval_every': 500})
    >>> budget_of("orth-copy")
    ('orth-copy', {})
    """
    budgets = RECIPES[name].get("budgets", {})
    if budget is None:
        budget = "full" if "full" in budgets else None
    if budget is None:
        return name, {}
    if budget not in budgets:
        raise ValueError(f"{name} has no {budget} budget; it has "
                         + (", ".join(budgets) if budgets else "only its base protocol (no --budget)"))
    return f"{name}-{budget}", dict(budgets[budget])
