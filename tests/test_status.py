"""``walign status``: counts, failing lines, heartbeats, GPU-hours and SLURM states of hand-built
results directories (no SLURM needed: squeue and sacct are faked on PATH), its one-line errors,
that it writes nothing, and one real two-run sweep."""
import json
import os
import re
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from walign import status, sweep_record
from walign.datasets.splits import ImageSplits
from walign.runs import run_dir
from walign.status import main

ROOT = Path(__file__).resolve().parents[1]
TRACEBACK = ('Traceback (most recent call last):\n  File "walign/train.py", line 9, in train\n'
             '    raise RuntimeError("boom")\nRuntimeError: boom\n\n')


def run(root: Path, name: str, rule: str = "normal") -> Path:
    directory = root / "embedded" / rule / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def summary(directory: Path, state: str, wall: float, **extra) -> Path:
    """summary.json as walign writes it, in ``directory``; returns the run's directory. A finished
    run (complete, diverged) moves to the directory its values name, beside a metrics.jsonl that
    gives its numbers, as walign.verdict requires of a finished run."""
    identity = {"dataset": "embedded", "rule": directory.parent.name, "width": 4, "lr": 0.1, "epochs": 2,
                "batch_size": 50, "seed": zlib.crc32(directory.name.encode()) % 1000, "activation": "relu",
                "parameterization": "ntk", "optimizer": "sgd"}
    keys = {"status": state, **identity, "epochs_done": 2, "wall_seconds": wall, **extra}
    if state in ("complete", "diverged"):
        directory.rmdir()
        directory = directory.parent / run_dir("", identity).name
        directory.mkdir()
        records = [{"epoch": e, "train_loss": 0.1, "val_acc": 0.1 * e, "test_acc": 0.1, "seconds": 1.0} for e in (1, 2)]
        (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        keys.update(ImageSplits.summarize(records))
    (directory / "summary.json").write_text(json.dumps(keys))
    return directory


def rel(root: Path, directory: Path) -> str:
    return directory.relative_to(root).as_posix()


def claim(directory: Path, host: str, pid: int, age: float = 0.0, job=None) -> None:
    path = directory / "claim.json"
    path.write_text(json.dumps({"host": host, "pid": pid, "slurm_job": job, "since": "2026-12-04 21:00:00 UTC",
                                "token": "t"}))
    if age:
        os.utime(path, (time.time() - age,) * 2)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.fixture
def results(tmp_path):
    """One record of 8 runs (every state but queued), one run launched on its own, Hydra output
    that must be ignored, and a damaged record."""
    root = tmp_path / "results"
    listed = {"complete": summary(run(root, "w4-complete"), "complete", 1800),
              "diverged": summary(run(root, "w4-diverged"), "diverged", 900)}
    failed = run(root, "w4-failed")
    summary(failed, "failed", 360, error="RuntimeError: boom")
    (failed / "error.log").write_text(TRACEBACK)
    (run(root, "w4-garbled") / "summary.json").write_text("{not json")
    claim(run(root, "w4-running"), socket.gethostname(), os.getpid(), age=12)
    stale = run(root, "w4-stale")
    claim(stale, "elsewhere", 1, age=3600)
    (stale / "checkpoint.pt").touch()
    claim(run(root, "w4-dead"), socket.gethostname(), dead_pid())
    summary(run(root, "w4-alone", "align_zero"), "complete", 3600)
    hydra = root / ".hydra" / "multirun" / "x" / "embedded" / "normal" / "w4-ghost"
    hydra.mkdir(parents=True)
    summary(hydra, "complete", 99999)
    names = ["complete", "diverged", "failed", "garbled", "running", "stale", "dead", "never"]
    seconds = [100, 100, 100, 100, 3600, 1800, 900, 1800]  # unfinished: 8100 s = 2.25 h
    runs = [rel(root, listed[n]) if n in listed else f"embedded/normal/w4-{n}" for n in names]
    sweep_record.write_record(root, "basic", [{"job": None, "runs": runs, "seconds": seconds}], command="main.py -m ...")
    (root / "sweeps" / "zz-damaged.json").write_text("[1, 2")
    return root


def snapshot(root: Path) -> dict:
    seen = {}
    for here, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            info = os.lstat(Path(here) / name)
            seen[str(Path(here) / name)] = (info.st_mtime_ns, info.st_size)
    return seen


def counts_lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if re.fullmatch(r"\s+\d+ complete, .*not started", line)]


