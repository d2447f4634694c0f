"""The allowed range of every numeric run value, defined once.

A value is checked against the same range when a run is launched (walign.spec) and when its
summary.json is read back (walign.runs.check_summary): a run that launch accepts can always be
read back as its own, and a summary holding a value no launch would accept is not a run's. Two
readers with two tables once disagreed: ``lr=1e-300`` trained, and every relaunch then refused
the run's own summary and trained it again.

The bounds are far outside any useful setting; they exist so that a typo (a width of 31 digits,
an lr of 1e-300) is one line at launch instead of an overflow deep in torch, or a run that can
never be read back.
"""
from __future__ import annotations

import math

# value -> (lowest, highest), both allowed
RANGES = {
    "width": (1, 2**20),
    "lr": (1e-12, 1e+06),
    "epochs": (1, 10**7),
    "epochs_done": (0, 10**7),
    "batch_size": (1, 2**24),
    "seed": (0, 2**32 - 1),          # numpy's legacy RandomState takes seeds 0 .. 2**32 - 1
    "checkpoint_every": (0, 10**7),
}
INTEGERS = frozenset(RANGES) - {"lr"}

# A network whose weights alone take more than this many bytes fits in no machine's memory (the
# rules keep two to four copies besides): its width is refused at launch, not left to fail
# inside torch's allocator.
MAX_WEIGHT_BYTES = 2**40


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(key: str, value) -> str | None:
    """Why ``value`` is not allowed for ``key`` ('must be an integer in 1..1048576, got 0'), or None."""
    low, high = RANGES[key]
    if key in INTEGERS:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    else:  # (an int of 400 digits is no float: compare before asking whether it is finite)
        ok = _number(value) and low <= value <= high and math.isfinite(value)
    kind = "an integer" if key in INTEGERS else "a number"
    return None if ok else f"must be {kind} in {describe(key)}, got {shown(value)}"


def shown(value) -> str:
    """repr(value), shortened when it is long (a pasted number of hundreds of digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def describe(key: str) -> str:
    """The range as text: '1..1048576', '1e-12..1e+06'."""
    return "..".join(f"{v:g}" if isinstance(v, float) else str(v) for v in RANGES[key])
