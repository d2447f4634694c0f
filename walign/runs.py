"""Run directories: content-addressed, written atomically, read defensively.

A run's directory name is derived from the values that define the run (not from where or when it
ran), so launching the same configuration again finds the same directory. Layout:

    <results_dir>/<dataset>/<rule>/w<width>-lr<lr>-s<seed>-<hash>/
        config.yaml     the full resolved configuration
        metrics.jsonl   one JSON object per finished epoch
        summary.json    written at the end (status complete | diverged | failed): the done-marker
        checkpoint.pt   the state after the last finished epoch, while the run is unfinished
        claim.json      who is running the run now (walign/claim.py)

Results directories are shared, copied between machines and sometimes tampered with, so every
file here is treated as untrusted input: a reader never follows a symbolic link, checks what it
parsed, and reports anything else as ``Unreadable`` ("<path>: <reason>") for its caller to say in
one line and carry on. Writers never write through a link either: whole files are replaced by a
rename, appends open with O_NOFOLLOW.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import stat
import time
from pathlib import Path

from . import limits

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
STATUSES = ("complete", "diverged", "failed")
# keys every summary.json walign writes has, with the type each must have
SUMMARY_KEYS = {"status": str, "dataset": str, "rule": str, "width": int, "lr": (int, float), "seed": int,
                "epochs": int, "epochs_done": int}
# the keys of a summary.json besides the run's identity (and compute_precision, which identifies
# a run except at its default fp32) and its results: what the run did and where. Each data set
# declares its result keys (walign.datasets: DataSet.summary_keys); the report tells identity from
# results by both lists.
RUN_KEYS = ("status", "run_dir", "device", "walign_version", "epochs_done", "error", "wall_seconds",
            "resumed_after_epoch", "resumed_after_step", "precision_note", "compile_seconds", "load_seconds",
            "eval_seconds")


class Unreadable(Exception):
    """A state file exists but does not hold what walign writes; str() is '<path>: <reason>'."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


class WriteError(OSError):
    """Writing a run's file failed (disk full, read-only, permissions); str() names file and error."""

    def __init__(self, path, err: OSError):
        super().__init__(err.errno, f"cannot write {path}: {err.strerror or err}")
        self.path = Path(path)

    def __str__(self) -> str:
        return self.strerror


