"""Tests of the report command (walign.report): real result directories on disk, real outputs.

Most run directories are written here directly, in the exact layout and with the fields walign
writes (summary.json, metrics.jsonl); one test makes a real short training run. Every expected
number below is worked out in the test from the values it wrote, never read back from the code
under test.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from walign import paper
from walign.datasets.add import AddTask
from walign.datasets.splits import ImageSplits
from walign.report.cli import main as report_main
from walign.report.figures import FIGURES
from walign.report.tables import TABLES
from walign.runs import run_dir

REPO = Path(__file__).resolve().parents[1]
ALL_PAPER_CELLS = sum(len(paper.table(n)) for n in range(1, 11))


# ----------------------------------------------------------------------------- writing run directories
def write_run(root: Path, *, dataset="cifar10", rule="normal", width=8, lr=1.0, seed=99, epochs=None,
              status="complete", accs=None, losses=None, alignment=None, seconds=2.0, activation="relu",
              parameterization="ntk", optimizer="sgd", **options) -> Path:
    """A run directory as walign.app.execute leaves it.

    ``accs``: validation accuracy per epoch (classification); ``losses``: (train, test) loss per
    epoch (Add task); ``alignment``: {epoch: [operator score per layer]} (alignment runs). The
    summary's values come from walign's own summarize of the records, so the report tests check it.
    """
    train_size = options.pop("train_size", None)
    identity = {"dataset": dataset, **({"train_size": train_size} if train_size is not None else {}),
                "rule": rule, **options, "width": width, "lr": float(lr), "epochs": epochs, "batch_size": 100,
                "seed": seed, "activation": activation, "parameterization": parameterization, "optimizer": optimizer}
    records = []
    if losses is not None:
        for epoch, (train, test) in enumerate(losses, 1):
            records.append({"epoch": epoch, "train_loss": train, "test_loss": test, "eval_train_loss": train,
                            "seconds": seconds})
        summary_values = AddTask.summarize(records)    # walign's own summary, as a run writes it
    else:
        accs = accs if accs is not None else [0.1]
        for epoch, acc in enumerate(accs, 1):
            record = {"epoch": epoch, "train_loss": 0.09, "val_acc": acc, "test_acc": acc, "seconds": seconds}
            if alignment and epoch in alignment:
                scores = alignment[epoch]
                record["alignment"] = {"operator": scores, "kernel": scores, "seconds": 0.1,
                                       "permuted_operator": [s / 4 for s in scores]}
            records.append(record)
        summary_values = ImageSplits.summarize(records)       # walign's own summary: the tests check its best epoch
    identity["epochs"] = epochs or len(records)
    # the name walign gives it (the verdict checks it): as walign.spec.RunSpec.identity, fp32 and
    # compile=false identify no run (they are written into the summary all the same)
    named = {k: v for k, v in identity.items() if (k, v) not in (("compute_precision", "fp32"), ("compile", False))}
    directory = run_dir(root, named)
    directory.mkdir(parents=True)
    summary = {"status": status, **identity, "run_dir": str(directory), "device": "cpu (test, 1 threads)",
               "walign_version": "0.1.0", "epochs_done": len(records), **summary_values, "wall_seconds": 1.0}
    (directory / "config.yaml").write_text("width: %d\n" % width)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return directory


def rel(root: Path, directory: Path) -> str:
    return directory.relative_to(root).as_posix()


def report(results: Path, out: Path, *extra: str) -> str:
    code = report_main([str(results), "--out", str(out), *extra])
    assert code == 0
    return (out / "REPORT.md").read_text()


def cells(out: Path, number: int) -> pd.DataFrame:
    spec = next(s for s in TABLES if s.number == number)
    return pd.read_csv(out / f"{spec.stem}.csv")


def cell(table: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for key, value in where.items():
        mask &= table[key] == value
    found = table[mask]
    assert len(found) == 1, (where, found)
    return found.iloc[0]


# ----------------------------------------------------------------------------- one rich results directory
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A results directory that exercises every protocol, and its report."""
    root = tmp_path_factory.mktemp("results")
    runs = {}
    # Table 6 Normal x8: best over epochs of each lr, then best over lr {1, 2, 5}; lr 0.5 (off the grid),
    # seed 100 and an ImageNet-free variant must be ignored even though their numbers are higher.
    runs["n8_lr1"] = write_run(root, lr=1, accs=[0.20, 0.45, 0.30])
    runs["n8_lr2"] = write_run(root, lr=2, accs=[0.50, 0.40])
    runs["n8_lr5"] = write_run(root, lr=5, accs=[0.10])
    runs["n8_lr05"] = write_run(root, lr=0.5, accs=[0.90])
    runs["n8_seed100"] = write_run(root, lr=1, seed=100, accs=[0.95])
    runs["dfa8_full"] = write_run(root, rule="dfa", lr=1, accs=[0.30], projection="full", projection_std=None)
    runs["dfa8_shared"] = write_run(root, rule="dfa", lr=1, accs=[0.99], projection="shared", projection_std=None)
    # a diverged run that is still the best of its cell: marked, value kept
    runs["ada16_div"] = write_run(root, rule="align_ada", width=16, lr=5, accs=[0.31, 0.33], status="diverged")
    runs["ada16_ok"] = write_run(root, rule="align_ada", width=16, lr=1, accs=[0.25])
    # a failed run: listed, never used
    runs["zero8_failed"] = write_run(root, rule="align_zero", lr=1, accs=[0.99], status="failed")
    # Table 2: Normal at width 256, seeds 100-104, two lrs each; Align-ada with only three seeds
    per_seed = {100: (0.60, 0.58), 101: (0.55, 0.62), 102: (0.64, 0.61), 103: (0.59, 0.61), 104: (0.63, 0.40)}
    for seed, (a, b) in per_seed.items():
        write_run(root, width=256, lr=1, seed=seed, accs=[a])
        write_run(root, width=256, lr=2, seed=seed, accs=[b / 2, b])
    for seed, acc in ((100, 0.50), (101, 0.54), (102, 0.52)):
        write_run(root, rule="align_ada", width=256, lr=5, seed=seed, accs=[acc])
    # Table 8: two lrs, minima taken separately; a diverged Align-ada keeps its minimum
    write_run(root, dataset="add", rule="normal", width=16, lr=0.001, losses=[(0.9, 0.8), (0.55, 0.49), (0.6, 0.5)],
              generator="faithful", data_seed=99, precision="float64", train_size=300)
    write_run(root, dataset="add", rule="normal", width=16, lr=0.002, losses=[(0.60, 0.45)],
              generator="faithful", data_seed=99, precision="float64", train_size=300)
    write_run(root, dataset="add", rule="normal", width=16, lr=0.003, losses=[(0.01, 0.01)],
              generator="clean", data_seed=99, precision="float64", train_size=300)  # a variant: ignored
    write_run(root, dataset="add", rule="align_ada", width=16, lr=0.001, status="diverged",
              losses=[(2.5, 2.4), (1.944, 1.890), (None, None)], generator="faithful", train_size=300)
    # Table 9: small CIFAR-10 at N = 450 and a plain CIFAR-10 run filling N = 45000 (the Normal x8 above)
    write_run(root, dataset="small_cifar10", train_size=450, rule="fa", width=8, lr=2, accs=[0.21, 0.26])
    # Table 10: standard parameterization + Adam
    adam = dict(parameterization="standard", optimizer="adam", width=8)
    write_run(root, lr=0.0005, accs=[0.30, 0.50], **adam)
    write_run(root, lr=0.001, accs=[0.35, 0.60], **adam)
    write_run(root, lr=0.7, accs=[0.99, 0.99], **adam)   # off the Adam grid
    # Tables 3 and 5: scheduled epoch present (150) / absent (fallback to the last scored); tanh kept apart
    runs["align8"] = write_run(root, rule="gd_wstar", width=8, lr=5, accs=[0.1] * 150,
                               alignment={100: [0.1] * 7, 150: [0.41, 0.42, 0.43, 0.44, 0.45, 0.46, 0.47]},
                               score_epochs=[100, 150], iterations=100, probes=100, permuted=True)
    runs["align16"] = write_run(root, rule="gd_wstar", width=16, lr=1, accs=[0.1] * 3,
                                alignment={1: [0.2] * 7, 3: [0.31, 0.32, 0.33, 0.34, 0.35, 0.36, 0.37]},
                                score_epochs=[1, 3], permuted=False)
    runs["tanh8"] = write_run(root, rule="gd_wstar", width=8, lr=2, accs=[0.1] * 100, activation="tanh",
                              alignment={100: [0.7] * 7})
    # ImageNet (Figure 5): DFA with the shared projection is the paper's ImageNet setting, so allowed there
    runs["imagenet"] = write_run(root, dataset="imagenet", rule="dfa", width=512, lr=5, accs=[0.01, 0.02, 0.03],
                                 projection="shared", projection_std=None)
    # embedded runs with no --as: unused
    runs["embedded"] = write_run(root, dataset="embedded", rule="normal", width=8, lr=5, accs=[0.15])
    # a run in progress: metrics but no summary yet (and a checkpoint that must be ignored)
    progress = root / "cifar10" / "fa" / "w8-lr1-s99-0123456789"
    progress.mkdir(parents=True)
    (progress / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.5}) + "\n")
    (progress / "checkpoint.pt").write_bytes(b"\x80not a pickle")
    # Hydra's own folder is hidden and skipped
    (root / ".hydra" / "x").mkdir(parents=True)
    (root / ".hydra" / "x" / "summary.json").write_text("{")
    out = tmp_path_factory.mktemp("report")
    text = report(root, out)
    return root, out, text, runs


