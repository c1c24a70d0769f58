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

# The Path-SGD adding study (docs/results.md "Path-SGD on the adding problem"): the 2016 paper's
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
    # The spread step-scales measures (recurrent rows ~450× the input and read-out weights' pace), undone by
    # a fixed lr factor on every non-recurrent tensor: still rescaling-invariant, inside the trust region.
    dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01, path_lr_nonrecurrent=30.0),
    dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01, path_lr_nonrecurrent=300.0),
]

# Table 2's rows: the paper's baseline and competitors, RNN-Path as we ran it (κ1, and κ1 + κ2), and the
# adding study's best options: the per-unit trust region (the best invariant one, no clipping) and
# PathNormalized(Adam) (the one that solves T = 100 within 100k steps; not rescaling-invariant).
_TABLE2_ROWS = [
    dict(optimizer="sgd", lr="1e-2", clip=1.0),                              # IRNN + SGD
    dict(optimizer="adam", lr="1e-3", clip=1.0),                             # Adam
    dict(optimizer="adam", lr="1e-4", clip=1.0),                             # Adam at Path-Adam's lr: its control
    dict(optimizer="adam", lr="1e-3", model="lstm", clip=1.0),               # LSTM
    _B,                                                                      # Path-SGD κ1
    dict(_B, kappa2=True),                                                   # Path-SGD κ1 + κ2
    dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01),               # the best invariant option
    dict(_B, optimizer="path-adam", lr="1e-4"),                              # the best path-normalized one
    dict(_B, optimizer="path-adam", lr="1e-3"),                              # ... at Adam's lr (T = 750 diverges at 1e-4)
]

# InvariantAdam (Adam in z = √κ·w, Theorem 2 holds) on the adding problem, the adding study's protocol:
# T = 100, 3 seeds (4–6: seeds the adding study did not use), one change at a time. Its first step at
# η = 1e-3 moves the recurrent matrix by up to 2.4 (optim/invariant_adam.py), so the grid starts lower;
# then the per-unit trust region, the invariant safeguard that helped Path-SGD most, and its controls.
_INVARIANT_ADAM_CASES = [
    dict(optimizer="invariant-adam", lr="1e-5"),
    dict(optimizer="invariant-adam", lr="1e-6"),
    dict(optimizer="invariant-adam", lr="1e-4"),
    dict(optimizer="invariant-adam", lr="1e-4", max_unit_step=0.01),
    dict(optimizer="invariant-adam", lr="1e-5", path_lr_scale="z_rms"),
    dict(optimizer="adam", lr="1e-3", clip=1.0),                      # the controls, on the same seeds
    dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01),
]

# Table 2 at the IRNN protocol's likely budget (10⁶ steps, T = 100): the best invariant option and B.
_TABLE2_LONG = [dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01, seq_len=100), dict(_B, seq_len=100)]

# 2016 paper, Table 2's sMNIST column (§5.2): 100 units, the adding rows' init (identity recurrent,
# U[-0.01, 0.01] elsewhere) and clipping, the step-size grid {1e-2, 1e-3, 1e-4}. Rows: the paper's two
# (IRNN + SGD, RNN-Path), the adding study's best path-normalized option (Path-Adam), Adam, and an LSTM
# (torch's, without peepholes). An epoch is 1,100 steps (55k training images after the 5k validation split).
_LR_2016 = ("1e-2", "1e-3", "1e-4")
_SMNIST_ROWS = [dict(optimizer="sgd"), dict(optimizer="path-sgd"), dict(optimizer="path-adam"),
                dict(optimizer="adam"), dict(optimizer="adam", model="lstm")]
# The cpu budget (2 epochs, evaluated on the first 2,000 validation and test images) keeps the whole
# grid for the paper's two rows, Path-Adam at 1e-3 and 1e-4 (1e-2 is ten times Adam's customary step;
# not run), and runs Adam and the LSTM at that customary 1e-3.
_SMNIST_CPU = ([dict(optimizer=opt, lr=lr) for opt in ("sgd", "path-sgd") for lr in _LR_2016]
               + [dict(optimizer="path-adam", lr=lr) for lr in ("1e-3", "1e-4")]
               + [dict(optimizer="adam", lr="1e-3"), dict(optimizer="adam", model="lstm", lr="1e-3")])
