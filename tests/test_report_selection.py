"""Tests of the report's run selection beyond the basics of test_report.py: which runs are variants
(defaults read from the Hydra configuration), rules beyond the paper's (extra rows and lines), and
the widths Figure 6 draws. Run directories are written by test_report.write_run."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from test_report import REPO, cell, cells, command, rel, report, write_run
from walign import paper
from walign.report import figures, tables, variants
from walign.report.collect import scan


def variant_of(root: Path, directory: Path) -> str:
    runs = scan(root).runs
    return runs.loc[runs["path"] == rel(root, directory), "variant"].iloc[0]


def context(root: Path, fig6_widths=None) -> figures.Context:
    """What draw_all hands the figures, for drawing one figure directly."""
    usable = scan(root).usable()
    built = {spec.number: tables.build(spec, usable) for spec in tables.TABLES}
    return figures.Context(built, usable, {}, fig6_widths, figures.rule_colors(sorted(set(usable["rule"]))))


def legend_texts(drawn: figures.Drawn) -> list[str]:
    return [text.get_text() for legend in drawn.figure.legends for text in legend.get_texts()]


# ----------------------------------------------------------------------------- variants
def test_identity_options_at_their_defaults_are_the_paper_setting(tmp_path):
    root = tmp_path / "results"
    plain = write_run(root, rule="dfa", projection="full", projection_std=None)
    shared = write_run(root, rule="dfa", lr=2, projection="shared", projection_std=None)
    fp32 = write_run(root, lr=2, compute_precision="fp32")
    bf16 = write_run(root, lr=5, compute_precision="bf16")
    arch = write_run(root, lr=0.5, arch="kmnist")
    eager = write_run(root, lr=0.1, compile=False)
    compiled = write_run(root, lr=0.1, seed=3, compile=True)
    unknown = write_run(root, lr=0.2, foo=1)
    # gd_wstar's scoring schedule and probe counts only change what is measured
    measured = write_run(root, rule="gd_wstar", accs=[0.1] * 3, alignment={3: [0.3] * 7}, score_epochs=[1, 3],
                         iterations=10, probes=5, permuted=True)
    strided = write_run(root, rule="gd_wstar", lr=2, accs=[0.1], score_strides=[1, 2, 2])
    add = write_run(root, dataset="add", width=16, lr=0.001, losses=[(0.5, 0.4)], generator="faithful",
                    data_seed=99, precision="float64", sequences=400, length=100, train_size=300)
    short = write_run(root, dataset="add", width=16, lr=0.002, losses=[(0.5, 0.4)], length=50, train_size=300)
    assert variant_of(root, plain) == "" and variant_of(root, fp32) == "" and variant_of(root, add) == ""
    assert variant_of(root, measured) == ""
    assert variant_of(root, shared) == "projection=shared"
    assert variant_of(root, bf16) == "compute_precision=bf16"
    assert variant_of(root, arch) == "arch=kmnist"
    assert variant_of(root, eager) == "" and variant_of(root, compiled) == "compile=true"
    assert variant_of(root, unknown) == "foo=1 (not a declared option)"
    assert variant_of(root, strided) == "score_strides=[1, 2, 2]"
    assert variant_of(root, short) == "length=50"
    # a run from before compute_precision existed (write_run's others lack it) counts as fp32
    assert "compute_precision" not in json.loads((plain / "summary.json").read_text())


def test_an_option_that_is_not_declared_makes_the_run_unused(tmp_path):
    root = tmp_path / "results"
    odd = write_run(root, accs=[0.9], foo=1)
    text = report(root, tmp_path / "out")
    assert cell(cells(tmp_path / "out", 6), method="Normal", width=8)["status"] == "missing"
    assert f"- `{rel(root, odd)}` (variant: foo=1 (not a declared option))" in text


def copy_conf(tmp_path: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """conf/ copied, with ``edits``: file -> (old text, new text)."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    for name, (old, new) in edits.items():
        text = (conf / name).read_text()
        assert old in text
        (conf / name).write_text(text.replace(old, new))
    return conf


