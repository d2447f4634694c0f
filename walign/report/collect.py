"""Find the run directories under a results directory and turn them into one pandas table.

A run counts once its ``summary.json`` exists (walign writes it last, atomically). Directories with
a ``metrics.jsonl`` but no summary are runs still in progress: they are listed, never used. A file
that cannot be read (a half-written or corrupt summary, a torn line in metrics.jsonl) is recorded
as a problem with its path, so the report can say what it skipped instead of crashing on it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..runs import Unreadable, read_metrics, read_summary

DATASETS = ("add", "cifar10", "embedded", "imagenet", "kmnist", "small_cifar10")
USABLE_STATUSES = ("complete", "diverged")  # a diverged run keeps its best-so-far values (SPEC 9.24)

# Options that change *what* a run computes. A run whose value differs from the default here is a
# variant (e.g. DFA with the shared projection): it is kept in the run table, but the paper's cells
# only use runs at the defaults. Options not named here (probe counts, score_epochs) are ignored.
VARIANT_DEFAULTS = {
    "arch": None, "projection": "full", "projection_std": None, "same_step": False,
    "generator": "faithful", "data_seed": 99, "precision": "float64", "sequences": 400,
    "length": 100, "score_layers": None, "score_strides": None,
}

COLUMNS = ("path", "dataset", "source_dataset", "rule", "width", "lr", "epochs", "batch_size", "seed",
           "activation", "parameterization", "optimizer", "train_size", "variant", "status",
           "epochs_done", "best_val_acc", "min_train_loss", "min_test_loss", "device", "records")


@dataclass
class Collection:
    """Everything the scan found: the usable runs and what it had to leave out, and why."""
    results_dir: Path
    runs: pd.DataFrame                                              # one row per readable run
    problems: list[tuple[str, str]] = field(default_factory=list)   # (path, what is wrong)
    in_progress: list[str] = field(default_factory=list)            # run dirs without a summary
    substitutions: dict[str, str] = field(default_factory=dict)     # target dataset -> source
    substituted_runs: int = 0

    def usable(self) -> pd.DataFrame:
        """Runs whose numbers may fill a cell: complete or diverged."""
        return self.runs[self.runs["status"].isin(USABLE_STATUSES)]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _variant(summary: dict) -> str:
    """'key=value, ...' for every variant option that differs from its default ('' if none)."""
    changed = [f"{key}={summary[key]}" for key, default in VARIANT_DEFAULTS.items()
               if key in summary and summary[key] != default]
    return ", ".join(changed)


def _row(summary: dict, relpath: str, records: list[dict]) -> dict:
    def num(key):
        value = summary.get(key)
        return float(value) if _number(value) else math.nan
    return {
        "path": relpath, "dataset": summary["dataset"], "source_dataset": summary["dataset"],
        "rule": summary["rule"], "width": int(summary["width"]), "lr": float(summary["lr"]),
        "epochs": num("epochs"), "batch_size": num("batch_size"), "seed": num("seed"),
        "activation": summary.get("activation", "relu"), "parameterization": summary.get("parameterization", "ntk"),
        "optimizer": summary.get("optimizer", "sgd"), "train_size": num("train_size"),
        "variant": _variant(summary), "status": str(summary["status"]), "epochs_done": num("epochs_done"),
        "best_val_acc": num("best_val_acc"), "min_train_loss": num("min_train_loss"),
        "min_test_loss": num("min_test_loss"), "device": str(summary.get("device", "")), "records": records,
    }


def _check_summary(summary) -> str | None:
    """Why this summary cannot be used, or None if it can."""
    if not isinstance(summary, dict):
        return "summary.json does not hold a JSON object; run skipped"
    missing = [k for k in ("status", "dataset", "rule", "width", "lr") if k not in summary]
    if missing:
        return f"summary.json lacks {', '.join(missing)}; run skipped"
    if not (isinstance(summary["width"], int) and not isinstance(summary["width"], bool)) or not _number(summary["lr"]):
        return "summary.json has a non-numeric width or lr; run skipped"
    if not isinstance(summary["dataset"], str) or not isinstance(summary["rule"], str):
        return "summary.json has a non-text dataset or rule; run skipped"
    return None


def _read_records(directory: Path, relpath: str, problems: list) -> list[dict]:
    """metrics.jsonl through walign.runs.read_metrics; every problem it finds is listed with the
    run's path (the records before a bad line are still used)."""
    records, found = read_metrics(directory)
    for problem in found:
        problems.append((f"{relpath}/metrics.jsonl", problem.split(": ", 1)[1]))
    return records


def scan(results_dir: str | os.PathLike, substitutions: dict[str, str] | None = None) -> Collection:
    """Read every run under ``results_dir`` (hidden folders such as .hydra skipped).

    ``substitutions`` maps a dataset the paper used to one whose runs stand in for it, e.g.
    {"cifar10": "embedded"}: those runs are relabelled (``source_dataset`` keeps the original).
    """
    root = Path(results_dir)
    rows, problems, in_progress = [], [], []
    for here, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        directory = Path(here)
        relpath = directory.relative_to(root).as_posix()
        if "summary.json" not in filenames:
            if "metrics.jsonl" in filenames or "config.yaml" in filenames:
                in_progress.append(relpath)
            continue
        try:
            summary = read_summary(directory)
        except Unreadable as err:
            problems.append((f"{relpath}/summary.json", f"{err.reason}; run skipped"))
            continue
        why = _check_summary(summary)
        if why:
            problems.append((f"{relpath}/summary.json", why))
            continue
        rows.append(_row(summary, relpath, _read_records(directory, relpath, problems)))

    runs = pd.DataFrame(rows, columns=list(COLUMNS))
    runs = runs.sort_values("path", kind="stable").reset_index(drop=True)
    substitutions = dict(substitutions or {})
    relabelled = 0
    for target, source in sorted(substitutions.items()):
        mask = runs["source_dataset"] == source
        runs.loc[mask, "dataset"] = target
        relabelled += int(mask.sum())
    return Collection(root, runs, sorted(problems), sorted(in_progress), substitutions, relabelled)
