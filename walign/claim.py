"""One writer per run: a run claims its directory before it writes there, and holds the claim
until it ends.

The claim is the file ``claim.json`` in the run directory, created with O_CREAT | O_EXCL (atomic
on local disks and on NFS v3 and later, unlike ``flock``, which many cluster file systems do not
honour). It records who holds it: host, pid, SLURM job (if any), start time, and a random token.
While the run lives, a background thread touches the file every ``HEARTBEAT`` seconds.

A claim whose holder is gone is taken over, with a line saying so:

* on the same host, when its pid no longer exists (a killed run), or now belongs to another
  process (the claim records when its process started, and a reused pid started later);
* on another host, when its heartbeat (the file's mtime) is older than ``STALE_AFTER`` seconds
  (a node that died or lost the file system);
* at once, when the claimant is the same SLURM job (a requeued job resuming its own run).

On the same host, the holder's own process alive is proof enough, whatever its heartbeat says:
a process that is stopped (SIGSTOP, ``scontrol suspend``), on a machine that slept, or after a
clock step beats no more, yet it will go on training when it resumes, and a relaunch that took
its run would train it beside it. Such a relaunch says the run is running, with the heartbeat's
age and "suspended?", and trains nothing. (A claim written by a walign too old to record the start
time, or on a system without /proc, falls back to the heartbeat rule.)

Taking over renames the stale file to a private name first, so of two processes that find the
same stale claim only one wins; a process that renamed away a claim that was not the one it
judged (it was replaced meanwhile) puts it back. Whatever else stands at the claim's name (a
directory, a FIFO, a link) is a damaged claim: it is never read, and taking over renames it to
``claim.json.bad-<time>``, with one line.

Clocks. A heartbeat more than ``CLOCK_SKEW`` seconds in the future (a node whose clock runs ahead,
or a touched file) says nothing about how long ago its holder was alive, so it would block the run
for ever. Whoever finds one re-dates it to its own clock's now, with a line saying so: from then
on its age is measured by that clock, and the normal stale bound applies. A live holder's next
heartbeat simply moves the time again; re-dating only ever makes a claim look fresher, so it can
never cause a live claim to be taken over.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from .runs import Unreadable, WriteError, loads_strict, odd_kind, read_bytes, set_aside

CLAIM = "claim.json"
HEARTBEAT = 30.0       # seconds between touches of a live claim
STALE_AFTER = 600.0    # a claim not touched for this long is abandoned
UNWRITTEN_GRACE = 10.0  # a claim file still empty after this long was left by a crash mid-create
CLOCK_SKEW = 300.0     # a heartbeat further than this in the future is re-dated (see the docstring)


class AlreadyRunning(Exception):
    """The run is claimed by a live process; ``holder`` is its claim, ``age`` its heartbeat's age."""

    def __init__(self, holder: dict, age: float | None = None):
        self.holder, self.age = holder, age
        super().__init__(describe(holder, age))