def test_the_defaults_come_from_the_configuration(tmp_path, monkeypatch):
    root = tmp_path / "results"
    full = write_run(root, rule="dfa", projection="full", projection_std=None)
    shared = write_run(root, rule="dfa", lr=2, projection="shared", projection_std=None)
    clean = write_run(root, dataset="add", width=16, lr=0.001, losses=[(0.5, 0.4)], generator="clean", train_size=300)
    assert (variant_of(root, full), variant_of(root, shared)) == ("", "projection=shared")
    assert variant_of(root, clean) == "generator=clean"

    # a data-set default changed in its declaration (the entry the dataset=add config node is made
    # from) reclassifies the runs; rule defaults come from the rules' declarations in the same way
    # (see the rule-option test below)
    from walign.datasets import DATASETS
    monkeypatch.setitem(DATASETS["add"].config, "generator", "clean")
    monkeypatch.setattr(variants, "CONF_DIR", copy_conf(tmp_path, {}))   # defaults not yet looked up
    assert variant_of(root, clean) == ""
    faithful = write_run(root, dataset="add", width=16, lr=0.002, losses=[(0.5, 0.4)], generator="faithful",
                         train_size=300)
    assert variant_of(root, faithful) == "generator=faithful"
    # and the cells follow: the clean-generator run now fills the Add-task cells
    report(root, tmp_path / "out")
    assert cell(cells(tmp_path / "out", 8), method="Normal", width=16, metric="test_loss_best")["chosen_run"] \
        == rel(root, clean)


def test_the_configuration_is_composed_once_per_dataset_and_rule(tmp_path, monkeypatch):
    conf = copy_conf(tmp_path, {})
    monkeypatch.setattr(variants, "CONF_DIR", conf)   # a directory no earlier test composed
    composed = []
    real = variants._compose
    monkeypatch.setattr(variants, "_compose", lambda *args: composed.append(args[1:]) or real(*args))
    root = tmp_path / "results"
    for lr in (1, 2, 5):
        write_run(root, rule="dfa", lr=lr)
        write_run(root, rule="fa", lr=lr)
    scan(root)
    scan(root)
    assert sorted(composed) == [("dfa",), ("fa",)]


def test_without_the_configuration_the_rule_declarations_decide_and_the_report_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(variants, "CONF_DIR", tmp_path / "no-conf")
    root = tmp_path / "results"
    shared = write_run(root, rule="dfa", projection="shared", projection_std=None)
    full = write_run(root, rule="dfa", lr=2, projection="full", projection_std=None)
    clean = write_run(root, dataset="add", width=16, lr=0.001, losses=[(0.5, 0.4)], generator="clean", train_size=300)
    assert variant_of(root, shared) == "projection=shared" and variant_of(root, full) == ""
    assert variant_of(root, clean) == ""          # data-set options cannot be judged without conf/
    text = report(root, tmp_path / "out")
    note = text.split("## Variant test")[1].split("\n## ")[0]
    assert str(tmp_path / "no-conf") in note and "rule declarations alone" in note
    assert "data-set options" in note


def test_the_normal_report_has_no_variant_test_note(tmp_path):
    root = tmp_path / "results"
    write_run(root)
    plugin = write_run(root, rule="my_rule", accs=[0.5])   # no file in conf/
    odd = write_run(root, rule="my_rule", lr=2, accs=[0.5], foo=1)
    # my_rule is not registered in this process (a plugin not installed here): its options cannot be
    # judged, so they do not make its runs variants
    assert variant_of(root, plugin) == "" and variant_of(root, odd) == ""
    # a data set that is not registered here: its metrics cannot be summarised, so its runs cannot
    # be believed (walign.verdict) and are listed, not used
    foreign = write_run(root, dataset="my_data", rule="my_rule", accs=[0.5])
    text = report(root, tmp_path / "out")
    assert "## Variant test" not in text
    assert f"- `{rel(root, foreign)}/summary.json`: is a run of dataset 'my_data', which is not registered here" in text


