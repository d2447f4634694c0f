"""A run, checked: every value one training run needs, from the composed Hydra config.

This is where the config becomes typed values: ``RunSpec.from_config`` reads the composed config
(the only code below main.py and the Hydra plugins that does), ``validate`` checks every value
once, and everything below receives the spec. A run's identity (its directory name) is derived
here too, so main, the sweeper, the SLURM launcher, ``walign status`` and the report agree on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .compiled import check_compiler
from .configs import register_configs
from .datasets import DATASETS, DataSet
from . import limits
from .errors import ConfigError
from .loggers import check as check_loggers
from .machine import check_results_dir, parse_device, resolve_device
from .archs import ARCHS, CAPABILITIES, missing
from .nets import ACTIVATIONS, INITIALIZATIONS, PARAMETERIZATIONS
from .precision import PRECISIONS
from .rules import RULES, rules_for
from .rules.base import LOSSES
from .rules.options import resolve as resolve_rule_options
from .scale import SCALES
from .runs import run_dir
from .train import OPTIMIZERS

PROGRESS_MODES = ("auto", "bar", "lines", "none")

register_configs()  # dataset=NAME and rule=NAME work for every registered one (walign's and plugins')


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _known(dataset, rule) -> type[DataSet]:
    """The data set's entry, once the data set and the rule are known and fit each other."""
    _need(dataset in DATASETS, f"unknown dataset {dataset!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    _need(rule in RULES, f"unknown rule {rule!r}; valid rules: {', '.join(sorted(RULES))}")
    family = DATASETS[dataset].family
    _need(family in RULES[rule], f"rule {rule} cannot train dataset {dataset}; rules that can: "
          f"{', '.join(rules_for(family))}")
    return DATASETS[dataset]


@dataclass(frozen=True)
class RunSpec:
    """Every value one training run needs, checked."""
    dataset: str
    rule: str
    width: int
    lr: float
    epochs: int
    batch_size: int | None
    seed: int
    activation: str = "relu"
    arch: str = "auto"
    arch_options: dict = field(default_factory=dict)  # the architecture's options (arch.depth=...)
    parameterization: str = "ntk"
    optimizer: str = "sgd"
    device: str = "auto"
    results_dir: str = "results"
    loading: dict = field(default_factory=dict)       # dataset values that say where and how to load
    data_options: dict = field(default_factory=dict)  # dataset values that define the run
    rule_options: dict = field(default_factory=dict)
    eval_test: bool = True
    progress: str = "auto"
    checkpoint_every: int = 1       # epochs between checkpoints (0: none; a kill then restarts the run)
    keep_checkpoint: bool = False   # keep checkpoint.pt (the final model) after the run finishes
    precision: str = "fp32"         # fp32 | tf32 | bf16 (walign/precision.py)
    compile: bool = False           # torch.compile the training step and evaluation (walign/compiled.py)
    scale: str = "full"             # full | smoke: at most a few hundred examples per split (walign/scale.py)
    loss: str = "mse"               # mse (the paper's) | cross_entropy
    momentum: float = 0.0           # SGD momentum
    weight_decay: float = 0.0
    lr_milestones: tuple = ()       # epochs after which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    augment: bool = False           # random crop and flip on the device (walign/augment.py)
    init: str = "default"           # default | xavier (standard parameterisation)
    loggers: dict = field(default_factory=dict)  # logger name -> its options (walign/loggers/); not identity
    sweep: str = ""                 # the launch the run belongs to ('' alone): the loggers' experiment, group

    @classmethod
    def from_config(cls, cfg, sweep: str = "") -> "RunSpec":
        """The checked spec of a composed config (a Hydra job's, or a single run's); ConfigError
        (one line) for the first wrong value. ``sweep`` names the launch the run belongs to."""
        from omegaconf import OmegaConf
        # the run's own keys only: Hydra's node (present in a sweep's job configs) is not ours
        c = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
             for key, value in ((k, cfg[k]) for k in cfg if k != "hydra")}
        ds, rule = dict(c["dataset"]), dict(c["rule"])
        name = rule.pop("name")
        entry = _known(ds.get("name"), name)
        loading, data_options = entry.split_options(ds)
        arch = c.get("arch", "auto")
        arch, arch_options = (str(arch), {}) if not isinstance(arch, dict) else \
            (str(arch.get("name")), {k: v for k, v in arch.items() if k != "name"})
        optimizer = c.get("optimizer", "auto")
        if optimizer == "auto":
            optimizer = "adam" if c.get("parameterization") == "standard" else "sgd"
        lr = c["lr"]
        if _is_int(lr) and abs(lr) <= 2**64:  # lr=5 and lr=5.0 are the same run (and directory)
            lr = float(lr)
        spec = cls(
            dataset=entry.name, rule=name, width=c["width"], lr=lr, epochs=c["epochs"],
            batch_size=c["batch_size"], seed=c["seed"], activation=c["activation"], arch=arch, arch_options=arch_options,
            parameterization=c["parameterization"], optimizer=optimizer, device=str(c["device"]),
            results_dir=str(c["results_dir"] if c["results_dir"] is not None else ""),
            loading=loading, data_options=data_options,
            rule_options=resolve_rule_options(name, entry.family, RULES[name], rule),
            eval_test=c.get("eval_test", True), progress=str(c.get("progress", "auto")),
            checkpoint_every=c.get("checkpoint_every", 1), keep_checkpoint=c.get("keep_checkpoint", False),
            precision=str(c.get("precision", "fp32")), compile=c.get("compile", False),
            scale=str(c.get("scale", "full")), loss=str(c.get("loss", "mse")), momentum=c.get("momentum", 0.0),
            weight_decay=c.get("weight_decay", 0.0), lr_milestones=tuple(c.get("lr_milestones") or ()),
            lr_gamma=c.get("lr_gamma", 0.1), augment=c.get("augment", False), init=str(c.get("init", "default")),
            loggers=dict(c.get("logger") or {}), sweep=sweep)
        spec._validate(entry)  # the names were checked above and the rule options resolved
        return spec

    @property
    def entry(self) -> type[DataSet]:
        return DATASETS[self.dataset]

    @property
    def family(self) -> str:
        return self.entry.family

    def validate(self) -> None:
        """Check every value (not the machine: see ``check_environment``); ConfigError if wrong."""
        entry = _known(self.dataset, self.rule)
        resolve_rule_options(self.rule, self.family, RULES[self.rule], self.rule_options)
        self._validate(entry)

    def _validate(self, entry: type[DataSet]) -> None:
        for key in ("width", "lr", "epochs", "seed"):  # the ranges summary.json is read back with (walign.limits)
            wrong = limits.problem(key, getattr(self, key))
            _need(wrong is None, f"{key} {wrong}")
        _need(self.batch_size is None or limits.problem("batch_size", self.batch_size) is None,
              f"batch_size {limits.problem('batch_size', self.batch_size)} (or null: the data set's own)")
        self._validate_choices()
        entry.check(self.loading, self.data_options)
        self._validate_arch(entry)
        self._validate_recipe(rule_class=RULES[self.rule][self.family])
        examples = entry.train_examples(self.data_options)
        _need(examples is None or self.resolved_batch_size() <= examples,
              f"batch_size {self.resolved_batch_size()} exceeds the {examples} training examples of {self.dataset}")
        rule = RULES[self.rule][self.family]
        rule.check(self.rule_options, self.epochs)
        _need(not (self.compile and rule.compile_refusal), f"rule {self.rule} ({self.family}) cannot be compiled: "
              f"{rule.compile_refusal}; run it with compile=false")
        _need(not (self.family == "rnn" and self.precision == "bf16"), f"dataset {self.dataset} refuses "
              f"precision=bf16: the Add-task RNN reproduces Table 8 in float64 (use fp32 or tf32)")
        _need(self.results_dir.strip() != "", "results_dir is empty; give the directory run folders go under "
              "(default: results)")
        parse_device(self.device)
        check_loggers(self.loggers)
        self._validate_size()

    def _validate_arch(self, entry: type[DataSet]) -> None:
        """The architecture exists, takes these options, is of the data set's family and offers
        what the rule needs (``auto``: the data set's own network, when it names a registered one)."""
        if self.arch == "auto":
            _need(not self.arch_options, f"arch auto (the data set's own network) takes no options, got "
                  f"{', '.join(sorted(self.arch_options))}")
            try:
                shape = entry.shape(self.data_options) if entry.family == "cnn" else None
            except (ValueError, TypeError):  # options its loading refuses: said when it loads
                shape = None
            arch = ARCHS.get(getattr(shape, "arch", None) or ("add_rnn" if entry.family == "rnn" else ""))
            if arch is None:
                return
        else:
            _need(self.arch in ARCHS, f"arch must be auto or one of {', '.join(sorted(ARCHS))}, got {self.arch!r}")
            arch = ARCHS[self.arch]
            arch.resolve(self.arch_options)
        _need(arch.family == entry.family, f"arch {arch.name} is a {arch.family} network; dataset {self.dataset} "
              f"is learned by a {entry.family} one")
        lacking = missing(arch, RULES[self.rule][self.family].needs)
        if lacking:
            able = [name for name, impl in sorted(RULES.items()) if self.family in impl
                    and not missing(arch, impl[self.family].needs)]
            raise ConfigError(f"rule {self.rule} needs {'; '.join(f'{CAPABILITIES[c]} ({c!r})' for c in lacking)}, "
                              f"which arch {arch.name} does not offer; rules it can train: {', '.join(able) or 'none'}")

    def _validate_recipe(self, rule_class) -> None:
        """The training recipe beyond the paper's: loss, momentum, weight decay, schedule, augmentation."""
        _need(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        _need(self.loss in rule_class.losses, f"rule {self.rule} ({self.family}) is written for the loss "
              f"{', '.join(rule_class.losses)} only, not {self.loss}")
        for key, high in (("momentum", 1.0), ("weight_decay", 1.0)):
            value = getattr(self, key)
            _need(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < high,
                  f"{key} must be a number in [0, {high:g}), got {value!r}")
        _need(not (self.momentum and self.optimizer != "sgd"), f"momentum is SGD's; optimizer {self.optimizer} "
              f"has its own moments (set momentum=0)")
        _need(isinstance(self.lr_gamma, (int, float)) and not isinstance(self.lr_gamma, bool) and 0 < self.lr_gamma <= 1,
              f"lr_gamma must be a number in (0, 1], got {self.lr_gamma!r}")
        milestones = list(self.lr_milestones)
        _need(all(_is_int(m) and 1 <= m < self.epochs for m in milestones) and milestones == sorted(set(milestones)),
              f"lr_milestones must be increasing epochs in 1..{self.epochs - 1} (the lr is multiplied by lr_gamma "
              f"after each), got {milestones}")
        _need(isinstance(self.augment, bool), f"augment must be true or false, got {self.augment!r}")
        _need(self.init in INITIALIZATIONS, f"init must be one of {', '.join(INITIALIZATIONS)}, got {self.init!r}")
        _need(self.init == "default" or self.parameterization == "standard", f"init={self.init} sets the variance "
              f"of the standard parameterisation's draws; under ntk the weights are N(0, 1) by definition "
              f"(add parameterization=standard)")
        _need(self.init == "default" or self.family == "cnn", f"init={self.init} is for the feed-forward networks")
        _need(not (self.augment and self.family != "cnn"), f"augment crops and flips images; dataset {self.dataset} "
              f"has none")

    def recipe(self) -> dict:
        """The recipe values that differ from the paper's (part of the run's identity only then)."""
        paper = {"loss": "mse", "momentum": 0.0, "weight_decay": 0.0, "lr_milestones": (), "lr_gamma": 0.1,
                 "augment": False, "init": "default"}
        values = {key: getattr(self, key) for key in paper}
        if not values["lr_milestones"]:
            values["lr_gamma"] = 0.1  # no schedule: gamma does nothing
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if v != paper[k]}

    def arch_entry(self):
        """The architecture entry the run builds (the data set's own for ``auto``), or None for a
        data set whose own network is not a registered one."""
        if self.arch != "auto":
            return ARCHS[self.arch]
        if self.family == "rnn":
            return ARCHS["add_rnn"]
        try:
            shape = self.entry.shape(self.data_options)
        except (ValueError, TypeError):
            return None
        return ARCHS.get(getattr(shape, "arch", None))

    def resolved_arch_options(self) -> dict:
        """The architecture's options with its defaults filled in."""
        entry = self.arch_entry() if self.arch != "auto" else None
        return {**entry.options(), **self.arch_options} if entry is not None else {}

    def _validate_size(self) -> None:
        """A width whose network could fit in no machine's memory is refused here, in one line,
        instead of failing in torch's allocator after the run directory was made."""
        from .cost import run_cost
        try:
            weight_bytes = run_cost(self).get("weight_bytes")
        except (NotImplementedError, ValueError, TypeError):  # a data set that cannot say (a plugin without
            return                                              # shape, or options its loading refuses)
        _need(weight_bytes is None or weight_bytes <= limits.MAX_WEIGHT_BYTES,
              f"width {self.width} gives {self.dataset}'s network {weight_bytes / 2**30:.0f} GiB of weights, more "
              f"than any machine's memory (at most {limits.MAX_WEIGHT_BYTES / 2**30:.0f} GiB)")

    def _validate_choices(self) -> None:
        """The values that must be one of a list, and the flags that must be true or false."""
        for key, valid, auto in (("activation", ACTIVATIONS, False),
                                 ("parameterization", PARAMETERIZATIONS, False), ("optimizer", OPTIMIZERS, True),
                                 ("progress", PROGRESS_MODES, False), ("precision", PRECISIONS, False),
                                 ("scale", SCALES, False)):
            value = getattr(self, key)
            _need(value in valid or (auto and value == "auto"),
                  f"{key} must be {'auto or ' if auto else ''}one of {', '.join(valid)}, got {value!r}")
        wrong = limits.problem("checkpoint_every", self.checkpoint_every)
        _need(wrong is None, f"checkpoint_every {wrong} (0: no checkpoints)")
        for key in ("eval_test", "keep_checkpoint", "compile"):
            _need(isinstance(getattr(self, key), bool), f"{key} must be true or false, got {getattr(self, key)!r}")

    def check_environment(self, data: bool = True) -> torch.device:
        """What the values need from this machine: a writable results_dir, the device and (with
        ``data``) the data set's files, fetched first if dataset.download asks. Returns the device;
        ConfigError (one line) if one is not there."""
        check_results_dir(self.results_dir)
        device = resolve_device(self.device)
        if self.compile:
            check_compiler(device)
        if data:
            self.entry.check_available(self.loading)
        return device

    def resolved_batch_size(self) -> int:
        """The minibatch size the run will use (small CIFAR-10 dictates its own, docs/method.md §3.3)."""
        return self.entry.batch_size(self.data_options, self.batch_size)

    def run_directory(self) -> Path:
        """Where this run's results go (known before any data is loaded)."""
        return run_dir(self.results_dir, self.identity())

    def identity(self) -> dict:
        """The values that define the run (its directory is a hash of these)."""
        omits = RULES[self.rule][self.family].identity_omits
        options = {k: v for k, v in self.rule_options.items() if k not in omits or omits[k] != v}
        return {"dataset": self.dataset, **self.data_options, "rule": self.rule, **options,
                "width": self.width, "lr": self.lr, "epochs": self.epochs, "batch_size": self.resolved_batch_size(),
                "seed": self.seed, "activation": self.activation, "parameterization": self.parameterization,
                "optimizer": self.optimizer, **({"arch": self.arch} if self.arch != "auto" else {}),
                **{f"arch_{k}": v for k, v in self.resolved_arch_options().items()},
                # keys added later enter only away from their old behaviour: existing runs keep their names
                **({"compute_precision": self.precision} if self.precision != "fp32" else {}),
                **({"compile": True} if self.compile else {}),
                **({"scale": self.scale} if self.scale != "full" else {}),
                **self.recipe()}
