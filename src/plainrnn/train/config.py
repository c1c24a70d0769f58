"""One config object for a run (nanoGPT style): every knob, its default, and its allowed values."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..nets.init import MLP_INITS, RECURRENT_INITS

MODELS = ("relu", "tanh", "lstm", "spectral", "mlp")
from ..nets.spectral_rnn import NONLINEARITIES  # the widest list: SpectralRNN's
OPTIMIZERS = ("sgd", "momentum", "adam", "adagrad", "rmsprop", "path-sgd", "path-adam", "invariant-adam")
PATH_OPTIMIZERS = ("path-sgd", "path-adam", "invariant-adam")  # the ones that read κ
SAFEGUARDED = ("path-sgd", "invariant-adam")                   # the ones with the trust region and backtracking


@dataclass
class RunConfig:
    task: str = "adding"
    model: str = "relu"
    seq_len: int | None = None           # None: the task's default (adding/copy 100, ptb-char 50, ...)
    hidden: int = 100
    layers: int = 1
    nonlinearity: str | None = None      # None: relu for --model relu, tanh for --model tanh
    init: str = "identity"
    init_scale: float = 0.01             # a of the uniform recurrent init
    input_scale: float = 0.01            # non-recurrent weights from U[-s, s] (2016 paper)
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9                # used by --optimizer momentum only (also as the spectral model's inner optimizer)
    batch_size: int = 50
    steps: int = 1000
    clip: float | None = None            # max gradient norm; None: no clipping
    diverge_above: float = 1e6           # an evaluation loss above this ends the run as diverged (exploded)
    eval_every: int = 100
    checkpoint_every: int = 0            # atomic checkpoint every N steps (0: at every evaluation)
    tensorboard: bool = False            # also log scalars to <run dir>/tensorboard
    eval_limit: int | None = None        # evaluate on at most this many validation/test examples
    eval_train: bool = False             # real data: also evaluate on (train_eval_limit of) the training set
    train_eval_limit: int | None = None  # eval_train on at most this many training examples (None: eval_limit)
    full_train: bool = False             # image sets: train on the validation split too (the 2015 paper, after picking lr)
    seed: int = 0
    device: str = "cpu"                  # cpu, cuda, cuda:N or auto (cuda when torch sees a GPU, else cpu)
    kappa2: bool = False                 # Path-SGD with the second-order term κ2
    margin: float | None = None          # spectral model: singular values in [1-m, 1+m]; None: free
    orth_lr: float = 1e-6                # spectral model: geodesic SGD learning rate on U and V
    orth_penalty: float = 0.0            # λ‖WᵀW − I‖² added to the loss (any recurrent model)
    sv_prior: float = 0.0                # λ Σ(s_i − 1)², the mean-one Gaussian prior on singular values
    weight_decay: float = 0.0            # λ‖W‖² on the composite recurrent matrix
    loss_over_time: str = "mean"         # a task with an output every step: "mean" or "sum" of the per-step losses
    path_lr_scale: str = "path_norm"     # "path_norm" (γ²(w0)), "path_norm_now" (γ² at every κ pass) or "none"
    path_momentum: float = 0.0           # path-sgd: momentum on the path-normalized direction
    bias: bool = True                    # plain RNNs: biases (the 2016 paper's equations have none)
    max_path_growth: float | None = None # Path-SGD's γ² safeguard: undo and halve a step that raises γ² more than this
    max_unit_step: float | None = None   # Path-SGD's per-unit trust region ρ in the κ metric (None: off)
    path_lr_nonrecurrent: float = 1.0    # Path-SGD: lr multiplier of every parameter but the recurrent weight_hh
    grad_norms_every: int = 0           # record ‖∂L/∂h_t‖ for every t every N steps (0: never)
    dropout: float = 0.0                 # MLP only: dropout on hidden units (the 2015 paper uses 0.5)
    data_dir: str | None = None          # dataset cache; default $PLAINRNN_DATA or ~/.cache/plainrnn
    out: str = "runs"                    # parent directory of run directories
    name: str | None = None              # run directory name; default built from the settings

    def run_name(self) -> str:
        T = f"-T{self.seq_len}" if self.seq_len else ""
        return self.name or f"{self.task}{T}-{self.model}-{self.init}-{self.optimizer}-lr{self.lr:g}-s{self.seed}"

    def resolved_nonlinearity(self) -> str:
        return self.nonlinearity or ("tanh" if self.model in ("tanh", "spectral") else "relu")

    def validate(self) -> "RunConfig":
        """Raises ValueError naming the field and what is allowed."""
        def need(cond, field, allowed, value):
            if not cond:
                raise ValueError(f"{field} must be {allowed}, got {value!r}")

        from ..tasks import FLAT_IMAGES, SYNTHETIC, TASKS
        for f in dataclasses.fields(self):  # inf or nan in any numeric knob ends in a run that means nothing
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name
                                      or self.name in (".", "..") or self.name.startswith(".")):
            # a run lives in out/<name>: a separator or a leading dot would put it (and what its
            # checks delete) somewhere else
            raise ValueError(f"name must be a folder name inside out ({self.out}), without '/', '\\' or a leading "
                             f"'.', got {self.name!r}")
        need(self.task in TASKS, "task", f"one of {', '.join(TASKS)}", self.task)
        if (self.task in FLAT_IMAGES) != (self.model == "mlp"):
            raise ValueError(f"task {self.task} needs " + ("--model mlp (flattened images)" if self.task in FLAT_IMAGES
                             else "a recurrent model; --model mlp is for mnist, cifar10, cifar100, svhn"))
        need(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)
        if self.full_train and self.task not in FLAT_IMAGES:
            raise ValueError(f"full_train is for the flat image sets ({', '.join(FLAT_IMAGES)}), not {self.task}")
        if self.eval_train and self.task in SYNTHETIC:
            # adding and copy draw a new batch every step: there is no training set to evaluate
            raise ValueError(f"eval_train needs a task with a fixed training set (not {', '.join(SYNTHETIC)}), "
                             f"got {self.task}")
        if self.model == "mlp" and (self.orth_penalty or self.sv_prior or self.weight_decay or self.grad_norms_every):
            raise ValueError("orth_penalty, sv_prior, weight_decay and grad_norms_every act on recurrent matrices; "
                             "an MLP has none")
        need(self.model in MODELS, "model", f"one of {', '.join(MODELS)}", self.model)
        need(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}", self.optimizer)
        if self.model == "mlp":  # the recurrent default (identity) stands for the MLP's balanced init
            need(self.init in MLP_INITS + ("identity",), "init", "balanced or unbalanced for an MLP", self.init)
        else:
            need(self.init in RECURRENT_INITS, "init", f"one of {', '.join(RECURRENT_INITS)} for a recurrent model",
                 self.init)
        need(self.loss_over_time in ("mean", "sum"), "loss_over_time", "mean or sum", self.loss_over_time)
        need(self.nonlinearity in (None,) + NONLINEARITIES, "nonlinearity", ", ".join(NONLINEARITIES), self.nonlinearity)
        if self.nonlinearity in ("oplu", "prelu") and self.model != "spectral":
            raise ValueError(f"nonlinearity {self.nonlinearity} needs --model spectral; relu, tanh and none work on "
                             "every recurrent model")
        if self.nonlinearity == "none" and self.model == "lstm":
            raise ValueError("nonlinearity none needs a plain or spectral RNN, not lstm")
        need(self.margin is None or self.margin >= 0, "margin", ">= 0 (or unset for free singular values)", self.margin)
        need(self.orth_lr > 0, "orth_lr", "> 0", self.orth_lr)
        need(self.grad_norms_every >= 0, "grad_norms_every", ">= 0", self.grad_norms_every)
        if self.grad_norms_every and self.model == "lstm":
            raise ValueError("grad_norms_every (‖∂L/∂h_t‖) needs a plain or spectral RNN, not lstm")
        for field in ("orth_penalty", "sv_prior", "weight_decay"):
            need(getattr(self, field) >= 0, field, ">= 0", getattr(self, field))
        need(self.lr > 0, "lr", "> 0", self.lr)
        need(self.seq_len is None or self.seq_len >= 2, "seq_len", ">= 2", self.seq_len)
        for field in ("hidden", "layers", "batch_size", "steps", "eval_every"):
            need(getattr(self, field) >= 1, field, ">= 1", getattr(self, field))
        need(self.clip is None or self.clip > 0, "clip", "> 0", self.clip)
        need(self.diverge_above > 0, "diverge_above", "> 0", self.diverge_above)
        need(self.eval_limit is None or self.eval_limit >= 1, "eval_limit", ">= 1", self.eval_limit)
        need(self.train_eval_limit is None or self.train_eval_limit >= 1, "train_eval_limit", ">= 1",
             self.train_eval_limit)
        need(self.checkpoint_every >= 0, "checkpoint_every", ">= 0", self.checkpoint_every)
        need(self.init_scale > 0, "init_scale", "> 0", self.init_scale)
        need(self.input_scale > 0, "input_scale", "> 0", self.input_scale)
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        need(self.path_lr_scale in ("path_norm", "path_norm_now", "z_rms", "none"), "path_lr_scale",
             "path_norm, path_norm_now, z_rms (invariant-adam) or none", self.path_lr_scale)
        if (self.path_lr_scale == "z_rms" and self.optimizer != "invariant-adam") \
                or (self.path_lr_scale == "path_norm_now" and self.optimizer == "invariant-adam"):
            raise ValueError(f"path_lr_scale {self.path_lr_scale} is not a scale of optimizer {self.optimizer}: "
                             "z_rms is invariant-adam's, path_norm_now Path-SGD's")
        need(0 <= self.path_momentum < 1, "path_momentum", "in [0, 1)", self.path_momentum)
        if self.path_momentum and self.optimizer != "path-sgd":
            raise ValueError(f"path_momentum is Path-SGD's momentum; it needs optimizer path-sgd, not {self.optimizer}")
        if not self.bias and self.model not in ("relu", "tanh"):
            raise ValueError(f"bias=false is for the plain RNNs (--model relu or tanh), not {self.model}")
        if self.optimizer in PATH_OPTIMIZERS and self.model in ("lstm", "spectral"):
            raise ValueError(f"optimizer {self.optimizer} needs a plain network (--model relu or tanh), not {self.model}")
        need(self.max_path_growth is None or self.max_path_growth > 0, "max_path_growth", "> 0 (or unset)",
             self.max_path_growth)
        if self.max_path_growth is not None and self.optimizer not in SAFEGUARDED:
            raise ValueError(f"max_path_growth is Path-SGD's safeguard; it needs optimizer path-sgd or invariant-adam, "
                             f"not {self.optimizer}")
        need(self.device in ("cpu", "cuda", "auto") or (self.device.startswith("cuda:")
                                                        and self.device[5:].isdigit()),
             "device", "cpu, cuda, cuda:N or auto", self.device)
        need(self.max_unit_step is None or self.max_unit_step > 0, "max_unit_step", "> 0 (or unset)",
             self.max_unit_step)
        if self.max_unit_step is not None and self.optimizer not in SAFEGUARDED:
            raise ValueError(f"max_unit_step is Path-SGD's trust region; it needs optimizer path-sgd or invariant-adam, "
                             f"not {self.optimizer}")
        need(math.isfinite(self.path_lr_nonrecurrent) and self.path_lr_nonrecurrent > 0, "path_lr_nonrecurrent", "> 0",
             self.path_lr_nonrecurrent)
        if self.path_lr_nonrecurrent != 1.0 and (self.optimizer != "path-sgd" or self.model != "relu"):
            raise ValueError("path_lr_nonrecurrent rebalances Path-SGD's steps on a plain RNN; it needs optimizer "
                             f"path-sgd and model relu, not {self.optimizer} and {self.model}")
        if self.kappa2 and self.optimizer not in PATH_OPTIMIZERS:
            # κ2 only enters a path-normalized step; silently ignoring it would mislead a sweep.
            raise ValueError(f"kappa2 needs optimizer path-sgd, path-adam or invariant-adam, not {self.optimizer}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


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