# ----------------------------------------------------------------------------- rules beyond the paper
def paper_rule_runs(root: Path) -> None:
    write_run(root, lr=1, accs=[0.40, 0.50])
    write_run(root, dataset="kmnist", rule="fa", width=16, lr=2, accs=[0.70])
    write_run(root, dataset="small_cifar10", train_size=450, rule="fa", width=8, lr=2, accs=[0.26])
    write_run(root, dataset="add", rule="normal", width=16, lr=0.001, losses=[(0.55, 0.45)], train_size=300)
    write_run(root, rule="gd_wstar", width=8, lr=5, accs=[0.1] * 3, alignment={3: [0.4] * 7})
    write_run(root, width=8, lr=0.001, accs=[0.3], parameterization="standard", optimizer="adam")


def extra_rule_runs(root: Path) -> dict[str, Path]:
    return {
        "c8_lr1": write_run(root, rule="my_rule", lr=1, accs=[0.30, 0.40]),
        "c8_lr2": write_run(root, rule="my_rule", lr=2, accs=[0.45, 0.20]),
        "c8_seed100": write_run(root, rule="my_rule", lr=1, seed=100, accs=[0.99]),   # not the paper's seed
        "c8_lr05": write_run(root, rule="my_rule", lr=0.5, accs=[0.35]),            # Figure 3 only
        "c256": write_run(root, rule="my_rule", width=256, lr=5, accs=[0.55]),
        "k16": write_run(root, dataset="kmnist", rule="my_rule", width=16, lr=5, accs=[0.60]),
        "s450": write_run(root, dataset="small_cifar10", train_size=450, rule="my_rule", width=8, lr=1,
                          accs=[0.22, 0.24]),
        "rnn16": write_run(root, dataset="add", rule="my_rnn_rule", width=16, lr=0.001,
                           losses=[(0.9, 0.8), (0.7, 0.75)], train_size=300),
    }


@pytest.fixture(scope="module")
def beyond(tmp_path_factory):
    """Two reports: paper rules only, and the same runs plus runs of two rules the paper lacks."""
    base = tmp_path_factory.mktemp("base")
    paper_rule_runs(base / "results")
    report(base / "results", base / "out")
    root = tmp_path_factory.mktemp("beyond") / "results"
    paper_rule_runs(root)
    runs = extra_rule_runs(root)
    out = root.parent / "out"
    text = report(root, out)
    return base / "out", root, out, text, runs


def test_extra_rules_get_rows_with_the_same_protocol_and_no_paper_value(beyond):
    _, root, out, _, runs = beyond
    t6 = cells(out, 6)
    mine = cell(t6, method="my_rule", width=8)
    assert mine["ours"] == pytest.approx(45.0)                    # best over epochs, then over lr {1, 2}
    assert mine["chosen_run"] == rel(root, runs["c8_lr2"])
    assert mine["candidate_runs"] == 2                             # seed 100 and lr 0.5 are not candidates
    assert mine["rule"] == "my_rule" and mine["status"] == "ok"
    assert math.isnan(mine["paper"]) and math.isnan(mine["difference"])
    assert cell(t6, method="my_rule", width=256)["ours"] == pytest.approx(55.0)
    assert cell(t6, method="my_rule", width=16)["status"] == "missing"   # the CSV has the whole row
    assert len(t6[t6["method"] == "my_rule"]) == len(paper.table(6)["width"].unique())
    assert cell(cells(out, 7), method="my_rule", width=16)["ours"] == pytest.approx(60.0)
    assert cell(cells(out, 9), method="my_rule", width=8, train_size=450)["ours"] == pytest.approx(24.0)
    assert cell(cells(out, 1), method="my_rule", width=256)["ours"] == pytest.approx(55.0)
    t8 = cells(out, 8)
    assert cell(t8, method="my_rnn_rule", width=16, metric="train_loss_best")["ours"] == pytest.approx(0.7)
    assert cell(t8, method="my_rnn_rule", width=16, metric="test_loss_best")["ours"] == pytest.approx(0.75)
    assert "my_rule" not in set(t8["method"]) and "my_rnn_rule" not in set(t6["method"])
    markdown = (out / "table06_width_cifar10.md").read_text()
    assert "| my_rule | 45.0 / — | — / — |" in markdown
    assert "beyond the paper's (my_rule)" in markdown
    assert "\\_rule & 45.0 / -- &" in (out / "table06_width_cifar10.tex").read_text()


