"""Find the run directories under a results directory and turn them into one pandas table.

A run counts once its ``summary.json`` exists (walign writes it last, atomically). Directories with
a ``metrics.jsonl`` but no summary are runs still in progress: they are listed, never used. The
files are read by walign.runs, which validates them; whatever it refuses (a half-written summary,
one of the wrong shape, a symbolic link, a torn or NaN line in metrics.jsonl, missing or repeated
epochs) is recorded as a problem with its path, so the report says what it skipped instead of
crashing on it. A damaged summary skips the run; damaged metrics do not (the summary holds the
numbers most cells use). A run whose metrics.jsonl repeats an epoch is also flagged: the last line
of each epoch is used, and a cell taken from the run carries a note. Whether a run is a variant is
decided in ``variants``.
"""
from __future__ import annotations

import math
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..runs import METRICS, SUMMARY, Unreadable, read_metrics, read_summary
from . import variants

USABLE_STATUSES = ("complete", "diverged")  # a diverged run keeps its best-so-far values (docs/method.md §9 item 24)

COLUMNS = ("path", "dataset", "source_dataset", "rule", "width", "lr", "epochs", "batch_size", "seed",
           "activation", "parameterization", "optimizer", "train_size", "variant", "status",
           "epochs_done", "best_val_acc", "min_train_loss", "min_test_loss", "device", "flag", "records")


@dataclass
class Collection:
    """Everything the scan found: the usable runs and what it had to leave out, and why."""
    results_dir: Path
    runs: pd.DataFrame                                              # one row per readable run
    problems: list[tuple[str, str]] = field(default_factory=list)   # (path, what is wrong)
    in_progress: list[str] = field(default_factory=list)            # run dirs without a summary
    substitutions: dict[str, str] = field(default_factory=dict)     # target dataset -> source
    substituted_runs: int = 0
    notes: list[str] = field(default_factory=list)                  # how the scan had to bend

    def usable(self) -> pd.DataFrame:
        """Runs whose numbers may fill a cell: complete or diverged."""
        return self.runs[self.runs["status"].isin(USABLE_STATUSES)]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row(summary: dict, relpath: str, records: list[dict], variant: str, flag: str) -> dict:
    def num(key):
        value = summary.get(key)
        return float(value) if _number(value) else math.nan
    return {
        "path": relpath, "dataset": summary["dataset"], "source_dataset": summary["dataset"],
        "rule": summary["rule"], "width": int(summary["width"]), "lr": float(summary["lr"]),
        "epochs": num("epochs"), "batch_size": num("batch_size"), "seed": num("seed"),
        "activation": summary.get("activation", "relu"), "parameterization": summary.get("parameterization", "ntk"),
        "optimizer": summary.get("optimizer", "sgd"), "train_size": num("train_size"),
        "variant": variant, "status": str(summary["status"]), "epochs_done": num("epochs_done"),
        "best_val_acc": num("best_val_acc"), "min_train_loss": num("min_train_loss"),
        "min_test_loss": num("min_test_loss"), "device": str(summary.get("device", "")), "flag": flag,
        "records": records,
    }


def _unusable(summary: dict) -> str | None:
    """What runs.check_summary leaves unchecked that the report needs: a finite lr (JSON's 1e999
    parses as infinity). None if the summary can be used."""
    if not math.isfinite(summary["lr"]):
        return f"lr is {summary['lr']!r}"
    return None


def _read_records(directory: Path, relpath: str, problems: list) -> tuple[list[dict], str]:
    """metrics.jsonl through walign.runs.read_metrics; every problem it finds is listed with the
    run's path (the records before a bad line are still used). Returns the records, one per epoch,
    and a flag when the file lists an epoch more than once: the run is still used (its summary is
    valid), and the last line of each epoch, the one written latest, counts."""
    path = directory / METRICS
    try:
        records, found = read_metrics(directory)
    except OSError as err:  # e.g. metrics.jsonl is a directory
        records, found = [], [f"{path}: {err.strerror or err}"]
    for problem in found:
        reason = problem[len(f"{path}: "):] if problem.startswith(f"{path}: ") else problem
        problems.append((f"{relpath}/{METRICS}", f"{reason}; the run's summary still counts"))
    by_epoch = {record["epoch"]: record for record in records}   # a later line replaces an earlier one
    if len(by_epoch) == len(records):
        return records, ""
    repeated = sorted(e for e, n in Counter(r["epoch"] for r in records).items() if n > 1)
    flag = (f"{METRICS} lists epoch {', '.join(map(str, repeated))} more than once; "
            f"the last line of each epoch is used")
    return [by_epoch[e] for e in sorted(by_epoch)], flag


def _regular_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a state file without risk (a FIFO would block), or None."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as err:
        return err.strerror or str(err)
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # a link is refused, with its target, by runs.read_bytes
        return None
    return "not a regular file"


def scan(results_dir: str | os.PathLike, substitutions: dict[str, str] | None = None) -> Collection:
    """Read every run under ``results_dir`` (hidden folders such as .hydra skipped).

    ``substitutions`` maps a dataset the paper used to one whose runs stand in for it, e.g.
    {"cifar10": "embedded"}: those runs are relabelled (``source_dataset`` keeps the original).
    """
    root = Path(results_dir)
    rows, problems, in_progress, fallback = [], [], [], False

    def walk_error(err: OSError):
        where = Path(os.path.relpath(err.filename, root)).as_posix() if err.filename else "."
        problems.append((where, f"{err.strerror or err}; not scanned"))

    for here, dirnames, filenames in os.walk(root, onerror=walk_error):
        # a directory standing at a state file's name is that file, damaged: not a folder of runs
        filenames = filenames + [d for d in dirnames if d in (SUMMARY, METRICS)]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in (SUMMARY, METRICS))
        directory = Path(here)
        relpath = directory.relative_to(root).as_posix()
        if SUMMARY not in filenames:
            if METRICS in filenames or "config.yaml" in filenames:
                in_progress.append(relpath)
            continue
        summary, why = None, _regular_file(directory / SUMMARY)
        if why is None:
            try:
                summary = read_summary(directory)
            except Unreadable as err:
                why = err.reason
            except OSError as err:  # e.g. a read error after the open
                why = err.strerror or str(err)
            else:
                why = "gone before it could be read" if summary is None else _unusable(summary)
        if why:
            problems.append((f"{relpath}/{SUMMARY}", f"{why}; run skipped"))
            continue
        defaults = variants.defaults(str(summary["dataset"]), str(summary["rule"]))
        fallback |= not defaults.from_config
        records, flag = _read_records(directory, relpath, problems)
        rows.append(_row(summary, relpath, records, variants.variant(summary, defaults), flag))

    runs = pd.DataFrame(rows, columns=list(COLUMNS))
    runs = runs.sort_values("path", kind="stable").reset_index(drop=True)
    substitutions = dict(substitutions or {})
    relabelled = 0
    for target, source in sorted(substitutions.items()):
        mask = runs["source_dataset"] == source
        runs.loc[mask, "dataset"] = target
        relabelled += int(mask.sum())
    notes = [variants.fallback_note()] if fallback else []
    return Collection(root, runs, sorted(problems), sorted(in_progress), substitutions, relabelled, notes)
