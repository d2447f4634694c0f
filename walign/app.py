"""From a Hydra config to a finished run directory.

This is the only module that reads the Hydra/OmegaConf config: ``RunSpec.from_config`` turns it
into typed, validated values, and everything below receives plain arguments. ``execute`` claims
the run directory, builds the data, network and rule, resumes from a checkpoint if there is a
usable one, trains, and writes config.yaml, metrics.jsonl and summary.json.
"""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from . import checkpoint, precision
from .allocator import keep_freed_memory
from .configs import register_configs
from .claim import AlreadyRunning, Claim, describe, holder
from .data import DATASETS, check_available, loader_keys, train_examples
from .data import load as load_data
from .data import small_cifar_batch_size
from .errors import ConfigError
from .interrupt import SIGNALS, DeferredSignals, signal_name
from .nets import ACTIVATIONS, ARCHITECTURES, PARAMETERIZATIONS, ConvNet, NetSpec
from .progress import Progress
from .rules import RULES, build_rule, rules_for
from .rules.options import resolve as resolve_rule_options
from .runs import (SUMMARY, Unreadable, WriteError, append_jsonl, json_line, read_metrics, read_summary, run_dir,
                   set_aside, strict, write_atomic, write_json)
from .precision import PRECISIONS
from .train import NUMPY_SEEDS, OPTIMIZERS, TrainConfig, TrainState, train

register_configs()  # rule=NAME works for every registered rule (walign's and plugins')