def test_extra_rows_are_not_counted_as_paper_cells(beyond):
    base, _, out, text, _ = beyond
    for number in (1, 6, 7, 8, 9):
        before = (base / f"{tables.TABLES[number - 1].stem}.md").read_text()
        count = next(line for line in before.splitlines() if line.startswith("Filled "))
        assert count in (out / f"{tables.TABLES[number - 1].stem}.md").read_text()
    base_text = (base / "REPORT.md").read_text()
    total = next(line for line in base_text.splitlines() if line.startswith("Missing cells in all"))
    assert total in text
    section = text.split("## Rules beyond the paper")[1].split("\n## ")[0]
    assert "- `my_rnn_rule`: Table 8" in section and "- `my_rule`: Tables 1, 6, 7, 9" in section


def test_tables_without_extra_runs_are_unchanged_and_the_paper_rows_too(beyond):
    base, _, out, _, _ = beyond
    for spec in tables.TABLES:
        for ext in ("md", "csv", "tex"):
            before, after = (base / f"{spec.stem}.{ext}").read_text(), (out / f"{spec.stem}.{ext}").read_text()
            if spec.number in (2, 3, 4, 5, 10):
                assert after == before, spec.stem
            else:   # the paper's rows and columns are untouched; rows are only added
                assert set(before.splitlines()) <= set(after.splitlines()) | {""}, spec.stem


def test_extra_rule_runs_are_used_and_the_off_protocol_ones_are_not(beyond):
    _, root, _, text, runs = beyond
    unused = text.split("## Runs used by no table or figure")[1]
    assert rel(root, runs["c8_seed100"]) in unused
    for name in ("c8_lr1", "c8_lr2", "c8_lr05", "c256", "k16", "s450", "rnn16"):
        assert rel(root, runs[name]) not in unused, name


def test_extra_rules_are_lines_in_figures_3_4_6_and_9_with_a_colour_of_their_own(beyond):
    _, root, _, _, _ = beyond
    ctx = context(root)
    color = ctx.color("my_rule")
    assert color in figures.FALLBACK_COLORS and color not in figures.RULE_COLORS.values()
    assert figures.rule_colors(["my_rule"])["my_rule"] == color          # from the name alone
    assert ctx.color("my_rnn_rule") != color
    for draw, rule in ((figures.figure3, "my_rule"), (figures.figure4, "my_rule"), (figures.figure6, "my_rule"),
                       (figures.figure9, "my_rnn_rule")):
        drawn = draw(ctx)
        assert rule in legend_texts(drawn), draw.__name__
        lines = [line for ax in drawn.figure.axes for line in ax.get_lines()
                 if line.get_color() == ctx.color(rule) and len(line.get_xdata())]
        assert lines, draw.__name__
    # Figure 3 plots every lr of the grid it shows: lr 0.5, 1 and 2 at width 8
    fig3 = figures.figure3(ctx)
    xs = sorted(x for line in fig3.figure.axes[0].get_lines() if line.get_color() == color
                for x in line.get_xdata())
    assert xs == [0.5, 1.0, 2.0, 5.0]        # width 8: 0.5, 1, 2; width 256: 5


def test_rule_colours_are_deterministic_and_distinct():
    names = [f"rule_{i}" for i in range(len(figures.FALLBACK_COLORS))]
    colors = figures.rule_colors(names)
    assert len(set(colors.values())) == len(names)
    assert figures.rule_colors(list(reversed(names))) == colors
    assert figures.rule_colors(["normal", "sign_symmetry"]) == {"normal": figures.RULE_COLORS["normal"],
                                                                "sign_symmetry": figures.RULE_COLORS["sign_symmetry"]}


