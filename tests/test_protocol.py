"""The report's selection protocol (walign/report/protocol.py) on hand-built run tables: which runs
are candidates of a cell, best over runs, Table 2's seed statistics, Table 9's seed spread and the
alignment cells. Each expected value is worked out by hand in a comment. Fast: scripts/mutation.py
runs these against mutated copies of walign (docs/contributing.md)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from walign.report.protocol import (Cell, SeedSpread, alignment_cell, best_accuracy, candidates,
                                    choose_alignment_run, epoch1_accuracy, epoch_accuracy, lr_in, min_loss,
                                    scored_epochs, seed_spread, seed_statistics)

PAPER = dict(dataset="cifar10", rule="normal", width=8, lr=1.0, seed=99, activation="relu", parameterization="ntk",
             optimizer="sgd", train_size=math.nan, variant="", status="complete", best_val_acc=0.5,
             min_train_loss=math.nan, min_test_loss=math.nan, records=())


def runs(*rows: dict) -> pd.DataFrame:
    """A run table like walign.report.collect's: each row the paper setting with some changes; path
    r0, r1, ... in order unless given."""
    return pd.DataFrame([{**PAPER, "path": f"r{i}", **row} for i, row in enumerate(rows)])


def acc_records(*accs):
    return [{"epoch": e, "val_acc": a} for e, a in enumerate(accs, 1)]


# ----------------------------------------------------------------------------- candidates
def test_lr_in_matches_the_grid_up_to_float_spelling():
    got = lr_in(pd.Series([1.0, 2.0000000000001, 3.0, 5e-4, 0.0005001, 5.0]), (1.0, 2.0, 5.0, 0.0005))
    assert got.tolist() == [True, True, False, True, False, True]
    assert got.dtype == bool


def test_candidates_default_to_the_paper_setting():
    table = runs({}, {"seed": 100}, {"activation": "tanh"}, {"parameterization": "standard"},
                 {"optimizer": "adam"}, {"variant": "projection=shared"}, {"dataset": "kmnist"}, {"rule": "fa"},
                 {"width": 16}, {"lr": 0.5})
    assert candidates(table, dataset="cifar10", rule="normal")["path"].tolist() == ["r0", "r8", "r9"]
    assert candidates(table, dataset="cifar10", rule="normal", width=8)["path"].tolist() == ["r0", "r9"]
    assert candidates(table, dataset="cifar10", rule="normal", width=8, lrs=(1.0, 2.0))["path"].tolist() == ["r0"]
    assert candidates(table, dataset="cifar10", rule="normal", seed=None, width=8, lrs=(1.0,))["path"].tolist() \
        == ["r0", "r1"]
    assert candidates(table, dataset="cifar10", rule="normal", width=8, lrs=(1.0,),
                      allow_variants=True)["path"].tolist() == ["r0", "r5"]
    assert candidates(table, dataset="cifar10", rule="normal", activation="tanh")["path"].tolist() == ["r2"]
    assert candidates(table, dataset="cifar10", rule="normal", parameterization="standard",
                      optimizer="sgd")["path"].tolist() == ["r3"]
    assert candidates(table, dataset="cifar10", rule="normal", optimizer="adam")["path"].tolist() == ["r4"]


def test_candidates_by_train_size():
    table = runs({"train_size": 450.0}, {"train_size": 4500.0}, {}, {"train_size": 450.0, "rule": "fa"},
                 {"train_size": 450.0, "seed": 100})
    assert candidates(table, dataset="cifar10", rule="normal", train_size=450)["path"].tolist() == ["r0"]
    assert candidates(table, dataset="cifar10", rule="normal")["path"].tolist() == ["r0", "r1", "r2"]


# ----------------------------------------------------------------------------- best over runs
def test_best_accuracy_is_the_largest_in_percent_and_names_its_run():
    table = runs({"best_val_acc": 0.40}, {"best_val_acc": 0.625, "status": "diverged"}, {"best_val_acc": math.nan},
                 {"best_val_acc": 0.30})
    assert best_accuracy(table) == Cell(62.5, True, "", "r1", ("r0", "r1", "r2", "r3"))
    table.loc[1, "status"] = "complete"
    assert best_accuracy(table).diverged is False


def test_best_accuracy_ties_go_to_the_first_run():
    table = runs({"best_val_acc": 0.2}, {"best_val_acc": 0.6}, {"best_val_acc": 0.6})
    cell = best_accuracy(table)
    assert (cell.ours, cell.chosen, cell.note) == (60.0, "r1", "")


def test_a_cell_without_a_finite_value_says_how_many_runs_it_had():
    assert best_accuracy(runs({"best_val_acc": math.nan}, {"best_val_acc": math.nan})) == \
        Cell(None, False, "2 run(s), none with a finite value", "", ("r0", "r1"))
    assert best_accuracy(runs({}).iloc[:0]) == Cell()


def test_min_loss_is_the_lowest_over_runs():
    table = runs({"min_train_loss": 0.5, "min_test_loss": 0.2}, {"min_train_loss": 0.3, "min_test_loss": 0.4},
                 {"min_train_loss": math.nan, "min_test_loss": 0.9})
    train, test = min_loss(table, "train"), min_loss(table, "test")
    assert (train.ours, train.chosen) == (0.3, "r1")
    assert (test.ours, test.chosen) == (0.2, "r0")


def test_epoch_one_accuracy_reads_epoch_one_of_the_metrics():
    table = runs({"records": acc_records(0.30, 0.90)}, {"records": acc_records(0.35, 0.10)},
                 {"records": acc_records(None, 0.99)})
    cell = epoch1_accuracy(table)
    assert (cell.ours, cell.chosen) == (pytest.approx(35.0), "r1")   # epoch 1: 30, 35, none -> 35 (run r1)
    assert epoch_accuracy(acc_records(0.3, 0.4), 2) == 0.4
    assert math.isnan(epoch_accuracy(acc_records(0.3), 2))
    assert math.isnan(epoch_accuracy([{"epoch": 1, "val_acc": "0.3"}], 1))
    assert epoch_accuracy([{"val_acc": 0.2}, {"epoch": 1, "val_acc": 0.25}], 1) == 0.25


# ----------------------------------------------------------------------------- Table 2: seeds
SEED_CELL = dict(dataset="cifar10", rule="normal", width=8, lrs=(1.0, 2.0))


def test_seed_statistics_of_all_five_seeds():
    # per seed the better of two lrs: 0.60, 0.70, 0.50, 0.80, 0.40 (lr 5 is off the grid, seed 99 not a Table 2 seed)
    rows = []
    for seed, (a, b) in {100: (0.6, 0.1), 101: (0.2, 0.7), 102: (0.5, 0.5), 103: (0.8, 0.3), 104: (0.4, 0.0)}.items():
        rows += [{"seed": seed, "lr": 1.0, "best_val_acc": a}, {"seed": seed, "lr": 2.0, "best_val_acc": b}]
    rows += [{"seed": 100, "lr": 5.0, "best_val_acc": 0.99}, {"seed": 99, "best_val_acc": 0.95}]
    stats = seed_statistics(runs(*rows), **SEED_CELL)
    # by hand: mean 60; squared deviations 0, 100, 100, 400, 400 -> population var 200, sample var 250
    assert stats["mean"].ours == pytest.approx(60.0)
    assert stats["std"].ours == pytest.approx(math.sqrt(200.0))
    assert stats["sample_std"].ours == pytest.approx(math.sqrt(250.0))
    assert stats["seeds"].ours == 5.0
    assert all(c.note == "" and c.diverged is False and c.chosen == "" for c in stats.values())
    assert len(stats["mean"].considered) == 10


def test_seed_statistics_with_missing_seeds_and_a_diverged_one():
    # the diverged seed comes first: a later complete one must not clear the mark
    table = runs({"seed": 101, "best_val_acc": 0.5, "status": "diverged"}, {"seed": 103, "best_val_acc": 0.7})
    stats = seed_statistics(table, **SEED_CELL)
    assert stats["mean"].ours == pytest.approx(60.0) and stats["std"].ours == pytest.approx(10.0)
    assert stats["sample_std"].ours == pytest.approx(math.sqrt(200.0))
    assert stats["seeds"].ours == 2.0 and stats["mean"].note == "2 of 5 seeds" and stats["mean"].diverged is True
    one = seed_statistics(runs({"seed": 102, "best_val_acc": 0.5}), **SEED_CELL)
    assert one["mean"].ours == pytest.approx(50.0) and one["std"].ours == 0.0 and one["sample_std"].ours is None
    assert one["seeds"].ours == 1.0 and one["mean"].note == "1 of 5 seeds"
    none = seed_statistics(runs({"seed": 99}), **SEED_CELL)
    assert all(c.ours is None and c.note == "" for c in none.values())


# ----------------------------------------------------------------------------- Table 9: spread
def test_seed_spread_uses_the_lr_chosen_on_seed_99_alone():
    table = runs({"seed": 99, "lr": 1.0, "best_val_acc": 0.40}, {"seed": 99, "lr": 2.0, "best_val_acc": 0.50},
                 {"seed": 100, "lr": 1.0, "best_val_acc": 0.90},   # better, but at the other lr: ignored
                 {"seed": 100, "lr": 2.0, "best_val_acc": 0.30},
                 {"seed": 101, "lr": 2.0, "best_val_acc": 0.44, "status": "diverged"},
                 {"seed": 101, "lr": 2.0, "best_val_acc": 0.46},     # two runs of one seed there: the better
                 {"seed": 105, "lr": 2.0, "best_val_acc": 0.99})     # not a Table 9 seed
    spread = seed_spread(table)
    assert spread.lr == 2.0
    assert spread.values == {99: pytest.approx(50.0), 100: pytest.approx(30.0), 101: pytest.approx(46.0)}
    assert spread.runs == ("r1", "r3", "r4", "r5") and spread.diverged == 0 and spread.n == 3
    # mean 42; deviations 8, -12, 4 -> squares 64 + 144 + 16 = 224, sample var 112
    assert spread.mean == pytest.approx(42.0) and spread.sd == pytest.approx(math.sqrt(112.0))
    table.loc[5, "best_val_acc"] = 0.10
    assert seed_spread(table).diverged == 1 and seed_spread(table).values[101] == pytest.approx(44.0)
    table.loc[3, "status"] = "diverged"              # seed 100 too: two diverged seeds, counted both
    assert seed_spread(table).diverged == 2
    table.loc[4, "status"] = "complete"              # seed 101 no longer: a later seed does not reset the count
    assert seed_spread(table).diverged == 1


def test_seed_spread_without_seed_99_is_empty_and_one_seed_has_no_sd():
    assert seed_spread(runs({"seed": 100})) == SeedSpread()
    assert SeedSpread().mean is None and SeedSpread().sd is None and SeedSpread().n == 0
    alone = seed_spread(runs({"seed": 99, "best_val_acc": 0.25}))
    assert alone.values == {99: pytest.approx(25.0)} and alone.mean == pytest.approx(25.0) and alone.sd is None


# ----------------------------------------------------------------------------- alignment cells
def aligned(scores: dict, **row) -> dict:
    """A run whose epochs ``scores`` (epoch -> per-layer operator scores) were scored."""
    records = [{"epoch": e, "val_acc": 0.1, **({"alignment": {"operator": scores[e], "kernel": [0.0]}}
                                                if e in scores else {})} for e in range(1, max(scores, default=1) + 1)]
    return {"rule": "gd_wstar", "records": records, **row}


def test_scored_epochs_lists_only_records_with_an_alignment():
    records = [{"epoch": 1}, {"epoch": 2, "alignment": {"operator": [0.5]}}, {"epoch": 3, "alignment": None}]
    assert scored_epochs(records) == {2: {"operator": [0.5]}}


def test_the_run_that_scored_the_scheduled_epoch_is_preferred():
    table = runs(aligned({3: [0.1]}, lr=5.0),                   # scheduled lr, but never scored epoch 5
                 aligned({5: [0.2]}, lr=2.0),                   # scored epoch 5 at another lr
                 aligned({5: [0.3]}, lr=5.0, path="z"),         # scored epoch 5 at the scheduled lr
                 aligned({5: [0.4]}, lr=5.0, path="a"))         # the same, earlier path: wins
    run, at = choose_alignment_run(table, 5, 5.0)
    assert (run["path"], at) == ("a", 5)
    run, at = choose_alignment_run(table.iloc[:3], 5, 5.0)
    assert (run["path"], at) == ("z", 5)
    run, at = choose_alignment_run(table.iloc[:2], 5, 5.0)
    assert (run["path"], at) == ("r1", 5)


def test_without_the_scheduled_epoch_the_lr_then_the_latest_epoch_decide():
    table = runs(aligned({2: [0.1]}, lr=2.0), aligned({3: [0.2]}, lr=2.0), aligned({1: [0.3], 2: [0.3]}, lr=5.0))
    run, at = choose_alignment_run(table, 9, 5.0)
    assert (run["path"], at) == ("r2", 2)              # the scheduled lr beats a later epoch
    run, at = choose_alignment_run(table.iloc[:2], 9, 5.0)
    assert (run["path"], at) == ("r1", 3)              # then the latest scored epoch
    assert choose_alignment_run(runs({"records": acc_records(0.1)}), 9, 5.0) is None


def test_alignment_cell_reads_the_layer_and_says_how_it_bent_the_protocol():
    table = runs(aligned({4: [0.11, 0.22, 0.33], 6: [0.5, 0.6, 0.7]}, lr=2.0, status="diverged"))
    cell = alignment_cell(table, 2, 6, 2.0)
    assert cell == Cell(0.6, True, "", "r0", ("r0",))
    cell = alignment_cell(table, 3, 8, 5.0)
    assert cell.ours == 0.7
    assert cell.note == "epoch 6 (scheduled 8 not scored); lr 2 (paper setting 5)"
    assert alignment_cell(table, 4, 6, 2.0).ours is None       # no fourth layer
    assert alignment_cell(table, 1, 4, 2.0).ours == 0.11
    assert alignment_cell(table, 1, 6, 2.0, score="kernel").ours == 0.0


def test_alignment_cell_without_a_finite_score_or_any_scored_run():
    table = runs(aligned({3: [float("nan"), 0.2]}, lr=5.0))
    cell = alignment_cell(table, 1, 3, 5.0)
    assert cell.ours is None and cell.note == "" and cell.diverged is False
    assert alignment_cell(table, 1, 3, 5.0, score="permuted_operator").ours is None
    unscored = runs({"records": acc_records(0.2)}, {"records": acc_records(0.3)})
    assert alignment_cell(unscored, 1, 3, 5.0) == Cell(None, False, "2 run(s), none scored", "", ("r0", "r1"))
    assert alignment_cell(unscored.iloc[:0], 1, 3, 5.0) == Cell()