def run_id(identity: dict) -> str:
    """Short stable hash of the identifying values (key order does not matter)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_dir(results_dir: str | os.PathLike, identity: dict) -> Path:
    """The directory of the run that ``identity`` defines."""
    name = f"w{identity['width']}-lr{identity['lr']:g}-s{identity['seed']}-{run_id(identity)}"
    return Path(results_dir) / str(identity["dataset"]) / str(identity["rule"]) / name


# ----------------------------------------------------------------------------- writing
def write_atomic(path: Path, data: str | bytes) -> None:
    """Write via a temporary file, fsync and rename, so a kill never leaves a half-written file and
    a symbolic link at ``path`` is replaced, not followed. The temporary file gets a random name
    and is created with O_CREAT | O_EXCL | O_NOFOLLOW, so nothing planted at a guessable name (a
    link to a file elsewhere) can receive the bytes. On failure the temporary file is removed, the
    old file is untouched, and a ``WriteError`` names the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        raise WriteError(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # a full disk, or a second stop signal in the middle of the write
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(err, OSError):
            raise WriteError(path, err) from None
        raise


def set_aside(path: Path, name: str | None = None) -> Path:
    """Rename a state file that must not be used (or whatever stands at its name: a link, a
    directory, a FIFO) to ``<name>.bad-<time>`` beside it (``name``: the file's own by default),
    kept for whoever wants to look at it; returns the new path."""
    path = Path(path)
    stamp, name = time.strftime("%Y%m%d-%H%M%S"), name or path.name
    aside, n = path.with_name(f"{name}.bad-{stamp}"), 1
    while os.path.lexists(aside):
        aside, n = path.with_name(f"{name}.bad-{stamp}-{n}"), n + 1
    os.rename(path, aside)
    return aside


def strict(obj):
    """Replace non-finite floats (a diverged loss) by None: files stay strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def write_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(strict(obj), indent=2, allow_nan=False) + "\n")


def json_line(record: dict) -> str:
    return json.dumps(strict(record), allow_nan=False) + "\n"


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line; never through a symbolic link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(json_line(record))
            f.flush()
    except OSError as err:
        raise WriteError(path, err) from None


# ----------------------------------------------------------------------------- reading
KIND = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
        stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
MAX_STATE_BYTES = 64 * 2**20   # summary.json, claim.json, metrics.jsonl: far above what a run writes


# a folder holding any of these is a run directory (walign status and walign-report find runs by them)
RUN_MARKERS = (SUMMARY, METRICS, "config.yaml", "checkpoint.pt", "claim.json", "error.log")
# files a run rewrites from the start whatever stood there (summary.json is judged by
# walign.verdict, checkpoint.pt by walign.checkpoint, claim.json by walign.claim)
STATE_FILES = ("config.yaml", METRICS, "error.log")


def odd_kind(path: Path) -> str | None:
    """What stands at ``path`` if it is neither absent nor a regular file ('a directory', 'a
    symbolic link', ...), else None. Never follows a link, never opens anything."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    return "a symbolic link" if stat.S_ISLNK(mode) else KIND.get(stat.S_IFMT(mode), "not a regular file")


def read_bytes(path: Path, limit: int = MAX_STATE_BYTES) -> bytes | None:
    """The file's bytes, None if it does not exist; Unreadable for a link, anything that is not
    a regular file (a directory, a FIFO: opened without blocking, never read), a file larger than
    ``limit`` bytes, or an I/O error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        if os.path.islink(path):
            raise Unreadable(path, f"a symbolic link to {os.readlink(path)} (not followed)") from None
        raise Unreadable(path, err.strerror or str(err)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(path, f"{KIND.get(stat.S_IFMT(info.st_mode), 'not a regular file')}, not a file")
        raise Unreadable(path, f"{info.st_size} bytes, more than the {limit} a walign state file may have")
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read()
        except OSError as err:
            raise Unreadable(path, err.strerror or str(err)) from None


def _refuse_constant(name):
    raise ValueError(f"holds a {name} literal (walign writes non-finite numbers as null)")


def loads_strict(text: str):
    """json.loads that rejects the NaN / Infinity literals plain json accepts, and nesting deeper
    than the interpreter's recursion limit (ValueError instead of RecursionError)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def check_summary(summary, path) -> dict:
    """``summary`` if it has the shape walign writes, else Unreadable saying what is wrong."""
    if not isinstance(summary, dict):
        raise Unreadable(path, f"holds a JSON {type(summary).__name__}, not an object")
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise Unreadable(path, f"lacks {', '.join(missing)}")
    for key, kind in SUMMARY_KEYS.items():
        value = summary[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise Unreadable(path, f"{key} is {value!r}")
    if summary["status"] not in STATUSES:
        raise Unreadable(path, f"unknown status {summary['status']!r}")
    for key in limits.RANGES:  # the ranges a launch is checked with: a run launch accepts reads back
        if key in summary and (wrong := limits.problem(key, summary[key])):
            raise Unreadable(path, f"{key} {wrong}")
    if summary["epochs_done"] > summary["epochs"]:
        raise Unreadable(path, f"epochs_done {summary['epochs_done']} exceeds epochs {summary['epochs']}")
    return summary


def read_summary(directory: Path) -> dict | None:
    """The run's summary, None if it has none; Unreadable if it has one that is not valid."""
    path = Path(directory) / SUMMARY
    data = read_bytes(path)
    if data is None:
        return None
    try:
        summary = loads_strict(data.decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise Unreadable(path, f"not valid JSON ({str(err).splitlines()[0]})") from None
    return check_summary(summary, path)


def read_metrics(directory: Path) -> tuple[list[dict], list[str]]:
    """Per-epoch records and the problems found in metrics.jsonl (each '<path>: <reason>').

    Reading stops at the first line that is not a JSON object with an integer epoch (a torn last
    line after a kill, or tampering); the records before it are returned. Duplicated and missing
    epochs, NaN / Infinity literals and an empty or absent file are problems too.
    """
    path = Path(directory) / METRICS
    try:
        data = read_bytes(path)
    except Unreadable as err:
        return [], [str(err)]
    if data is None:
        return [], [f"{path}: missing"]
    lines = data.decode(errors="replace").splitlines()
    if not lines:
        return [], [f"{path}: empty"]
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        try:
            record = loads_strict(line)
        except ValueError as err:
            problems.append(f"{path}: line {number} of {len(lines)} {str(err).splitlines()[0]}; "
                            f"the {len(records)} line(s) before it are used")
            break
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            problems.append(f"{path}: line {number} has no valid epoch; the {len(records)} line(s) before it are used")
            break
        records.append(record)
    epochs = [r["epoch"] for r in records]
    duplicated = sorted({e for e in epochs if epochs.count(e) > 1})
    if duplicated:
        problems.append(f"{path}: epochs listed more than once: {', '.join(map(str, duplicated))}")
    absent = sorted(set(range(1, max(epochs, default=0) + 1)) - set(epochs))
    if absent:
        problems.append(f"{path}: epochs missing: {', '.join(map(str, absent))}")
    return records, problems


def best(records: list[dict], key: str) -> float | None:
    """Largest finite value of ``key`` over the records (None if there is none)."""
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
    return max(values) if values else None