def test_best_over_epochs_then_over_the_lr_grid(built):
    root, out, _, runs = built
    table = cells(out, 6)
    normal = cell(table, method="Normal", width=8)
    assert normal["ours"] == pytest.approx(50.0)            # lr 2's best epoch beats lr 1's 45 and lr 5's 10
    assert normal["paper"] == pytest.approx(54.8)
    assert normal["difference"] == pytest.approx(50.0 - 54.8)
    assert normal["chosen_run"] == rel(root, runs["n8_lr2"])
    assert normal["candidate_runs"] == 3                     # lr 0.5 and seed 100 are not candidates
    assert cell(table, method="DFA", width=8)["ours"] == pytest.approx(30.0)   # the shared-projection variant is not
    assert cell(table, method="Normal", width=16)["status"] == "missing"
    assert math.isnan(cell(table, method="Normal", width=16)["ours"])
    markdown = (out / "table06_width_cifar10.md").read_text()
    assert "| Normal | 50.0 / 54.8 (-4.8) | — / 61.0 |" in markdown
    # Table 1 shares the protocol: its Normal x128 is empty, its grid is the paper's
    assert len(cells(out, 1)) == len(paper.table(1))


def test_a_diverged_run_is_marked_and_keeps_its_value(built):
    root, out, text, runs = built
    ada = cell(cells(out, 6), method="Align-ada", width=16)
    assert ada["ours"] == pytest.approx(33.0) and ada["status"] == "diverged"
    assert ada["chosen_run"] == rel(root, runs["ada16_div"])
    assert "33.0† / 35.7 (-2.7)" in (out / "table06_width_cifar10.md").read_text()
    assert "$^\\dagger$" in (out / "table06_width_cifar10.tex").read_text()
    diverged_section = text.split("## Diverged runs")[1].split("##")[0]
    assert rel(root, runs["ada16_div"]) in diverged_section
    failed_section = text.split("## Failed runs")[1].split("##")[0]
    assert rel(root, runs["zero8_failed"]) in failed_section
    assert cell(cells(out, 6), method="Align-zero", width=8)["status"] == "missing"   # the failed run fills nothing


