"""One config object for a run (nanoGPT style): every knob declared once, with its default, its help,
its bounds and its choices (:func:`knob`). The command line's flags (``plainrnn train --lr``), their
``--help`` and the single-field checks of :meth:`RunConfig.validate` are all read from these
declarations; ``validate`` adds by hand only the checks that relate two fields.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..nets.init import MLP_INITS, RECURRENT_INITS

MODELS = ("relu", "tanh", "lstm", "spectral", "mlp")
from ..nets.spectral_rnn import NONLINEARITIES  # the widest list: SpectralRNN's  # noqa: E402
from ..nets.relu_rnn import RECURRENCES  # noqa: E402
from .optimizers import OPTIMIZERS as _REGISTRY  # noqa: E402
OPTIMIZERS = tuple(_REGISTRY)
PATH_OPTIMIZERS = tuple(name for name, e in _REGISTRY.items() if e.reads_kappa)  # the ones that read κ
SAFEGUARDED = tuple(name for name, e in _REGISTRY.items() if e.safeguarded)      # trust region and backtracking
PATH_LR_SCALES = ("path_norm", "path_norm_now", "z_rms", "none")


def _tasks() -> tuple[str, ...]:
    from ..tasks import TASKS  # the tasks import nets and data: read when a check needs them
    return tuple(TASKS)


def knob(default, help: str, *, at_least=None, above=None, below=None, choices=None, allowed: str | None = None,
         shown=None, flag: str | None = None):
    """A RunConfig field with what the command line and :meth:`RunConfig.validate` need to know of it.

    at_least / above / below: the bounds of a number (``value >= at_least``, ``> above``, ``< below``);
    choices: the allowed values (a tuple, or a function returning one, read when needed);
    allowed: the words that name what is allowed in an error, when the bounds or choices alone do not;
    shown: the default as --help shows it (``"off"``, ``"the task's"``); flag: the flag when it is not
    ``--<name>`` (``--no-bias``)."""
    return dataclasses.field(default=default, metadata=dict(
        help=help, at_least=at_least, above=above, below=below, choices=choices, allowed=allowed,
        shown=default if shown is None else shown, flag=flag))


def choices_of(f: dataclasses.Field) -> tuple | None:
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


def allowed_of(f: dataclasses.Field) -> str:
    """What a knob allows, in the words of its error messages: ">= 1", "> 0", "in [0, 1)", "one of …"."""
    m = f.metadata
    if m.get("allowed"):
        return m["allowed"]
    if choices_of(f):
        return f"one of {', '.join(choices_of(f))}"
    if m.get("below") is not None:
        return f"in [{m['at_least']:g}, {m['below']:g})"
    text = f">= {m['at_least']:g}" if m.get("at_least") is not None else f"> {m['above']:g}"
    return text + (" (or unset)" if f.default is None else "")


@dataclass
class RunConfig:
    task: str = knob("adding", "benchmark task: {choices}; real datasets are fetched into the cache on first use",
                     choices=_tasks)
    model: str = knob("relu", "relu: plain ReLU RNN; tanh: plain tanh RNN; lstm: LSTM baseline; spectral: W = U diag(s) Vᵀ "
                      "with geodesic steps on U, V; mlp: ReLU MLP for the image sets", choices=MODELS)
    seq_len: int | None = knob(None, "sequence length T, at least 2", at_least=2,
                               shown="the task's: adding/copy 100, ptb-char 50, ptb-word 20, ptb-sentences 75, "
                                     "text8/shakespeare 180; smnist/pmnist are 784")
    hidden: int = knob(100, "hidden units per layer", at_least=1)
    layers: int = knob(1, "recurrent layers (MLP: hidden layers)", at_least=1)
    nonlinearity: str | None = knob(None, "relu or tanh; with --model spectral also none, oplu, prelu",
                                    choices=NONLINEARITIES, allowed=", ".join(NONLINEARITIES), shown="the model's")
    recurrence: str = knob("plainrnn", "the relu/tanh recurrence's kernel: plainrnn (our loops, about half the time of "
                           "torch's on a CPU) or torch (torch's fused kernel, cuDNN on a GPU); the same numbers to "
                           "rounding. A run keeps the kernel it started with when resumed or extended (runs made "
                           "before this option: torch)", choices=RECURRENCES)
    init: str = knob("identity", "recurrent init: {recurrent} (identity = IRNN); MLP: balanced (the default) or "
                     "unbalanced (the 2015 paper's: 2000 random hidden units rescaled by 10^c, c log-normal)",
                     choices=RECURRENT_INITS + MLP_INITS)
    init_scale: float = knob(0.01, "a of the uniform recurrent init U[-a, a]", above=0)
    input_scale: float = knob(0.01, "non-recurrent weights from U[-s, s], as in the 2016 paper", above=0)
    optimizer: str = knob("sgd", "sgd, momentum (SGD+0.9), adam, adagrad, rmsprop, path-sgd (Path-SGD), path-adam "
                          "(Adam on path-normalized gradients), invariant-adam (Adam in the path-normalized "
                          "coordinates √κ·w: rescaling-invariant)", choices=OPTIMIZERS)
    lr: float = knob(1e-3, "learning rate, > 0", above=0)
    momentum: float = knob(0.9, "momentum of --optimizer momentum (also the spectral model's inner optimizer)",
                           at_least=0, below=1)
    batch_size: int = knob(50, "minibatch size", at_least=1)
    steps: int = knob(1000, "training steps", at_least=1)
    clip: float | None = knob(None, "clip the gradient norm at this value", above=0, shown="off")
    diverge_above: float = knob(1e6, "end the run as diverged when the validation loss exceeds this", above=0)
    eval_every: int = knob(100, "evaluate on the validation and test sets every N steps", at_least=1)
    checkpoint_every: int = knob(0, "write an atomic checkpoint every N steps", at_least=0, shown="at every evaluation")
    tensorboard: bool = knob(False, "also log scalars for TensorBoard in <run dir>/tensorboard", shown="off")
    eval_limit: int | None = knob(None, "evaluate on at most N validation and test examples", at_least=1, shown="all")
    eval_train: bool = knob(False, "real data: also evaluate on the training set (the 2015 paper's training "
                            "cross-entropy and error, the 2016 paper's training perplexity)", shown="off")
    train_eval_limit: int | None = knob(None, "with --eval-train: at most N training examples (an image set's first N; "
                                        "N windows spread over a text)", at_least=1, shown="--eval-limit")
    full_train: bool = knob(False, "image sets: train on the validation split too (the 2015 paper, once the step "
                            "size is chosen); validation numbers are then not held out", shown="off")
    seed: int = knob(0, "random seed: same seed, same numbers", at_least=0)
    device: str = knob("cpu", "where the model trains: cpu, cuda, cuda:N, or auto (cuda when torch sees a GPU); the κ "
                       "passes and Cayley steps follow the model, the C++ kernel is the CPU route",
                       allowed="cpu, cuda, cuda:N or auto")
    kappa2: bool = knob(False, "Path-SGD with the second-order term κ2 (exact ½∂²γ²/∂p²)", shown="off")
    margin: float | None = knob(None, "spectral model: singular values in [1-m, 1+m] (eq. 10); unset: free singular "
                                "values", at_least=0, allowed=">= 0 (or unset for free singular values)", shown="unset")
    orth_lr: float = knob(1e-6, "spectral model: geodesic SGD learning rate on U and V (the 2017 paper's)", above=0)
    orth_penalty: float = knob(0.0, "add λ‖WᵀW − I‖² to the loss (any recurrent model)", at_least=0)
    sv_prior: float = knob(0.0, "add λ Σ(s_i − 1)², a mean-one Gaussian prior on W's singular values", at_least=0)
    weight_decay: float = knob(0.0, "add λ‖W‖² on the composite recurrent matrix (the 2017 paper uses 1e-4)",
                               at_least=0)
    loss_over_time: str = knob("mean", "mean or sum: how a task with an output at every step (copy, language models) "
                               "combines its per-step losses for training; sum multiplies the gradient by T, as a "
                               "cost summed over time steps does, against the penalties and for SGD's step",
                               choices=("mean", "sum"), allowed="mean or sum")
    path_lr_scale: str = knob("path_norm", "Path-SGD step scale: path_norm (η·γ²(w0), rescaling-invariant), "
                              "path_norm_now (η·γ² re-estimated at every κ pass, also invariant) or none (raw eq. 8); "
                              "invariant-adam: path_norm (η·√γ²(w0)), z_rms (η·RMS of √κ·w at w0) or none",
                              choices=PATH_LR_SCALES, allowed="path_norm, path_norm_now, z_rms (invariant-adam) or none")
    path_momentum: float = knob(0.0, "momentum on Path-SGD's path-normalized direction", at_least=0, below=1)
    bias: bool = knob(True, "plain RNNs without biases, as the 2016 paper's equations are written",
                      shown="with biases", flag="--no-bias")
    max_path_growth: float | None = knob(None, "Path-SGD's (and invariant-adam's) γ² safeguard: a step that raises the "
                                         "path norm γ²_net by more than this fraction is undone and retried at half "
                                         "the size (rescaling-invariant)", above=0, shown="off")
    max_unit_step: float | None = knob(None, "Path-SGD's (and invariant-adam's) per-unit trust region ρ: each unit's "
                                       "incoming step is at most ρ times its incoming weights, measured in the κ "
                                       "metric (rescaling-invariant)", above=0, shown="off")
    path_lr_nonrecurrent: float = knob(1.0, "Path-SGD on a plain RNN: lr multiplier of every parameter but the "
                                       "recurrent matrix (eq. 8 moves the recurrent rows far faster; a fixed factor "
                                       "keeps rescaling invariance)", above=0)
    grad_norms_every: int = knob(0, "every N steps, record ‖∂L/∂h_t‖ for each t in {grad_norms}",
                                 at_least=0, shown="off")
    dropout: float = knob(0.0, "MLP dropout on hidden units (the 2015 paper uses 0.5)", at_least=0, below=1)
    data_dir: str | None = knob(None, "dataset cache", shown="$PLAINRNN_DATA or ~/.cache/plainrnn")
    out: str = knob("runs", "parent directory of run directories")
    name: str | None = knob(None, "run directory name", shown="built from the settings")

    def run_name(self) -> str:
        T = f"-T{self.seq_len}" if self.seq_len else ""
        return self.name or f"{self.task}{T}-{self.model}-{self.init}-{self.optimizer}-lr{self.lr:g}-s{self.seed}"

    def resolved_nonlinearity(self) -> str:
        return self.nonlinearity or ("tanh" if self.model in ("tanh", "spectral") else "relu")

    def validate(self) -> "RunConfig":
        """Raises ValueError naming the field and what is allowed: first each knob against its own
        declaration (finite, within its bounds, one of its choices), then the checks that relate two."""
        for f in dataclasses.fields(self):
            _check_knob(f, getattr(self, f.name))
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name
                                      or self.name in (".", "..") or self.name.startswith(".")):
            # a run lives in out/<name>: a separator or a leading dot would put it (and what its
            # checks delete) somewhere else
            raise ValueError(f"name must be a folder name inside out ({self.out}), without '/', '\\' or a leading "
                             f"'.', got {self.name!r}")
        if not (self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")
        self._check_combinations()
        return self

    def _check_combinations(self) -> None:
        """The checks that relate two knobs: each option belongs to some models, tasks or optimizers."""
        from ..tasks import FLAT_IMAGES, SYNTHETIC
        if (self.task in FLAT_IMAGES) != (self.model == "mlp"):
            raise ValueError(f"task {self.task} needs " + ("--model mlp (flattened images)" if self.task in FLAT_IMAGES
                             else "a recurrent model; --model mlp is for mnist, cifar10, cifar100, svhn"))
        if self.full_train and self.task not in FLAT_IMAGES:
            raise ValueError(f"full_train is for the flat image sets ({', '.join(FLAT_IMAGES)}), not {self.task}")
        if self.eval_train and self.task in SYNTHETIC:
            # adding and copy draw a new batch every step: there is no training set to evaluate
            raise ValueError(f"eval_train needs a task with a fixed training set (not {', '.join(SYNTHETIC)}), "
                             f"got {self.task}")
        if self.model == "mlp" and (self.orth_penalty or self.sv_prior or self.weight_decay or self.grad_norms_every):
            raise ValueError("orth_penalty, sv_prior, weight_decay and grad_norms_every act on recurrent matrices; "
                             "an MLP has none")
        if self.model == "mlp" and self.init not in MLP_INITS + ("identity",):  # identity: the MLP's balanced default
            raise ValueError(f"init must be balanced or unbalanced for an MLP, got {self.init!r}")
        if self.model != "mlp" and self.init not in RECURRENT_INITS:
            raise ValueError(f"init must be one of {', '.join(RECURRENT_INITS)} for a recurrent model, got {self.init!r}")
        if self.nonlinearity in ("oplu", "prelu") and self.model != "spectral":
            raise ValueError(f"nonlinearity {self.nonlinearity} needs --model spectral; relu, tanh and none work on "
                             "every recurrent model")
        if self.nonlinearity == "none" and self.model == "lstm":
            raise ValueError("nonlinearity none needs a plain or spectral RNN, not lstm")
        if self.grad_norms_every and self.model == "lstm":
            raise ValueError("grad_norms_every (‖∂L/∂h_t‖) needs a plain or spectral RNN, not lstm")
        if (self.path_lr_scale == "z_rms" and self.optimizer != "invariant-adam") \
                or (self.path_lr_scale == "path_norm_now" and self.optimizer == "invariant-adam"):
            raise ValueError(f"path_lr_scale {self.path_lr_scale} is not a scale of optimizer {self.optimizer}: "
                             "z_rms is invariant-adam's, path_norm_now Path-SGD's")
        if self.path_momentum and self.optimizer != "path-sgd":
            raise ValueError(f"path_momentum is Path-SGD's momentum; it needs optimizer path-sgd, not {self.optimizer}")
        if not self.bias and self.model not in ("relu", "tanh"):
            raise ValueError(f"bias=false is for the plain RNNs (--model relu or tanh), not {self.model}")
        if self.optimizer in PATH_OPTIMIZERS and self.model in ("lstm", "spectral"):
            raise ValueError(f"optimizer {self.optimizer} needs a plain network (--model relu or tanh), not {self.model}")
        if self.max_path_growth is not None and self.optimizer not in SAFEGUARDED:
            raise ValueError(f"max_path_growth is Path-SGD's safeguard; it needs optimizer path-sgd or invariant-adam, "
                             f"not {self.optimizer}")
        if self.max_unit_step is not None and self.optimizer not in SAFEGUARDED:
            raise ValueError(f"max_unit_step is Path-SGD's trust region; it needs optimizer path-sgd or invariant-adam, "
                             f"not {self.optimizer}")
        if self.path_lr_nonrecurrent != 1.0 and (self.optimizer != "path-sgd" or self.model != "relu"):
            raise ValueError("path_lr_nonrecurrent rebalances Path-SGD's steps on a plain RNN; it needs optimizer "
                             f"path-sgd and model relu, not {self.optimizer} and {self.model}")
        if self.kappa2 and self.optimizer not in PATH_OPTIMIZERS:
            # κ2 only enters a path-normalized step; silently ignoring it would mislead a sweep.
            raise ValueError(f"kappa2 needs optimizer path-sgd, path-adam or invariant-adam, not {self.optimizer}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# What a key missing from a saved config meant when the config was written, for the knobs whose
# default has changed since: a run made before the recurrence knob ran torch's fused kernel.
WRITTEN_BEFORE = {"recurrence": "torch"}
# How a run computes, not what: a resumed or extended run keeps its saved value of these whatever the
# trial asks (so it continues bit for bit), and they never set a run apart from a trial.
KEPT_FROM_THE_RUN = ("recurrence",)


def saved_run_config(saved: dict) -> RunConfig:
    """The RunConfig of a config a run directory holds (:data:`WRITTEN_BEFORE` for the keys it lacks);
    TypeError for a key RunConfig no longer has."""
    return RunConfig(**{**WRITTEN_BEFORE, **saved})


def kept_from_the_run(config: dict, saved: dict) -> dict:
    """``config`` with the run's own :data:`KEPT_FROM_THE_RUN` values (of the config it holds, ``saved``)."""
    run = dataclasses.asdict(saved_run_config(saved))
    return {**config, **{k: run[k] for k in KEPT_FROM_THE_RUN}}


