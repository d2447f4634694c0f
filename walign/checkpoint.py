"""Per-epoch checkpoint files: data, never code, and never used when they are not this run's.

What a checkpoint holds is decided by ``walign.train.TrainState`` (the training state) and by the
app (the run's identity and records so far); this module only stores and checks the file:

* Only tensors and plain Python values are stored, and files are loaded with
  ``torch.load(weights_only=True)``, so a crafted file cannot run code: unpickling anything else
  fails, and the file is set aside as unreadable.
* The file is written to a temporary name and renamed over the old one (walign.runs.write_atomic),
  so a kill or a full disk during the write leaves the previous checkpoint intact.
* A checkpoint that cannot be used (unreadable, a symbolic link, another run's, another format,
  or one whose contents do not restore) is renamed aside to ``checkpoint.pt.bad-<time>`` with one
  line saying why, and the run starts over: a bad file can never fail a run twice, and nothing is
  deleted that someone may want to look at.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import torch

from .runs import Unreadable, read_bytes, write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 2  # 2: plain data only (weights_only); format 1 held pickled numpy objects


class Unusable(Exception):
    """A checkpoint exists but cannot be resumed from; str() says why in a few words."""


def save(path: Path, state: dict) -> None:
    """Serialise ``state`` (tensors and plain values only) and write it atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    write_atomic(path, buffer.getvalue())


def _check(state, identity: dict) -> dict:
    if not isinstance(state, dict):
        raise Unusable(f"holds a {type(state).__name__}, not a checkpoint")
    if state.get("format") != FORMAT:
        raise Unusable(f"format {state.get('format')!r} is not {FORMAT}")
    if state.get("identity") != identity:
        raise Unusable("belongs to a different run")
    epoch, records = state.get("epoch"), state.get("records")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise Unusable(f"epoch is {epoch!r}")
    if not isinstance(records, list) or [r.get("epoch") if isinstance(r, dict) else None
                                         for r in records] != list(range(1, epoch + 1)):
        raise Unusable(f"its records are not epochs 1..{epoch}")
    if not isinstance(state.get("wall_seconds", 0.0), (int, float)):
        raise Unusable("wall_seconds is not a number")
    return state


def load(path: Path, identity: dict) -> dict | None:
    """The checkpoint at ``path`` if there is one and it belongs to the run ``identity``; None if
    there is none; ``Unusable`` if there is one that must not be used."""
    try:
        data = read_bytes(path)
    except Unreadable as err:
        raise Unusable(err.reason) from None
    if data is None:
        return None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torn, foreign, or a pickle that is not plain data
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise Unusable(f"unreadable ({type(err).__name__}{': ' + first if first else ''})") from None
    return _check(state, identity)


def set_aside(path: Path) -> Path:
    """Rename an unusable checkpoint (or a link in its place) to checkpoint.pt.bad-<time>."""
    aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists() or aside.is_symlink():
        aside, n = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{n}"), n + 1
    path.rename(aside)
    return aside


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