def slurm_job() -> str | None:
    """This process's SLURM job ('<array job>_<task>' for array tasks), the same after a requeue."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def describe(holder: dict, age: float | None = None) -> str:
    """'host, pid N[, SLURM job J], since T[, heartbeat S s ago[, suspended?]]'."""
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    text = f"{holder.get('host', '?')}, pid {holder.get('pid', '?')}{job}, since {holder.get('since', '?')}"
    if age is not None:
        text += f", heartbeat {age:.0f} s ago" if age >= 0 else f", heartbeat {-age:.0f} s in the future"
        if age > STALE_AFTER:  # a live holder that has not beaten (see the module docstring)
            text += ": alive but silent, suspended?"
    return text


def process_start(pid) -> str | None:
    """When process ``pid`` started, as '<boot id>/<clock ticks after boot>' from Linux's /proc,
    which no other process can share; None where it cannot be read."""
    try:
        fields = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{fields[19]}"  # field 22, starttime (the fields after the name begin at 3)
    except (OSError, ValueError, TypeError, IndexError):
        return None


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> tuple[dict | None, float | None]:
    """(claim, age of its heartbeat in seconds); (None, None) if there is no claim file; a claim
    that is not valid JSON reads as {} (a crash between create and write, or tampering)."""
    try:
        data = read_bytes(path)
        age = time.time() - os.lstat(path).st_mtime
    except (Unreadable, FileNotFoundError):
        return ({}, STALE_AFTER + 1) if os.path.lexists(path) else (None, None)
    if data is None:
        return None, None
    try:
        claim = loads_strict(data.decode())  # (a depth bound: deep nesting is damage, not a crash)
    except (UnicodeDecodeError, ValueError):
        return {}, age
    return (claim if isinstance(claim, dict) else {}), age


def stale_reason(claim: dict, age: float, me: dict) -> str | None:
    """Why ``claim`` may be taken over by ``me``, or None if its holder may still be running."""
    if not claim:
        return "its claim file is empty or damaged" if age > UNWRITTEN_GRACE else None
    if me["slurm_job"] and claim.get("slurm_job") == me["slurm_job"]:
        return f"SLURM job {me['slurm_job']} was requeued"
    if claim.get("host") == me["host"]:
        pid = claim.get("pid")
        if not _pid_alive(pid):
            return f"pid {pid} no longer runs on {me['host']}"
        started, now = claim.get("started"), process_start(pid)
        if started is not None and now is not None:
            # the same process, alive: it holds the run however old its heartbeat (module docstring)
            return None if now == started else f"pid {pid} on {me['host']} is now another process"
    if age > STALE_AFTER:
        return f"no heartbeat for {age / 60:.0f} minutes"
    return None


def _redate_future(path: Path, age: float | None, say) -> float | None:
    """A heartbeat beyond CLOCK_SKEW in the future is re-dated to now (see the module docstring);
    returns the age to judge the claim by."""
    if age is None or age >= -CLOCK_SKEW:
        return age
    try:
        os.utime(path, follow_symlinks=False)
    except OSError:
        pass  # gone, or not ours to touch: judged as fresh this time all the same
    say(f"{path}: its heartbeat is {-age / 3600:.1f} hours in the future (a clock more than "
        f"{CLOCK_SKEW / 60:.0f} minutes off, or a touched file); re-dated to this host's clock, so the claim is "
        f"taken over if nothing refreshes it for {STALE_AFTER / 60:.0f} minutes", flush=True)
    return 0.0


def holder(directory: Path, say=print) -> tuple[dict, float] | None:
    """(claim, heartbeat age) of a process that may still be running the run in ``directory``,
    or None (as ``Claim`` judges it from this process: a requeued SLURM job's own claim is not a
    holder)."""
    path = Path(directory) / CLAIM
    claim, age = _read(path)
    if claim is None:
        return None
    age = _redate_future(path, age, say)
    me = {"host": socket.gethostname(), "slurm_job": slurm_job()}
    return None if stale_reason(claim, age, me) else (claim, age)


class Claim:
    """Context manager holding the claim on one run directory (see the module docstring)."""

    def __init__(self, directory: Path, say=print):
        self.path = Path(directory) / CLAIM
        self.say = say
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid()),
                   "slurm_job": slurm_job(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> "Claim":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(20):
            if self._create():
                self._thread = threading.Thread(target=self._beat, daemon=True, name="walign-claim")
                self._thread.start()
                return
            claim, age = _read(self.path)
            if claim is None:
                continue  # released between our create and our read: try again
            age = _redate_future(self.path, age, self.say)
            reason = stale_reason(claim, age, self.me)
            if reason is None:
                if not claim:  # being written right now by its creator
                    time.sleep(0.2)
                    continue
                raise AlreadyRunning(claim, age)
            kind = None if claim else odd_kind(self.path)
            if (kept := self._take_over(claim)) is not False:
                who = describe(claim) if claim else "unknown"
                reason = f"{CLAIM} is {kind}, not a file; moved it to {kept}" if kind and kept else reason
                self.say(f"{self.path.parent}: taking over the claim of {who}: {reason}", flush=True)
        raise AlreadyRunning(_read(self.path)[0] or {})

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        except OSError as err:
            raise WriteError(self.path, err) from None
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            self.path.unlink(missing_ok=True)
            raise WriteError(self.path, err) from None
        return True

    def _take_over(self, judged: dict) -> str | None | bool:
        """Move the stale claim out of the way; False if another process got there first. A
        claim that is not a regular file (a directory, a FIFO, a link: damage) is kept as
        claim.json.bad-<time>, whose name is returned; a claim file is removed (None)."""
        aside = self.path.with_name(f".{CLAIM}.stale-{self.me['token']}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        moved, _ = _read(aside)
        if (moved or {}).get("token") != judged.get("token"):
            try:  # we moved a fresh claim that replaced the stale one: put it back
                os.link(aside, self.path)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return False
        if odd_kind(aside):
            return set_aside(aside, CLAIM).name
        aside.unlink(missing_ok=True)
        return None

    def _ours(self) -> bool:
        claim, _ = _read(self.path)
        return bool(claim) and claim.get("token") == self.me["token"]

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                if self._ours():
                    os.utime(self.path, follow_symlinks=False)
            except OSError:
                pass  # a full or flaky file system: the next beat tries again

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            if self._ours():
                self.path.unlink()
        except OSError:
            pass
