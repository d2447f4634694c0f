"""Tests of smoke-scale runs in the report: tables and figures are filled from one scale only.

A smoke run (``scale=smoke``: a rehearsal on a few hundred examples per split) says
``"scale": "smoke"`` in its summary. When the results directory has a usable full-scale run, smoke
runs fill nothing and are listed as unused; when it has none, the smoke runs fill everything by
the same protocol, and every table, figure title and REPORT.md says "smoke scale: not comparable
with the paper". Run directories are written by test_report.write_run; every expected number is
worked out here from the values written.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from test_report import cell, cells, rel, report, write_run
from walign import paper
from walign.report import figures
from walign.report.collect import scan
from walign.report.tables import TABLES

LABEL = "smoke scale: not comparable with the paper"
ADD = dict(dataset="add", rule="normal", width=16, generator="faithful", data_seed=99, precision="float64",
           train_size=300)


@pytest.fixture
def titles(monkeypatch) -> dict[str, tuple[list[str], str]]:
    """Every figure the report saves, by file stem: (its panels' titles, its overall title)."""
    seen = {}
    save = figures.save

    def recording(figure, out, stem):
        seen[stem] = ([ax.get_title() for ax in figure.axes], figure.get_suptitle())
        return save(figure, out, stem)
    monkeypatch.setattr(figures, "save", recording)
    return seen


def paper_value(number: int, **where) -> float:
    table = paper.table(number)
    mask = pd.Series(True, index=table.index)
    for key, value in where.items():
        mask &= table[key] == value
    assert mask.sum() == 1, where
    return float(table.loc[mask, "value"].iloc[0])


def table_files(out: Path, ext: str) -> dict[int, str]:
    return {spec.number: (out / f"{spec.stem}.{ext}").read_text() for spec in TABLES}


def write_cells(root: Path, **scale) -> dict[str, Path]:
    """Table 6's Normal x8 over the lr grid and Table 8's Normal x16, at the given scale."""
    return {"lr1": write_run(root, lr=1, accs=[0.20, 0.45], **scale),
            "lr2": write_run(root, lr=2, accs=[0.50], **scale),
            "lr5": write_run(root, lr=5, accs=[0.10], **scale),
            "add": write_run(root, lr=0.001, losses=[(0.9, 0.8), (0.55, 0.49)], **ADD, **scale)}


def unused_section(text: str) -> str:
    return text.split("## Runs used by no table or figure")[1]


# ----------------------------------------------------------------------------- only smoke runs
def test_smoke_runs_alone_fill_the_report_and_every_item_says_so(tmp_path, titles, capsys):
    root = tmp_path / "results"
    runs = write_cells(root, scale="smoke")
    out = tmp_path / "out"
    text = report(root, out)

    # scanned as smoke, and not a variant: scale is chosen for the whole report, not per run
    scanned = scan(root).runs
    assert set(scanned["scale"]) == {"smoke"} and set(scanned["variant"]) == {""}

    # the same protocol as at full scale: best over epochs (lr 1: 45, lr 2: 50, lr 5: 10), then over lr
    normal = cell(cells(out, 6), method="Normal", width=8)
    assert normal["ours"] == pytest.approx(50.0)
    assert normal["difference"] == pytest.approx(50.0 - paper_value(6, method="Normal", width=8))
    assert normal["chosen_run"] == rel(root, runs["lr2"]) and normal["candidate_runs"] == 3
    table8 = cells(out, 8)
    assert cell(table8, method="Normal", width=16, metric="train_loss_best")["ours"] == pytest.approx(min(0.9, 0.55))
    assert cell(table8, method="Normal", width=16, metric="test_loss_best")["ours"] == pytest.approx(min(0.8, 0.49))
    assert "## Runs used by no table or figure (0)" in text

    # every table: Markdown and LaTeX titles, the CSV's scale column
    for number, markdown in table_files(out, "md").items():
        assert LABEL in markdown.splitlines()[0], number
    for number, latex in table_files(out, "tex").items():
        assert LABEL in latex.split("\\caption{")[1].split("}")[0], number
    for spec in TABLES:
        assert set(cells(out, spec.number)["scale"]) == {"smoke"}, spec.number
    # REPORT.md's header, and the command's summary
    assert LABEL in text.splitlines()[0]
    assert LABEL in capsys.readouterr().out

    # every figure's title: each panel's, or the overall title of Figure 6's grid
    assert set(titles) == {stem for stem, _, _ in figures.FIGURES}
    for stem, (panels, overall) in titles.items():
        assert LABEL in overall or (panels and all(LABEL in title for title in panels)), stem
    assert LABEL in titles["figure6_small_cifar10"][1]
    # Figure 4 draws Table 6's filled cell, Figure 9 Table 8's two
    assert "| 1 |" in next(line for line in text.splitlines() if line.startswith("| Figure 4:"))
    assert "| 2 |" in next(line for line in text.splitlines() if line.startswith("| Figure 9:"))


def test_smoke_runs_fill_the_cells_full_scale_runs_of_the_same_values_fill(tmp_path):
    """The scale changes which runs are read, never how: the same values at full scale give the same cells."""
    for scale in ("smoke", "full"):
        write_cells(tmp_path / scale, **({"scale": "smoke"} if scale == "smoke" else {}))
        report(tmp_path / scale, tmp_path / f"{scale}-out")
    compared = ["table", "setting", "method", "width", "train_size", "layer", "metric", "ours", "paper", "status"]
    for spec in TABLES:
        smoke, full = cells(tmp_path / "smoke-out", spec.number), cells(tmp_path / "full-out", spec.number)
        pd.testing.assert_frame_equal(smoke[compared], full[compared], obj=f"Table {spec.number}")


def test_a_failed_full_scale_run_leaves_the_smoke_runs_in_charge(tmp_path):
    root = tmp_path / "results"
    write_run(root, lr=1, accs=[0.99], status="failed")          # full scale, but not usable
    smoke = write_run(root, lr=2, accs=[0.30, 0.40], scale="smoke")
    text = report(root, tmp_path / "out")
    normal = cell(cells(tmp_path / "out", 6), method="Normal", width=8)
    assert normal["ours"] == pytest.approx(40.0) and normal["chosen_run"] == rel(root, smoke)
    assert LABEL in text.splitlines()[0]


# ----------------------------------------------------------------------------- full and smoke runs
def test_full_scale_runs_win_and_smoke_runs_are_listed_unused(tmp_path, titles, capsys):
    root = tmp_path / "results"
    full = write_run(root, lr=1, accs=[0.30])
    diverged = write_run(root, lr=0.001, losses=[(0.7, 0.6), (None, None)], status="diverged", **ADD)
    smoke = write_run(root, lr=2, accs=[0.80], scale="smoke")         # higher, but never mixed in
    smoke_add = write_run(root, lr=0.002, losses=[(0.1, 0.05)], scale="smoke", **ADD)
    out = tmp_path / "out"
    text = report(root, out)

    normal = cell(cells(out, 6), method="Normal", width=8)
    assert normal["ours"] == pytest.approx(30.0)
    assert normal["chosen_run"] == rel(root, full) and normal["candidate_runs"] == 1
    # a diverged full-scale run is usable: it, not the smoke run, fills Table 8
    loss = cell(cells(out, 8), method="Normal", width=16, metric="test_loss_best")
    assert loss["ours"] == pytest.approx(0.6) and loss["status"] == "diverged"
    assert loss["chosen_run"] == rel(root, diverged)

    unused = unused_section(text)
    for directory in (smoke, smoke_add):
        line = next(line for line in unused.splitlines() if line.startswith(f"- `{rel(root, directory)}`"))
        assert "(smoke scale: the report is filled from full-scale runs)" in line
    assert rel(root, full) not in unused and rel(root, diverged) not in unused
    assert "leaves every smoke-scale run unused" in unused

    # no smoke label anywhere
    assert LABEL not in text and LABEL not in capsys.readouterr().out
    for ext in ("md", "tex", "csv"):
        assert not any(LABEL in content for content in table_files(out, ext).values()), ext
    assert all("scale" not in cells(out, spec.number).columns for spec in TABLES)
    assert not any(LABEL in title for panels, overall in titles.values() for title in panels + [overall])


# ----------------------------------------------------------------------------- no smoke runs
def test_without_smoke_runs_nothing_mentions_smoke(tmp_path, titles, capsys):
    root = tmp_path / "results"
    write_cells(root)
    write_run(root, lr=0.5, accs=[0.9])                                  # off the grid: unused, no reason given
    out = tmp_path / "out"
    text = report(root, out)
    assert set(scan(root).runs["scale"]) == {"full"}
    assert cell(cells(out, 6), method="Normal", width=8)["ours"] == pytest.approx(50.0)
    printed = capsys.readouterr().out
    # the temporary directory is named after this test, so it is taken out first
    assert "smoke" not in text.replace(str(tmp_path), "").lower()
    assert "smoke" not in printed.replace(str(tmp_path), "").lower()
    for ext in ("md", "tex", "csv"):
        assert not any("smoke" in content.lower() for content in table_files(out, ext).values()), ext
    assert not any("smoke" in title.lower() for panels, overall in titles.values() for title in panels + [overall])
    assert len(titles) == len(figures.FIGURES)