def test_counts_lines_and_gpu_hours(results, capsys):
    before = snapshot(results)
    assert main(["status", str(results)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert snapshot(results) == before  # status only reads
    lines = out.splitlines()
    assert "walign: skipping sweep record" in lines[0]   # the damaged record, in one line, and on
    assert [line for line in lines if re.fullmatch(r"\S+\.json: basic, created \S+, 8 runs", line)]
    record, total = counts_lines(out)
    assert record == "1 complete, 1 diverged, 2 failed, 1 running, 0 queued, 1 interrupted, 2 not started"
    assert total == "2 complete, 1 diverged, 2 failed, 1 running, 0 queued, 1 interrupted, 2 not started"
    assert "  GPU-hours: 0.85 done, 2.25 left" in lines      # 1800 + 900 + 360 s; 3600 + 1800 + 900 + 1800 s
    assert "  GPU-hours: 1.85 done, 2.25 left" in lines      # + the lone run's 3600 s
    assert f"total: 9 runs under {results}" in lines
    assert lines.count("  failed: embedded/normal/w4-failed: RuntimeError: boom") == 2
    garbled = [line for line in lines
               if line.startswith("  failed: embedded/normal/w4-garbled: summary.json not believed")]
    assert len(garbled) == 2 and "not valid JSON" in garbled[0]
    running = [line for line in lines if line.startswith("  running: embedded/normal/w4-running: ")]
    assert len(running) == 2
    assert re.search(rf": {re.escape(socket.gethostname())}, pid {os.getpid()}, since [^,]+, heartbeat 1[2-9] s ago$",
                     running[0])
    assert "w4-ghost" not in out and "w4-stale" not in out and "SLURM" not in out


def test_module_entry_point(results):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "walign.status", "status", str(results)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 complete, 1 diverged, 2 failed, 1 running, 0 queued, 1 interrupted, 2 not started" in done.stdout
    for argv in ([], ["stats", str(results)]):   # a subcommand is required, and must be known
        wrong = subprocess.run([sys.executable, "-m", "walign.status", *argv], env=env,
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2 and wrong.stdout == ""
        assert len(wrong.stderr.splitlines()) == 1 and wrong.stderr.startswith("walign: error: ")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_unusable_results_dir_is_one_line(tmp_path, capsys, kind):
    path = tmp_path / "results"
    if kind == "file":
        path.write_text("not a directory")
    assert main(["status", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"walign: error: results directory {path} ")
    assert ("does not exist" if kind == "missing" else "is not a directory") in err


def test_empty_results_dir(tmp_path, capsys):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "sweeps").mkdir()
    assert main(["status", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no runs under {tmp_path}\n"


def fake(bin_dir: Path, name: str, output: str) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    script.chmod(0o755)


def slurm_results(root: Path) -> None:
    a, b = (rel(root, summary(run(root, name), "complete", 720)) for name in ("w4-a", "w4-b"))
    sweep_record.write_record(root, "slurm", [
        {"job": "812_0", "runs": [a, b], "seconds": [700, 700]},
        {"job": "812_1", "runs": ["embedded/normal/w4-c"], "seconds": [1800]}], arrays=["812"], wait=False)


def test_slurm_states_from_squeue_and_sacct(tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake(bin_dir, "squeue", "812_1 PENDING\\n")
    fake(bin_dir, "sacct", "812_0|CANCELLED by 1000\\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    slurm_results(tmp_path / "results")
    assert main(["status", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert ", 3 runs, SLURM arrays 812\n" in out
    assert counts_lines(out)[0] == "2 complete, 0 diverged, 0 failed, 0 running, 1 queued, 0 interrupted, 0 not started"
    assert "  GPU-hours: 0.40 done, 0.50 left" in out
    assert "  SLURM: 1 CANCELLED, 1 PENDING\n" in out


def test_slurm_absent(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    slurm_results(tmp_path / "results")
    assert main(["status", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "  SLURM: not available here\n" in out
    assert counts_lines(out)[0] == "2 complete, 0 diverged, 0 failed, 0 running, 0 queued, 0 interrupted, 1 not started"


@pytest.mark.parametrize("tty", [False, True])
def test_watch_refreshes_until_ctrl_c(results, capsys, monkeypatch, tty):
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) % 2 == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(status.time, "sleep", sleep)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    assert main(["status", str(results), "--watch"]) == 0
    out, err = capsys.readouterr()
    assert sleeps == [10.0, 10.0] and err == ""
    assert out.count("total: 9 runs") == 2 and out.count(status.CLEAR) == (2 if tty else 0)
    assert main(["status", str(results), "--watch", "0.5"]) == 0 and sleeps[-1] == 0.5


def test_checkpoint_name_matches_walign_checkpoint():
    from walign import verdict
    from walign.checkpoint import CHECKPOINT
    assert verdict.CHECKPOINT == CHECKPOINT


def test_real_sweep(tmp_path):
    """A two-run sweep on the embedded data with the basic launcher, then status."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    sweep = subprocess.run([sys.executable, "main.py", "-m", "rule=normal,align_zero", "width=4", "epochs=1",
                            "progress=lines", "device=cpu", "eval_test=false", f"results_dir={tmp_path}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    done = subprocess.run([sys.executable, "-m", "walign.status", "status", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    counts = counts_lines(done.stdout)
    assert counts[-1] == "2 complete, 0 diverged, 0 failed, 0 running, 0 queued, 0 interrupted, 0 not started"
    assert f"total: 2 runs under {tmp_path}" in done.stdout
    # the sweeper writes a record of a basic sweep too: one block before the total
    assert len(list((tmp_path / "sweeps").glob("*.json"))) == 1
    assert re.search(r"^\S+\.json: basic, created \S+, 2 runs$", done.stdout, re.M)
    assert counts == [counts[-1]] * 2
