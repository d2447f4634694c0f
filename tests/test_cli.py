"""End-to-end tests of ``python main.py``: real subprocesses, real training, real run directories.

Training subprocesses are the slow part (seconds each on a small CPU machine), so there are only
three: one tiny run on the embedded sample (shared by the tests that inspect it and rerun it) and
one diverging run on a tiny fake CIFAR-10. Bad-input cases stop before any training starts.
"""
from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FAST = ["width=8", "epochs=1", "lr=1", "batch_size=100", "progress=none", "device=cpu"]
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")
RECORD_KEYS = {"epoch", "train_loss", "val_acc", "test_acc", "seconds"}

# The original CIFAR-10 batches.meta, byte for byte: torchvision checks its md5 even when the batch
# md5s are not checked (dataset.verify_md5=false).
ORIGINAL_META = (
    b"\x80\x02}q\x01(U\x13num_cases_per_batchq\x02M\x10'U\x0blabel_namesq\x03]q\x04(U\x08airplaneq\x05"
    b"U\nautomobileq\x06U\x04birdq\x07U\x03catq\x08U\x04deerq\tU\x03dogq\nU\x04frogq\x0bU\x05horseq\x0c"
    b"U\x04shipq\rU\x05truckq\x0eeU\x07num_visq\x0fM\x00\x0cu."
)