def test_table2_mean_and_both_stds_over_seeds(built):
    _, out, _, _ = built
    table = cells(out, 2)
    per_seed = np.array([60.0, 62.0, 64.0, 61.0, 63.0])     # per seed: the best of its two lrs' best epochs
    assert cell(table, method="Normal", metric="test_acc_mean_over_seeds")["ours"] == pytest.approx(per_seed.mean())
    assert cell(table, method="Normal", metric="test_acc_std_over_seeds")["ours"] == pytest.approx(per_seed.std(ddof=0))
    assert cell(table, method="Normal", metric="test_acc_sample_std_over_seeds")["ours"] == \
        pytest.approx(per_seed.std(ddof=1))
    ada = cell(table, method="Align-ada", metric="test_acc_mean_over_seeds")
    assert ada["ours"] == pytest.approx(52.0) and "3 of 5 seeds" in ada["note"]
    assert cell(table, method="FA", metric="test_acc_mean_over_seeds")["status"] == "missing"


def test_table8_minimum_losses(built):
    _, out, _, _ = built
    table = cells(out, 8)
    assert cell(table, method="Normal", width=16, metric="train_loss_best")["ours"] == pytest.approx(0.55)
    assert cell(table, method="Normal", width=16, metric="test_loss_best")["ours"] == pytest.approx(0.45)
    ada = cell(table, method="Align-ada", width=16, metric="test_loss_best")
    assert ada["ours"] == pytest.approx(1.890) and ada["status"] == "diverged"
    assert ada["difference"] == pytest.approx(0.0)


