"""The selection protocol of docs/method.md §4.4 and §10: which runs feed a cell, and how one number is made
from them.

Every function here takes the usable runs (complete or diverged) and returns a ``Cell``: our value
in the paper's unit, whether it came from a diverged run, a note when the protocol had to bend
(an alignment score from another epoch), and the runs it looked at, so the report can say which
runs fed no cell at all. Epoch counts are never filtered: a cell is the best over whatever epochs
a run has, so short runs fill cells too (the report says when they are not the paper's setting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

WIDTHS = (8, 16, 32, 64, 128, 256, 512)
LR_GRID = (1.0, 2.0, 5.0)                          # Tables 1, 2, 6, 7, 9
LR_ADAM = (5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5)   # Table 10
SMALL_LR = 5e-4                                    # Table 10, "1 epoch + small learning rate"
SEEDS_TABLE2 = (100, 101, 102, 103, 104)
PAPER_SEED = 99
SEEDS_TABLE9 = (PAPER_SEED, 100, 101, 102, 103)    # Table 9's spread: seed 99 and its repeats

# Alignment tables: data set, activation, the epoch whose checkpoint is scored and the lr the
# released code (or, for Table 5, the caption) trained with (docs/method.md §7.4, §10).
ALIGNMENT = {3: ("cifar10", "relu", 150, 5.0), 4: ("kmnist", "relu", 100, 5.0), 5: ("cifar10", "tanh", 100, 2.0)}
ALIGNMENT_RULE = "gd_wstar"
ALIGNMENT_SCORE = "operator"                       # the released estimator (docs/method.md §7.3)


@dataclass
class Cell:
    """One number of ours, in the paper's unit, and where it came from."""
    ours: float | None = None
    diverged: bool = False          # the chosen run (or one of the seeds) diverged
    note: str = ""                  # how the protocol was bent, if it was
    chosen: str = ""                # path of the run the value came from ('' for aggregates)
    considered: tuple[str, ...] = field(default_factory=tuple)  # every candidate run's path


def lr_in(lrs: pd.Series, grid) -> pd.Series:
    """Which learning rates lie on ``grid`` (float-tolerant: 0.0005 written as 5e-4 matches)."""
    return lrs.apply(lambda lr: any(math.isclose(lr, g, rel_tol=1e-9) for g in grid)).astype(bool)


def candidates(runs: pd.DataFrame, *, dataset: str, rule: str, width: int | None = None,
               seed: int | None = PAPER_SEED, lrs=None, activation: str = "relu",
               parameterization: str = "ntk", optimizer: str = "sgd", train_size: int | None = None,
               allow_variants: bool = False) -> pd.DataFrame:
    """Runs of the paper's setting for one cell (seed 99, ReLU, NTK + SGD, no variant options)."""
    mask = (runs["dataset"] == dataset) & (runs["rule"] == rule)
    mask &= (runs["activation"] == activation) & (runs["parameterization"] == parameterization)
    mask &= runs["optimizer"] == optimizer
    if not allow_variants:
        mask &= runs["variant"] == ""
    if width is not None:
        mask &= runs["width"] == width
    if seed is not None:
        mask &= runs["seed"] == seed
    if train_size is not None:
        mask &= runs["train_size"] == train_size
    if lrs is not None:
        mask &= lr_in(runs["lr"], lrs)
    return runs[mask.astype(bool)]


def _paths(found: pd.DataFrame) -> tuple[str, ...]:
    return tuple(found["path"])


def _best_of(found: pd.DataFrame, values: pd.Series, lowest: bool = False) -> Cell:
    """The best finite value over the runs (ties: the first path), marked if that run diverged."""
    finite = values[values.notna()]
    if finite.empty:
        note = f"{len(found)} run(s), none with a finite value" if len(found) else ""
        return Cell(note=note, considered=_paths(found))
    at = finite.idxmin() if lowest else finite.idxmax()
    return Cell(float(finite[at]), found.loc[at, "status"] == "diverged", "", found.loc[at, "path"], _paths(found))


def best_accuracy(found: pd.DataFrame) -> Cell:
    """Max over epochs (the summary's best_val_acc), then max over the runs (the lr grid), in %."""
    return _best_of(found, 100 * found["best_val_acc"])


def epoch_accuracy(records: list[dict], epoch: int) -> float:
    for record in records:
        if record.get("epoch") == epoch and isinstance(record.get("val_acc"), (int, float)):
            return float(record["val_acc"])
    return math.nan


def epoch1_accuracy(found: pd.DataFrame) -> Cell:
    """Table 10's short rows: validation accuracy after epoch 1 (metrics.jsonl), best over runs, in %."""
    values = found["records"].apply(lambda records: 100 * epoch_accuracy(records, 1))
    return _best_of(found, values.astype(float))


def min_loss(found: pd.DataFrame, which: str) -> Cell:
    """Table 8: the summary's minimum over epochs of the train or test loss, lowest over runs."""
    return _best_of(found, found[f"min_{which}_loss"], lowest=True)


