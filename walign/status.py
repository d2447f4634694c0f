"""``walign status [RESULTS_DIR] [--watch [SECONDS]]``: what became of the runs of a results directory.

A SLURM sweep returns once its jobs are submitted, so nothing is left running to ask how it goes.
This command answers from the files alone: one block per sweep record (walign.sweep_record,
oldest first), then a total over every run directory found (runs launched one at a time count
in the total only; the total also holds the records' runs that have no directory yet).

A run is what walign.verdict.judge finds in its directory, the judgement main.py's relaunch, the
sweep and walign-report make too: complete, diverged or failed (a summary.json that is not
believed counts as failed, with the reason, and the next launch runs it again); otherwise running,
when its claim holds (walign.claim.stale_reason: on this host its own process alive, elsewhere a
heartbeat younger than walign.claim.STALE_AFTER); queued, when its record's SLURM task is in the
queue; else interrupted (a checkpoint.pt to resume from) or not started. A failed run is shown
with its failing line: the last non-empty line of error.log, which for a Python traceback is the
exception ("RuntimeError: boom"), else summary["error"].

Time is counted where it was spent: GPU-hours done are the wall_seconds of finished runs made on a
GPU, left the records' estimated GPU seconds (walign.packing) of unfinished runs, counting a
running run in full; runs made on the CPU (summary.json's device), or launched with device=cpu,
count apart in CPU-hours done, with no estimate of what is left. A results directory of CPU runs
shows no GPU-hours.

Status only reads: claims are read with walign.claim._read, never through ``holder`` or ``Claim``,
which may re-date or take over a claim. It reports and does not judge: exit 0 with failed runs,
2 for a usage mistake or a results directory that cannot be read. Judging a finished run needs
its data set's entry (to summarise metrics.jsonl): a data set from a plugin module that is not
installed is named with ``--module``.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import sweep_record
from .claim import CLAIM, _read as read_claim, describe, stale_reason
from .runs import RUN_MARKERS, SUMMARY, Unreadable, read_bytes
from .verdict import judge

PROG = "walign"
ERROR_LOG = "error.log"
MARKERS = set(RUN_MARKERS)  # any of them: a run directory
STATES = ("complete", "diverged", "failed", "running", "queued", "interrupted", "not started")
FINISHED = STATES[:3]
CLEAR = "\x1b[H\x1b[2J"
MAX_WATCH = 86400  # seconds between two prints of --watch: a day (time.sleep overflows far above)


@dataclass
class RunStatus:
    path: str            # relative to the results directory
    state: str           # one of STATES
    detail: str = ""     # the failing line of a failed run, the holder of a running one
    seconds: float = 0.0  # wall_seconds of a finished run
    on_cpu: bool = False  # made on the CPU (finished), or launched with device=cpu (unfinished)


def clean(value, limit: int = 300) -> str:
    """Text from an untrusted file, made safe to print: no control characters (no terminal escape
    sequences from a tampered claim or log), at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def seconds_of(value) -> float:
    """A finite non-negative number of seconds, else 0 (a missing or tampered field counts nothing)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    return float(value) if ok else 0.0


def find_runs(root: Path, problems: list[str]) -> list[str]:
    """Every directory under ``root`` holding a run's file, relative; hidden folders (.hydra) and
    the top sweeps/ are skipped, and a run directory is not searched further."""
    def walk_error(err: OSError):
        problems.append(f"walign: cannot read {err.filename}: {err.strerror or err}; not searched")

    found = []
    for here, dirnames, filenames in os.walk(root, onerror=walk_error):
        rel = Path(here).relative_to(root).as_posix()
        if rel != "." and MARKERS & (set(filenames) | set(dirnames)):
            found.append(rel)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and not (rel == "." and d == sweep_record.FOLDER))
    return found


def error_line(directory: Path, summary: dict) -> str:
    """The failing line of a failed run (see the module docstring)."""
    try:
        data = read_bytes(directory / ERROR_LOG) or b""
    except Unreadable:
        data = b""
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    return clean(lines[-1] if lines else summary.get("error") or f"no {ERROR_LOG}")


def classify(root: Path, rel: str, queued: dict[str, str], host: str) -> RunStatus:
    """What the run in ``root / rel`` is (the order is in the module docstring)."""
    directory = root / rel
    verdict = judge(directory)
    if verdict.problem is not None:
        return RunStatus(rel, "failed", clean(f"{SUMMARY} not believed: {verdict.problem.reason}"))
    if verdict.summary is not None:
        detail = error_line(directory, verdict.summary) if verdict.state == "failed" else ""
        return RunStatus(rel, verdict.state, detail, seconds_of(verdict.summary.get("wall_seconds")),
                   str(verdict.summary.get("device", "")).startswith("cpu"))
    claim, age = read_claim(directory / CLAIM)
    if claim is not None and stale_reason(claim, age, {"host": host, "slurm_job": None}) is None:
        return RunStatus(rel, "running", clean(describe(claim, age), 400))
    if rel in queued:
        return RunStatus(rel, "queued", f"SLURM job {queued[rel]}")
    return RunStatus(rel, verdict.state)


def record_runs(record: dict) -> dict[str, tuple[str | None, float | None, bool]]:
    """The record's runs (normalised relative paths, in order) with their task's job, estimated
    seconds (None where the record has none) and whether they were launched with device=cpu."""
    runs = {}
    for task in record["tasks"]:
        estimates = task.get("seconds") if isinstance(task.get("seconds"), list) else []
        devices = task.get("devices") if isinstance(task.get("devices"), list) else []
        for i, run in enumerate(task["runs"]):
            estimate = seconds_of(estimates[i]) if i < len(estimates) else None
            runs[PurePosixPath(run).as_posix()] = (task.get("job"), estimate, i < len(devices) and devices[i] == "cpu")
    return runs


def sacct_states(jobs: list[str]) -> dict[str, str]:
    """SLURM's last state of array tasks no longer in the queue; {} when sacct is absent or fails
    (accounting is often off on small clusters): then they are only 'not in the queue'."""
    if not jobs or shutil.which("sacct") is None:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(sorted(set(jobs))), "-o", "JobID,State"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        job, _, state = line.partition("|")
        if state.split():
            states[job.strip()] = state.split()[0]  # 'CANCELLED by 1000' -> 'CANCELLED'
    return states


def time_line(runs: list[RunStatus], estimates: dict[str, float]) -> str:
    """GPU-hours done and left of the runs on GPUs, CPU-hours done of those on the CPU (see the
    module docstring); only the kinds of device the runs have."""
    gpu, cpu = [run for run in runs if not run.on_cpu], [run for run in runs if run.on_cpu]
    parts = []
    if gpu or not cpu:
        unfinished = [run for run in gpu if run.state not in FINISHED]
        left = sum(estimates.get(run.path, 0.0) for run in unfinished)
        unknown = sum(run.path not in estimates for run in unfinished)
        parts.append(f"GPU-hours: {sum(run.seconds for run in gpu if run.state in FINISHED) / 3600:.2f} done, "
                     f"{left / 3600:.2f} left" + (f" ({unknown} unfinished without an estimate)" if unknown else ""))
    if cpu:
        unfinished = sum(run.state not in FINISHED for run in cpu)
        parts.append(f"CPU-hours: {sum(run.seconds for run in cpu if run.state in FINISHED) / 3600:.2f} done"
                     + (f", {unfinished} unfinished on the CPU (no estimate)" if unfinished else ""))
    return "  " + "; ".join(parts)


def block(title: str, runs: list[RunStatus], estimates: dict[str, float]) -> list[str]:
    """A header, the counts, the time done and left, and one line per failed and per running run."""
    counts = Counter(run.state for run in runs)
    lines = [title, "  " + ", ".join(f"{counts[state]} {state}" for state in STATES), time_line(runs, estimates)]
    lines += [f"  {run.state}: {run.path}: {run.detail}" for run in runs if run.state in ("failed", "running")]
    return lines


def slurm_line(jobs: list[str], queue: dict[str, str] | None, done: dict[str, str]) -> str:
    if queue is None:
        return "  SLURM: not available here"
    counts = Counter(queue.get(job) or done.get(job) or "not in the queue" for job in jobs)
    return "  SLURM: " + (", ".join(f"{n} {clean(state, 40)}" for state, n in sorted(counts.items())) or "no tasks")


def arrays_of(record: dict) -> list[str]:
    arrays = record.get("arrays")
    return [str(a) for a in arrays] if isinstance(arrays, list) else []


def slurm_view(listed) -> tuple[dict[str, str] | None, dict[str, str], dict[str, str]]:
    """(squeue's state of every queued array task or None without squeue, the queued runs with
    their task, sacct's state of the records' tasks that have left the queue)."""
    queue = sweep_record.queue_states([a for _, record, _ in listed for a in arrays_of(record)])
    queued = {run: job for _, _, runs in listed for run, (job, _, _) in runs.items() if job in (queue or {})}
    gone = [job for _, record, runs in listed if arrays_of(record)
            for job, _, _ in runs.values() if job and job not in (queue or {})]
    return queue, queued, (sacct_states(gone) if queue is not None else {})


def report(root: Path) -> str:
    """The whole text ``walign status`` prints for ``root``."""
    lines: list[str] = []
    records = sweep_record.read_records(root, lambda text, **_: lines.append(text))
    found = find_runs(root, lines)
    if not found and not records:
        return "\n".join(lines + [f"no runs under {root}"]) + "\n"
    listed = [(path, record, record_runs(record)) for path, record in records]
    queue, queued, done = slurm_view(listed)
    host, estimates, runs = socket.gethostname(), {}, {}
    launched_on_cpu = {run for _, _, listed_runs in listed for run, (_, _, cpu) in listed_runs.items() if cpu}
    for rel in found + [run for _, _, listed_runs in listed for run in listed_runs]:
        if rel not in runs:
            runs[rel] = classify(root, rel, queued, host)
            if runs[rel].state not in FINISHED:
                runs[rel].on_cpu = rel in launched_on_cpu
    for path, record, listed_runs in listed:
        mine = {run: estimate for run, (_, estimate, _) in listed_runs.items() if estimate is not None}
        estimates.update(mine)  # a later record's estimate of a run replaces an earlier one's
        arrays = arrays_of(record)
        title = (f"{path.name}: {clean(record.get('launcher', '?'), 40)}, created "
                 f"{clean(record.get('created', '?'), 40)}, {len(listed_runs)} runs"
                 + (f", SLURM arrays {', '.join(clean(a, 40) for a in arrays)}" if arrays else ""))
        lines += block(title, [runs[run] for run in listed_runs], mine)
        if arrays:
            tasks = [str(t["job"]) for t in record["tasks"] if t.get("job")]
            lines.append(slurm_line(tasks, queue, done))
        lines.append("")
    lines += block(f"total: {len(runs)} runs under {root}", [runs[rel] for rel in sorted(runs)], estimates)
    return "\n".join(lines) + "\n"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage block) and exit status 2, as walign-report."""

    def error(self, message):
        sys.stderr.write(f"{PROG}: error: {message} (see {PROG} --help)\n")
        raise SystemExit(2)


