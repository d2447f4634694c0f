"""Sweeps through the real SLURM launcher (walign's, on submitit, on the local cluster that
.ci/run starts) with ``hydra.launcher.wait=true``, which blocks until the last task ends:
(a) a sweep's runs all finish and the launch reports them, (b) a signalled job saves its state at
the next step, is requeued and resumes from there without losing a finished epoch, (c) launching
the sweep again submits nothing. tests/test_slurm_packing.py covers submit-and-return.

Under CI=true these fail when SLURM is not up; elsewhere they skip with a one-line reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_cluster import count_jobs, queued_jobs, require_slurm, wait_for_jobs_to_leave_queue
from walign import checkpoint

ROOT = Path(__file__).resolve().parents[1]
# the cluster has 2 CPUs and no GPU: small jobs on the debug partition
SLURM = ["launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
         "hydra.launcher.wait=true"]


@pytest.fixture(autouse=True)
def slurm():
    require_slurm()
    wait_for_jobs_to_leave_queue(timeout=120)


def launch(tmp_path: Path, *args: str, wait: bool = True):
    cmd = [sys.executable, "main.py", "-m", *SLURM, f"results_dir={tmp_path / 'results'}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "progress=lines", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def summaries(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("summary.json"))]


GRID = ["rule=normal,align_zero", "lr=1,5", "width=8", "epochs=1"]  # 4 one-epoch runs, embedded data


def test_sweep_through_slurm_then_relaunch_submits_nothing(tmp_path):
    out = launch(tmp_path, *GRID)
    assert "walign sweep: 4 runs, 0 already finished (skipped), 4 to launch" in out
    assert "walign slurm: submitted array job" in out and ": 1 tasks, 4 runs" in out, out
    assert out.splitlines()[-1] == "walign sweep: 4 complete", out  # wait=true: the launch saw them end
    done = summaries(tmp_path)
    assert len(done) == 4 and {s["status"] for s in done} == {"complete"}
    assert {(s["rule"], s["lr"]) for s in done} == {("normal", 1.0), ("normal", 5.0), ("align_zero", 1.0),
                                                    ("align_zero", 5.0)}
    assert all(len(p.read_text().splitlines()) == 1 for p in (tmp_path / "results").rglob("metrics.jsonl"))
    # the runs really went through SLURM, packed into one task: submitit wrote one log
    assert len(list((tmp_path / "sweep" / ".submitit").rglob("*_log.out"))) == 1

    wait_for_jobs_to_leave_queue(timeout=120)
    before = count_jobs()
    again = launch(tmp_path, *GRID)
    assert "walign sweep: 4 runs, 4 already finished (skipped), 0 to launch" in again
    time.sleep(2)  # let a stray submission reach the accounting database before counting
    assert count_jobs() == before, "the relaunch submitted jobs"


def test_signalled_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """USR2 is what SLURM sends before a time limit (and on preemption); submitit checkpoints and
    requeues the job, and the requeued job continues after the last finished epoch."""
    epochs = 6
    proc = launch(tmp_path, "rule=normal", "width=8", f"epochs={epochs}", "hydra.launcher.max_num_timeout=3",
                  wait=False)
    try:
        deadline, ckpt = time.time() + 300, None
        while time.time() < deadline and ckpt is None:
            found = list((tmp_path / "results").rglob(checkpoint.CHECKPOINT))
            ckpt = found[0] if found else None
            time.sleep(0.1)
        assert ckpt is not None, "the job never finished an epoch"
        (job,) = queued_jobs()
        done_at_signal = checkpoint.read(ckpt)["epoch"]
        signal = subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, text=True)
        assert signal.returncode == 0, signal.stderr
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    (summary,) = summaries(tmp_path)
    assert summary["status"] == "complete" and summary["epochs_done"] == epochs
    assert summary["resumed_after_epoch"] >= done_at_signal >= 1, "a finished epoch was lost"
    assert summary["resumed_after_epoch"] < epochs, "the job was not interrupted"
    # the signal was caught between two steps: the state there was saved before the requeue
    assert summary.get("resumed_after_step", 0) > 0
    metrics = [json.loads(line) for line in Path(summary["run_dir"], "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, epochs + 1))
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.*"))
    assert "Requeued" in logs or "requeued" in logs, logs[-2000:]
    assert "stopped: checkpoint saved in epoch" in logs
    assert f"resuming after epoch {summary['resumed_after_epoch']}, step {summary['resumed_after_step']}" in logs