def _check_knob(f: dataclasses.Field, value) -> None:
    """One knob against its declaration: inf or nan in any number ends in a run that means nothing;
    then its bounds and its choices."""
    if value is None:
        return
    m = f.metadata
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{f.name} must be a finite number, got {value!r}")
    choices = choices_of(f)
    inside = ((m.get("at_least") is None or value >= m["at_least"]) and (m.get("above") is None or value > m["above"])
              and (m.get("below") is None or value < m["below"]) and (not choices or value in choices))
    if not inside:
        raise ValueError(f"{f.name} must be {allowed_of(f)}, got {value!r}")


# Fields for which the word "none" is one of the choices. Elsewhere "none" means unset (margin=none: free
# singular values); read that way, nonlinearity=none became unset and so tanh, and runs asked for a
# linear recurrence trained a tanh one.
_NONE_IS_A_WORD = ("nonlinearity", "path_lr_scale")


def _coerce(field: str, value, annotation: str):
    """Turns a YAML or command-line value into the field's type, or says what was expected."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if isinstance(value, str) and value.lower() == "none" and field in _NONE_IS_A_WORD:
        return "none"  # a choice of these fields (the identity transition, no lr scale), not an unset value
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if "None" in kinds:
            return None
        raise ValueError(f"{field} cannot be empty")
    for kind in kinds:
        try:
            if kind == "bool":
                if isinstance(value, bool):
                    return value
                if str(value).lower() in ("true", "yes", "1", "on"):
                    return True
                if str(value).lower() in ("false", "no", "0", "off"):
                    return False
                continue
            if kind == "int":
                if isinstance(value, bool):
                    continue
                as_float = float(value)
                if as_float != int(as_float):
                    continue
                return int(as_float)
            if kind == "float":
                if isinstance(value, bool):
                    continue
                return float(value)
            if kind == "str":
                return str(value)
        except (TypeError, ValueError, OverflowError):  # int(inf) overflows
            continue
    wanted = " or ".join(k for k in kinds if k != "None")
    raise ValueError(f"{field} must be {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}, got {value!r}")


def config_from_mapping(mapping: dict, source: str = "config") -> RunConfig:
    """A RunConfig from a dict (YAML or overrides), rejecting unknown keys with the list of valid ones."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{source}: expected a mapping of key: value, got {type(mapping).__name__}")
    fields = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    values = {}
    for key, value in mapping.items():
        key = str(key).replace("-", "_")
        if key not in fields:
            raise ValueError(f"{source}: unknown key {key!r}; valid keys: {', '.join(fields)}")
        values[key] = _coerce(key, value, fields[key])
    return RunConfig(**values)


def parse_overrides(items: list[str], flag: str = "--set") -> dict:
    """``["lr=1e-3", "init=uniform"]`` → {"lr": "1e-3", "init": "uniform"} (typed later)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{flag} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_config(path: str | None, overrides: dict | None = None) -> RunConfig:
    """YAML file (optional) + overrides → a validated RunConfig."""
    import yaml
    mapping: dict = {}
    if path is not None:
        try:
            with open(path) as f:
                mapping = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ValueError(f"{path}: no such config file") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(mapping, dict):
            raise ValueError(f"{path}: expected a mapping of key: value at the top level")
    merged = {**mapping, **(overrides or {})}
    return config_from_mapping(merged, source=str(path) if path else "--set").validate()
