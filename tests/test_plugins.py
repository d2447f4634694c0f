"""A rule from outside walign: the example package in examples/my_rule, found through a real
entry point (a distribution's metadata on the path, exactly what `pip install` leaves) or through
the short form `+rule_module=`, trains, is listed, is checked like walign's own, and appears in
the report beside Normal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_rule"
FAST = ["width=8", "epochs=1", "progress=none", "device=cpu"]


def installed(tmp: Path, entry: str = "my_rule = my_rule") -> Path:
    """A site directory holding the example's distribution metadata with its entry point."""
    site = tmp / "site"
    info = site / "walign_my_rule-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: walign-my-rule\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[walign.rules]\n{entry}\n")
    return site


def walign(*args, path=(), cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(str(p) for p in [*path, EXAMPLE])}
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """my_rule (through its entry point) and normal, one epoch each on the embedded sample, as a
    sweep: the README's `python main.py -m rule=my_rule,normal ...`."""
    tmp = tmp_path_factory.mktemp("plugin")
    out = tmp / "results"
    proc = walign("-m", "rule=my_rule,normal", *FAST, f"results_dir={out}", path=[installed(tmp)])
    assert proc.returncode == 0, proc.stderr
    assert "walign sweep: 2 complete" in proc.stdout
    return tmp, out


def test_an_installed_rule_trains_and_is_listed(results):
    tmp, out = results
    (summary,) = (out / "embedded" / "my_rule").glob("*/summary.json")
    assert json.loads(summary.read_text())["status"] == "complete"
    listed = walign("rule=nope", path=[installed(tmp / "again")])
    assert listed.returncode == 2 and "my_rule" in listed.stderr.splitlines()[0]


def test_the_short_form_imports_a_module_without_installing(tmp_path):
    proc = walign("+rule_module=my_rule", "rule=my_rule", "rule.layers=3", *FAST, f"results_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    (summary,) = tmp_path.glob("embedded/my_rule/*/summary.json")
    assert json.loads(summary.read_text())["layers"] == 3
    missing = walign("+rule_module=no_such_module", "rule=normal", *FAST, f"results_dir={tmp_path}")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "rule_module no_such_module cannot be imported" in missing.stderr


def test_a_plugin_rules_options_are_checked_like_walign_own(tmp_path):
    site = installed(tmp_path)
    wrong = walign("rule=my_rule", "rule.layers=many", *FAST, f"results_dir={tmp_path}", path=[site])
    assert wrong.returncode == 2 and "rule.layers must be an integer, got 'many'" in wrong.stderr
    unknown = walign("rule=my_rule", "+rule.depth=2", *FAST, f"results_dir={tmp_path}", path=[site])
    assert unknown.returncode == 2 and "its options: layers" in unknown.stderr
    assert not (tmp_path / "embedded").exists()


def test_a_broken_plugin_is_one_warning_and_the_other_rules_still_run(tmp_path):
    site = installed(tmp_path, "broken = no_such_module_anywhere")
    proc = walign("rule=normal", *FAST, f"results_dir={tmp_path}", path=[site])
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "rule plugin broken" in line]
    assert len(warnings) == 1 and "Traceback" not in proc.stderr


def test_the_report_shows_the_plugin_rule_beside_normal(results):
    tmp, out = results
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [installed(tmp / "report-env"), EXAMPLE]))}
    report = subprocess.run([sys.executable, "-m", "walign.report", str(out), "--out", str(tmp / "report"),
                             "--as", "cifar10=embedded"], capture_output=True, text=True, timeout=600, env=env)
    assert report.returncode == 0, report.stderr
    table = (tmp / "report" / "table06_width_cifar10.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "my_rule" in rows and " / — " in rows["my_rule"]   # ours, no paper value
    assert rows["Normal"].split("|")[2].strip().split(" / ")[0] != "—"  # Normal's width-8 cell is filled