# The long budget (issue 34): 30 epochs, evaluated every epoch on the whole validation and test sets,
# 3 seeds, one step per row: the cpu budget's validation picks, and for RNN-Path the best invariant setting
# of the adding study (the per-unit trust region; without the clip, which is not rescaling-invariant).
# The paper's two rows first: a sweep runs its trials in this order.
_SMNIST_LONG = [dict(optimizer="path-sgd", lr="1e-2", max_unit_step=0.01, clip=None), dict(optimizer="sgd", lr="1e-4"),
                dict(optimizer="path-adam", lr="1e-3"), dict(optimizer="adam", lr="1e-3"),
                dict(optimizer="adam", model="lstm", lr="1e-3")]

# 2016 paper, Table 3 (§5.3): one layer of 2048 units (the LSTM 1024), Adam on the step grid {1e-3, 5e-4,
# 1e-4}, recurrent U[-0.01, 0.01], the rest U[-0.2, 0.2]; the LSTM keeps its orthogonal recurrent init and
# torch's input init. RNN-Path is Adam fed the path-normalized gradient. The cpu budget runs every row at
# 1/16 and 1/8 of the paper's widths (the LSTM at half, as in the paper), so a reader sees the trend, for
# 1,500 steps (2 epochs), at the grid's two larger steps (1e-4 is meant for the paper's 100k steps).
def _ptbc_grid(width: int, lrs: tuple[str, ...] = ("1e-3", "5e-4", "1e-4")) -> list[dict]:
    rows = [dict(optimizer="path-adam"), dict(optimizer="adam"), dict(optimizer="adam", model="tanh"),
            dict(optimizer="adam", model="lstm")]
    return [dict(row, hidden=width // 2 if row.get("model") == "lstm" else width, lr=lr) for row in rows for lr in lrs]


# 2016 paper, Fig. 2: word-level PTB, H = 200, T = 20, batch 32, U[-0.1, 0.1], no clipping (none is
# stated); an epoch is 1,450 steps. Each grid brackets the best step of a 300-step probe (docs/results.md):
# SGD diverges at 3 and 10, is best at 1 of {1, 0.1, 0.01}; Path-SGD explodes at 3e-4 and 1e-3, is best
# at 1e-4 of {1e-4, 3e-5, 1e-5}.
_KAPPA2_GRID = ([dict(optimizer="sgd", lr=lr) for lr in ("1", "3e-1")]
                + [dict(optimizer="path-sgd", kappa2=k2, lr=lr) for k2 in (False, True) for lr in ("1e-4", "3e-5")])
# The cpu budget (2 epochs) runs each row at the probe's best step only.
_KAPPA2_CPU = [dict(optimizer="sgd", lr="1")] + [dict(optimizer="path-sgd", kappa2=k2, lr="1e-4") for k2 in (False, True)]

# The 2017 paper's §3 setup, shared by its experiments: RMSprop on the ordinary parameters, geodesic steps
# on U and V, batch 50, clip 100, weight decay on the composite W, 128 units.
_ORTH_2017 = dict(model="spectral", hidden=128, init="orthogonal", optimizer="rmsprop", lr=1e-4, orth_lr=1e-6,
                  weight_decay=1e-4, clip=100.0, batch_size=50)
_MARGINS_2017 = dict(margin=["0", "0.001", "0.01", "0.1", "1", "none"])
# The copy task as Fig. 1 runs it: no transition nonlinearity, 160 epochs of 100 minibatches.
_ORTH_COPY = dict(_ORTH_2017, task="copy", nonlinearity="none", steps=16_000, eval_every=100)
# Tables 1-2 (§3.1.2): tanh transitions (the paper's default), 120 epochs (the LSTM 150) of 1,100 steps
# (55k training images after the 5k validation split). Rows: the margins with orthogonal init, no margin
# from Glorot normal and from identity, and an LSTM of 128 units (RMSprop 1e-4, clip 1, forget-gate bias
# 1, orthogonal recurrent init; torch's LSTM has no peepholes, the paper's had). The cpu budget gives
# every row the same 2 epochs, evaluated on the first 2,000 validation and test images.
_ORTH_MNIST = dict(_ORTH_2017, nonlinearity="tanh", steps=132_000, eval_every=1100)
_ORTH_MNIST_ROWS = ([dict(margin=m) for m in _MARGINS_2017["margin"]]
                    + [dict(margin="none", init="glorot"), dict(margin="none", init="identity")])
_ORTH_LSTM = dict(model="lstm", clip=1.0)
_ORTH_MNIST_BUDGETS = {"cpu": dict(steps=2200, eval_every=550, eval_limit=2000, grid=_ORTH_MNIST_ROWS + [_ORTH_LSTM]),
                       "full": dict(steps=132_000, eval_every=1100)}
# Tables 3-4: PTB sentences of up to 75 (11,406 training sentences: 228 steps an epoch) and up to 300
# characters (41,892: 838), 512 units, tanh, RMSprop 1e-3, clip 30, 200 epochs; margins up to 100.
_ORTH_PTB = dict(_ORTH_2017, task="ptb-sentences", hidden=512, nonlinearity="tanh", lr=1e-3, clip=30.0)
_ORTH_PTB_ROWS = ([dict(margin=m) for m in ("0", "0.01", "0.1", "1", "100", "none")]
                  + [dict(margin="none", init="glorot"), dict(margin="none", init="identity")])

# Fig. 4 (§3.2): soft constraints on the copy task, at the strengths of the paper's legend. Left: the
# penalty λ‖WᵀW − I‖² on a plain (non-factorized) linear RNN at T = 200, RMSprop at 1e-5 ("we had to
# reduce the learning rate"); left center: the same penalty on the factorized RNN (free spectrum) at
# T = 500; right center and right: a mean-one Gaussian prior λ Σ(s_i − 1)² on the singular values, at
# T = 200, plain SGD at 1e-5 on everything but U and V, without a margin and with margin 1. The paper's
# axes run to 1000 epochs (left) and 300 (the others); the cpu budget runs 40 epochs of each. The plain
# RNN's input and output weights come from U[-0.2, 0.2], near the factorized model's Glorot-uniform.
# The cost is summed over the 220 time steps (loss_over_time="sum"), a hypothesis: the paper does not
# say, but at its SGD step of 1e-5 a mean over time does not even reach the blank-output baseline in 40
# epochs (loss 7.3 → 0.63 against 0.09 in a probe of ours), while the summed cost learns at the pace
# of its 300-epoch axes; and a penalty's strength λ means something only against the data term's scale.
_STRENGTHS_2017 = ["1e-4", "1e-3", "1e-2", "0.1", "1", "10", "100"]
_ORTH_FIG4 = dict(_ORTH_COPY, loss_over_time="sum")
_FIG4_BUDGETS = {"cpu": dict(steps=4000, eval_every=100), "full": dict(steps=30_000, eval_every=100)}

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
        budgets={"cpu": dict(steps=20_000, eval_every=500), "full": dict(steps=100_000, eval_every=1000),
                 # the IRNN protocol's likely budget (re-implementations run ~10⁶ SGD steps; not confirmed
                 # from the paper's text) for the rows that were still falling at 100k: T = 100 only
                 "long": dict(steps=1_000_000, eval_every=2500, grid=_TABLE2_LONG)},
        paper="test MSE×100 at T=100/400/750: IRNN 0/16.7/16.7, LSTM 0/2/16.7, RNN-Path 0/0/0"),
    # InvariantAdam against Adam and the trust region at T = 100 (docs/results.md "InvariantAdam").
    "invariant-adam-study": dict(base=dict(_ADDING, clip=None, seed=4, steps=100_000, eval_every=1000),
                                 grid=_INVARIANT_ADAM_CASES, seeds=3,
                                 budgets={"cpu": dict(steps=20_000, eval_every=500),
                                          "full": dict(steps=100_000, eval_every=1000)},
                                 paper="an invariant optimizer that solves adding T = 100 within twice Adam's steps"),
    # The adding study: every hypothesis on T = 100, 3 seeds, one budget (cpu: 20k steps; full: the 100k of Table 2).
    "adding-study": dict(base=dict(_ADDING, clip=None, steps=100_000, eval_every=1000), grid=_ADDING_STUDY_CASES,
                         seeds=3, budgets={"cpu": dict(steps=20_000, eval_every=500),
                                           "full": dict(steps=100_000, eval_every=1000)},
                         paper="RNN-Path solves adding (test MSE×100 = 0) at T = 100, 400 and 750 (Table 2)"),
    # 2016 paper, Table 2 (sMNIST column): the rows of _SMNIST_ROWS, the adding rows' model and clipping.
    "table2-smnist": dict(
        base=dict(task="smnist", hidden=100, init="identity", input_scale=0.01, batch_size=50, clip=1.0,
                  steps=200_000, eval_every=5000),
        grid=[dict(row, lr=lr) for row in _SMNIST_ROWS for lr in _LR_2016], seeds=3,
        budgets={"cpu": dict(steps=2200, eval_every=550, eval_limit=2000, seeds=1, grid=_SMNIST_CPU),
                 "full": dict(steps=200_000, eval_every=5000),
                 "long": dict(steps=33_000, eval_every=1100, grid=_SMNIST_LONG)},
        paper="test error %: IRNN 5.0 (authors' run 7.1), LSTM 1.8, RNN-Path 3.1"),
    # 2016 paper, Table 3: PTB-c (and text8 with --set task=text8 seq_len=180), sequences of 50, batch 128.
    "table3-ptbc": dict(
        base=dict(task="ptb-char", seq_len=50, init="uniform", init_scale=0.01, input_scale=0.2, batch_size=128,
                  steps=100_000, eval_every=2000),
        grid=_ptbc_grid(2048), seeds=1,
        budgets={"cpu": dict(steps=1500, eval_every=250, grid=_ptbc_grid(128, ("1e-3", "5e-4")) + _ptbc_grid(256, ("1e-3", "5e-4"))),
                 "full": dict(steps=100_000, eval_every=2000)},
        paper="test BPC PTB-c / text8: RNN-ReLU 1.55/1.65, RNN-tanh 1.58/1.70, RNN-Path 1.47/1.58, LSTM 1.41/1.52"),
    # 2016 paper, Fig. 2 (right): SGD against Path-SGD with κ1 and with κ1 + κ2 on word-level PTB, each at
    # the best step of its grid (the paper: "chosen by a grid search"; our grids bracket the probe's best).
    # Training perplexity as the figure draws it: on 3,687 windows spread evenly over the training text
    # (as many tokens as the validation set; all 929k would triple the run's time).
    "fig2-kappa2": dict(
        base=dict(task="ptb-word", seq_len=20, batch_size=32, hidden=200, init="uniform", init_scale=0.1,
                  input_scale=0.1, steps=29_000, eval_every=1450, eval_train=True, train_eval_limit=3687),
        grid=_KAPPA2_GRID, seeds=1,
        budgets={"cpu": dict(steps=2900, eval_every=290, grid=_KAPPA2_CPU), "full": dict(steps=29_000, eval_every=1450)},
        paper="Path-SGD with and without κ2 train alike; both beat SGD by far"),
    # 2017 paper, Tables 1 and 2: spectral margins on sequential and permuted MNIST (test accuracy at the
    # best validation point: `plainrnn report DIR --at-best-valid`).
    "orth-table1": dict(base=dict(_ORTH_MNIST, task="smnist"), grid=_ORTH_MNIST_ROWS + [dict(_ORTH_LSTM, steps=165_000)],
                        seeds=1, budgets=_ORTH_MNIST_BUDGETS,
                        paper="sMNIST accuracy % for m = 0/0.001/0.01/0.1/1/none: 77.18/79.26/85.47/94.10/93.84/93.24; "
                              "Glorot 66.71, identity 53.53, LSTM 97.30"),
    "orth-table2": dict(base=dict(_ORTH_MNIST, task="pmnist"), grid=_ORTH_MNIST_ROWS + [dict(_ORTH_LSTM, steps=165_000)],
                        seeds=1, budgets=_ORTH_MNIST_BUDGETS,
                        paper="pMNIST accuracy % for m = 0/0.001/0.01/0.1/1/none: 83.56/84.59/89.63/91.44/90.83/90.51; "
                              "Glorot 79.33, identity 42.72, LSTM 92.62"),
    # 2017 paper, Tables 3 and 4: PTB character prediction on sentences (bpc and accuracy at the best
    # validation point).
    "orth-ptb": dict(base=dict(_ORTH_PTB, seq_len=75, steps=45_600, eval_every=228), grid=_ORTH_PTB_ROWS, seeds=1,
                     budgets={"cpu": dict(steps=2280, eval_every=228), "full": dict(steps=45_600, eval_every=228)},
                     paper="bpc, sentences ≤ 75, m = 0/0.01/0.1/1/100/none: 2.16/2.16/2.12/2.06/2.04/2.06; "
                           "Glorot 2.08, identity 2.25 (accuracy 55.31 ... 57.51 %)"),
    "orth-ptb-300": dict(base=dict(_ORTH_PTB, seq_len=300, steps=167_600, eval_every=838), grid=_ORTH_PTB_ROWS, seeds=1,
                         budgets={"cpu": dict(steps=2514, eval_every=419), "full": dict(steps=167_600, eval_every=838)},
                         paper="bpc, sentences ≤ 300, m = 0/0.01/0.1/1/100/none: 2.20/2.20/2.24/2.36/2.36/2.34; "
                               "Glorot 2.34, identity 2.68"),
    # 2017 paper, Fig. 1: the copy task at T=200 with spectral margins, the paper's whole schedule: 160
    # epochs of 100 minibatches, evaluated after every epoch (it fits a CPU: 14-22 minutes a margin here).
    "orth-copy": dict(base=dict(_ORTH_COPY, seq_len=200), grid=_MARGINS_2017, seeds=1,
                      paper="copy accuracy curves (Fig. 1); converges for small margins"),
    # 2017 paper, Fig. 2: ‖∂L/∂h_t‖ over the first 1,000 updates of the T = 200 copy task (220 steps), for
    # each margin, recorded every 10 updates; `plainrnn report runs/orth-fig2 --plots DIR` draws the six
    # heat maps (copy_gradient_heatmaps.png) and the spectra (copy_spectra.png).
    "orth-fig2": dict(base=dict(_ORTH_COPY, seq_len=200, steps=1000, eval_every=100, grad_norms_every=10),
                      grid=_MARGINS_2017, seeds=1,
                      paper="m = 0 keeps ‖∂L/∂h_t‖ level across t; the larger the margin, the fewer updates that lasts"),
    "orth-fig4a": dict(base=dict(_ORTH_FIG4, seq_len=200, model="relu", lr=1e-5, input_scale=0.2),
                       grid=dict(orth_penalty=_STRENGTHS_2017), seeds=1,
                       budgets={"cpu": dict(steps=4000, eval_every=100), "full": dict(steps=100_000, eval_every=100)},
                       paper="plain linear RNN, T = 200: a weaker orthogonality penalty converges faster"),
    "orth-fig4b": dict(base=dict(_ORTH_FIG4, seq_len=500, margin=None), grid=dict(orth_penalty=_STRENGTHS_2017),
                       seeds=1, budgets=_FIG4_BUDGETS,
                       paper="factorized RNN, T = 500: a weaker orthogonality penalty converges faster"),
    "orth-fig4c": dict(base=dict(_ORTH_FIG4, seq_len=200, margin=None, optimizer="sgd", lr=1e-5),
                       grid=dict(sv_prior=_STRENGTHS_2017), seeds=1, budgets=_FIG4_BUDGETS,
                       paper="singular-value prior, no margin, T = 200: too strong a prior is slow; too weak unstable"),
    "orth-fig4d": dict(base=dict(_ORTH_FIG4, seq_len=200, margin=1.0, optimizer="sgd", lr=1e-5),
                       grid=dict(sv_prior=_STRENGTHS_2017), seeds=1, budgets=_FIG4_BUDGETS,
                       paper="singular-value prior with margin 1, T = 200: stable where the prior is not removed"),
    # 2017 paper, Fig. 5 (appendix): the adding problem at T = 1000 with a ReLU transition, margins 0, 1,
    # 10, 100 and none; "m = 0 and no margin failed to begin converging beyond baseline MSE within 2000
    # epochs" (200,000 steps). The cpu budget runs 40 epochs.
    "orth-fig5": dict(base=dict(_ORTH_2017, task="adding", seq_len=1000, nonlinearity="relu", steps=200_000,
                                eval_every=1000),
                      grid=dict(margin=["0", "1", "10", "100", "none"]), seeds=1,
                      budgets={"cpu": dict(steps=4000, eval_every=100), "full": dict(steps=200_000, eval_every=1000)},
                      paper="adding T = 1000, ReLU: m = 0 and no margin stay at the baseline MSE for 2000 epochs; "
                            "m = 1, 10, 100 leave it"),
    # The same at T=500 (Fig. 1, right): 2.5 times longer a step, so the cpu budget runs 40 of the 160 epochs.
    "orth-copy-500": dict(base=dict(_ORTH_COPY, seq_len=500), grid=_MARGINS_2017, seeds=1,
                          budgets={"cpu": dict(steps=4_000, eval_every=100), "full": dict(steps=16_000, eval_every=100)},
                          paper="copy accuracy curves at T = 500 (Fig. 1)"),
}


