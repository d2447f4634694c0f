"""Tests of Table 9's seed spread and of Figure 6 as small multiples, the colours of rules beyond
the paper's, and what REPORT.md says about them. Run directories are written by
test_report.write_run; every expected number is worked out here from the values written, never
read back from the code under test."""
from __future__ import annotations

import ast
import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.container import ErrorbarContainer

from test_report import REPO, cell, cells, rel, report, write_run
from test_report_selection import context, legend_texts
from walign import paper
from walign.report import figures, protocol

SMALL = dict(dataset="small_cifar10")
SPREAD_LABEL = "mean ± SD over seeds (ddof 1)"
# the CSV's columns without a seed spread (as before seeds), and the three it gains with one
CSV_HEADER = ("table,setting,method,rule,width,train_size,layer,metric,unit,ours,paper,difference,status,note,"
              "chosen_run,candidate_runs")
SEED_HEADER = CSV_HEADER + ",seed_mean,seed_sd,seed_n"


def paper_value(method: str, width: int, size: int) -> float:
    t = paper.table(9)
    return float(t[(t["method"] == method) & (t["width"] == width) & (t["train_size"] == size)]["value"].iloc[0])


# ----------------------------------------------------------------------------- the runs
def seed99_runs(root: Path) -> dict[str, Path]:
    """The paper-protocol runs (seed 99) of the cells below."""
    return {
        # A: Normal x8, N = 450: lr 2 is best (31), so the spread is taken at lr 2
        "a_lr1": write_run(root, **SMALL, train_size=450, width=8, lr=1, accs=[0.20, 0.25]),
        "a_lr2": write_run(root, **SMALL, train_size=450, width=8, lr=2, accs=[0.31, 0.28]),
        "a_lr5": write_run(root, **SMALL, train_size=450, width=8, lr=5, accs=[0.22]),
        # B: FA x16, N = 45: lr 1 is best (21)
        "b_lr1": write_run(root, **SMALL, train_size=45, rule="fa", width=16, lr=1, accs=[0.21]),
        "b_lr2": write_run(root, **SMALL, train_size=45, rule="fa", width=16, lr=2, accs=[0.19]),
        # C: DFA x8, N = 45: lr 5 is best (24)
        "c_lr5": write_run(root, **SMALL, train_size=45, rule="dfa", width=8, lr=5, accs=[0.18, 0.24]),
        "c_lr1": write_run(root, **SMALL, train_size=45, rule="dfa", width=8, lr=1, accs=[0.15]),
        # D: Normal x8, N = 45000 from full CIFAR-10 runs: lr 1 is best (50)
        "d_lr1": write_run(root, width=8, lr=1, accs=[0.50]),
        "d_lr2": write_run(root, width=8, lr=2, accs=[0.45]),
        # E: a rule beyond the paper's, x8, N = 450
        "e_lr1": write_run(root, **SMALL, train_size=450, rule="my_rule", width=8, lr=1, accs=[0.28]),
    }


def off_lr_runs(root: Path) -> dict[str, Path]:
    """Runs of other seeds that must change nothing: at an lr seed 99 did not choose (with higher
    accuracy than anything at the chosen lr), or of a seed outside 99-103."""
    runs = {}
    for seed in (100, 101, 102, 103):
        runs[f"a_lr1_s{seed}"] = write_run(root, **SMALL, train_size=450, width=8, lr=1, seed=seed, accs=[0.60])
        runs[f"a_lr5_s{seed}"] = write_run(root, **SMALL, train_size=450, width=8, lr=5, seed=seed, accs=[0.70])
    runs["a_s104"] = write_run(root, **SMALL, train_size=450, width=8, lr=2, seed=104, accs=[0.99])
    runs["b_lr2_s100"] = write_run(root, **SMALL, train_size=45, rule="fa", width=16, lr=2, seed=100, accs=[0.50])
    runs["c_lr1_s102"] = write_run(root, **SMALL, train_size=45, rule="dfa", width=8, lr=1, seed=102, accs=[0.40])
    # a seed-100 run of a cell with no seed-99 run: no lr is chosen, so no cell and no spread
    runs["no99"] = write_run(root, **SMALL, train_size=45, width=32, lr=1, seed=100, accs=[0.45])
    return runs


