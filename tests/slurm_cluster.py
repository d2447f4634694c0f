"""Helpers for tests that need the real local SLURM cluster (scripts/slurm/start-local-slurm.sh).

Not a test module. Tests call :func:`require_slurm` first: it returns when the cluster can run
jobs, and otherwise skips the test (fails it when ``CI=true``, where SLURM is required).

    from slurm_cluster import count_jobs, require_slurm, wait_for_jobs_to_leave_queue
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

PARTITION = "debug"
START_COMMAND = "bash scripts/slurm/start-local-slurm.sh"
READY_STATES = {"idle", "mixed", "allocated", "completing"}  # up and responding (no '*')
_COMMAND_TIMEOUT = 20.0


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)


def _problem(partition: str) -> str | None:
    """Why the cluster cannot run jobs right now, or None when it can."""
    missing = [tool for tool in ("sinfo", "sbatch", "sacct", "squeue") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH"
    try:
        info = _run("sinfo", "-h", "-N", "-p", partition, "-o", "%N %T")
        if info.returncode != 0:
            return f"sinfo failed: {(info.stderr or info.stdout).strip()}"
        nodes = [line.split() for line in info.stdout.splitlines() if line.strip()]
        if not nodes:
            return f"no node in partition {partition!r}"
        if not any(state in READY_STATES for _, state in nodes):
            return "no usable node: " + ", ".join(f"{name} is {state}" for name, state in nodes)
        acct = _run("sacct", "-n", "-X")
        if acct.returncode != 0:
            return f"sacct -n -X failed (accounting is needed): {(acct.stderr or acct.stdout).strip()}"
    except subprocess.TimeoutExpired as exc:
        return f"{exc.cmd[0]} did not answer within {_COMMAND_TIMEOUT:.0f} s"
    return None


def require_slurm(partition: str = PARTITION) -> None:
    """Return if SLURM can run jobs in ``partition``; else skip the test.

    Checked: sinfo/sbatch/sacct/squeue on PATH, a node of the partition up and responding
    (idle, or busy with earlier jobs), and ``sacct -n -X`` exits 0. Under ``CI=true``, or when
    .ci/run has started the cluster (``WALIGN_SLURM_UP=1``), a missing cluster fails the test
    instead: ``pytest.fail("SLURM is not up: <reason>")``.
    """
    reason = _problem(partition)
    if reason is None:
        return
    if os.environ.get("CI") == "true" or os.environ.get("WALIGN_SLURM_UP") == "1":
        pytest.fail(f"SLURM is not up: {reason}", pytrace=False)
    pytest.skip(f"SLURM is not running here ({reason}); start it with: {START_COMMAND}")


def queued_jobs() -> list[str]:
    """IDs of the jobs still in the queue (pending, running, completing), array tasks one by one."""
    out = _run("squeue", "-h", "-r", "-o", "%i")
    if out.returncode != 0:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def wait_for_jobs_to_leave_queue(timeout: float = 60.0, poll: float = 0.2) -> float:
    """Wait until ``squeue`` shows no job at all; return the seconds waited.

    Raises TimeoutError (with the jobs still queued) after ``timeout`` seconds.
    """
    start = time.monotonic()
    while True:
        left = queued_jobs()
        waited = time.monotonic() - start
        if not left:
            return waited
        if waited > timeout:
            raise TimeoutError(f"jobs still in the SLURM queue after {timeout:.0f} s: {' '.join(left)}")
        time.sleep(poll)


_ARRAY = re.compile(r"^(\d+)_\[([^\]]*)\]$")


def _expand(job_id: str) -> list[str]:
    """``12_[0-2,5%2]`` (a pending array in sacct) -> ``12_0 12_1 12_2 12_5``; other IDs as is."""
    match = _ARRAY.match(job_id)
    if not match:
        return [job_id]
    base, spec = match.groups()
    ids = []
    for part in spec.split("%")[0].split(","):
        if not part:
            continue
        step = 1
        if ":" in part:
            part, step_text = part.split(":", 1)
            step = int(step_text)
        if "-" in part:
            lo, hi = part.split("-", 1)
            ids += [f"{base}_{i}" for i in range(int(lo), int(hi) + 1, step)]
        else:
            ids.append(f"{base}_{int(part)}")
    return ids


def job_ids() -> set[str]:
    """Every job this cluster knows of, array tasks counted one by one (``7``, ``8_0``, ``8_1``).

    The union of the accounting database (``sacct -n -X -a -S 2000-01-01``: every job since the
    cluster first started; it can lag a few seconds behind slurmctld) and slurmctld's own list
    (``squeue -t all``: jobs in the queue and those finished in the last MinJobAge = 300 s), so a
    job counts from the moment ``sbatch`` returns.
    """
    acct = _run("sacct", "-n", "-X", "-a", "-P", "-S", "2000-01-01", "-E", "now", "-o", "JobID")
    if acct.returncode != 0:
        raise RuntimeError(f"sacct failed: {acct.stderr.strip()}")
    queue = _run("squeue", "-h", "-r", "-t", "all", "-o", "%i")
    if queue.returncode != 0:
        raise RuntimeError(f"squeue failed: {queue.stderr.strip()}")
    ids: set[str] = set()
    for line in acct.stdout.splitlines() + queue.stdout.splitlines():
        if line.strip():
            ids.update(_expand(line.strip()))
    return ids


def count_jobs() -> int:
    """Number of jobs (array tasks one by one) submitted to this cluster since it first started.

    Compare two counts to show that a relaunch submitted nothing new.
    """
    return len(job_ids())
