"""launcher=slurm as a cluster user meets it, on the real local SLURM that .ci/run starts:
the sweep submits packed array tasks and returns, a relaunch leaves queued runs to their job,
`walign status` follows the sweep to the end, the results equal the basic launcher's, a requeued
pack resumes at its unfinished run, a failing run leaves the rest of its pack alone, and a sweep
larger than the maximum array size is split.

Under CI=true these fail when SLURM is not up; elsewhere they skip with a one-line reason.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_cluster import count_jobs, queued_jobs, require_slurm, wait_for_jobs_to_leave_queue
from test_faults import CRASHING_RULE  # Normal, except that width > 4 runs out of memory
from walign import checkpoint

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main.py")
SLURM = ["launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]
TINY = ["width=4", "epochs=1", "progress=lines", "device=cpu", "eval_test=false"]
SUBMITTED = re.compile(r"walign slurm: submitted array jobs? ([\d, ]+): (\d+) tasks, (\d+) runs, about ([\d.]+) GPU-hours")
# what a run did, not where or how fast: equal whichever launcher ran it
NOT_RESULTS = {"run_dir", "wall_seconds", "load_seconds", "eval_seconds", "device", "seconds", "time", "epoch_seconds"}


@pytest.fixture(autouse=True)
def slurm():
    require_slurm()
    wait_for_jobs_to_leave_queue(timeout=120)


def env() -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, "OMP_NUM_THREADS": "1"}


def walign(cwd: Path, *args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, MAIN, "-m", *args], cwd=cwd, env=env(), text=True,
                          capture_output=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def status(results: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "walign.status", "status", str(results)], env=env(),
                          text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def total_line(results: Path) -> str:
    out = status(results)
    return out[out.index("total"):].splitlines()[1] if "total" in out else out


def wait_until_complete(results: Path, runs: int, timeout: float = 600) -> str:
    """Poll `walign status` until its total says ``runs`` complete; return that output."""
    deadline = time.monotonic() + timeout
    while True:
        out = status(results)
        if re.search(rf"\b{runs} complete\b", out[out.rindex("total"):] if "total" in out else out):
            return out
        if time.monotonic() > deadline:
            pytest.fail(f"not {runs} complete after {timeout:.0f} s; squeue: {queued_jobs()}\n{out}")
        time.sleep(2)


def summaries(results: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(results)): json.loads(p.read_text()) for p in results.rglob("summary.json")}


def epochs_of(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in NOT_RESULTS}


GRID = ["rule=normal,align_zero", "lr=1,2,5", "seed=1,2,3,4"]  # 24 runs


def test_sweep_submits_packed_tasks_returns_and_is_followed_to_the_end(tmp_path):
    results = tmp_path / "slurm"
    started = time.monotonic()
    out = walign(tmp_path, *SLURM, "hydra.launcher.pack_minutes=0.6", *GRID, *TINY, f"results_dir={results}")
    returned = time.monotonic() - started
    match = SUBMITTED.search(out)
    assert match, out
    assert int(match.group(2)) <= 4 and int(match.group(3)) == 24, out
    assert queued_jobs(), f"the sweep returned after {returned:.0f} s with nothing left in the queue"
    assert len(summaries(results)) < 24

    before = count_jobs()
    again = walign(tmp_path, *SLURM, "hydra.launcher.pack_minutes=0.6", *GRID, *TINY, f"results_dir={results}")
    assert "0 to launch" in again and "walign slurm: submitted" not in again, again
    assert count_jobs() == before, "the relaunch submitted jobs for runs that were queued"

    final = wait_until_complete(results, 24)
    assert "failed" not in total_line(results) or re.search(r"\b0 failed\b", total_line(results)), final
    slurm_runs = summaries(results)
    assert len(slurm_runs) == 24 and {s["status"] for s in slurm_runs.values()} == {"complete"}

    basic = tmp_path / "basic"
    walign(tmp_path, *GRID, *TINY, f"results_dir={basic}", timeout=600)
    basic_runs = summaries(basic)
    assert sorted(basic_runs) == sorted(slurm_runs)
    for run, summary in slurm_runs.items():
        assert without_timing(summary) == without_timing(basic_runs[run]), run
        slurm_metrics = [without_timing(json.loads(line)) for line in (results / run / "metrics.jsonl").open()]
        basic_metrics = [without_timing(json.loads(line)) for line in (basic / run / "metrics.jsonl").open()]
        assert slurm_metrics == basic_metrics, run


def test_requeued_pack_resumes_at_its_unfinished_run(tmp_path):
    """USR2 (what SLURM sends before a time limit) while a pack of three runs is in its second run:
    the requeued task finds the first run finished, resumes the second where it stopped and runs
    the third; no epoch is trained twice."""
    results, epochs = tmp_path / "results", 8  # seconds of training left in the second run when the signal lands, even on a loaded machine
    out = walign(tmp_path, *SLURM, "hydra.launcher.runs_per_task=3", "hydra.launcher.max_num_timeout=3",
                 "rule=normal", "lr=1,2,5", "width=8", f"epochs={epochs}", "progress=lines", "device=cpu",
                 "eval_test=false", f"results_dir={results}")
    assert SUBMITTED.search(out).group(2) == "1", out
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = summaries(results)
        second = [p for p in results.rglob(checkpoint.CHECKPOINT) if "lr2-" in str(p)]
        if len(done) == 1 and second:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the pack never reached its second run: {summaries(results)}")
    (job,) = queued_jobs()
    signal = subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, text=True)
    assert signal.returncode == 0, signal.stderr
    wait_until_complete(results, 3)
    wait_for_jobs_to_leave_queue(timeout=120)
    runs = summaries(results)
    assert {s["status"] for s in runs.values()} == {"complete"}
    for run, summary in runs.items():
        assert epochs_of(results / run) == list(range(1, epochs + 1)), run
    (resumed,) = [s for s in runs.values() if s["lr"] == 2.0]
    assert 0 <= resumed.get("resumed_after_epoch", -1) < epochs, resumed
    assert not any("resumed_after_epoch" in s for s in runs.values() if s["lr"] != 2.0)
    logs = "".join(p.read_text() for p in tmp_path.rglob(".submitit/*/*_log.out"))
    assert "already complete" in logs, logs[-3000:]
    for lr in (1, 2, 5):
        for epoch in range(1, epochs + 1):  # each epoch line once: no epoch trained twice
            assert logs.count(f"[normal w8 lr{lr}] epoch {epoch}/{epochs} ") == 1, (lr, epoch, logs[-3000:])


def test_a_failing_run_leaves_its_pack_complete_and_status_names_it(tmp_path):
    (tmp_path / "crashing.py").write_text(CRASHING_RULE)
    results = tmp_path / "results"
    walign(tmp_path, *SLURM, "hydra.launcher.runs_per_task=3", "+rule_module=crashing", "rule=crashing",
           "width=4,6,3", "epochs=1", "progress=lines", "device=cpu", "eval_test=false", f"results_dir={results}")
    wait_for_jobs_to_leave_queue(timeout=300)
    runs = summaries(results)
    assert sorted((s["width"], s["status"]) for s in runs.values()) == [(3, "complete"), (4, "complete"),
                                                                          (6, "failed")]
    (failed,) = [run for run, s in runs.items() if s["status"] == "failed"]
    out = status(results)
    lines = [line for line in out.splitlines() if failed in line]
    assert lines and "RuntimeError: CUDA out of memory" in lines[0], out
    assert re.search(r"\b2 complete\b", out) and re.search(r"\b1 failed\b", out), out


def test_a_sweep_larger_than_the_maximum_array_is_split(tmp_path):
    results = tmp_path / "results"
    out = walign(tmp_path, *SLURM, "hydra.launcher.runs_per_task=1", "hydra.launcher.max_array_size=2",
                 "lr=1,2,5", *TINY, f"results_dir={results}")
    match = SUBMITTED.search(out)
    assert match and match.group(2) == "3" and len(match.group(1).split(",")) == 2, out
    record = json.loads(next((results / "sweeps").glob("*.json")).read_text())
    assert len(record["arrays"]) == 2 and [len(t["runs"]) for t in record["tasks"]] == [1, 1, 1]
    wait_until_complete(results, 3)
    assert {s["status"] for s in summaries(results).values()} == {"complete"}


@pytest.mark.parametrize("value, message", [
    ("hydra.launcher.tasks_per_node=2", "launcher=slurm has no key 'tasks_per_node' (its keys: "),
    ("hydra.launcher.pack_minutes=0", "hydra.launcher.pack_minutes must be a number of at least"),
    ("hydra.launcher.runs_per_task=1.5", "hydra.launcher.runs_per_task must be an integer of at least 1"),
    ("hydra.launcher.runs_at_once=0", "hydra.launcher.runs_at_once must be an integer of at least 1"),
    ("hydra.launcher.wait=maybe", "hydra.launcher.wait must be true or false"),
])
def test_a_bad_launcher_value_is_one_line_with_nothing_written(tmp_path, value, message):
    before = count_jobs()
    done = subprocess.run([sys.executable, MAIN, "-m", *SLURM, value, *TINY, f"results_dir={tmp_path / 'r'}"],
                          cwd=tmp_path, env=env(), text=True, capture_output=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"walign: error: {message}"), done.stderr
    assert list(tmp_path.iterdir()) == [] and count_jobs() == before
