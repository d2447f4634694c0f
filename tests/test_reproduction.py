"""The committed CPU reproduction (results/cpu-reproduction/) is rebuilt from its own runs.

results/cpu-reproduction/runs.tar.xz holds the config, metrics and summary of every run the report
was built from. Unpacked under results/cpu-grid (the directory the report names) and passed
through the real ``walign-report`` command, they must give the committed report, tables and CSV
byte for byte. A change anywhere on the path from a run's metrics to a reported number (accuracy
selection, best epoch, best lr, the seed spread, the formatting) fails here.

The PNG figures are left out: their bytes depend on the installed matplotlib and FreeType, which
CI does not pin; the numbers they draw are the CSVs' numbers.
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


def test_the_committed_reproduction_is_rebuilt_byte_for_byte_from_its_runs(tmp_path):
    runs = tmp_path / "results" / "cpu-grid"
    runs.mkdir(parents=True)
    with tarfile.open(ARCHIVE) as archive:
        archive.extractall(runs, filter="data")
    assert len(list(runs.rglob("summary.json"))) == 428

    report = Path(sys.executable).parent / "walign-report"
    proc = subprocess.run([str(report), "results/cpu-grid", "--out", "rebuilt", "--fig6-widths", FIG6_WIDTHS],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in REBUILT:
        rebuilt, committed = (tmp_path / "rebuilt" / name).read_bytes(), (COMMITTED / name).read_bytes()
        if rebuilt != committed:
            pytest.fail(f"{name} differs from the committed one; first differing line:\n"
                        + next(f"- {a}\n+ {b}" for a, b in zip(committed.decode().splitlines() + [""],
                                                                  rebuilt.decode().splitlines() + [""]) if a != b))