FINISHED = ("complete", "diverged")  # a rerun of a run with one of these statuses is skipped
# dataset keys that are defaults for top-level values or say where/how to load: not identity
LOADING_KEYS = ("name", "root", "verify_md5", "workers", "epochs", "batch_size", "lr", "download")
DEFAULT_KEYS = ("name", "epochs", "batch_size", "lr")  # the data set's defaults for top-level values
PROGRESS_MODES = ("auto", "bar", "lines", "none")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    loading: dict = field(default_factory=dict)       # dataset values that say where and how to load
    data_options: dict = field(default_factory=dict)  # dataset values that define the run
    rule_options: dict = field(default_factory=dict)
    eval_test: bool = True
    progress: str = "auto"
    checkpoint_every: int = 1       # epochs between checkpoints (0: none; a kill then restarts the run)
    keep_checkpoint: bool = False   # keep checkpoint.pt (the final model) after the run finishes
    precision: str = "fp32"         # fp32 | tf32 | bf16 (walign/precision.py)

    @classmethod
    def from_config(cls, cfg) -> "RunSpec":
        from omegaconf import OmegaConf
        # the run's own keys only: Hydra's node (present in a sweep's job configs) is not ours
        c = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
             for key, value in ((k, cfg[k]) for k in cfg if k != "hydra")}
        ds, rule = dict(c["dataset"]), dict(c["rule"])
        name, dataset = rule.pop("name"), ds.get("name")
        if dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
        if name not in RULES:
            raise ConfigError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}")
        family = DATASETS[dataset].family
        if family not in RULES[name]:
            raise ConfigError(f"rule {name} cannot train dataset {dataset}; rules that can: "
                              f"{', '.join(rules_for(family))}")
        optimizer = c.get("optimizer", "auto")
        if optimizer == "auto":
            optimizer = "adam" if c.get("parameterization") == "standard" else "sgd"
        lr = c["lr"]
        if _is_int(lr):
            lr = float(lr)  # lr=5 and lr=5.0 are the same run (and the same directory)
        spec = cls(
            dataset=dataset, rule=name, width=c["width"], lr=lr, epochs=c["epochs"],
            batch_size=c["batch_size"], seed=c["seed"], activation=c["activation"], arch=str(c.get("arch", "auto")),
            parameterization=c["parameterization"], optimizer=optimizer, device=str(c["device"]),
            results_dir=str(c["results_dir"] if c["results_dir"] is not None else ""),
            loading={k: v for k, v in ds.items() if k in LOADING_KEYS and k not in DEFAULT_KEYS},
            data_options={k: v for k, v in ds.items() if k not in LOADING_KEYS},
            rule_options=resolve_rule_options(name, family, RULES[name], rule),
            eval_test=c.get("eval_test", True), progress=str(c.get("progress", "auto")),
            checkpoint_every=c.get("checkpoint_every", 1), keep_checkpoint=c.get("keep_checkpoint", False),
            precision=str(c.get("precision", "fp32")))
        spec.validate()
        return spec

    @property
    def family(self) -> str:
        return DATASETS[self.dataset].family

    def validate(self) -> None:
        """Check every value (not the machine: see ``check_environment``); ConfigError if wrong."""
        def need(ok, message):
            if not ok:
                raise ConfigError(message)
        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; valid datasets: {', '.join(DATASETS)}")
        need(self.rule in RULES, f"unknown rule {self.rule!r}; valid rules: {', '.join(sorted(RULES))}")
        need(self.family in RULES[self.rule], f"rule {self.rule} cannot train dataset {self.dataset}; "
             f"rules that can: {', '.join(rules_for(self.family))}")
        resolve_rule_options(self.rule, self.family, RULES[self.rule], self.rule_options)
        need(_is_int(self.width) and self.width > 0, f"width must be a positive integer, got {self.width!r}")
        need(isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and math.isfinite(self.lr)
             and self.lr > 0, f"lr must be a finite positive number, got {self.lr!r}")
        need(_is_int(self.epochs) and self.epochs > 0, f"epochs must be a positive integer, got {self.epochs!r}")
        need(self.batch_size is None or (_is_int(self.batch_size) and self.batch_size > 0),
             f"batch_size must be a positive integer, got {self.batch_size!r}")
        need(_is_int(self.seed) and 0 <= self.seed < NUMPY_SEEDS,
             f"seed must be an integer in 0..{NUMPY_SEEDS - 1} (numpy's seed range), got {self.seed!r}")
        need(self.arch == "auto" or self.arch in ARCHITECTURES,
             f"arch must be auto or one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        need(self.activation in ACTIVATIONS, f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        need(self.parameterization in PARAMETERIZATIONS,
             f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {self.parameterization!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be auto or one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.progress in PROGRESS_MODES, f"progress must be one of {', '.join(PROGRESS_MODES)}, got {self.progress!r}")
        need(_is_int(self.checkpoint_every) and self.checkpoint_every >= 0,
             f"checkpoint_every must be an integer >= 0, got {self.checkpoint_every!r}")
        for key in ("eval_test", "keep_checkpoint"):
            need(isinstance(getattr(self, key), bool), f"{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("verify_md5", "download"):
            value = self.loading.get(key, False)
            need(isinstance(value, bool), f"dataset.{key} must be true or false, got {value!r}")
        unknown = (set(self.loading) | set(self.data_options)) - set(loader_keys(self.dataset))
        need(not unknown, f"dataset {self.dataset} has no option {', '.join(sorted(unknown))}; its options: "
             f"{', '.join(loader_keys(self.dataset)) or 'none'}")
        examples = train_examples(self.dataset, self.data_options)
        need(examples is None or self.resolved_batch_size() <= examples,
             f"batch_size {self.resolved_batch_size()} exceeds the {examples} training examples of {self.dataset}")
        RULES[self.rule][self.family].check(self.rule_options, self.epochs)
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(not (self.family == "rnn" and self.precision == "bf16"), f"dataset {self.dataset} refuses "
             f"precision=bf16: the Add-task RNN reproduces Table 8 in float64 (use fp32 or tf32)")
        need(self.results_dir.strip() != "", "results_dir is empty; give the directory run folders go under "
             "(default: results)")
        parse_device(self.device)

    def check_environment(self, data: bool = True) -> torch.device:
        """What the values need from this machine: a writable results_dir, the device and (with
        ``data``) the data set's files, fetched first if dataset.download asks. Returns the device;
        ConfigError (one line) if one is not there."""
        check_results_dir(self.results_dir)
        device = resolve_device(self.device)
        if data:
            check_available(self.dataset, self.loading)
        return device

    def resolved_batch_size(self) -> int:
        """The minibatch size the run will use; small CIFAR-10 dictates its own (SPEC 3.3)."""
        if self.dataset == "small_cifar10" and _is_int(self.data_options.get("train_size")):
            return small_cifar_batch_size(self.data_options["train_size"])
        return self.batch_size or 100

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
                # keys added later enter only away from their old behaviour: existing runs keep their names
                **({"compute_precision": self.precision} if self.precision != "fp32" else {})}


# ----------------------------------------------------------------------------- the machine
def parse_device(name: str) -> torch.device | None:
    """torch's own reading of a device string ('auto' -> None); ConfigError if it has none."""
    if name == "auto":
        return None
    try:
        return torch.device(name)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"device {name!r} is not a device torch knows "
                          f"({str(err).splitlines()[0]}); use auto, cpu, cuda or cuda:N") from None


