"""One verdict on a run directory, for every reader.

Four readers ask what became of a run: main.py's relaunch (walign.app), the sweep's skip-finished
scan (hydra_plugins/walign_hydra), ``walign status`` and walign-report. They once judged with
different rules and disagreed: a summary edited by hand counted as complete in the status and
the report while the relaunch trained the run again. Now each asks ``judge``, which looks only
at the directory, so they cannot disagree.

A run is, from its files alone:

* ``complete`` or ``diverged`` (finished): summary.json says so, has the shape walign writes
  (walign.runs.check_summary, with the ranges a launch is checked with), is this directory's
  run (its identifying values hash to the directory's name, walign.runs.run_dir), and its
  numbers are what its own metrics.jsonl gives (the data set's ``summarize``), every epoch once;
* ``failed``: summary.json says so, or there is a summary.json that must not be believed (the
  ``problem`` says why: unreadable, another run's, contradicted by metrics.jsonl). Either way
  the next launch runs it again; a summary that is not believed is first renamed aside;
* ``interrupted``: no summary, but a checkpoint.pt to resume from;
* ``not started``: neither.

Whether a process is training it right now (a claim) or SLURM still has it queued is not the
directory's outcome: walign.claim and walign.sweep_record answer that, on top of the verdict.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .runs import RUN_KEYS, SUMMARY, Unreadable, read_metrics, read_summary, run_dir, strict

CHECKPOINT = "checkpoint.pt"  # walign.checkpoint.CHECKPOINT (that module loads torch)
FINISHED = ("complete", "diverged")
STATES = ("complete", "diverged", "failed", "interrupted", "not started")


@dataclass(frozen=True)
class Verdict:
    """What a run directory holds: its state, and for a finished run its numbers."""
    state: str                              # one of STATES
    summary: dict | None = None             # summary.json when it is believed (finished or failed)
    records: list = field(default_factory=list)   # metrics.jsonl's epochs of a finished run
    problem: Unreadable | None = None       # why a summary.json there is not believed

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def identity_of(summary: dict, result_keys) -> dict:
    """The values that identify the run, as summary.json holds them: everything but what the run
    did (walign.runs.RUN_KEYS) and its results (its data set's ``summary_keys``, which must name
    every key its ``summarize`` writes). compute_precision and compile identify a run
    only away from their defaults (walign.spec.RunSpec.identity), so old directories keep
    their names."""
    identity = {k: v for k, v in summary.items() if k not in RUN_KEYS and k not in result_keys}
    if identity.get("compute_precision") == "fp32":
        del identity["compute_precision"]
    if identity.get("compile") is False:
        del identity["compile"]
    return identity


def _check_finished(directory: Path, summary: dict) -> list[dict]:
    """The run's records if its finished ``summary`` is this directory's own and matches its
    metrics.jsonl; Unreadable (on summary.json) saying why not."""
    from .datasets import DATASETS, result_keys
    path = directory / SUMMARY
    entry = DATASETS.get(summary["dataset"])
    keys = ("epochs_done", *(entry.summary_keys if entry is not None else result_keys()))
    expected = run_dir("", identity_of(summary, keys)).name
    if directory.name != expected:
        unknown = "" if entry is not None else f" (or a run of dataset {summary['dataset']!r}, whose plugin is not here)"
        raise Unreadable(path, f"is another run's: its values name the directory {expected}, not "
                               f"{directory.name}{unknown}")
    if entry is None:
        raise Unreadable(path, f"is a run of dataset {summary['dataset']!r}, which is not registered here (its "
                               f"plugin is not installed or imported), so its numbers cannot be checked")
    records, problems = read_metrics(directory)
    if problems:
        raise Unreadable(path, f"is not backed by its metrics ({problems[0]})")
    try:
        results = {"epochs_done": len(records), **entry.summarize(records)}
    except Exception as err:  # records that parse but lack a value (a planted or foreign metrics.jsonl)
        raise Unreadable(path, f"is not backed by its metrics (they cannot be summarised: {type(err).__name__}: "
                               f"{err})".splitlines()[0]) from None
    for key, value in json.loads(json.dumps(strict(results))).items():
        if key in summary and summary[key] != value:  # (a summary from before a key existed lacks it)
            raise Unreadable(path, f"says {key} {summary[key]!r}, but its metrics.jsonl gives {value!r}")
    return records


def judge(directory: str | os.PathLike) -> Verdict:
    """The verdict on the run directory ``directory`` (see the module docstring)."""
    directory = Path(directory)
    try:
        summary = read_summary(directory)
        if summary is not None and summary["status"] in FINISHED:
            return Verdict(summary["status"], summary, _check_finished(directory, summary))
    except Unreadable as err:
        return Verdict("failed", problem=err)
    if summary is not None:
        return Verdict("failed", summary)
    return Verdict("interrupted" if os.path.lexists(directory / CHECKPOINT) else "not started")
