"""Find the run directories under a results directory and turn them into one pandas table.

A directory with a summary.json is judged by walign.verdict, as main.py's relaunch, the sweep and
``walign status`` judge it: a finished run (complete or diverged) whose summary is believed gives
a row with its numbers and its metrics.jsonl's records; a failed run gives a row that no cell uses;
a summary.json that is not believed (unreadable, of the wrong shape, another run's, contradicted
by its metrics.jsonl, a link, a FIFO) is listed as a problem with its path and the run is
skipped, so the report says what it left out instead of crashing on it, and never counts a run
the next launch would train again. Directories with a metrics.jsonl or config.yaml but no
summary are runs still in progress: they are listed, never used. Whether a run is a variant is
decided in ``variants``.

Each row also has the run's ``scale``: "full" (a summary without the key: every run from before
scales existed, and every full-scale run since) or the summary's value ("smoke": a rehearsal on a
few hundred examples per split). The report is built from one scale only (``Collection.scale``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..runs import METRICS, SUMMARY
from ..scale import SCALES
from ..verdict import FINISHED, judge
from . import networks, variants

USABLE_STATUSES = FINISHED  # a diverged run keeps its best-so-far values (docs/method.md §9 item 24)
FULL_SCALE, SMOKE_SCALE = SCALES   # a summary without "scale" is full scale

COLUMNS = ("path", "dataset", "source_dataset", "rule", "width", "lr", "epochs", "batch_size", "seed",
           "activation", "parameterization", "optimizer", "train_size", "variant", "scale", "status",
           "epochs_done", "best_val_acc", "min_train_loss", "min_test_loss", "device", "records", "arch", "network",
           "test_acc_at_best_val")


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

    def scale(self) -> str:
        """The one scale the report is built from. Numbers of different scales are never mixed: a
        smoke run's accuracy after two epochs on 200 examples would otherwise win or lose a cell
        against real runs. Full scale as soon as one usable full-scale run exists (a rehearsal left
        in the directory never dilutes real results); else smoke, if there are usable smoke runs
        (the report is then itself a rehearsal, and says so everywhere); else full (nothing to fill)."""
        found = set(self.usable()["scale"])
        if FULL_SCALE in found or SMOKE_SCALE not in found:
            return FULL_SCALE
        return SMOKE_SCALE

    def filling(self) -> pd.DataFrame:
        """The usable runs of the report's scale: the only runs tables and figures read."""
        usable = self.usable()
        return usable[usable["scale"] == self.scale()]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row(summary: dict, relpath: str, records: list[dict], variant: str) -> dict:
    def num(key):
        value = summary.get(key)
        return float(value) if _number(value) else math.nan
    return {
        "path": relpath, "dataset": summary["dataset"], "source_dataset": summary["dataset"],
        "rule": summary["rule"], "width": int(summary["width"]), "lr": float(summary["lr"]),
        "epochs": num("epochs"), "batch_size": num("batch_size"), "seed": num("seed"),
        "activation": summary.get("activation", "relu"), "parameterization": summary.get("parameterization", "ntk"),
        "optimizer": summary.get("optimizer", "sgd"), "train_size": num("train_size"),
        "variant": variant, "scale": str(summary.get("scale", FULL_SCALE)), "status": str(summary["status"]),
        "epochs_done": num("epochs_done"),
        "best_val_acc": num("best_val_acc"), "min_train_loss": num("min_train_loss"),
        "min_test_loss": num("min_test_loss"), "device": str(summary.get("device", "")), "records": records,
        "arch": str(summary.get("arch", "auto")), "network": networks.network_of(summary),
        "test_acc_at_best_val": num("test_acc_at_best_val"),
    }


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
        verdict = judge(directory)
        if verdict.problem is not None:
            problems.append((f"{relpath}/{SUMMARY}", f"{verdict.problem.reason}; run skipped"))
            continue
        summary = verdict.summary
        if summary is None:  # removed between the listing and the reading: not finished after all
            in_progress.append(relpath)
            continue
        defaults = variants.defaults(str(summary["dataset"]), str(summary["rule"]))
        fallback |= not defaults.from_config
        rows.append(_row(summary, relpath, verdict.records, variants.variant(summary, defaults)))

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
