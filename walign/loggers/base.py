"""The logger interface: what a logger is told about its run, and the steps it implements
(walign/loggers/__init__.py says what the loggers promise, and runs them)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import write_atomic

STATE = "loggers.json"  # in the run directory: what each logger needs to resume the same logger run


@dataclass
class RunInfo:
    """What a logger knows of its run."""
    directory: Path
    name: str                # the run directory's name
    sweep: str               # the launch it belongs to ('' for a single run): an experiment, a group
    config: dict             # the run's resolved configuration
    results_dir: Path
    state: dict = field(default_factory=dict)   # loggers.json's contents (each logger's own entry)

    def remember(self, logger: str, values: dict) -> None:
        """Keep ``values`` for ``logger`` in loggers.json (atomically), for a resumed run."""
        self.state[logger] = values
        write_atomic(self.directory / STATE, json.dumps(self.state, indent=2) + "\n")


class Logger:
    """One tracker. Subclasses say what they need (``package``, ``extra``, ``options``) and
    implement the four steps; ``Loggers`` calls them and absorbs their failures."""
    name = "?"
    package = "?"           # the module that must be importable
    extra = "?"             # pip install walign[extra]
    options: dict = {}      # option -> default

    def __init__(self, options: dict, run: RunInfo):
        self.options, self.run = {**self.options, **options}, run

    def start(self, resume_epoch: int) -> None:
        """Open (or resume) the logger run; epochs after ``resume_epoch`` will be logged again."""

    def epoch(self, record: dict) -> None:
        """One epoch's record of metrics.jsonl."""

    def finish(self, summary: dict) -> None:
        """The run ended: its summary's numbers, its status."""

    def close(self) -> None:
        """Flush and let go (after finish, or when the process stops mid-run)."""


LOGGERS: dict[str, type[Logger]] = {}


def register(cls: type[Logger]) -> type[Logger]:
    LOGGERS[cls.name] = cls
    return cls


def numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a record, flattened: {'val_acc': 0.4, 'alignment/operator/3': 0.9};
    the epoch itself is the step, not a metric."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key == "epoch" and not prefix:
            continue
        if isinstance(value, dict):
            out.update(numbers(value, f"{name}/"))
        elif isinstance(value, (list, tuple)):
            out.update(numbers({str(i + 1): v for i, v in enumerate(value)}, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out