# ----------------------------------------------------------------------------- Figure 6 and Table 9 widths
SMALL = {(8, 45): 0.20, (8, 150): 0.22, (8, 450): 0.25, (16, 45): 0.21, (16, 150): 0.24, (16, 450): 0.27,
         (32, 45): 0.23, (32, 150): 0.26, (32, 450): 0.30}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small") / "results"
    for (width, size), acc in SMALL.items():
        write_run(root, dataset="small_cifar10", train_size=size, rule="normal", width=width, lr=1,
                  accs=[acc / 2, acc])
        write_run(root, dataset="small_cifar10", train_size=size, rule="normal", width=width, lr=2,
                  accs=[acc - 0.05])
    return root


def test_table9_fills_every_printed_cell_that_has_runs(small, tmp_path):
    report(small, tmp_path / "out")
    t9 = cells(tmp_path / "out", 9)
    reference = paper.table(9)
    for (width, size), acc in SMALL.items():
        ours = cell(t9, method="Normal", width=width, train_size=size)
        printed = reference[(reference["method"] == "Normal") & (reference["width"] == width)
                            & (reference["train_size"] == size)]["value"].iloc[0]
        assert ours["ours"] == pytest.approx(100 * acc) and ours["paper"] == pytest.approx(printed)
    assert (t9["status"] != "missing").sum() == len(SMALL)
    assert len(t9) == len(reference)


def test_figure6_draws_every_width_with_runs(small, tmp_path):
    drawn = figures.figure6(context(small))
    assert [ax.get_title() for ax in drawn.figure.axes] == ["width 8", "width 16", "width 32"]   # one panel each
    assert drawn.points == len(SMALL)
    assert "widths drawn: 8, 16, 32 (every width with runs)" in drawn.notes
    for ax in drawn.figure.axes:
        assert len([line for line in ax.get_lines() if len(line.get_xdata())]) == 1   # Normal at this width
        # the paper's points for this width only (faint squares): 5 rules x 7 sizes
        assert sum(len(c.get_offsets()) for c in ax.collections) == 5 * 7


def test_fig6_widths_picks_the_widths(small, tmp_path):
    text = report(small, tmp_path / "out", "--fig6-widths", "512,16")
    row = next(line for line in text.splitlines() if line.startswith("| Figure 6"))
    assert row.endswith("| 3 |")                                            # only width 16 has runs
    assert "widths drawn: 16, 512 (chosen with --fig6-widths)" in text
    drawn = figures.figure6(context(small, (512, 16)))
    assert [ax.get_title() for ax in drawn.figure.axes] == ["width 16", "width 512"]


def test_figure6_without_runs_draws_the_papers_widths(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    text = report(root, tmp_path / "out")
    assert "widths drawn: 8, 512 (the paper's; no runs)" in text
    drawn = figures.figure6(context(root))
    assert [ax.get_title() for ax in drawn.figure.axes] == ["width 8", "width 512"]


def test_figure6_also_draws_a_width_the_paper_did_not_print(tmp_path):
    root = tmp_path / "results"
    wide = write_run(root, dataset="small_cifar10", train_size=45, rule="fa", width=1024, lr=1, accs=[0.3])
    text = report(root, tmp_path / "out")
    assert "widths drawn: 1024 (every width with runs)" in text
    assert rel(root, wide) not in text.split("## Runs used by no table or figure")[1]
    row = next(line for line in text.splitlines() if line.startswith("| Figure 6"))
    assert row.endswith("| 1 |")


@pytest.mark.parametrize("value", ["8,x", "0", "", "8,-16"])
def test_bad_fig6_widths_is_one_line_and_exit_2(value):
    proc = command(".", "--fig6-widths", value)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--fig6-widths" in lines[0] and "Traceback" not in proc.stderr