def test_table9_small_cifar_and_the_full_data_column(built):
    _, out, _, _ = built
    table = cells(out, 9)
    assert cell(table, method="FA", width=8, train_size=450)["ours"] == pytest.approx(26.0)
    assert cell(table, method="Normal", width=8, train_size=45000)["ours"] == pytest.approx(50.0)
    assert cell(table, method="Normal", width=8, train_size=450)["status"] == "missing"


def test_table10_epoch_one_rows(built):
    _, out, _, _ = built
    table = cells(out, 10)
    normal = dict(method="Normal", width=8)
    assert cell(table, setting="sp_adam_150ep", **normal)["ours"] == pytest.approx(60.0)
    assert cell(table, setting="sp_adam_1ep", **normal)["ours"] == pytest.approx(35.0)
    assert cell(table, setting="sp_adam_1ep_lr0.0005", **normal)["ours"] == pytest.approx(30.0)


def test_alignment_tables_use_the_scheduled_epoch_or_say_which(built):
    root, out, _, runs = built
    table = cells(out, 3)
    at150 = cell(table, width=8, layer=2)
    assert at150["ours"] == pytest.approx(0.42) and pd.isna(at150["note"])
    fallback = cell(table, width=16, layer=7)
    assert fallback["ours"] == pytest.approx(0.37)
    assert "epoch 3" in fallback["note"] and "150" in fallback["note"]
    assert cell(cells(out, 5), width=8, layer=4)["ours"] == pytest.approx(0.7)   # the tanh run, not the ReLU one
    markdown = (out / "table03_alignment_cifar10_relu.md").read_text()
    assert "0.370‡ / 0.382 (-0.012)" in markdown and "## Notes" in markdown