def seed_statistics(runs: pd.DataFrame, **where) -> dict[str, Cell]:
    """Table 2: per seed the best over epochs and lr, then mean, population std (ddof 0, what
    numpy's std gives; compared with the paper) and sample std (ddof 1) over the seeds found."""
    per_seed, diverged, considered = [], False, []
    for seed in SEEDS_TABLE2:
        cell = best_accuracy(candidates(runs, seed=seed, **where))
        considered.extend(cell.considered)
        if cell.ours is not None:
            per_seed.append(cell.ours)
            diverged |= cell.diverged
    n = len(per_seed)
    note = "" if n in (0, len(SEEDS_TABLE2)) else f"{n} of {len(SEEDS_TABLE2)} seeds"
    values = np.array(per_seed)
    def cell(value):
        return Cell(value, diverged, note, "", tuple(considered))
    return {"mean": cell(float(values.mean()) if n else None),
            "std": cell(float(values.std(ddof=0)) if n else None),
            "sample_std": cell(float(values.std(ddof=1)) if n > 1 else None),
            "seeds": cell(float(n) if n else None)}


@dataclass(frozen=True)
class SeedSpread:
    """Table 9's spread over seeds of one cell: seed -> value (%), at the lr chosen on seed 99."""
    values: dict[int, float] = field(default_factory=dict)
    lr: float | None = None                         # the chosen lr (None: no seed-99 value)
    runs: tuple[str, ...] = ()                      # every run of those seeds at that lr
    diverged: int = 0                               # how many seeds' values come from a diverged run

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(list(self.values.values()))) if self.values else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation (ddof 1); None below two seeds."""
        return float(np.std(list(self.values.values()), ddof=1)) if self.n > 1 else None


def seed_spread(found: pd.DataFrame, seeds=SEEDS_TABLE9) -> SeedSpread:
    """Table 9's spread over seeds of one cell, from ``found``: the cell's candidate runs of every
    seed (lr grid and data set already applied, as for the paper-protocol value).

    The lr is the one of the run that gives the paper-protocol value: seed 99, best validation
    accuracy over epochs, then over lr. It is chosen on seed 99 alone; no other seed takes part in
    any choice. Per seed of ``seeds`` (99-103), the value is the best validation accuracy over
    epochs of its run at that lr (the best of its runs there, if several: N = 45000's small and
    full CIFAR-10 runs), in %, so seed 99's value is the paper-protocol value itself. Runs of
    other seeds at any other lr, and seeds outside ``seeds``, are ignored. A diverged run keeps
    its best value before diverging, as in the paper protocol. Mean and sample SD (ddof 1) are
    over the seeds that have a value."""
    chosen = best_accuracy(found[found["seed"] == PAPER_SEED])
    if chosen.ours is None:
        return SeedSpread()
    lr = float(found.loc[found["path"] == chosen.chosen, "lr"].iloc[0])
    at_lr = found[lr_in(found["lr"], (lr,)) & found["seed"].isin(list(seeds))]
    values, diverged = {}, 0
    for seed in seeds:
        cell = best_accuracy(at_lr[at_lr["seed"] == seed])
        if cell.ours is not None:
            values[seed] = cell.ours
            diverged += int(cell.diverged)
    return SeedSpread(values, lr, _paths(at_lr), diverged)


def scored_epochs(records: list[dict]) -> dict[int, dict]:
    """epoch -> the alignment record, for every epoch that was scored."""
    return {r["epoch"]: r["alignment"] for r in records if isinstance(r.get("alignment"), dict)}


def choose_alignment_run(found: pd.DataFrame, epoch: int, lr: float):
    """The run to read an alignment score from: one that scored ``epoch`` if any, then the
    scheduled lr, then the latest scored epoch, then the path. Returns (row, epoch) or None."""
    ranked = []
    for _, run in found.iterrows():
        scored = scored_epochs(run["records"])
        if scored:
            has = epoch in scored
            ranked.append(((not has, not math.isclose(run["lr"], lr), -max(scored), run["path"]),
                           run, epoch if has else max(scored)))
    if not ranked:
        return None
    _, run, at = min(ranked, key=lambda item: item[0])
    return run, at


def alignment_cell(found: pd.DataFrame, layer: int, epoch: int, lr: float, score: str = ALIGNMENT_SCORE) -> Cell:
    """Tables 3-5: the layer's score at the scheduled epoch; if the run never scored that epoch,
    the last epoch it did score, with a note saying which."""
    chosen = choose_alignment_run(found, epoch, lr)
    if chosen is None:
        note = f"{len(found)} run(s), none scored" if len(found) else ""
        return Cell(note=note, considered=_paths(found))
    run, at = chosen
    scores = scored_epochs(run["records"])[at].get(score) or []
    value = scores[layer - 1] if layer <= len(scores) else None
    value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    notes = []
    if at != epoch:
        notes.append(f"epoch {at} (scheduled {epoch} not scored)")
    if not math.isclose(run["lr"], lr):
        notes.append(f"lr {run['lr']:g} (paper setting {lr:g})")
    return Cell(value, run["status"] == "diverged", "; ".join(notes), run["path"], _paths(found))
