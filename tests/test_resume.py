"""Resume after a kill: a run restarted from its per-epoch checkpoint ends exactly where an
uninterrupted run ends (bit for bit on the CPU), and a torn or foreign checkpoint is never used."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from walign import checkpoint
from walign.datasets.embedded import load_embedded
from walign.nets import ConvNet, NetSpec
from walign.rules import build_rule
from walign.train import TrainConfig, TrainState, train

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = ("seconds", "wall_seconds", "load_seconds", "eval_seconds", "resumed_after_epoch", "resumed_after_step",
            "run_dir", "device")


def run_main(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "main.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def run_directory(results: Path) -> Path:
    (found,) = [p.parent for p in results.rglob("config.yaml") if ".hydra" not in p.parts]
    return found


def stable(obj):
    """Drop timings and paths, which differ between two runs of the same configuration."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def read_run(directory: Path):
    metrics = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((directory / "summary.json").read_text())
    state = checkpoint.read(directory / checkpoint.CHECKPOINT)
    return stable(metrics), stable(summary), state


ARGS = ["rule=align_ada", "width=8", "epochs=4", "progress=lines", "keep_checkpoint=true", "eval_test=false"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same run, never stopped."""
    results = tmp_path_factory.mktemp("whole")
    whole = run_main(*ARGS, f"results_dir={results}")
    out, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out
    return read_run(run_directory(results))


def assert_same_run(directory: Path, reference) -> None:
    metrics_a, summary_a, state_a = reference
    metrics_b, summary_b, state_b = read_run(directory)
    assert metrics_b == metrics_a
    assert summary_b == summary_a
    for a, b in zip(state_a["rule"]["params"], state_b["rule"]["params"]):
        assert torch.equal(a, b)
    assert torch.equal(state_a["rng"]["keys"], state_b["rng"]["keys"]) and state_a["rng"]["pos"] == state_b["rng"]["pos"]
    assert torch.equal(state_a["torch_rng"], state_b["torch_rng"])


def wait_for_first_epoch(results: Path, proc) -> Path:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        found = list(results.rglob("metrics.jsonl"))
        if found and found[0].read_text().count("\n") >= 1 and (found[0].parent / checkpoint.CHECKPOINT).exists():
            return found[0].parent
        time.sleep(0.02)
    raise AssertionError("the run never finished an epoch")


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    """SIGKILL a real `python main.py` run after its first epoch, start it again with the same
    command, and compare with a run that was never interrupted: every per-epoch metric, the
    summary and the final weights, optimizer state and RNG states are identical."""
    args = ARGS
    killed = run_main(*args, f"results_dir={tmp_path / 'killed'}")
    directory = wait_for_first_epoch(tmp_path / "killed", killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert not (directory / "summary.json").exists(), "the run finished before it could be killed"
    done_before = checkpoint.read(directory / checkpoint.CHECKPOINT)["epoch"]
    assert 1 <= done_before < 4

    again = run_main(*args, f"results_dir={tmp_path / 'killed'}")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert f"resuming after epoch {done_before}" in out
    ran = re.findall(r"\] epoch (\d+)/4", out)
    assert ran == [str(e) for e in range(done_before + 1, 5)], out  # only the remaining epochs ran

    assert_same_run(directory, uninterrupted)
    assert json.loads((directory / "summary.json").read_text())["resumed_after_epoch"] == done_before


def test_terminated_run_saves_mid_epoch_and_resumes_from_that_step(tmp_path, uninterrupted):
    """SIGTERM in the middle of an epoch: the run saves its state at the next step boundary
    (which step, the loss so far, the epoch's batch order) and terminates; started again, it
    continues from that step and ends exactly like the uninterrupted run."""
    stopped = run_main(*ARGS, f"results_dir={tmp_path}")
    directory = wait_for_first_epoch(tmp_path, stopped)
    # No wait needed: the signal is only acted on after a training step, so one sent once epoch 1
    # is saved is noticed after epoch 2's first step at the earliest (asserted below: step > 0).
    stopped.send_signal(signal.SIGTERM)
    out, _ = stopped.communicate(timeout=120)
    assert stopped.returncode == -signal.SIGTERM, out  # the signal still ends the process
    saved = re.search(r"stopped: checkpoint saved in epoch (\d+) after step (\d+)", out)
    assert saved, out
    state = checkpoint.read(directory / checkpoint.CHECKPOINT)
    assert state["within_epoch"]["step"] == int(saved.group(2)) > 0
    assert state["epoch"] + 1 == int(saved.group(1))
    assert not (directory / "summary.json").exists()
    assert not (directory / "claim.json").exists()  # released before the signal ended the process

    again = run_main(*ARGS, f"results_dir={tmp_path}")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert "taking over" not in out
    assert f"resuming after epoch {state['epoch']}, step {state['within_epoch']['step']}" in out
    assert_same_run(directory, uninterrupted)


@pytest.fixture(scope="module")
def embedded():
    return load_embedded(torch.device("cpu"))


def fresh_rule(name, seed=3, **options):
    net = ConvNet(NetSpec("kmnist", 4, 3, 32, 10))  # a small 3-conv net on the CIFAR sample
    return build_rule(name, net, seed, **options)


@pytest.mark.parametrize("name, optimizer, options", [
    ("align_zero", "adam", {}),  # Adam's moment estimates must come back too
    ("gd_wstar", "sgd", {"score_epochs": [1, 2, 3], "iterations": 2, "probes": 3}),  # W* and the probe stream
])
def test_resume_from_a_saved_state_is_bit_identical(tmp_path, embedded, name, optimizer, options):
    cfg = TrainConfig(epochs=3, lr=0.01 if optimizer == "adam" else 1.0, batch_size=100, optimizer=optimizer,
                      seed=5, eval_test=False)
    whole = []
    running = TrainState(fresh_rule(name, **options), cfg)

    def keep(record):
        whole.append(record)
        if record["epoch"] == 1:
            checkpoint.save(tmp_path / "after1.pt", checkpoint.Checkpoint({"run": 1}, list(whole), running.snapshot()))

    train(running, embedded, keep)
    rule = running.rule
    state = checkpoint.load(tmp_path / "after1.pt", {"run": 1})
    assert state is not None

    resumed_records = []
    resumed = TrainState(fresh_rule(name, **options), cfg)
    resumed.restore(state.training)
    train(resumed, embedded, resumed_records.append)
    resumed = resumed.rule
    assert [r["epoch"] for r in resumed_records] == [2, 3]
    assert stable(resumed_records) == stable(whole[1:])
    for a, b in zip(rule.params, resumed.params):
        assert torch.equal(a, b)


def test_checkpoint_of_another_run_or_torn_file_is_not_used(tmp_path):
    path = tmp_path / checkpoint.CHECKPOINT
    checkpoint.save(path, checkpoint.Checkpoint({"width": 8}, [{"epoch": 1}, {"epoch": 2}], {"epoch": 2}))
    assert checkpoint.load(path, {"width": 8}).epoch == 2
    with pytest.raises(checkpoint.Unusable, match="different run"):
        checkpoint.load(path, {"width": 16})
    path.write_bytes(path.read_bytes()[:40])  # what a kill mid-write would leave without the rename
    with pytest.raises(checkpoint.Unusable, match="unreadable"):
        checkpoint.load(path, {"width": 8})
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file of an atomic write was left behind"


def test_a_torn_checkpoint_restarts_the_run_and_the_finished_run_drops_it(tmp_path):
    results = tmp_path / "r"
    first = run_main("dataset=add", "rule=normal", "width=8", "epochs=2", "progress=none", f"results_dir={results}")
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    directory = run_directory(results)
    reference = stable(json.loads((directory / "summary.json").read_text()))
    assert not (directory / checkpoint.CHECKPOINT).exists()  # removed once the run is complete
    (directory / "summary.json").unlink()
    (directory / checkpoint.CHECKPOINT).write_bytes(b"not a checkpoint")
    again = run_main("dataset=add", "rule=normal", "width=8", "epochs=2", "progress=none", f"results_dir={results}")
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert "not resuming from checkpoint.pt: unreadable" in out
    assert stable(json.loads((directory / "summary.json").read_text())) == reference