def spread_runs(root: Path) -> dict[str, Path]:
    """Runs of seeds 100-103 at the lr chosen on seed 99."""
    runs = {}
    for seed, accs in ((100, [0.10, 0.27]), (101, [0.30, 0.29]), (102, [0.33]), (103, [0.26, 0.25])):
        runs[f"a_s{seed}"] = write_run(root, **SMALL, train_size=450, width=8, lr=2, seed=seed, accs=accs)
    runs["c_s100"] = write_run(root, **SMALL, train_size=45, rule="dfa", width=8, lr=5, seed=100, accs=[0.20])
    runs["c_s101"] = write_run(root, **SMALL, train_size=45, rule="dfa", width=8, lr=5, seed=101, accs=[0.22, 0.23],
                               status="diverged")
    runs["d_s100"] = write_run(root, width=8, lr=1, seed=100, accs=[0.52])                       # full CIFAR-10
    runs["d_s101"] = write_run(root, **SMALL, train_size=45000, width=8, lr=1, seed=101, accs=[0.49])
    runs["e_s100"] = write_run(root, **SMALL, train_size=450, rule="my_rule", width=8, lr=1, seed=100, accs=[0.30])
    return runs


# per cell: the values (%) of seeds 99, 100, ... at the chosen lr, as written above
EXPECTED = {("Normal", 8, 450): [31, 27, 30, 33, 26], ("DFA", 8, 45): [24, 20, 23],
            ("Normal", 8, 45000): [50, 52, 49], ("my_rule", 8, 450): [28, 30]}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeded") / "results"
    runs = {**seed99_runs(root), **off_lr_runs(root), **spread_runs(root)}
    # my_rule at lr 0.5 on CIFAR-10: off the grid, so in Figure 3 only
    runs["e_fig3"] = write_run(root, rule="my_rule", width=8, lr=0.5, accs=[0.3])
    out = root.parent / "out"
    return root, out, report(root, out), runs


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    """Two reports, every cell with one seed: the seed-99 runs alone, and with the runs of other
    seeds that must change nothing."""
    base = tmp_path_factory.mktemp("one_seed")
    seed99_runs(base / "plain")
    seed99_runs(base / "more")
    off_lr_runs(base / "more")
    for name in ("plain", "more"):
        report(base / name, base / f"{name}-out")
    return base / "plain-out", base / "more-out"


# ----------------------------------------------------------------------------- the aggregation alone
def test_seed_spread_takes_the_lr_chosen_on_seed_99_only():
    rows = [(99, 1.0, 0.25), (99, 2.0, 0.31), (99, 5.0, 0.22),
            (100, 2.0, 0.27), (101, 2.0, 0.30), (102, 2.0, 0.33), (103, 2.0, 0.26),
            (100, 5.0, 0.70), (101, 5.0, 0.70), (102, 1.0, 0.60), (103, 5.0, 0.70),   # other lrs: ignored
            (104, 2.0, 0.99), (103, 2.0, float("nan"))]                               # seed 104; no value
    found = pd.DataFrame([{"path": f"s{seed}-lr{lr:g}-{i}", "seed": float(seed), "lr": lr, "best_val_acc": acc,
                           "status": "complete"} for i, (seed, lr, acc) in enumerate(rows)])
    spread = protocol.seed_spread(found)
    assert spread.lr == 2.0
    assert spread.values == pytest.approx({99: 31.0, 100: 27.0, 101: 30.0, 102: 33.0, 103: 26.0})
    values = [31.0, 27.0, 30.0, 33.0, 26.0]
    assert spread.n == 5
    assert spread.mean == pytest.approx(statistics.mean(values))
    assert spread.sd == pytest.approx(statistics.stdev(values))          # the sample SD, ddof 1
    assert spread.diverged == 0
    assert set(spread.runs) == {"s99-lr2-1", "s100-lr2-3", "s101-lr2-4", "s102-lr2-5", "s103-lr2-6",
                                "s103-lr2-12"}
    # without seed 99 no lr is chosen, whatever the other seeds have
    alone = protocol.seed_spread(found[found["seed"] != 99])
    assert (alone.n, alone.mean, alone.sd, alone.lr) == (0, None, None, None)
    # seed 99 alone: n = 1, its own value, no SD
    only = protocol.seed_spread(found[found["seed"] == 99])
    assert (only.n, only.mean, only.sd) == (1, pytest.approx(31.0), None)


