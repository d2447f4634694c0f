"""Optional experiment trackers: TensorBoard, MLflow and Weights & Biases, chosen with ``logger=``.

metrics.jsonl and summary.json are always written and stay the source of truth; a logger only
copies a run's epochs and final numbers to where researchers watch them. Three promises shape
this module:

* **Each epoch once, whatever happens to the run.** A run can be stopped (SIGTERM, Ctrl-C),
  killed (kill -9, a dead node) or requeued by SLURM, and then resumes from its last checkpoint,
  training again the epochs after it. A logger is started with that checkpoint's epoch
  (``start(resume_epoch)``) and makes sure that what it held beyond it is replaced, not doubled:
  TensorBoard purges later steps, MLflow and W&B resume the same run (its id is kept in the run
  directory's ``loggers.json``) and skip the steps it already has. The step is the epoch.
* **A logger never costs a run.** Every call goes through ``Loggers``, which turns any failure
  (an unreachable server, a full or read-only disk, a tracker's own error) into one warning line
  and drops that logger for the rest of the run; training and its files are untouched, so the run's
  numbers are those of a run without loggers. Loggers read the epoch's record (plain numbers,
  already on the host), so they add no device synchronisation.
* **Nothing leaks between runs.** A run's loggers are made for it and closed with it, and hold no
  global state (MLflow through its client API, not the fluent one), so the runs of a packed SLURM
  task each get their own logger run.

A chosen logger whose package is not installed is refused at launch in one line naming the pip
command (``check``).
"""
from __future__ import annotations

import importlib.util
import sys

from ..errors import ConfigError
from ..runs import Unreadable, loads_strict, read_bytes
from . import mlflow, tensorboard, wandb  # noqa: F401  (each registers its logger)
from .base import LOGGERS, STATE, Logger, RunInfo, numbers  # noqa: F401

def check(chosen: dict) -> None:
    """The ``logger`` config node: known loggers, known options, and each one's package
    importable; ConfigError (one line) otherwise."""
    if not isinstance(chosen, dict):
        raise ConfigError(f"logger must be chosen with logger=NAME or logger=[NAME,NAME], got {chosen!r}")
    for name, options in chosen.items():
        if name not in LOGGERS:
            raise ConfigError(f"unknown logger {name!r}; loggers: none, {', '.join(sorted(LOGGERS))}")
        cls = LOGGERS[name]
        unknown = sorted(set(options or {}) - set(cls.options))
        if unknown:
            raise ConfigError(f"logger {name} has no option {', '.join(unknown)}; its options: "
                              f"{', '.join(cls.options) or 'none'}")
        if importlib.util.find_spec(cls.package) is None:
            raise ConfigError(f"logger={name} needs the {cls.package} package, which is not installed: "
                              f"pip install 'walign[{cls.extra}]' (or pip install -e '.[{cls.extra}]')")


class Loggers:
    """The chosen loggers of one run, each call guarded (see the module docstring)."""

    def __init__(self, chosen: dict, run: RunInfo | None, say=print):
        self.say, self.active = say, []
        if not chosen:
            return
        try:
            state = loads_strict((read_bytes(run.directory / STATE) or b"{}").decode())
        except (Unreadable, ValueError, UnicodeDecodeError) as err:
            say(f"walign: warning: {run.directory / STATE} cannot be read ({err}); loggers start new runs",
                file=sys.stderr, flush=True)
            state = {}
        run.state = state if isinstance(state, dict) else {}
        self.active = [LOGGERS[name](dict(options or {}), run) for name, options in sorted(chosen.items())]

    def _each(self, step: str, *args) -> None:
        for logger in list(self.active):
            try:
                getattr(logger, step)(*args)
            except Exception as err:  # noqa: BLE001 - a logger never costs a run
                self.active.remove(logger)
                why = (f"{type(err).__name__}: {err}".strip().splitlines() or [""])[0][:300]
                self.say(f"walign: warning: logger {logger.name} failed in {step} ({why}); the run goes on "
                         f"without it", file=sys.stderr, flush=True)
                try:
                    logger.close()
                except Exception:  # noqa: BLE001
                    pass

    def start(self, resume_epoch: int) -> None:
        self._each("start", resume_epoch)

    def epoch(self, record: dict) -> None:
        self._each("epoch", record)

    def finish(self, summary: dict) -> None:
        self._each("finish", summary)
        self.close()

    def close(self) -> None:
        self._each("close")
        self.active = []
