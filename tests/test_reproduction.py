"""The committed CPU reproduction (results/cpu-reproduction/) is rebuilt from its own runs.

results/cpu-reproduction/runs.tar.xz holds the config, metrics and summary of every run the report
was built from. Unpacked under results/cpu-grid (the directory the report names) and passed
through the real ``walign-report`` command, they must give the committed report, tables and CSV
byte for byte. A change anywhere on the path from a run's metrics to a reported number (accuracy
selection, best epoch, best lr, the seed spread, the formatting) fails here.

The PNG figures are left out: their bytes depend on the installed matplotlib and FreeType, which
CI does not pin; the numbers they draw are the CSVs' numbers. docs/results.md quotes the output of
scripts/table9_orderings.py on the same runs; it must still be that output.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "cpu-reproduction"
ARCHIVE = COMMITTED / "runs.tar.xz"
FIG6_WIDTHS = "8,16,32,64"  # as in docs/results.md
REBUILT = ("REPORT.md", "table08_rnn_add_task.md", "table08_rnn_add_task.csv",
           "table09_small_cifar10.md", "table09_small_cifar10.csv")
RESULTS_DOC = REPO / "docs" / "results.md"
BEGIN, END = "<!-- table9_orderings: begin -->\n", "<!-- table9_orderings: end -->\n"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    """The committed runs, unpacked under <tmp>/results/cpu-grid; returns <tmp>."""
    root = tmp_path_factory.mktemp("reproduction")
    runs = root / "results" / "cpu-grid"
    runs.mkdir(parents=True)
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(runs, filter="data")
    assert len(list(runs.rglob("summary.json"))) == 428
    return root


def test_the_committed_reproduction_is_rebuilt_byte_for_byte_from_its_runs(unpacked, tmp_path):
    report = Path(sys.executable).parent / "walign-report"
    proc = subprocess.run([str(report), "results/cpu-grid", "--out", str(tmp_path / "rebuilt"),
                           "--fig6-widths", FIG6_WIDTHS], cwd=unpacked, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in REBUILT:
        rebuilt, committed = (tmp_path / "rebuilt" / name).read_bytes(), (COMMITTED / name).read_bytes()
        if rebuilt != committed:
            pytest.fail(f"{name} differs from the committed one; first differing line:\n"
                        + next(f"- {a}\n+ {b}" for a, b in zip(committed.decode().splitlines() + [""],
                                                                  rebuilt.decode().splitlines() + [""]) if a != b))


def test_the_results_page_quotes_the_orderings_script_on_those_runs(unpacked):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "table9_orderings.py"), "results/cpu-grid"],
                          cwd=unpacked, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = RESULTS_DOC.read_text()
    quoted = page[page.index(BEGIN) + len(BEGIN):page.index(END)]
    assert quoted == proc.stdout, "docs/results.md's orderings block is not the script's output on the committed runs"