# A budget may also replace the recipe's grid and seed count (a CPU budget runs fewer step sizes); every
# other key of a budget overrides the base config.
_PLAN_KEYS = ("grid", "seeds")
BUDGET_NAMES = ("cpu", "full", "long")


def budget_of(name: str, budget: str | None = None) -> tuple[str, dict]:
    """The sweep directory's name and the config overrides of recipe ``name`` at ``budget``.

    A recipe with budgets runs in ``runs/<name>-<budget>`` (default budget: ``full``), so that a
    full run never overwrites the cpu run of the same trial. A recipe without budgets is one protocol
    that already fits a CPU (orth-copy runs the paper's whole schedule): it runs in ``runs/<name>``,
    and ``cpu`` and ``full`` both name it.

    Args:
        name: a key of :data:`RECIPES`.
        budget: ``"cpu"``, ``"full"`` or ``None`` for the recipe's default.

    Returns:
        ``(sweep directory name, overrides of the recipe's base config)``.

    Raises:
        ValueError: the recipe has no such budget.

    >>> budget_of("adding-study", "cpu")
    ('adding-study-cpu', {'steps': 20000, 'eval_every': 500})
    >>> budget_of("orth-copy") == budget_of("orth-copy", "cpu") == budget_of("orth-copy", "full")
    True
    """
    budgets = RECIPES[name].get("budgets", {})
    if not budgets and budget in (None, "cpu", "full"):
        return name, {}
    if budget is None:
        budget = "full"
    if budget not in budgets:
        raise ValueError(f"{name} has no {budget} budget; it has {', '.join(budgets) or 'cpu, full (one protocol)'}")
    return f"{name}-{budget}", {k: v for k, v in budgets[budget].items() if k not in _PLAN_KEYS}


def plan_of(name: str, budget: str | None = None) -> dict:
    """Everything `plainrnn reproduce NAME --budget B` runs: ``dir`` (the sweep directory's name),
    ``overrides`` (of the base config), ``grid`` and ``seeds`` (the budget's own, else the recipe's).

    >>> plan = plan_of("table2-smnist", "cpu")
    >>> plan["dir"], plan["seeds"], len(plan["grid"]) < len(plan_of("table2-smnist", "full")["grid"])
    ('table2-smnist-cpu', 1, True)
    """
    sweep_dir, overrides = budget_of(name, budget)
    recipe = RECIPES[name]
    chosen = recipe.get("budgets", {}).get(sweep_dir[len(name) + 1:], {}) if sweep_dir != name else {}
    return dict(dir=sweep_dir, overrides=overrides, grid=chosen.get("grid", recipe["grid"]),
                seeds=chosen.get("seeds", recipe["seeds"]))
