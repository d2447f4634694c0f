"""Scales of a run: ``full`` (the data set as it is) and ``smoke`` (a rehearsal on a laptop).

A smoke run trains on at most ``SMOKE_EXAMPLES`` examples of each split, whatever its data set
holds, so that every table and figure of the paper can be rehearsed end to end on a 2-core CPU in
minutes (sweeps/*.yaml's ``smoke`` grids, docs/sweeps.md). ``scale`` is part of a smoke run's
identity (walign.spec.RunSpec.identity): its directory never collides with a full-scale run's,
its summary.json says ``"scale": "smoke"``, and the report never mixes the two (docs/report.md).
"""
from __future__ import annotations

import dataclasses

SCALES = ("full", "smoke")
SMOKE_EXAMPLES = {"train": 200, "val": 100, "test": 100}  # at most, per split


def shrink(data, scale: str):
    """``data`` (a walign.datasets.splits.LoadedData) with each split cut to its smoke size at
    ``scale=smoke``; unchanged at full scale. The first examples are kept, so the cut is the same
    in every run."""
    if scale == "full":
        return data
    cut = {name: _first(getattr(data, name), n) for name, n in SMOKE_EXAMPLES.items()
           if getattr(data, name, None) is not None}
    return dataclasses.replace(data, **cut)


def _first(split, n: int):
    from .datasets.splits import LoaderSplit, TensorSplit
    if len(split) <= n:
        return split
    if isinstance(split, TensorSplit):
        return TensorSplit(split.inputs[:n], split.labels[:n], split.inputs.device)
    if isinstance(split, LoaderSplit):
        import torch
        return LoaderSplit(torch.utils.data.Subset(split.dataset, range(n)), split.device, split.workers,
                           split.drop_last)
    raise TypeError(f"cannot shrink a split of type {type(split).__name__}")


def smoke_sizes(train: int, val: int, test: int, scale: str) -> tuple[int, int, int]:
    """Split sizes as a run at ``scale`` sees them (for its cost, known without loading)."""
    if scale == "full":
        return train, val, test
    return (min(train, SMOKE_EXAMPLES["train"]), min(val, SMOKE_EXAMPLES["val"]), min(test, SMOKE_EXAMPLES["test"]))