def walign(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def run_dirs(results: Path) -> list[Path]:
    """Run directories (those holding a summary.json) under ``results``, Hydra's own folder excluded."""
    return sorted(p.parent for p in results.rglob("summary.json") if ".hydra" not in p.parts)


def only_run_dir(results: Path) -> Path:
    dirs = run_dirs(results)
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_records(directory: Path) -> list[dict]:
    lines = (directory / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


# ----------------------------------------------------------------------------- a complete run
@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    proc = walign(f"results_dir={results}", *FAST)
    return results, proc


def test_embedded_run_writes_a_complete_run_directory(embedded_run):
    results, proc = embedded_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    directory = only_run_dir(results)
    assert directory.relative_to(results).parts[:2] == ("embedded", "align_ada")
    for name in RUN_FILES:
        assert (directory / name).is_file(), name
    assert str(directory) in proc.stdout and "complete" in proc.stdout

    records = read_records(directory)
    assert len(records) == 1
    assert set(records[0]) == RECORD_KEYS
    record = records[0]
    assert record["epoch"] == 1
    assert math.isfinite(record["train_loss"]) and record["train_loss"] > 0
    # accuracy is a count of right answers over the whole batches evaluated: 1500 validation and
    # 1000 test images (read from the sample file) in batches of 100, all of them evaluated
    pack = np.load(REPO / "walign" / "assets" / "cifar10_sample.npz")
    for key, split in (("val_acc", "val"), ("test_acc", "test")):
        evaluated = len(pack[f"{split}_labels"]) // 100 * 100
        right = record[key] * evaluated
        assert 0 <= right <= evaluated and right == pytest.approx(round(right), abs=1e-6), (key, record[key])
    assert record["seconds"] > 0

    summary = json.loads((directory / "summary.json").read_text())
    assert summary["status"] == "complete"
    expected = {"dataset": "embedded", "rule": "align_ada", "width": 8, "lr": 1.0, "epochs": 1,
                "batch_size": 100, "seed": 99}
    assert {k: summary[k] for k in expected} == expected
    # one epoch: it is the best and the last, so every summary value is that record's
    assert summary["best_val_acc"] == summary["final_val_acc"] == record["val_acc"]
    assert summary["best_test_acc"] == summary["final_test_acc"] == summary["test_acc_at_best_val"] == record["test_acc"]
    assert summary["best_val_epoch"] == 1 and summary["final_train_loss"] == record["train_loss"]
    assert summary["epochs_done"] == 1
    assert summary["wall_seconds"] > 0
    assert summary["device"].startswith("cpu") and torch.backends.cpu.get_cpu_capability() in summary["device"]
    import walign
    assert summary["walign_version"] == walign.__version__

    config = (directory / "config.yaml").read_text()
    assert "width: 8" in config and "name: align_ada" in config and "name: embedded" in config


def test_rerunning_a_complete_run_skips_it(embedded_run):
    results, first = embedded_run
    assert first.returncode == 0, first.stderr
    directory = only_run_dir(results)
    summary_before = (directory / "summary.json").read_bytes()
    metrics_before = (directory / "metrics.jsonl").read_bytes()
    mtime_before = (directory / "summary.json").stat().st_mtime_ns

    proc = walign(f"results_dir={results}", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stdout
    assert str(directory) in proc.stdout
    assert (directory / "summary.json").read_bytes() == summary_before
    assert (directory / "summary.json").stat().st_mtime_ns == mtime_before
    assert (directory / "metrics.jsonl").read_bytes() == metrics_before
    assert run_dirs(results) == [directory]


# ----------------------------------------------------------------------------- bad input
BAD_INPUT = [
    pytest.param(["rule=nope"], ["nope", "align_ada", "normal"], id="unknown-rule"),
    pytest.param(["dataset=nope"], ["nope", "embedded", "cifar10"], id="unknown-dataset"),
    pytest.param(["width=0"], ["width"], id="width-zero"),
    pytest.param(["width=-3"], ["width", "-3"], id="width-negative"),
    pytest.param(["lr=-1"], ["lr", "-1"], id="lr-negative"),
    pytest.param(["epochs=0"], ["epochs"], id="epochs-zero"),
    pytest.param(["widht=8"], ["widht", "width"], id="unknown-key"),
    pytest.param(["dataset=cifar10", "dataset.root={tmp}/nothing_here"], ["{tmp}/nothing_here"], id="missing-data"),
]


@pytest.mark.parametrize("args, mentions", BAD_INPUT)
def test_bad_input_is_one_line_on_stderr(tmp_path, args, mentions):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = walign(f"results_dir={tmp_path / 'results'}", "progress=none", *args, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for text in mentions:
        assert text.format(tmp=tmp_path) in lines[0], lines[0]
    assert run_dirs(tmp_path / "results") == []  # nothing was trained or recorded


# ----------------------------------------------------------------------------- a diverging run
def write_tiny_cifar10(root: Path) -> None:
    """5 x 1040 random training images (5000 validation + 200 training) and 100 test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name, n in [(f"data_batch_{i}", 1040) for i in range(1, 6)] + [("test_batch", 100)]:
        batch = {"data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
                 "labels": rng.randint(0, 10, size=n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(ORIGINAL_META)


def test_diverging_run_is_recorded_as_diverged(tmp_path):
    write_tiny_cifar10(tmp_path / "data")
    results = tmp_path / "results"
    proc = walign(f"results_dir={results}", "dataset=small_cifar10", f"dataset.root={tmp_path / 'data'}",
                  "dataset.verify_md5=false", "dataset.train_size=200", "width=8", "epochs=5", "lr=1e6",
                  "progress=none", "device=cpu")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "diverged" in proc.stdout
    directory = only_run_dir(results)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert (summary["dataset"], summary["lr"], summary["batch_size"], summary["train_size"]) == \
        ("small_cifar10", 1e6, 100, 200)  # the largest lr a launch accepts (walign.limits)
    records = read_records(directory)
    assert 1 <= len(records) == summary["epochs_done"] < 5  # stopped at the first non-finite loss
    assert records[-1]["train_loss"] is None  # non-finite, written as null: the files stay strict JSON
    assert all(math.isfinite(r["train_loss"]) for r in records[:-1])
    json.loads((directory / "summary.json").read_text(), parse_constant=pytest.fail)  # no NaN/Infinity
    assert not (directory / "error.log").exists()


def test_integer_and_float_learning_rates_name_the_same_run():
    from omegaconf import OmegaConf
    from walign.spec import RunSpec
    from walign.configs import rule_node
    from walign.datasets import DATASETS

    def directory(lr):
        cfg = OmegaConf.load(REPO / "conf" / "config.yaml")
        cfg.dataset = OmegaConf.create(DATASETS["embedded"].node())
        cfg.rule = OmegaConf.create(rule_node("align_ada"))
        del cfg["defaults"], cfg["hydra"]
        cfg.lr = lr
        spec = RunSpec.from_config(cfg)
        return spec.run_directory()
    assert directory(5) == directory(5.0)
    assert directory(5) != directory(2.0)
