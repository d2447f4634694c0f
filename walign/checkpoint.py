"""Per-epoch checkpoint files: data, never code, and never used when they are not this run's.

What a checkpoint holds is decided by ``walign.train.TrainState`` (the training state) and by the
app (the run's identity and records so far); this module only stores and checks the file:

* Only tensors and plain Python values are stored, and files are loaded with
  ``torch.load(weights_only=True)``, so a crafted file cannot run code: unpickling anything else
  fails, and the file is set aside as unreadable.
* The file is written to a temporary name and renamed over the old one (walign.runs.write_atomic),
  so a kill or a full disk during the write leaves the previous checkpoint intact.
* A checkpoint must belong to its run: its recorded identity must equal the run's, its epoch
  lie within the run's epochs, and what the training state recorded of itself (rule, lr, seed,
  epochs, batch size, optimizer; walign.train.TrainState.restore) and the tensors' shapes must
  fit. A file copied from another run with only its identity edited is therefore refused, and the
  optimizer's hyper-parameters always come from the run's config, never from the file.
* A checkpoint that cannot be used (unreadable, not a regular file, a symbolic link, another
  run's, another format, or one whose contents do not restore) is renamed aside to
  ``checkpoint.pt.bad-<time>`` with one line saying why, and the run starts over: a bad file can
  never fail a run twice, and nothing is deleted that someone may want to look at.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .runs import Unreadable, read_bytes, write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 3  # 3: the training state records whose it is; 2: plain data only; 1 held numpy objects
MAX_BYTES = 64 * 2**30  # far above any run's state (width 512 with Adam is a few hundred MB)


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
    if isinstance(identity.get("epochs"), int) and epoch > identity["epochs"]:
        raise Unusable(f"records epoch {epoch}, but the run has {identity['epochs']} epochs")
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
        data = read_bytes(path, MAX_BYTES)
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


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
