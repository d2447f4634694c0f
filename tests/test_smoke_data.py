"""scripts/make_smoke_data.py: its synthetic data sets load through walign's real loaders (nothing
mocked), every file is the same byte for byte on a second run, and a bad DEST is one line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from walign.datasets.cifar10 import load_cifar10
from walign.datasets.imagenet import load_imagenet
from walign.datasets.kmnist import load_kmnist

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_smoke_data.py"
CLASSES = [f"n{c:08d}" for c in range(10)]


def make(dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(dest)], check=False, capture_output=True, text=True,
                          timeout=60)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("smoke") / "data"
    proc = make(dest)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["cifar10", "kmnist", "imagenet"]
    assert len(lines) == 4 and "SYNTHETIC" in lines[3]
    return dest


def test_layout_and_markers(smoke):
    batches = smoke / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in batches.iterdir()) == \
        ["batches.meta"] + [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    raw = smoke / "kmnist" / "KMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    for split, per_class in (("train", 12), ("val", 4)):
        folder = smoke / "imagenet" / split
        assert sorted(p.name for p in folder.iterdir()) == CLASSES
        assert all(len(list((folder / c).glob("*.png"))) == per_class for c in CLASSES)
    for folder in (smoke, smoke / "cifar10", smoke / "kmnist", smoke / "imagenet"):
        assert "SYNTHETIC" in (folder / "SYNTHETIC.txt").read_text()


def draw(split, n=10):
    x, y = next(iter(split.batches(np.random.RandomState(0), n)))
    assert len(x) == len(y) == n and bool(x.isfinite().all()) and float(x.std()) > 0
    return x, y


def test_cifar10_loads_without_md5_and_fails_with_it(smoke):
    data = load_cifar10(str(smoke / "cifar10"), "cpu", verify_md5=False)
    assert (len(data.train), len(data.val), len(data.test)) == (200, 5000, 200)
    assert tuple(data.train.inputs.shape[1:]) == (3, 32, 32)
    for split in (data.train, data.val, data.test):  # balanced labels, also in any prefix of 10k
        assert np.bincount(split.labels.numpy(), minlength=10).tolist() == [len(split) // 10] * 10
        assert np.bincount(split.labels[:100].numpy(), minlength=10).tolist() == [10] * 10
    x, _ = draw(data.train)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    # the class signal: the per-class mean colours of the training images differ
    means = np.stack([data.train.inputs[data.train.labels == c].float().mean((0, 2, 3)).numpy() for c in range(10)])
    assert np.ptp(means, axis=0).max() > 20
    with pytest.raises(Exception, match="md5"):  # the md5 check (the default) refuses these files
        load_cifar10(str(smoke / "cifar10"), "cpu")


def test_kmnist_loads(smoke):
    data = load_kmnist(str(smoke / "kmnist"), "cpu")
    assert (len(data.train), len(data.val), len(data.test)) == (200, 5000, 200)
    assert tuple(data.train.inputs.shape[1:]) == (1, 28, 28)
    for split in (data.train, data.val, data.test):
        assert np.bincount(split.labels.numpy(), minlength=10).tolist() == [len(split) // 10] * 10
    draw(data.val)


def test_imagenet_loads(smoke):
    data = load_imagenet(str(smoke / "imagenet"), "cpu", workers=0)
    assert (len(data.train), len(data.val), data.test, data.num_classes) == (120, 40, None, 10)
    assert data.train.dataset.classes == CLASSES
    x, y = draw(data.train)
    assert tuple(x.shape) == (10, 3, 224, 224) and 0 <= int(y.min()) and int(y.max()) < 10
    draw(data.val)


def test_a_second_run_writes_the_same_bytes(smoke, tmp_path):
    first = files(smoke)
    assert len(first) == 4 + 7 + 4 + 160
    other = tmp_path / "again"
    assert make(other).returncode == 0
    assert files(other) == first
    rerun = make(smoke)  # into the same folder: its own earlier output is overwritten, unchanged
    assert rerun.returncode == 0, rerun.stderr
    assert files(smoke) == first


def test_an_existing_file_as_dest_is_one_line_and_exit_2(tmp_path):
    dest = tmp_path / "a-file"
    dest.write_text("not a folder")
    proc = make(dest)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "a-file" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert dest.read_text() == "not a folder"


def test_a_folder_that_may_hold_real_data_is_left_alone(tmp_path):
    real = tmp_path / "data" / "kmnist" / "KMNIST" / "raw"
    real.mkdir(parents=True)
    (real / "train-images-idx3-ubyte").write_bytes(b"real")
    proc = make(tmp_path / "data")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert (real / "train-images-idx3-ubyte").read_bytes() == b"real"
    assert not (tmp_path / "data" / "cifar10").exists()
