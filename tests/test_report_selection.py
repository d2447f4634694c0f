"""Tests of the report's run selection beyond the basics of test_report.py: which runs are variants
(defaults read from the Hydra configuration). Run directories are written by test_report.write_run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_report import REPO, cell, cells, rel, report, write_run
from walign.report import variants
from walign.report.collect import scan


def variant_of(root: Path, directory: Path) -> str:
    runs = scan(root).runs
    return runs.loc[runs["path"] == rel(root, directory), "variant"].iloc[0]


# ----------------------------------------------------------------------------- variants
def test_identity_options_at_their_defaults_are_the_paper_setting(tmp_path):
    root = tmp_path / "results"
    plain = write_run(root, rule="dfa", projection="full", projection_std=None)
    shared = write_run(root, rule="dfa", lr=2, projection="shared", projection_std=None)
    fp32 = write_run(root, lr=2, compute_precision="fp32")
    bf16 = write_run(root, lr=5, compute_precision="bf16")
    arch = write_run(root, lr=0.5, arch="kmnist")
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

    conf = copy_conf(tmp_path, {"rule/dfa.yaml": ("projection: full", "projection: shared"),
                                "dataset/add.yaml": ("generator: faithful", "generator: clean")})
    monkeypatch.setattr(variants, "CONF_DIR", conf)
    assert (variant_of(root, full), variant_of(root, shared)) == ("projection=full", "")
    assert variant_of(root, clean) == ""
    # and the cells follow: the shared-projection run now fills DFA x8
    report(root, tmp_path / "out")
    assert cell(cells(tmp_path / "out", 6), method="DFA", width=8)["chosen_run"] == rel(root, shared)


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
    assert sorted(composed) == [("cifar10", "dfa"), ("cifar10", "fa")]


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
    assert "## Variant test" not in report(root, tmp_path / "out")