# ----------------------------------------------------------------------------- Table 9
def test_table9_csv_has_mean_sd_and_n_beside_the_paper_protocol_value(seeded):
    root, out, _, runs = seeded
    assert (out / "table09_small_cifar10.csv").read_text().splitlines()[0] == SEED_HEADER
    t9 = cells(out, 9)
    for (method, width, size), values in EXPECTED.items():
        found = cell(t9, method=method, width=width, train_size=size)
        assert found["ours"] == pytest.approx(values[0])                 # the paper protocol: seed 99
        assert found["seed_n"] == len(values)
        assert found["seed_mean"] == pytest.approx(statistics.mean(values))
        assert found["seed_sd"] == pytest.approx(statistics.stdev(values))
    a = cell(t9, method="Normal", width=8, train_size=450)
    assert a["chosen_run"] == rel(root, runs["a_lr2"]) and a["candidate_runs"] == 3
    b = cell(t9, method="FA", width=16, train_size=45)                    # seed 99 only: n = 1, no SD
    assert (b["ours"], b["seed_n"], b["seed_mean"]) == (pytest.approx(21.0), 1, pytest.approx(21.0))
    assert math.isnan(b["seed_sd"])
    missing = cell(t9, method="Normal", width=32, train_size=45)          # seed 100 only: nothing
    assert missing["status"] == "missing" and missing["seed_n"] == 0 and math.isnan(missing["seed_mean"])
    # tables without a seed spread keep their columns
    assert (out / "table06_width_cifar10.csv").read_text().splitlines()[0] == CSV_HEADER


def test_table9_markdown_shows_the_spread_and_says_how_it_is_made(seeded):
    _, out, _, _ = seeded
    markdown = (out / "table09_small_cifar10.md").read_text()
    for (method, width, size), values in EXPECTED.items():
        ours = f"{values[0]:.1f}"
        if method == "my_rule":
            head = f"{ours} / —"
        else:
            printed = paper_value(method, width, size)
            head = f"{ours} / {printed:.1f} ({values[0] - printed:+.1f})"
        diverged = ", 1 diverged" if method == "DFA" else ""
        text = (f"{head} [mean {statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}, "
                f"n={len(values)}{diverged}]")
        assert text in markdown, text
    printed = paper_value("FA", 16, 45)
    assert f"| 21.0 / {printed:.1f} ({21 - printed:+.1f}) |" in markdown    # one seed: no spread
    paragraph = next(line for line in markdown.splitlines() if line.startswith("Where a cell has runs of more"))
    for words in ("seeds 99, 100, 101, 102, 103", "seed_mean, seed_sd, seed_n", "chosen on seed 99 alone",
                  "ddof = 1", "Runs of seeds 100-103 at any other lr are ignored"):
        assert words in paragraph, words
    assert r"$\pm$" in (out / "table09_small_cifar10.tex").read_text()


def test_runs_at_another_lr_or_seed_are_ignored_and_listed_unused(seeded):
    root, _, text, runs = seeded
    unused = text.split("## Runs used by no table or figure")[1]
    for name in [f"a_lr{lr}_s{seed}" for lr in (1, 5) for seed in (100, 101, 102, 103)] + [
            "a_s104", "b_lr2_s100", "c_lr1_s102", "no99"]:
        assert rel(root, runs[name]) in unused, name
    for name in ("a_s100", "a_s101", "a_s102", "a_s103", "c_s100", "c_s101", "d_s100", "d_s101", "e_s100"):
        assert rel(root, runs[name]) not in unused, name


def test_a_report_with_one_seed_per_cell_has_no_seed_columns(one_seed):
    plain, more = one_seed
    for path in sorted(plain.glob("table*")):
        assert path.read_bytes() == (more / path.name).read_bytes(), path.name
    assert (plain / "table09_small_cifar10.csv").read_text().splitlines()[0] == CSV_HEADER
    markdown = (more / "table09_small_cifar10.md").read_text()
    assert "[mean" not in markdown and "Where a cell has runs of more" not in markdown
    assert "error bars" not in (more / "REPORT.md").read_text()


# ----------------------------------------------------------------------------- Figure 6
def panel_titles(drawn) -> list[str]:
    return [ax.get_title() for ax in drawn.figure.axes]