def parser() -> Parser:
    p = Parser(prog=PROG, description="walign's commands besides training (which is main.py).")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = commands.add_parser("status", help="what became of the runs and sweeps of a results directory",
                                 description=__doc__.split("\n\n")[0].replace("``", ""))  # plain text, not reST
    status.add_argument("results_dir", metavar="RESULTS_DIR", nargs="?", default="results",
                        help="the results directory (default: results)")
    status.add_argument("--watch", metavar="SECONDS", nargs="?", type=float, const=10.0, default=None,
                        help=f"print again every SECONDS (default 10, at most {MAX_WATCH}) until Ctrl-C")
    status.add_argument("--module", metavar="NAME", action="append", default=[],
                        help="import the plugin module NAME first (as +dataset_module=NAME did for the runs), "
                             "so that runs of its data sets can be judged. Repeatable")
    return p


def import_modules(names: list[str], error) -> None:
    """Import the plugin modules given with --module; ``error`` (one line, exit 2) if one fails."""
    from .errors import ConfigError
    from .plugins import import_user_module
    for name in names:
        try:
            import_user_module(name, "--module")
        except ConfigError as err:
            error(str(err))


def unusable(root: Path) -> str | None:
    """Why ``root`` cannot be read as a results directory, or None."""
    try:
        if not stat.S_ISDIR(os.stat(root).st_mode):
            return f"results directory {root} is not a directory"
        with os.scandir(root):
            return None
    except FileNotFoundError:
        return f"results directory {root} does not exist"
    except OSError as err:
        return f"results directory {root} cannot be read: {err.strerror or err}"


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.watch is not None and not (math.isfinite(args.watch) and 0 < args.watch <= MAX_WATCH):
        p.error(f"--watch wants a number of seconds above 0 and at most {MAX_WATCH} (a day), not {args.watch:g}")
    import_modules(args.module, p.error)
    root = Path(args.results_dir)
    problem = unusable(root)
    if problem:
        sys.stderr.write(f"{PROG}: error: {problem}\n")
        return 2
    if args.watch is None:
        sys.stdout.write(report(root))
        return 0
    try:
        while True:
            text = report(root)
            sys.stdout.write(CLEAR + text if sys.stdout.isatty() else text + "\n")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way --watch ends
        return 0


if __name__ == "__main__":
    sys.exit(main())
