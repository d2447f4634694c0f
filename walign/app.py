"""From a checked run spec to a finished run directory.

``execute`` finds the run finished, running elsewhere, or to be done; claims its directory;
loads the data; resumes from a checkpoint if there is a usable one; trains; and writes
config.yaml, metrics.jsonl, the checkpoints and summary.json (walign/runs.py has the layout).
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import torch
import yaml

from . import __version__
from . import checkpoint, precision
from .allocator import keep_freed_memory
from .claim import AlreadyRunning, Claim, describe, holder
from .datasets import load
from .errors import ConfigError
from .interrupt import SIGNALS, DeferredSignals, signal_name
from .loggers import Loggers, RunInfo
from .machine import device_name
from .progress import Progress
from .rules import build_rule
from .runs import (STATE_FILES, WriteError, append_jsonl, json_line, odd_kind, set_aside, write_atomic,
                   write_json)
from .scale import shrink
from .spec import RunSpec
from .train import TrainConfig, TrainState, train
from .verdict import FINISHED, judge

# ----------------------------------------------------------------------------- finished runs
def finished_summary(directory: Path, say=None) -> dict | None:
    """The run's summary if walign.verdict finds it finished, else None ("run it").

    With ``say`` (the caller holds the run's claim) a summary.json that is not believed is
    renamed aside to summary.json.bad-<time> with one line saying why; without, it is only
    judged, and left for the holder to deal with."""
    verdict = judge(directory)
    if verdict.problem is not None and say is not None:
        try:
            moved = f"moved it to {set_aside(verdict.problem.path).name}"
        except FileNotFoundError:
            return None  # set aside by another process meanwhile
        except OSError as why:
            raise WriteError(verdict.problem.path, why) from None
        say(f"unreadable: {verdict.problem}; {moved}, running it again", flush=True)
    return verdict.summary if verdict.finished else None


def clear_damaged(directory: Path, say) -> None:
    """Anything but a regular file at a state file's name (a directory, a FIFO, a link) can only
    be damage: renamed aside to <name>.bad-<time> with one line, so that it can never stop the
    run from being written (a damaged summary.json is judged by walign.verdict instead)."""
    for name in STATE_FILES:
        path = directory / name
        kind = odd_kind(path)
        if kind is not None:
            try:
                aside = set_aside(path)
            except FileNotFoundError:
                continue
            except OSError as why:
                raise WriteError(path, why) from None
            say(f"{path}: {kind}, not a file; moved it to {aside.name}", flush=True)


# ----------------------------------------------------------------------------- a run
def load_data(spec: RunSpec, device: torch.device):
    """The run's data on ``device``; a data set whose loading raises (a plugin's bug, files that
    turn out unreadable) is a ConfigError naming the data set, its module and the error's last line,
    since every run of it would fail the same way."""
    try:
        return load(spec.dataset, device, **spec.loading, **spec.data_options)
    except ConfigError:
        raise
    except Exception as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        last = f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__
        raise ConfigError(f"dataset {spec.dataset} ({spec.entry.__module__}) failed to load: {last}") from None


def execute(spec: RunSpec, config_yaml: str = "", say=print) -> dict:
    """Run the run ``spec`` defines, resume it from its checkpoint, or find it already finished
    or running elsewhere; return its summary ({'status': 'running', ...} for the last)."""
    directory = spec.run_directory()

    def already(done):
        say(f"already {done['status']}: {directory}", flush=True)
        return {**done, "run_dir": str(directory)}

    def running(claim, age):
        say(f"already running ({describe(claim, age)}): {directory}", flush=True)
        return {"status": "running", "run_dir": str(directory), "holder": claim}

    if done := finished_summary(directory):
        return already(done)
    device = spec.check_environment()
    if (held := holder(directory, say)) is not None:  # cheap early answer; the claim below decides
        return running(*held)
    if device.type == "cpu":
        keep_freed_memory()  # each step reuses the pages of the last (walign/allocator.py)
    loading = time.perf_counter()
    data = shrink(load_data(spec, device), spec.scale)
    load_seconds = round(time.perf_counter() - loading, 3)
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
            if done := finished_summary(directory, say):  # finished while we waited? a bad file goes aside
                return already(done)
            clear_damaged(directory, say)
            return TrainingRun(spec, data, directory, device, say, claim.release, load_seconds).execute(config_yaml)
    except AlreadyRunning as err:
        return running(err.holder, err.age)


class TrainingRun:
    """One claimed run in its directory: its state, its records, and the files it writes."""

    def __init__(self, spec: RunSpec, data, directory: Path, device: torch.device, say=print,
                 release_claim=lambda: None, load_seconds: float | None = None):
        self.spec, self.data, self.directory, self.device, self.say = spec, data, directory, device, say
        self.release_claim, self.load_seconds = release_claim, load_seconds
        self.signals: DeferredSignals | None = None  # while training
        self.loggers = Loggers({}, None)             # the run's own, once it is set to train
        self.ckpt_path = directory / checkpoint.CHECKPOINT
        self.batch_size, self.identity = spec.resolved_batch_size(), spec.identity()
        self.cfg = TrainConfig(spec.epochs, spec.lr, self.batch_size, spec.optimizer, spec.seed, spec.eval_test,
                               spec.compile, float(spec.momentum), float(spec.weight_decay), tuple(spec.lr_milestones),
                               float(spec.lr_gamma), spec.augment)

    def new_state(self, resume: checkpoint.Checkpoint | None) -> TrainState:
        """The seed's initial state, with ``resume``'s training state loaded into it if given."""
        torch.manual_seed(self.spec.seed)
        options = {"arch_options": self.spec.arch_options} if self.spec.arch_options else {}  # (a plugin's
        # build_net written before architectures had options is called as it was)
        net = self.spec.entry.build_net(self.data, self.spec.width, self.batch_size, self.spec.arch,
                                        self.spec.activation, self.spec.parameterization, **options).to(self.device)
        if self.spec.init != "default":
            net.initialization = self.spec.init  # walign.nets.initialize rescales the draws
        state = TrainState(build_rule(self.spec.rule, net, self.spec.seed, self.spec.loss, **self.spec.rule_options),
                           self.cfg)
        if resume is not None:
            state.restore(resume.training)
        return state

    def resume(self) -> tuple[TrainState, checkpoint.Checkpoint | None]:
        """The state to train from: the checkpoint's if it is usable, else a fresh one (an
        unusable file is set aside with one line)."""
        try:
            resume = checkpoint.load(self.ckpt_path, self.identity)
            return self.new_state(resume), resume
        except (checkpoint.Unusable, ValueError) as err:
            aside = set_aside(self.ckpt_path)
            self.say(f"{self.directory}: not resuming from {checkpoint.CHECKPOINT}: {err}; moved it to {aside.name} "
                     f"and starting from epoch 1", flush=True)
            return self.new_state(None), None

    def execute(self, config_yaml: str) -> dict:
        """Train to the end (or to a stop signal) and write the summary."""
        in_effect = precision.configure(self.spec.precision, self.device, getattr(self.data, "dtype", torch.float32))
        summary = {"status": "running", **self.identity, "compute_precision": self.spec.precision,
                   "compile": self.spec.compile,
                   **{k: v for k, v in in_effect.items() if k != "precision"},
                   "run_dir": str(self.directory), "device": device_name(self.device), "walign_version": __version__}
        write_atomic(self.directory / "config.yaml", config_yaml)
        self.records, self.earlier_seconds, self.started = [], 0.0, time.time()
        try:
            self.state, resume = self.resume()
        except Exception as err:  # the network cannot be built here (out of memory, a plugin's error)
            summary.update(self.failure(err))
            return self.finish(summary, None)
        if resume is not None:
            within = resume.within_epoch
            self.say(f"{self.directory}: resuming after epoch {resume.epoch}"
                     + (f", step {within['step']}" if within else ""), flush=True)
            self.records, self.earlier_seconds = list(resume.records), resume.wall_seconds
        # with checkpoints on, a stop signal (SLURM's USR2, kill's TERM, Ctrl-C) first saves the
        # state at the next step boundary, then takes its usual course; it is held back from here
        # on, before metrics.jsonl says the run has started, so that no signal can reach the
        # previous handler (submitit's requeue) while the run sets up and lose its position
        with DeferredSignals(SIGNALS if self.spec.checkpoint_every else ()) as self.signals:
            # metrics.jsonl holds exactly the checkpointed epochs (a kill may have left one more line)
            write_atomic(self.directory / "metrics.jsonl", "".join(json_line(r) for r in self.records))
            self.loggers = Loggers(self.spec.loggers, RunInfo(self.directory, self.directory.name, self.spec.sweep,
                                                              yaml.safe_load(config_yaml or "{}") or {},
                                                              Path(self.spec.results_dir)), self.say)
            self.loggers.start(resume.epoch if resume else 0)  # epochs after it are logged again, once
            self.started = time.time()
            self.progress = Progress(self.spec.progress,
                                     self.spec.epochs * self.data.train.num_batches(self.batch_size),
                                     f"{self.spec.rule} w{self.spec.width} lr{self.spec.lr:g}")
            summary.update(self.train())
            return self.finish(summary, resume)

    def train(self) -> dict:
        """The training outcome: train()'s, or 'failed' with the error (traceback in error.log)."""
        try:
            return train(self.state, self.data, self.on_epoch, self.progress, self.signals, self.on_signal,
                         autocast=lambda: precision.autocast(self.spec.precision, self.device))
        except WriteError:
            raise  # a full or read-only disk: nothing more can be written; the last checkpoint stays
        except Exception as err:
            if self.signals.obeying:  # raised by the stop signal's own handler (submitit giving up a requeue)
                raise
            return self.failure(err)
        finally:
            self.progress.close()

    def failure(self, err: Exception) -> dict:
        """A failed run's summary values; its traceback goes to error.log."""
        write_atomic(self.directory / "error.log", traceback.format_exc())
        return {"status": "failed", "epochs_done": len(self.records),
                "error": f"{type(err).__name__}: {err}".splitlines()[0]}

    def finish(self, summary: dict, resume: checkpoint.Checkpoint | None) -> dict:
        """Write summary.json, drop the checkpoint of a finished run, and obey a late stop signal."""
        summary.update(self.data.summarize(self.records))
        summary["wall_seconds"] = round(self.earlier_seconds + time.time() - self.started, 3)
        if self.load_seconds is not None:
            summary["load_seconds"] = self.load_seconds  # this process's data loading, outside wall_seconds
        if resume:
            summary["resumed_after_epoch"] = resume.epoch
            if resume.within_epoch:
                summary["resumed_after_step"] = resume.within_epoch["step"]
        write_json(self.directory / "summary.json", summary)
        self.loggers.finish(summary)
        if summary["status"] in FINISHED and not self.spec.keep_checkpoint:
            checkpoint.remove(self.ckpt_path)
        if self.signals is not None and self.signals.pending is not None:  # came after the last step: saved
            self.release_claim()
            self.say(f"{self.directory}: stopped after the run's last step; the run is finished", flush=True)
            self.signals.obey()  # ends the process, and a sweep with it
        return summary

    def save_checkpoint(self) -> None:
        checkpoint.save(self.ckpt_path, checkpoint.Checkpoint(
            self.identity, self.records, self.state.snapshot(),
            self.earlier_seconds + time.time() - self.started))

    def on_epoch(self, record: dict) -> None:
        self.records.append(record)
        append_jsonl(self.directory / "metrics.jsonl", record)
        self.loggers.epoch(record)
        self.progress.epoch(record, self.spec.epochs)
        every = self.spec.checkpoint_every
        if every and (record["epoch"] % every == 0 or record["epoch"] == self.spec.epochs):
            self.save_checkpoint()

    def on_signal(self) -> None:
        self.save_checkpoint()
        self.loggers.close()  # flushed, and marked stopped: the resumed run continues them
        self.release_claim()  # the process ends next (walign.interrupt.DeferredSignals.obey): nothing more is written
        then = ("SLURM requeues the job, which resumes from there" if signal_name(self.signals.pending) == "SIGUSR2"
                else "run the same command to resume")
        self.progress.close()
        self.say(f"{self.directory}: stopped: checkpoint saved in epoch {self.state.epoch + 1} after step "
                 f"{self.state.within['step']}; {then}", flush=True)
