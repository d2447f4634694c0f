"""Per-epoch checkpoint files: the one schema, data only, never used when they are not this run's.

A checkpoint is a ``Checkpoint``: the run's identity and records so far (written by the app), the
wall time spent, and the training state's part, which ``walign.train.TrainState.snapshot`` declares
(epoch, owner, the rule's ``state_dict``, optimizer, RNG streams, and after a stop signal the
position inside the epoch). On disk it is one flat dict of tensors and plain values::

    {"format": FORMAT, "identity": {...}, "records": [...], "wall_seconds": s, **TrainState.snapshot()}

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
from dataclasses import dataclass
from pathlib import Path

import torch

from .runs import Unreadable, read_bytes, write_atomic

CHECKPOINT = "checkpoint.pt"
FORMAT = 3  # 3: the training state records whose it is; 2: plain data only; 1 held numpy objects
MAX_BYTES = 64 * 2**30  # far above any run's state (width 512 with Adam is a few hundred MB)


OWN_KEYS = ("format", "identity", "records", "wall_seconds")  # the file's own; the rest is the training state's


class Unusable(Exception):
    """A checkpoint exists but cannot be resumed from; str() says why in a few words."""


@dataclass
class Checkpoint:
    """What a checkpoint holds: whose run it is, what the run recorded, and the training state."""
    identity: dict          # the run's identity (walign.spec.RunSpec.identity)
    records: list[dict]     # metrics.jsonl's lines of the epochs done
    training: dict          # walign.train.TrainState.snapshot()
    wall_seconds: float = 0.0

    @property
    def epoch(self) -> int:
        return self.training["epoch"]

    @property
    def within_epoch(self) -> dict | None:
        """The position inside the next epoch, when a stop signal saved it mid-epoch."""
        return self.training.get("within_epoch")


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Serialise ``checkpoint`` (tensors and plain values only) and write it atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **checkpoint.training, "identity": checkpoint.identity,
                "records": checkpoint.records, "wall_seconds": checkpoint.wall_seconds}, buffer)
    write_atomic(path, buffer.getvalue())


def _check(state, identity: dict) -> Checkpoint:
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
    seconds = state.get("wall_seconds", 0.0)
    if not isinstance(seconds, (int, float)):
        raise Unusable("wall_seconds is not a number")
    training = {k: v for k, v in state.items() if k not in OWN_KEYS}
    return Checkpoint(identity, records, training, seconds)


def read(path: Path) -> dict | None:
    """The file's contents as plain data, unchecked (None if there is no file); ``Unusable`` if it
    cannot be read as such. For looking into a checkpoint; a run resumes through ``load``."""
    try:
        data = read_bytes(path, MAX_BYTES)
    except Unreadable as err:
        raise Unusable(err.reason) from None
    if data is None:
        return None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torn, foreign, or a pickle that is not plain data
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise Unusable(f"unreadable ({type(err).__name__}{': ' + first if first else ''})") from None


def load(path: Path, identity: dict) -> Checkpoint | None:
    """The checkpoint at ``path`` if there is one and it belongs to the run ``identity``; None if
    there is none; ``Unusable`` if there is one that must not be used."""
    state = read(path)
    return None if state is None else _check(state, identity)


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
