"""Run directories: content-addressed, written atomically, with summary.json as the done-marker.

A run's directory name is derived from the values that define the run (not from where or when it
ran), so launching the same configuration again finds the same directory. Layout:

    <results_dir>/<dataset>/<rule>/w<width>-lr<lr>-s<seed>-<hash>/
        config.yaml     the full resolved configuration
        metrics.jsonl   one JSON object per finished epoch
        summary.json    written at the end (status complete | diverged | failed)
        checkpoint.pt   the state after the last finished epoch, while the run is unfinished
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path


def run_id(identity: dict) -> str:
    """Short stable hash of the identifying values (key order does not matter)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_dir(results_dir: str | os.PathLike, identity: dict) -> Path:
    """The directory of the run that ``identity`` defines."""
    name = f"w{identity['width']}-lr{identity['lr']:g}-s{identity['seed']}-{run_id(identity)}"
    return Path(results_dir) / str(identity["dataset"]) / str(identity["rule"]) / name


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a kill never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    with open(path, "a") as f:
        f.write(json_line(record))
        f.flush()


def read_summary(directory: Path) -> dict | None:
    """The run's summary, or None if it has none (or an unreadable one)."""
    try:
        return json.loads((directory / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def read_metrics(directory: Path) -> list[dict]:
    """Per-epoch records; a torn last line (killed mid-write) is ignored."""
    records = []
    try:
        lines = (directory / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return records
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return records


def best(records: list[dict], key: str) -> float | None:
    """Largest finite value of ``key`` over the records (None if there is none)."""
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
    return max(values) if values else None