def test_report_counts_missing_cells_and_lists_what_it_skipped(built):
    root, out, text, runs = built
    def filled(n):  # Table 2's CSV also holds extra columns (sample std, seeds found): not paper cells
        table = cells(out, n)
        return int(((table["status"] != "missing") & table["metric"].isin(paper.table(n)["metric"])).sum())
    filled = {n: filled(n) for n in range(1, 11)}
    assert f"Missing cells in all: {ALL_PAPER_CELLS - sum(filled.values())} of {ALL_PAPER_CELLS}." in text
    total = len(paper.table(6))
    assert f"| 3 of {total} | {total - 3} | 1 |" in text       # Normal x8, DFA x8, Align-ada x16 (diverged)
    assert "- Normal: ×16, ×32, ×64, ×128, ×256, ×512" in text.split("### Table 6")[1]
    assert "w8-lr1-s99-0123456789" in text.split("## Runs in progress")[1]
    unused = text.split("## Runs used by no table or figure")[1]
    assert rel(root, runs["embedded"]) in unused and rel(root, runs["dfa8_shared"]) in unused
    assert rel(root, runs["n8_lr05"]) not in unused           # Figure 3 plots lr 0.5
    assert ".hydra" not in text


def test_every_table_and_figure_file_is_written(built):
    _, out, text, _ = built
    for spec in TABLES:
        for ext in ("md", "csv", "tex"):
            assert (out / f"{spec.stem}.{ext}").stat().st_size > 0
            assert f"({spec.stem}.{ext})" in text
    for stem, _, _ in FIGURES:
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert f"({stem}.png)" in text


def test_figures_count_the_points_they_draw(built):
    root, out, text, runs = built
    def points(figure):
        row = next(line for line in text.splitlines() if line.startswith(f"| Figure {figure}:"))
        return row.rsplit("|", 2)[1].strip()
    assert points(4) == "3"        # the filled cells of Tables 6 and 7
    assert points(5) == "3"        # three epochs of the ImageNet run
    assert points(8) == "14"       # the widest alignment run (width 16): 7 layers x 2 scored epochs
    assert points(1) == "14"       # Table 3's filled cells: 7 layers at widths 8 and 16
    assert rel(root, runs["imagenet"]) not in text.split("## Runs used by no table or figure")[1]


