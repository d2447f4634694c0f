"""Sweep records: which runs a launch handed to which job, kept under ``<results_dir>/sweeps/``.

A SLURM sweep returns as soon as its jobs are submitted, so the launching process is not there to
ask what became of them. The run directories say what each run did (summary.json, claim.json);
the record says what was asked: one JSON file per launch,

    {"format": 1, "created": "2026-12-04T21:40:00", "host": "login1", "launcher": "slurm",
     "command": "main.py -m ...", "wait": false,
     "arrays": ["812", "813"],                       # SLURM array job ids, [] for other launchers
     "tasks": [{"job": "812_0", "runs": ["small_cifar10/normal/w8-lr1-s99-<hash>", ...],
                "seconds": [6.2, ...]}, ...]}        # run directories relative to results_dir and
                                                     # each run's estimated seconds (walign.packing)

``walign status`` reads them, and a relaunch uses them to leave alone the runs whose job is still
in the SLURM queue (a queued run has no claim yet: its claim is taken when it starts).
"""
from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from .runs import Unreadable, loads_strict, read_bytes, write_json

FOLDER = "sweeps"
FORMAT = 1


def try_write_record(results_dir: str | Path, *args, **kwargs) -> Path | None:
    """``write_record``, but a file system that refuses the record (full, read-only) costs only a
    line: the runs themselves are unaffected, while ``walign status`` and a relaunch will not
    know this launch's tasks."""
    try:
        return write_record(results_dir, *args, **kwargs)
    except OSError as err:
        print(f"walign: warning: cannot write the sweep record under {record_folder(results_dir)} ({err}); "
              f"walign status will not list this launch", file=sys.stderr, flush=True)
        return kwargs.get("path")


def task_entry(job: str | None, specs: list, seconds: list[float]) -> dict:
    """One task of a record: its job, its runs' directories relative to their results_dir (every
    spec of one record shares it), their estimated seconds on a GPU, and their devices (a run
    on the CPU has no GPU estimate: `walign status` counts it apart)."""
    return {"job": job, "seconds": [round(s, 1) for s in seconds],
            "runs": [str(spec.run_directory().relative_to(spec.results_dir)) for spec in specs],
            "devices": [spec.device for spec in specs]}


def record_folder(results_dir: str | Path) -> Path:
    return Path(results_dir) / FOLDER


def write_record(results_dir: str | Path, launcher: str, tasks: list[dict], command: str = "",
                 arrays: list[str] | None = None, wait: bool = True, path: Path | None = None) -> Path:
    """Write a new record (see the module docstring), or replace the one at ``path`` (a launch
    that submits several arrays records each as soon as it is submitted); return its path."""
    folder = record_folder(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = path or folder / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-{secrets.token_hex(3)}.json"
    record = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname(),
              "launcher": launcher, "command": command, "wait": wait, "arrays": list(arrays or []),
              "tasks": tasks}
    write_json(path, record)
    return path


def _check(record, path: Path) -> dict:
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("tasks"), list):
        raise Unreadable(path, f"not a walign sweep record of format {FORMAT}")
    for task in record["tasks"]:
        if not (isinstance(task, dict) and isinstance(task.get("runs"), list)
                and all(isinstance(r, str) and r and not r.startswith("/") and ".." not in Path(r).parts
                        for r in task["runs"])
                and (task.get("job") is None or isinstance(task["job"], str))):
            raise Unreadable(path, "a task of the record is not {job, runs: [relative run directories]}")
    return record


def read_records(results_dir: str | Path, say=print) -> list[tuple[Path, dict]]:
    """Every readable record, oldest first; an unreadable one is named in one line and skipped."""
    folder = record_folder(results_dir)
    if not folder.is_dir() or folder.is_symlink():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = read_bytes(path)
            if data is None:
                continue
            records.append((path, _check(loads_strict(data.decode("utf-8", errors="replace")), path)))
        except Unreadable as err:
            say(f"walign: skipping sweep record {err}", flush=True)
        except ValueError as err:  # not JSON
            say(f"walign: skipping sweep record {path}: {err}", flush=True)
    return records


def queue_states(jobs: list[str]) -> dict[str, str] | None:
    """SLURM's state of every array task of ``jobs`` still in the queue ({'812_3': 'PENDING'}), or
    None when squeue is not available here (then nothing can be said about the queue)."""
    if not jobs:
        return {}
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(sorted(set(jobs))), "-o", "%i %T"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue refuses a list in which one job is no longer known: ask job by job
        if len(set(jobs)) > 1:
            states: dict[str, str] = {}
            for job in sorted(set(jobs)):
                one = queue_states([job])
                if one is None:
                    return None
                states.update(one)
            return states
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def queued_runs(results_dir: str | Path, say=print) -> dict[str, str]:
    """Run directories (relative to results_dir) whose task is still in the SLURM queue, with
    that task's job id: a relaunch leaves these to their job."""
    records = read_records(results_dir, say)
    arrays = [job for _, record in records for job in record.get("arrays", [])]
    states = queue_states(arrays)
    if not states:
        return {}
    queued = {}
    for _, record in records:
        for task in record["tasks"]:
            if task.get("job") in states:
                for run in task["runs"]:
                    queued[run] = task["job"]
    return queued
