"""From a Hydra config to a finished run directory.

This is the only module that reads the Hydra/OmegaConf config: ``RunSpec.from_config`` turns it
into typed, validated values, and everything below receives plain arguments. ``execute`` builds
the data, network and rule, trains, and writes config.yaml, metrics.jsonl and summary.json.
"""
from __future__ import annotations

import socket
import sys
import time
import traceback
from dataclasses import dataclass, field

import torch

from . import __version__
from . import checkpoint
from .data import load as load_data
from .data import small_cifar_batch_size
from .errors import ConfigError
from .interrupt import SIGNALS, DeferredSignals
from .nets import ACTIVATIONS, ARCHITECTURES, PARAMETERIZATIONS, ConvNet, NetSpec
from .rules import RULES, build_rule, rules_for
from .runs import append_jsonl, json_line, read_summary, run_dir, write_atomic, write_json
from .train import OPTIMIZERS, TrainConfig, train

FINISHED = ("complete", "diverged")  # a rerun of a run with one of these statuses is skipped
DATASETS = ("add", "cifar10", "embedded", "imagenet", "kmnist", "small_cifar10")
RNN_DATASETS = ("add",)
# dataset keys that are defaults for top-level values or say where/how to load: not identity
LOADING_KEYS = ("name", "root", "verify_md5", "workers", "epochs", "batch_size", "lr")


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
    parameterization: str = "ntk"
    optimizer: str = "sgd"
    device: str = "auto"
    results_dir: str = "results"
    data_root: str | None = None
    verify_md5: bool = True
    data_options: dict = field(default_factory=dict)  # dataset values that define the run
    rule_options: dict = field(default_factory=dict)
    eval_test: bool = True
    progress: str = "auto"
    checkpoint_every: int = 1       # epochs between checkpoints (0: none; a kill then restarts the run)
    keep_checkpoint: bool = False   # keep checkpoint.pt (the final model) after the run finishes

    @classmethod
    def from_config(cls, cfg) -> "RunSpec":
        from omegaconf import OmegaConf
        # the run's own keys only: Hydra's node (present in a sweep's job configs) is not ours
        c = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
             for key, value in ((k, cfg[k]) for k in cfg if k != "hydra")}
        ds, rule = dict(c["dataset"]), dict(c["rule"])
        # the options the rule declares for this data set's model family define the run; the
        # config node also carries other families' options (align_ada's RNN-only same_step)
        family = "rnn" if ds.get("name") in RNN_DATASETS else "cnn"
        declared = RULES.get(rule.get("name"), {}).get(family)
        if declared is not None:
            rule = {k: v for k, v in rule.items() if k == "name" or k in declared.options()}
        optimizer = c.get("optimizer", "auto")
        if optimizer == "auto":
            optimizer = "adam" if c.get("parameterization") == "standard" else "sgd"
        lr = c["lr"]
        if isinstance(lr, int) and not isinstance(lr, bool):
            lr = float(lr)  # lr=5 and lr=5.0 are the same run (and the same directory)
        spec = cls(
            dataset=ds["name"], rule=rule.pop("name"), width=c["width"], lr=lr, epochs=c["epochs"],
            batch_size=c["batch_size"], seed=c["seed"], activation=c["activation"], arch=str(c.get("arch", "auto")),
            parameterization=c["parameterization"], optimizer=optimizer, device=str(c["device"]),
            results_dir=str(c["results_dir"]), data_root=ds.get("root"),
            verify_md5=bool(ds.get("verify_md5", True)),
            data_options={k: v for k, v in ds.items() if k not in LOADING_KEYS},
            rule_options=rule, eval_test=bool(c.get("eval_test", True)), progress=str(c.get("progress", "auto")),
            checkpoint_every=c.get("checkpoint_every", 1), keep_checkpoint=c.get("keep_checkpoint", False))
        spec.validate()
        return spec

    def validate(self) -> None:
        def need(ok, message):
            if not ok:
                raise ConfigError(message)
        need(self.rule in RULES, f"unknown rule {self.rule!r}; valid rules: {', '.join(sorted(RULES))}")
        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; valid datasets: {', '.join(DATASETS)}")
        family = "rnn" if self.dataset in RNN_DATASETS else "cnn"
        need(self.rule in rules_for(family), f"rule {self.rule} cannot train dataset {self.dataset}; "
             f"rules that can: {', '.join(rules_for(family))}")
        need(isinstance(self.width, int) and not isinstance(self.width, bool) and self.width > 0,
             f"width must be a positive integer, got {self.width!r}")
        need(isinstance(self.lr, (int, float)) and self.lr > 0, f"lr must be a positive number, got {self.lr!r}")
        need(isinstance(self.epochs, int) and self.epochs > 0, f"epochs must be a positive integer, got {self.epochs!r}")
        need(self.batch_size is None or (isinstance(self.batch_size, int) and self.batch_size > 0),
             f"batch_size must be a positive integer, got {self.batch_size!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}")
        need(self.arch == "auto" or self.arch in ARCHITECTURES,
             f"arch must be auto or one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        need(self.activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        need(self.parameterization in PARAMETERIZATIONS,
             f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {self.parameterization!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be auto or one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.progress in ("auto", "bar", "lines", "none"),
             f"progress must be auto, bar, lines or none, got {self.progress!r}")
        need(isinstance(self.checkpoint_every, int) and not isinstance(self.checkpoint_every, bool)
             and self.checkpoint_every >= 0, f"checkpoint_every must be an integer >= 0, got {self.checkpoint_every!r}")
        need(isinstance(self.keep_checkpoint, bool), f"keep_checkpoint must be true or false, got {self.keep_checkpoint!r}")
        need(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
             f"device must be auto, cpu or cuda[:N], got {self.device!r}")

    def resolved_batch_size(self) -> int:
        """The minibatch size the run will use; small CIFAR-10 dictates its own (SPEC 3.3)."""
        if self.dataset == "small_cifar10" and isinstance(self.data_options.get("train_size"), int):
            return small_cifar_batch_size(self.data_options["train_size"])
        return self.batch_size or 100

    def run_directory(self):
        """Where this run's results go (known before any data is loaded)."""
        return run_dir(self.results_dir, self.identity())

    def identity(self) -> dict:
        """The values that define the run (its directory is a hash of these)."""
        return {"dataset": self.dataset, **self.data_options, "rule": self.rule, **self.rule_options,
                "width": self.width, "lr": self.lr, "epochs": self.epochs, "batch_size": self.resolved_batch_size(),
                "seed": self.seed, "activation": self.activation, "parameterization": self.parameterization,
                "optimizer": self.optimizer, **({"arch": self.arch} if self.arch != "auto" else {})}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name} requested but CUDA is not available here; use device=auto or cpu")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({socket.gethostname()}, {torch.get_num_threads()} threads)"


