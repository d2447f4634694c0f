"""A data set from outside walign: the example in examples/my_dataset (Fashion-MNIST as
``dataset=fashion_mnist``), read from small generated idx files in torchvision's layout, found
through a real entry point (a distribution's metadata on the path, what `pip install` leaves) or
through the short form `+dataset_module=`. It loads the right images into the right splits, trains
through main.py, is listed and checked like walign's own data sets, sweeps, and the report reads
its runs."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import plugin_site

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_dataset"
FAST = ["width=4", "epochs=1", "progress=none", "device=cpu"]
TRAIN, TEST = 5100, 200          # 5100 training images: the first 5000 validate, 100 train
TEST_OFFSET = 60000              # global index of the first test image (below 65536: two bytes)


# ----------------------------------------------------------------------------- generated files
def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">iiii", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">ii", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def images(indices: np.ndarray) -> np.ndarray:
    """28x28 pixels that depend on the image's global index; pixels (0,0) and (0,1) hold it."""
    x = ((indices[:, None, None] * 31 + np.arange(784).reshape(28, 28) * 7) % 256).astype(np.uint8)
    x[:, 0, 0], x[:, 0, 1] = indices % 256, indices // 256
    return x


def label(indices: np.ndarray) -> np.ndarray:
    return (indices * 7 + 2) % 10


def index_of(inputs: torch.Tensor) -> np.ndarray:
    """The global index stored in (N, 1, 28, 28) uint8 images."""
    x = inputs.numpy().astype(np.int64)
    return x[:, 0, 0, 0] + 256 * x[:, 0, 0, 1]


def write_fashion_mnist(root: Path) -> Path:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, idx in (("train", np.arange(TRAIN)), ("t10k", np.arange(TEST_OFFSET, TEST_OFFSET + TEST))):
        write_idx_images(raw / f"{split}-images-idx3-ubyte", images(idx))
        write_idx_labels(raw / f"{split}-labels-idx1-ubyte", label(idx))
    return root


def installed(tmp: Path) -> Path:
    return plugin_site.installed(tmp, "walign-my-dataset", "walign.datasets", "my_dataset")


def walign(*args, path=(), module: str = "main.py"):
    return plugin_site.run_walign(EXAMPLE, *args, path=path, module=module)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion"))


@pytest.fixture
def plugin(monkeypatch):
    """The example module imported in this process; its registration is undone afterwards, so the
    other tests of a session see walign's own data sets only."""
    from walign.datasets import DATASETS
    with plugin_site.imported(monkeypatch, EXAMPLE, "my_dataset", DATASETS, "fashion_mnist") as module:
        yield module


# ----------------------------------------------------------------------------- in process
def test_the_splits_hold_the_right_images_and_labels(root, plugin):
    from walign.datasets import entry, load
    data = load("fashion_mnist", "cpu", root=str(root))
    assert (data.name, data.num_classes, data.in_channels, data.image_size, data.arch) == \
        ("fashion_mnist", 10, 1, 28, "kmnist")
    assert (len(data.train), len(data.val), len(data.test)) == (TRAIN - 5000, 5000, TEST)
    expected = {"train": np.arange(5000, TRAIN), "val": np.arange(5000),
                "test": np.arange(TEST_OFFSET, TEST_OFFSET + TEST)}
    for name, idx in expected.items():
        split = getattr(data, name)
        assert split.inputs.dtype == torch.uint8 and tuple(split.inputs.shape[1:]) == (1, 28, 28)
        np.testing.assert_array_equal(index_of(split.inputs), idx)
        np.testing.assert_array_equal(split.inputs[:, 0].numpy(), images(idx))
        np.testing.assert_array_equal(split.labels.numpy(), label(idx))
        assert split.labels.dtype == torch.int64
    cls = entry("fashion_mnist")
    assert cls.shape({}).arch == data.arch and cls.family == "cnn"
    # root and download say where to read: not part of a run's identity; no other option
    assert cls.split_options(cls.node()) == ({"root": "data", "download": False}, {})