def test_rerunning_gives_identical_bytes(built, tmp_path):
    root, out, _, _ = built
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    report(root, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    other = tmp_path / "again"
    report(root, other)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before


# ----------------------------------------------------------------------------- robustness
def test_corrupt_files_are_reported_by_path_and_skipped(tmp_path):
    root = tmp_path / "results"
    good = write_run(root, lr=2, accs=[0.40, 0.42])
    torn = write_run(root, lr=1, accs=[0.30, 0.35])
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "val_ac')                                  # killed mid-line
    half = write_run(root, rule="fa", accs=[0.5])
    (half / "summary.json").write_text((half / "summary.json").read_text()[:40])   # half-written
    listed = write_run(root, rule="dfa", accs=[0.5])
    (listed / "summary.json").write_text("[1, 2]\n")
    nameless = write_run(root, rule="last_layer", accs=[0.5])
    summary = json.loads((nameless / "summary.json").read_text())
    del summary["width"]
    (nameless / "summary.json").write_text(json.dumps(summary))
    binary = write_run(root, rule="align_zero", accs=[0.5])
    (binary / "summary.json").write_bytes(b"\xff\xfe\x00garbage")

    text = report(root, tmp_path / "out")
    problems = text.split("## Unreadable files")[1].split("\n## ")[0]
    for directory in (half, listed, nameless, binary):
        assert f"{rel(root, directory)}/summary.json" in problems
    torn_line = next(line for line in problems.splitlines() if line.startswith(f"- `{rel(root, torn)}/summary.json`"))
    assert "is not backed by its metrics" in torn_line and "line 3 of 3" in torn_line   # skipped, as a relaunch reruns it
    assert f"Unreadable files (reported below, skipped): 5" in text
    table = cells(tmp_path / "out", 6)
    assert cell(table, method="Normal", width=8)["ours"] == pytest.approx(42.0)   # from the good run
    for method in ("FA", "DFA", "Last layer", "Align-zero"):
        assert cell(table, method=method, width=8)["status"] == "missing"
    assert good.exists()


def problems_of(text: str) -> str:
    return text.split("## Unreadable files")[1].split("\n## ")[0]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """One run per kind of damage the state-file readers report, and the report on them."""
    root = tmp_path_factory.mktemp("damaged") / "results"
    runs = {"good": write_run(root, lr=2, accs=[0.40, 0.41])}
    runs["listed"] = write_run(root, rule="fa", accs=[0.5])
    (runs["listed"] / "summary.json").write_text("[1, 2]\n")
    runs["status_only"] = write_run(root, rule="dfa", accs=[0.5])
    (runs["status_only"] / "summary.json").write_text('{"status": "complete"}\n')
    runs["nan"] = write_run(root, rule="align_ada", accs=[0.30, 0.35, 0.38])
    lines = (runs["nan"] / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"train_loss": 0.09', '"train_loss": NaN')
    (runs["nan"] / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    # epochs 1, 1, 2, 2
    runs["twice"] = write_run(root, rule="align_zero", accs=[0.30, 0.36])
    records = [json.loads(line) for line in (runs["twice"] / "metrics.jsonl").read_text().splitlines()]
    doubled = [records[0], records[0], records[1], records[1]]
    (runs["twice"] / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in doubled))
    runs["gap"] = write_run(root, rule="last_layer", accs=[0.2, 0.3, 0.4])
    lines = (runs["gap"] / "metrics.jsonl").read_text().splitlines()
    (runs["gap"] / "metrics.jsonl").write_text(lines[0] + "\n" + lines[2] + "\n")
    runs["empty"] = write_run(root, width=16, accs=[0.5])
    (runs["empty"] / "metrics.jsonl").write_text("")
    runs["no_metrics"] = write_run(root, width=32, accs=[0.5])
    (runs["no_metrics"] / "metrics.jsonl").unlink()
    # a summary.json that is a symbolic link to a valid summary elsewhere: not followed
    runs["link"] = write_run(root, width=64, accs=[0.5])
    elsewhere = root.parent / "elsewhere.json"
    (runs["link"] / "summary.json").rename(elsewhere)
    (runs["link"] / "summary.json").symlink_to(elsewhere)
    runs["metrics_dir"] = write_run(root, width=128, accs=[0.5])
    (runs["metrics_dir"] / "metrics.jsonl").unlink()
    (runs["metrics_dir"] / "metrics.jsonl").mkdir()
    runs["fifo"] = write_run(root, width=256, accs=[0.5])
    (runs["fifo"] / "summary.json").unlink()
    os.mkfifo(runs["fifo"] / "summary.json")
    runs["infinite_lr"] = write_run(root, width=512, accs=[0.5])
    summary = (runs["infinite_lr"] / "summary.json").read_text()
    (runs["infinite_lr"] / "summary.json").write_text(summary.replace('"lr": 1.0', '"lr": 1e999'))
    out = root.parent / "out"
    return root, out, report(root, out), runs


@pytest.mark.parametrize("name, reason", [
    ("listed", "holds a JSON list, not an object; run skipped"),
    ("status_only", "lacks dataset, rule, width, lr, seed, epochs, epochs_done; run skipped"),
    ("link", "a symbolic link to"),
    ("fifo", "a FIFO, not a file; run skipped"),
    ("infinite_lr", "lr must be a number in 1e-12..1e+06, got inf; run skipped"),
    ("nan", "is not backed by its metrics ({path}/metrics.jsonl: line 2 of 3 holds a NaN literal"),
    ("twice", "is not backed by its metrics ({path}/metrics.jsonl: epochs listed more than once: 1, 2)"),
    ("gap", "is not backed by its metrics ({path}/metrics.jsonl: epochs missing: 2)"),
    ("empty", "is not backed by its metrics ({path}/metrics.jsonl: empty)"),
    ("no_metrics", "is not backed by its metrics ({path}/metrics.jsonl: missing)"),
    ("metrics_dir", "is not backed by its metrics ({path}/metrics.jsonl: a directory, not a file)"),
])
def test_every_damaged_file_is_listed_with_its_path(damaged, name, reason):
    """Each damaged run is one line under Unreadable files, on its summary.json: a finished run
    counts only when walign.verdict believes it, as a relaunch would."""
    root, _, text, runs = damaged
    lines = [line for line in problems_of(text).splitlines()
             if line.startswith(f"- `{rel(root, runs[name])}/summary.json`:")]
    assert len(lines) == 1 and reason.format(path=runs[name]) in lines[0], (lines, reason)


def test_a_damaged_run_fills_no_cell_whichever_file_is_damaged(damaged):
    """The report uses exactly the runs a relaunch would not train again: a damaged summary or
    damaged metrics both leave the cell to the other runs, or missing."""
    root, out, text, runs = damaged
    assert "(not followed)" in problems_of(text)
    table = cells(out, 6)
    assert cell(table, method="Normal", width=8)["ours"] == pytest.approx(41.0)
    for method in ("FA", "DFA", "Align-ada", "Align-zero", "Last layer"):   # summary or metrics damaged
        assert cell(table, method=method, width=8)["status"] == "missing"
    for width in (16, 32, 64, 128, 256, 512):
        assert cell(table, method="Normal", width=width)["status"] == "missing"
    assert "Runs read: 1 (1 complete, 0 diverged, 0 failed)" in text


def test_an_empty_results_directory_still_writes_every_file(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    text = report(root, tmp_path / "out")
    assert f"Missing cells in all: {ALL_PAPER_CELLS} of {ALL_PAPER_CELLS}." in text
    for stem, _, _ in FIGURES:
        assert (tmp_path / "out" / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / "out" / f"{stem}.pdf").stat().st_size > 1000
    assert text.count("| no runs |") == len(FIGURES)


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "walign.report", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/results"], "does not exist"),
    ([".", "--as", "cifar10"], "TARGET=SOURCE"),
    ([".", "--as", "cifar10=nope"], "TARGET=SOURCE"),
    ([".", "--as", "cifar10=embedded", "--as", "cifar10=kmnist"], "twice"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = command(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("walign-report: error:") and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_out_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = command(str(tmp_path), "--out", str(tmp_path / "file"))
    assert proc.returncode == 2 and proc.stderr.startswith("walign-report: error:")


# ----------------------------------------------------------------------------- one real run
def test_a_real_embedded_run_fills_cifar10_cells_with_the_substitution(tmp_path):
    results = tmp_path / "results"
    train = subprocess.run([sys.executable, "main.py", "dataset=embedded", "width=8", "epochs=1", "rule=normal",
                            "progress=none", "device=cpu", f"results_dir={results}"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    (summary_path,) = [p for p in results.rglob("summary.json") if ".hydra" not in p.parts]
    summary = json.loads(summary_path.read_text())

    plain = command(str(results), "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    assert cell(cells(tmp_path / "plain", 6), method="Normal", width=8)["status"] == "missing"

    # the installed command, started outside the repository, still composes conf/ for its variant
    # test (Hydra must find walign's sweeper plugin, which conf/config.yaml names, from anywhere)
    script = Path(sys.executable).parent / "walign-report"
    proc = subprocess.run([str(script), str(results), "--out", str(tmp_path / "out"), "--as", "cifar10=embedded"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "did not compose" not in (tmp_path / "out" / "REPORT.md").read_text()
    normal = cell(cells(tmp_path / "out", 6), method="Normal", width=8)
    assert normal["ours"] == pytest.approx(100 * summary["best_val_acc"], abs=1e-4)
    assert normal["chosen_run"] == summary_path.parent.relative_to(results).as_posix()
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "`embedded` runs stand in for `cifar10`" in text and "Runs relabelled: 1" in text
    assert "`embedded` runs stand in for `cifar10`" in (tmp_path / "out" / "table06_width_cifar10.md").read_text()
    figure_rows = [line for line in text.splitlines() if line.startswith("| Figure 4")]
    assert figure_rows and figure_rows[0].endswith("| 1 |")