def resolve_device(name: str) -> torch.device:
    device = parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else \
                ("this torch build has no CUDA" if torch.version.cuda is None else "no GPU or driver is visible")
            raise ConfigError(f"device {name} requested but CUDA is not available here ({why}); use device=auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        backend = getattr(torch.backends, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ConfigError(f"device {name} is not available here; use device=auto, cpu or cuda[:N]")
    return device


PROBE_BYTES = 64 * 1024  # a full disk still lets an empty file be created: the probe writes this much


def check_results_dir(results_dir: str) -> None:
    """results_dir must be a directory walign can write files in; checked by writing (and
    removing) a temporary file of PROBE_BYTES in it or in its nearest existing parent, so a
    read-only or a full disk is refused before anything (Hydra's folders included) is written."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"results_dir {results_dir} is a file, not a directory")
    probe_in = path
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ConfigError(f"results_dir {results_dir} cannot be created: {probe_in} is a file")
    try:
        fd, name = tempfile.mkstemp(prefix=".walign-probe-", dir=probe_in)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        where = "" if probe_in == path else f" (its parent {probe_in} is where it would be created)"
        raise ConfigError(f"results_dir {results_dir} is not writable{where}: {err.strerror or err}") from None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({socket.gethostname()}, {torch.get_num_threads()} threads)"


def build_net(spec: RunSpec, data, batch_size: int) -> torch.nn.Module:
    """The network the data set calls for: the RNN for the Add task, else the paper's CNN."""
    if data.family == "rnn":
        from .rnn import AddRNN
        return AddRNN(spec.width, batch_size).to(data.dtype)
    return ConvNet(NetSpec(data.arch if spec.arch == "auto" else spec.arch, spec.width, data.in_channels,
                           data.image_size, data.num_classes, spec.activation, spec.parameterization))


# ----------------------------------------------------------------------------- running
def belongs(summary: dict, spec: RunSpec, directory: Path) -> None:
    """Unreadable unless a finished ``summary`` is this run's: its identifying values are the
    run's, and its results are what the run's own metrics.jsonl gives (a summary copied from
    another run, or one edited by hand, would otherwise mark this run done with another number)."""
    path = directory / SUMMARY
    identity = json.loads(json.dumps(strict(spec.identity()), default=str))  # as it reads back from JSON
    identity["compute_precision"] = spec.precision
    for key, value in identity.items():
        found = summary.get(key, "fp32" if key == "compute_precision" else None)
        if found != value:
            raise Unreadable(path, f"is another run's ({key} is {found!r}, this run's {value!r})")
    records, problems = read_metrics(directory)
    if problems:
        raise Unreadable(path, f"does not match the run's metrics ({problems[0]})")
    expected = {"epochs_done": len(records), **DATASETS[spec.dataset].summarize(records)}
    for key, value in json.loads(json.dumps(strict(expected))).items():
        if key in summary and summary[key] != value:  # (a summary from before a key existed lacks it)
            raise Unreadable(path, f"says {key} {summary.get(key)!r}, but its metrics.jsonl gives {value!r}")


def finished_summary(spec: RunSpec, directory: Path, say=None) -> dict | None:
    """The run's summary if it is finished and is this run's, else None ("run it").

    With ``say`` (the caller holds the run's claim) a summary that cannot be read or is not this
    run's is renamed aside to summary.json.bad-<time> with one line saying why; without, it is
    only judged, and left for the holder to deal with."""
    try:
        summary = read_summary(directory)
        if summary is None or summary["status"] not in FINISHED:
            return None
        belongs(summary, spec, directory)
        return summary
    except Unreadable as err:
        if say is not None:
            try:
                moved = f"moved it to {set_aside(err.path).name}"
            except OSError as why:
                raise WriteError(err.path, why) from None
            say(f"unreadable: {err}; {moved}, running it again", flush=True)
        return None


def execute(spec: RunSpec, config_yaml: str = "", say=print) -> dict:
    """Run the run ``spec`` defines, resume it from its checkpoint, or find it already finished
    or running elsewhere; return its summary ({'status': 'running', ...} for the last)."""
    directory = spec.run_directory()
    done = finished_summary(spec, directory)
    if done:
        say(f"already {done['status']}: {directory}", flush=True)
        return {**done, "run_dir": str(directory)}
    device = spec.check_environment()

    def running(claim):
        say(f"already running ({describe(claim)}): {directory}", flush=True)
        return {"status": "running", "run_dir": str(directory), "holder": claim}

    if (claim := holder(directory, say)) is not None:  # cheap early answer; the claim below decides
        return running(claim)
    if device.type == "cpu":
        keep_freed_memory()  # each step reuses the pages of the last (walign/allocator.py)
    data = load_data(spec.dataset, device, **spec.loading, **spec.data_options)
    if spec.resolved_batch_size() > len(data.train):
        raise ConfigError(f"batch_size {spec.resolved_batch_size()} exceeds the {len(data.train)} training examples")
    if directory.is_symlink():
        raise ConfigError(f"refusing {directory}: the run directory is a symbolic link to {os.readlink(directory)}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(directory, err) from None
    try:
        with Claim(directory, say) as claim:
            done = finished_summary(spec, directory, say)  # finished while we waited? a bad file goes aside
            if done:
                say(f"already {done['status']}: {directory}", flush=True)
                return {**done, "run_dir": str(directory)}
            return _run(spec, data, directory, device, config_yaml, say, claim.release)
    except AlreadyRunning as err:
        return running(err.holder)


def _run(spec: RunSpec, data, directory: Path, device: torch.device, config_yaml: str, say,
         release_claim=lambda: None) -> dict:
    """Train the claimed run in ``directory`` (see ``execute``)."""
    batch_size, identity = spec.resolved_batch_size(), spec.identity()
    cfg = TrainConfig(spec.epochs, spec.lr, batch_size, spec.optimizer, spec.seed, spec.eval_test)

    in_effect = precision.configure(spec.precision, device, getattr(data, "dtype", torch.float32))

    def start(snapshot: dict | None) -> TrainState:
        torch.manual_seed(spec.seed)
        net = build_net(spec, data, batch_size).to(device)
        state = TrainState(build_rule(spec.rule, net, spec.seed, **spec.rule_options), cfg)
        if snapshot is not None:
            state.restore(snapshot)
        return state

    ckpt_path = directory / checkpoint.CHECKPOINT
    try:
        resume = checkpoint.load(ckpt_path, identity)
        state = start(resume)
    except (checkpoint.Unusable, ValueError) as err:
        aside = set_aside(ckpt_path)
        say(f"{directory}: not resuming from {checkpoint.CHECKPOINT}: {err}; moved it to {aside.name} and "
            f"starting from epoch 1", flush=True)
        resume, state = None, start(None)
    if resume is not None:
        within = resume.get("within_epoch")
        say(f"{directory}: resuming after epoch {resume['epoch']}" + (f", step {within['step']}" if within else ""),
            flush=True)
    records = list(resume["records"]) if resume else []
    earlier_seconds = resume.get("wall_seconds", 0.0) if resume else 0.0
    write_atomic(directory / "config.yaml", config_yaml)
    # metrics.jsonl holds exactly the checkpointed epochs (a kill may have left one more line)
    write_atomic(directory / "metrics.jsonl", "".join(json_line(r) for r in records))
    summary = {"status": "running", **identity, "compute_precision": spec.precision,
               **{k: v for k, v in in_effect.items() if k != "precision"},
               "run_dir": str(directory), "device": device_name(device), "walign_version": __version__}
    started = time.time()
    progress = Progress(spec.progress, spec.epochs * data.train.num_batches(batch_size),
                        f"{spec.rule} w{spec.width} lr{spec.lr:g}")

    def save_checkpoint():
        checkpoint.save(ckpt_path, {**state.snapshot(), "identity": identity, "records": records,
                                    "wall_seconds": earlier_seconds + time.time() - started})

    def on_epoch(record):
        records.append(record)
        append_jsonl(directory / "metrics.jsonl", record)
        progress.epoch(record, spec.epochs)
        if spec.checkpoint_every and (record["epoch"] % spec.checkpoint_every == 0 or record["epoch"] == spec.epochs):
            save_checkpoint()

    def on_signal():
        save_checkpoint()
        release_claim()  # the process ends next (walign.interrupt.DeferredSignals.obey): nothing more is written
        then = ("SLURM requeues the job, which resumes from there" if signal_name(signals.pending) == "SIGUSR2"
                else "run the same command to resume")
        progress.close()
        say(f"{directory}: stopped: checkpoint saved in epoch {state.epoch + 1} after step "
            f"{state.within['step']}; {then}", flush=True)

    # with checkpoints on, a stop signal (SLURM's USR2, kill's TERM, Ctrl-C) first saves the
    # state at the next step boundary, then takes its usual course
    with DeferredSignals(SIGNALS if spec.checkpoint_every else ()) as signals:
        try:
            outcome = train(state, data, on_epoch, progress, signals, on_signal,
                            autocast=lambda: precision.autocast(spec.precision, device))
        except WriteError:
            raise  # a full or read-only disk: nothing more can be written; the last checkpoint stays
        except Exception as err:
            if signals.obeying:  # raised by the stop signal's own handler (submitit giving up a requeue)
                raise
            write_atomic(directory / "error.log", traceback.format_exc())
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
        if signals.pending is not None:  # a signal that came after the last step: the run is saved
            release_claim()
            say(f"{directory}: stopped after the run's last step; the run is finished", flush=True)
            signals.obey()  # ends the process, and a sweep with it
    return summary