class Progress:
    """A tqdm bar on a terminal, one plain line per epoch otherwise."""

    def __init__(self, mode: str, total_steps: int, label: str):
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, desc=label, unit="step", dynamic_ncols=True)
        self.lines, self.label = mode in ("auto", "lines") and self.bar is None, label

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def epoch(self, record: dict, epochs: int) -> None:
        def show(key, value):
            if value is None:
                return f"{key} -"
            if isinstance(value, dict):  # e.g. alignment scores: show the first per-layer list
                name, first = next(((k, v) for k, v in value.items() if isinstance(v, list)), (key, []))
                return f"{key}.{name} [" + " ".join(f"{v:.2f}" for v in first) + "]"
            return f"{key} {100 * value:.1f}%" if key.endswith("acc") else f"{key} {value:.4f}"
        text = " ".join([f"epoch {record['epoch']}/{epochs}"] + [
            show(k, v) for k, v in record.items() if k not in ("epoch", "seconds")])
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        elif self.lines:
            print(f"[{self.label}] {text} ({record['seconds']:.1f}s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def build_net(spec: RunSpec, data, batch_size: int) -> torch.nn.Module:
    """The network the data set calls for: the RNN for the Add task, else the paper's CNN."""
    if data.family == "rnn":
        from .rnn import AddRNN
        return AddRNN(spec.width, batch_size).to(data.dtype)
    return ConvNet(NetSpec(data.arch if spec.arch == "auto" else spec.arch, spec.width, data.in_channels, data.image_size, data.num_classes,
                           spec.activation, spec.parameterization))


def execute(spec: RunSpec, config_yaml: str = "") -> dict:
    """Run the run ``spec`` defines, resume it from its checkpoint, or find it already finished;
    return its summary."""
    batch_size, identity, directory = spec.resolved_batch_size(), spec.identity(), spec.run_directory()
    previous = read_summary(directory)
    if previous and previous.get("status") in FINISHED:
        print(f"already {previous['status']}: {directory}", flush=True)
        return previous

    device = resolve_device(spec.device)
    data = load_data(spec.dataset, device, root=spec.data_root, verify_md5=spec.verify_md5, **spec.data_options)
    if batch_size > len(data.train):
        raise ConfigError(f"batch_size {batch_size} exceeds the {len(data.train)} training examples")
    directory.mkdir(parents=True, exist_ok=True)
    ckpt_path = directory / checkpoint.CHECKPOINT
    resume, why = checkpoint.load(ckpt_path, identity)
    if ckpt_path.exists() or resume is not None:
        print(f"{directory}: {why}", flush=True)
    records = list(resume["records"]) if resume else []
    earlier_seconds = resume.get("wall_seconds", 0.0) if resume else 0.0
    write_atomic(directory / "config.yaml", config_yaml)
    # metrics.jsonl holds exactly the checkpointed epochs (a kill may have left one more line)
    write_atomic(directory / "metrics.jsonl", "".join(json_line(r) for r in records))
    summary = {"status": "running", **identity, "run_dir": str(directory), "device": device_name(device),
               "walign_version": __version__}
    started = time.time()
    label = f"{spec.rule} w{spec.width} lr{spec.lr:g}"
    progress = Progress(spec.progress, spec.epochs * data.train.num_batches(batch_size), label)

    def on_epoch(record, snapshot):
        records.append(record)
        append_jsonl(directory / "metrics.jsonl", record)
        progress.epoch(record, spec.epochs)
        if spec.checkpoint_every and (record["epoch"] % spec.checkpoint_every == 0 or record["epoch"] == spec.epochs):
            checkpoint.save(ckpt_path, {**snapshot(), "identity": identity, "records": records,
                                        "wall_seconds": earlier_seconds + time.time() - started})

    def on_signal(snapshot):
        state = snapshot()
        checkpoint.save(ckpt_path, {**state, "identity": identity, "records": records,
                                    "wall_seconds": earlier_seconds + time.time() - started})
        print(f"{directory}: stop signal; checkpoint saved in epoch {state['epoch'] + 1} after step "
              f"{state['within_epoch']['step']}", flush=True)

    # with checkpoints on, a stop signal (SLURM's USR2, kill's TERM, Ctrl-C) first saves the
    # state at the next step boundary, then takes its usual course
    with DeferredSignals(SIGNALS if spec.checkpoint_every else ()) as signals:
        try:
            torch.manual_seed(spec.seed)
            net = build_net(spec, data, batch_size).to(device)
            rule = build_rule(spec.rule, net, spec.seed, **spec.rule_options)
            outcome = train(rule, data, TrainConfig(spec.epochs, spec.lr, batch_size, spec.optimizer, spec.seed,
                                                    spec.eval_test), on_epoch, progress, resume, signals, on_signal)
        except Exception as err:
            (directory / "error.log").write_text(traceback.format_exc())
            outcome = {"status": "failed", "epochs_done": len(records),
                       "error": f"{type(err).__name__}: {err}".splitlines()[0]}
        finally:
            progress.close()
        summary.update(outcome)
        summary.update(data.summarize(records))
        summary["wall_seconds"] = round(earlier_seconds + time.time() - started, 3)
        if resume:
            summary["resumed_after_epoch"] = resume["epoch"]
            if resume.get("within_epoch"):
                summary["resumed_after_step"] = resume["within_epoch"]["step"]
        write_json(directory / "summary.json", summary)
        if summary["status"] in FINISHED and not spec.keep_checkpoint:
            checkpoint.remove(ckpt_path)
        signals.deliver()  # a signal that came after the last step: the run is saved, now obey it
    return summary
