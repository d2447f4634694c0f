"""The whole paper rehearsed through SLURM (issue 36), on the real local cluster .ci/run starts:
synthetic data in the real formats (scripts/make_smoke_data.py), `sweeps=paper scale=smoke`
submitted with launcher=slurm, which returns while its runs are queued; one task stopped with
SIGUSR2 inside a run, requeued, and resumed to the numbers of an undisturbed run; `walign status`
following every run to complete; and walign-report filling Tables 1-10 and drawing Figures 1 and
3-9 from the runs, each labelled as smoke scale. Sweep file -> SLURM -> run -> report cell, for
every table and figure.

Under CI=true this fails when SLURM is not up; elsewhere it skips with a one-line reason.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from slurm_cluster import queued_jobs, require_slurm, wait_for_jobs_to_leave_queue
from test_slurm_packing import SLURM, env, status, summaries, without_timing

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main.py")
FIGURES = (1, 3, 4, 5, 6, 7, 8, 9)
SMOKE = "smoke scale: not comparable with the paper"


def total_counts(results: Path) -> str:
    out = status(results)
    return out[out.rindex("total"):].splitlines()[1] if "total" in out else out


def claimed_by(results: Path, pattern: str, exclude: set[Path]) -> tuple[Path, int] | None:
    """A run directory matching ``pattern``, not in ``exclude``, that a SLURM task is training now
    (its metrics.jsonl, written as it sets out to train, is there), with the pid of the task's
    process (the cluster is this machine)."""
    for claim in results.rglob("claim.json"):
        if claim.parent in exclude or not re.search(pattern, str(claim.parent)):
            continue
        if (claim.parent / "metrics.jsonl").exists():
            try:
                return claim.parent, int(json.loads(claim.read_text())["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None


STOPPED = re.compile(r"^(\S+): stopped(: checkpoint saved| after the run's last step)", re.M)


def stops(cwd: Path) -> list[tuple[str, bool]]:
    """Every "stopped" line the SLURM tasks have printed: (run directory, inside the run?)."""
    logs = "".join(p.read_text(errors="replace") for p in cwd.rglob(".submitit/*/*_log.out"))
    return [(m.group(1), m.group(2) == ": checkpoint saved") for m in STOPPED.finditer(logs)]


def stop_a_run_inside_its_training(cwd: Path, results: Path, pattern: str, timeout: float = 600) -> Path:
    """SIGUSR2 (what SLURM sends a task before its time limit) to the task training a run that
    matches ``pattern``, until one task saves a checkpoint inside such a run; that run's directory.

    Where the signal lands is up to the scheduler: one that arrives after a run's last step, while
    it evaluates, rightly finishes that run instead ("stopped after the run's last step"), and
    the next matching run is tried."""
    deadline, tried = time.monotonic() + timeout, set()
    while True:
        assert time.monotonic() < deadline, f"no run matching {pattern} was stopped inside its training: " \
                                            f"tried {sorted(map(str, tried))}; {total_counts(results)}"
        found = claimed_by(results, pattern, tried)
        if found is None:
            time.sleep(0.05)
            continue
        run, pid = found
        tried.add(run)
        seen = len(stops(cwd))
        try:
            os.kill(pid, signal.SIGUSR2)
        except ProcessLookupError:  # the task ended between reading the claim and the signal
            continue
        while len(said := stops(cwd)) == seen:  # the task says where the signal took effect, then is requeued
            assert time.monotonic() < deadline, f"the task training {run} never said it stopped"
            time.sleep(0.2)
        where, inside = said[seen]
        if inside and re.search(pattern, where):
            return Path(where)
        print(f"the signal stopped {where} {'inside its training' if inside else 'after its last step'}; "
              f"trying another run")


def test_the_whole_paper_at_smoke_scale_through_slurm_to_the_report(tmp_path):
    require_slurm()
    wait_for_jobs_to_leave_queue(timeout=120)
    data, results = tmp_path / "data", tmp_path / "results"
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_smoke_data.py"), str(data)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    args = ["-m", "sweeps=paper", "scale=smoke", f"data_root={data}", "verify_md5.cifar10=false", *SLURM,
            "hydra.launcher.pack_minutes=1.5", "hydra.launcher.max_num_timeout=3", "device=cpu", "progress=lines",
            f"results_dir={results}"]
    started = time.monotonic()
    launch = subprocess.run([sys.executable, MAIN, *args], cwd=tmp_path, env=env(), capture_output=True, text=True,
                            timeout=300)
    assert launch.returncode == 0, launch.stdout + launch.stderr
    runs = int(re.search(r"^walign sweep: (\d+) runs", launch.stdout, re.M).group(1))
    assert "Table 10" in launch.stdout and "Figure 9" in launch.stdout  # the per-item table
    assert re.search(r"walign slurm: submitted array job \d+: (\d+) tasks, %d runs" % runs, launch.stdout), launch.stdout
    assert not re.search(rf"\b{runs} complete\b", total_counts(results)), "the launch waited for its runs"

    # Table 2's width-256 runs are the longest: stop the task training one of them, mid-run
    interrupted = stop_a_run_inside_its_training(tmp_path, results, r"/cifar10/(normal|fa|dfa|align_ada|align_zero)/w256-")

    deadline = started + 900
    while not re.search(rf"\b{runs} complete\b", counts := total_counts(results)):
        assert time.monotonic() < deadline, f"not all {runs} runs complete after 15 minutes: {counts}; " \
                                            f"squeue: {queued_jobs()}"
        time.sleep(2)
    took = time.monotonic() - started
    wait_for_jobs_to_leave_queue(timeout=120)
    assert re.fullmatch(rf"\s*{runs} complete, 0 diverged, 0 failed, 0 running, 0 queued, 0 interrupted, "
                        rf"0 not started", counts), counts
    print(f"rehearsal: {runs} runs complete {took:.0f} s after the launch")

    # the requeued run resumed to the numbers of the same run made in one go
    summary = json.loads((interrupted / "summary.json").read_text())
    assert "resumed_after_epoch" in summary, summary
    alone = tmp_path / "alone"
    again = subprocess.run([sys.executable, MAIN, f"rule={summary['rule']}", "dataset=cifar10", f"width={summary['width']}",
                            f"lr={summary['lr']:g}", f"seed={summary['seed']}", f"epochs={summary['epochs']}", "scale=smoke", f"data_root={data}", "verify_md5.cifar10=false",
                            "device=cpu", "progress=none", f"results_dir={alone}"],
                           cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    twin = alone / interrupted.relative_to(results)
    records = [[without_timing(json.loads(line)) for line in (d / "metrics.jsonl").read_text().splitlines()]
               for d in (interrupted, twin)]
    assert records[0] == records[1]

    # every table has our values and every figure our points, labelled smoke scale
    out = tmp_path / "report"
    report = subprocess.run([str(Path(sys.executable).parent / "walign-report"), str(results), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stdout + report.stderr
    for number in range(1, 11):
        (table,) = out.glob(f"table{number:02d}_*.csv")
        with open(table) as f:
            ours = [row["ours"] for row in csv.DictReader(f) if row.get("ours") not in (None, "")]
        assert ours, f"Table {number} has none of our values"
        (markdown,) = out.glob(f"table{number:02d}_*.md")
        assert SMOKE in markdown.read_text()
    index = (out / "REPORT.md").read_text()
    assert SMOKE in index
    for number in FIGURES:
        (row,) = [line for line in index.splitlines() if line.startswith(f"| Figure {number}:")]
        assert not row.endswith("| no runs |"), row
        assert list(out.glob(f"figure{number}_*.png")), number
    assert len(summaries(results)) == runs
