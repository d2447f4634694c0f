"""Per-epoch checkpoints, so a killed, preempted or timed-out run resumes where it stopped.

A checkpoint holds everything the rest of the run depends on: the rule's mutable tensors (the
trained parameters and any random stream it draws from), the optimizer's state, the data-order
and evaluation RNGs, torch's RNG, and the epoch records so far. Everything else (the frozen
initial network, feedback weights, projections) is rebuilt from the seed, exactly as at the
start. Restoring a checkpoint and training on therefore gives the same numbers, bit for bit on a
CPU, as a run that was never interrupted.

The file is written to a temporary name and renamed over the old one, so a kill during the write
leaves the previous epoch's checkpoint intact.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"
FORMAT = 1  # bumped if the layout changes; an older file is ignored with a message


def save(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path, identity: dict) -> tuple[dict | None, str]:
    """The checkpoint at ``path`` if it belongs to the run ``identity``, else None, with a reason.

    A checkpoint of another run (a hash collision or a hand-copied file), of another format, or one
    that cannot be read is never used; the run then starts from epoch 1.
    """
    if not path.exists():
        return None, "no checkpoint"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a torn or foreign file: start over rather than crash
        return None, f"unreadable checkpoint ({type(err).__name__}); starting from epoch 1"
    if state.get("format") != FORMAT:
        return None, f"checkpoint format {state.get('format')} is not {FORMAT}; starting from epoch 1"
    if state.get("identity") != identity:
        return None, "checkpoint belongs to a different run; starting from epoch 1"
    within = state.get("within_epoch")
    return state, f"resuming after epoch {state['epoch']}" + (f", step {within['step']}" if within else "")


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