# ----------------------------------------------------------------------------- through main.py
@pytest.fixture(scope="module")
def single(root, tmp_path_factory) -> Path:
    """One run through the short form, without installing anything: its run directory."""
    out = tmp_path_factory.mktemp("single")
    proc = walign("+dataset_module=my_dataset", "dataset=fashion_mnist", f"dataset.root={root}", *FAST,
                  f"results_dir={out}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("complete:")
    (run,) = out.glob("fashion_mnist/align_ada/w4-*")
    return run


def test_the_short_form_trains_on_the_generated_files(single):
    run = single
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["dataset"] == "fashion_mnist"
    assert summary["epochs_done"] == 1 and summary["batch_size"] == 100 and summary["lr"] == 1.0
    from walign.datasets.splits import CLASSIFICATION_KEYS
    assert set(CLASSIFICATION_KEYS) <= set(summary) and "root" not in summary
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and 0 <= record["val_acc"] <= 1 and 0 <= record["test_acc"] <= 1
    # accuracies are counts over 5000 validation and 200 test images
    assert abs(record["val_acc"] * 5000 - round(record["val_acc"] * 5000)) < 1e-6
    assert abs(record["test_acc"] * TEST - round(record["test_acc"] * TEST)) < 1e-6
    assert summary["best_val_acc"] == record["val_acc"] and summary["final_test_acc"] == record["test_acc"]


def test_mistakes_are_one_line_before_anything_is_written(root, tmp_path):
    missing = walign("+dataset_module=my_dataset", "dataset=fashion_mnist", f"dataset.root={tmp_path / 'nowhere'}",
                     *FAST, f"results_dir={tmp_path / 'results'}")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith("walign: error: Fashion-MNIST not found at ")
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in missing.stderr
    colour = walign("+dataset_module=my_dataset", "dataset=fashion_mnist", f"dataset.root={root}",
                    "dataset.colour=1", *FAST, f"results_dir={tmp_path / 'results'}")
    assert colour.returncode == 2 and colour.stderr.count("\n") == 1, colour.stderr
    assert "colour" in colour.stderr and "root, download" in colour.stderr
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def sweep(root, tmp_path_factory):
    """Two widths through the entry point alone (no +dataset_module), from a second copy of the
    files: the root is where to read, not what is trained."""
    tmp = tmp_path_factory.mktemp("sweep")
    copy = tmp / "copy"
    shutil.copytree(root, copy)
    site = installed(tmp)
    proc = walign("-m", "dataset=fashion_mnist", f"dataset.root={copy}", "width=4,8", *FAST[1:],
                  f"results_dir={tmp / 'results'}", path=[site])
    assert proc.returncode == 0, proc.stderr
    assert "walign sweep: 2 complete" in proc.stdout
    return tmp, site


def test_an_installed_data_set_is_listed_and_sweeps(sweep, tmp_path):
    tmp, site = sweep
    runs = sorted(p.name for p in (tmp / "results" / "fashion_mnist" / "align_ada").iterdir())
    assert [name.split("-")[0] for name in runs] == ["w4", "w8"]
    for name in runs:
        summary = json.loads((tmp / "results" / "fashion_mnist" / "align_ada" / name / "summary.json").read_text())
        assert summary["status"] == "complete" and 0 <= summary["best_val_acc"] <= 1
    listed = walign("dataset=nope", path=[site])
    assert listed.returncode == 2 and listed.stderr.count("\n") == 1
    assert "fashion_mnist" in listed.stderr and "kmnist" in listed.stderr


def test_the_run_directory_does_not_depend_on_the_root(sweep, single):
    """The sweep's width-4 run (read from another root) and the single run are the same run."""
    tmp, _ = sweep
    assert (tmp / "results" / "fashion_mnist" / "align_ada" / single.name).is_dir()


def test_the_report_reads_the_runs(sweep):
    tmp, site = sweep
    report = walign(str(tmp / "results"), "--out", str(tmp / "report"), path=[site], module="walign.report")
    assert report.returncode == 0, report.stderr
    assert "2 runs read (2 usable)" in report.stdout
    assert "fashion_mnist/align_ada/w4-" in (tmp / "report" / "REPORT.md").read_text()  # used by no paper item