def drawn_lines(ax) -> list:
    """The lines of ``ax`` with points, not the markers and caps of error bars (no line style)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) and line.get_linestyle() != "None"]


def error_bars(ax) -> list[tuple[float, float, float]]:
    """(x, low, high) of every error bar drawn in ``ax``."""
    bars = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            for segment in container[2][0].get_segments():
                (x, low), (_, high) = segment
                bars.append((float(x), float(low), float(high)))
    return sorted(bars)


def test_figure6_has_one_panel_per_width_with_that_widths_paper_values(seeded):
    root, _, _, _ = seeded
    drawn = figures.figure6(context(root))
    assert panel_titles(drawn) == ["width 8", "width 16"]
    first, second = drawn.figure.axes
    assert first.get_shared_x_axes().joined(first, second) and first.get_shared_y_axes().joined(first, second)
    reference = paper.table(9)
    for ax, width in ((first, 8), (second, 16)):
        squares = sorted(float(y) for c in ax.collections if isinstance(c, PathCollection)
                         for _, y in c.get_offsets())
        expected = sorted(reference.loc[reference["width"] == width, "value"].astype(float))
        assert squares == pytest.approx(expected), width       # 5 rules x 7 sizes, this width only
    assert drawn.points == 5                                   # A, C, D, E at width 8; B at width 16
    normal = [line for line in drawn_lines(first) if line.get_color() == figures.RULE_COLORS["normal"]]
    assert len(normal) == 1 and sorted(zip(normal[0].get_xdata(), normal[0].get_ydata())) == \
        [(450, pytest.approx(31.0)), (45000, pytest.approx(50.0))]
    assert "widths drawn: 8, 16 (every width with runs)" in drawn.notes


def test_figure6_draws_mean_and_sd_beside_the_paper_protocol_point(seeded):
    root, _, _, _ = seeded
    drawn = figures.figure6(context(root))
    first, second = drawn.figure.axes
    bars = error_bars(first)
    expected = sorted((size, statistics.mean(v) - statistics.stdev(v), statistics.mean(v) + statistics.stdev(v))
                      for (_, _, size), v in EXPECTED.items())
    assert len(bars) == len(expected) and error_bars(second) == []
    by_low = sorted(bars, key=lambda bar: bar[1])
    for (x, low, high), (size, want_low, want_high) in zip(by_low, sorted(expected, key=lambda e: e[1])):
        assert (low, high) == (pytest.approx(want_low), pytest.approx(want_high))
        assert x != size and 2 ** -0.5 < x / size < 2 ** 0.5    # beside the point, not on it
    assert any(note.startswith("error bars: mean ± SD (ddof 1)") and "for the 4 cells" in note
               for note in drawn.notes)
    # one legend for the figure, with the rules, the paper's squares and the error bars
    assert len(drawn.figure.legends) == 1 and all(ax.get_legend() is None for ax in drawn.figure.axes)
    labels = legend_texts(drawn)
    assert {"Normal", "FA", "DFA", "my_rule", "paper (faint squares)", SPREAD_LABEL} <= set(labels)


def test_fig6_widths_chooses_the_panels(seeded):
    root, _, _, _ = seeded
    drawn = figures.figure6(context(root, (64, 8, 16)))
    assert panel_titles(drawn) == ["width 8", "width 16", "width 64"]
    texts = [text.get_text() for text in drawn.figure.axes[2].texts]
    assert "no runs" in texts
    assert "widths drawn: 8, 16, 64 (chosen with --fig6-widths)" in drawn.notes


def test_figure6_without_runs_draws_the_papers_widths_as_panels(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    drawn = figures.figure6(context(root))
    assert panel_titles(drawn) == ["width 8", "width 512"]
    assert SPREAD_LABEL not in legend_texts(drawn) and drawn.points == 0


# ----------------------------------------------------------------------------- rules beyond the paper
def test_plugin_rule_colours_cannot_be_taken_for_a_paper_rule():
    paper_colors = [np.array(to_rgb(c)) for c in figures.RULE_COLORS.values()]
    closest_paper_pair = min(np.linalg.norm(a - b) for a, b in itertools.combinations(paper_colors, 2))
    for color in figures.FALLBACK_COLORS:
        nearest = min(np.linalg.norm(np.array(to_rgb(color)) - p) for p in paper_colors)
        assert nearest >= closest_paper_pair, color       # the old fallback #31a354 was 0.16 from FA's green
    markers = [marker for _, marker in figures.EXTRA_STYLES]
    assert len(set(markers)) == len(markers) and figures.RULE_MARKER not in markers
    colors = figures.rule_colors(["my_rule", "normal"])
    assert figures.rule_marker("normal", colors["normal"]) == figures.RULE_MARKER
    assert figures.rule_marker("my_rule", colors["my_rule"]) in markers
    assert figures.rule_colors(["my_rule"]) == figures.rule_colors(["my_rule"])       # from the name alone


def test_plugin_rule_lines_use_its_marker(seeded):
    root, _, _, _ = seeded
    ctx = context(root)
    drawn = figures.figure6(ctx)
    lines = [line for ax in drawn.figure.axes for line in drawn_lines(ax) if line.get_color() == ctx.color("my_rule")]
    assert lines and all(line.get_marker() == ctx.marker("my_rule") != figures.RULE_MARKER for line in lines)


def test_report_names_every_table_and_figure_of_a_rule_beyond_the_paper(seeded):
    _, _, text, _ = seeded
    section = text.split("## Rules beyond the paper")[1].split("\n## ")[0]
    assert "- `my_rule`: Table 9; Figures 3, 6" in section


# ----------------------------------------------------------------------------- code size
def test_no_report_function_is_longer_than_60_lines():
    long = []
    for path in sorted((REPO / "walign" / "report").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.name}: {node.name} ({lines} lines)")
    assert not long, long
