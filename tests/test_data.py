"""Tests of walign.datasets' loaders on small data sets written in the real on-disk formats.

Nothing from torchvision is mocked: the fake CIFAR-10 batches are protocol-2 pickles whose byte
strings are Python-2 ``str`` (like the original files), the KMNIST files are real idx files, and
the ImageNet tree is a real ImageFolder of PIL-written images.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from walign.datasets import ImageSplits, TensorSplit, load
from walign.datasets import embedded as wembedded
from walign.datasets.cifar10 import load_cifar10, small_cifar_batch_size
from walign.datasets.embedded import load_embedded
from walign.datasets.imagenet import load_imagenet
from walign.datasets.kmnist import load_kmnist
from walign.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# the JPEG copy of CIFAR-10 the embedded sample was cut from (scripts/make_embedded_cifar10.py), if
# this machine has it: WALIGN_CIFAR_JPEG=<folder with cifar10-jpeg-q75.tar.gz and original-order-labels.npz>
JPEG_COPY = Path(os.environ.get("WALIGN_CIFAR_JPEG", "/nonexistent"))

# ----------------------------------------------------------------------------- fake CIFAR-10
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The original batches.meta, byte for byte (a Python-2 protocol-2 pickle); torchvision checks its md5
# even when the batch md5s are not checked, so a fake copy has to reproduce it exactly.
ORIGINAL_META = (
    b"\x80\x02}q\x01(U\x13num_cases_per_batchq\x02M\x10'U\x0blabel_namesq\x03]q\x04(U\x08airplaneq\x05"
    b"U\nautomobileq\x06U\x04birdq\x07U\x03catq\x08U\x04deerq\tU\x03dogq\nU\x04frogq\x0bU\x05horseq\x0c"
    b"U\x04shipq\rU\x05truckq\x0eeU\x07num_visq\x0fM\x00\x0cu."
)
ORIGINAL_META_MD5 = "5ff9c542aee3614f3951f8cda6e48888"

TRAIN_BATCHES, PER_BATCH, N_TEST = 5, 1100, 300  # 5500 training images -> 5000 validation + 500 training
TEST_OFFSET = 60000  # global index of the first test image (indices stay below 65536: two bytes)


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes ``bytes`` as Python-2 ``str`` (SHORT_BINSTRING / BINSTRING), as
    the original CIFAR-10 files do: they load with b'data' keys under encoding='bytes' and with
    'data' keys under encoding='latin1' (torchvision)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_rows(indices: np.ndarray) -> np.ndarray:
    """(N, 3072) uint8 CHW-flattened rows: random pixels, except that the first two values of the red
    plane (pixels (0,0) and (0,1)) hold the image's global index (low byte, high byte)."""
    rows = np.random.RandomState(1234).randint(0, 256, size=(len(indices), 3072)).astype(np.uint8)
    rows[:, 0] = indices % 256
    rows[:, 1] = indices // 256
    return rows


def cifar_label(indices: np.ndarray) -> np.ndarray:
    return (indices * 7 + 3) % 10


def decode_index(images: torch.Tensor) -> np.ndarray:
    """Global index stored in an (N, C, H, W) uint8 CIFAR tensor."""
    x = images.numpy().astype(np.int64)
    return x[:, 0, 0, 0] + 256 * x[:, 0, 0, 1]


def write_fake_cifar10(root: Path, meta: bytes = ORIGINAL_META) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = {}
    for b in range(TRAIN_BATCHES):
        idx = np.arange(b * PER_BATCH, (b + 1) * PER_BATCH)
        rows[f"data_batch_{b + 1}"] = r = cifar_rows(idx)
        (folder / f"data_batch_{b + 1}").write_bytes(py2_pickle(
            {b"batch_label": f"training batch {b + 1} of 5".encode(), b"labels": [int(c) for c in cifar_label(idx)],
             b"data": r, b"filenames": [f"{i}.png".encode() for i in idx]}))
    idx = np.arange(TEST_OFFSET, TEST_OFFSET + N_TEST)
    rows["test_batch"] = r = cifar_rows(idx)
    (folder / "test_batch").write_bytes(py2_pickle(
        {b"batch_label": b"testing batch 1 of 1", b"labels": [int(c) for c in cifar_label(idx)], b"data": r,
         b"filenames": [f"{i}.png".encode() for i in idx]}))
    (folder / "batches.meta").write_bytes(meta)
    return rows


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    rows = write_fake_cifar10(root)
    return root, rows


def test_fake_cifar_files_have_the_original_format(cifar_root):
    """Guards the fixture itself: the files read like the originals with both pickle encodings."""
    root, rows = cifar_root
    folder = root / "cifar-10-batches-py"
    assert hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest() == ORIGINAL_META_MD5
    with open(folder / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="bytes")[b"label_names"] == [c.encode() for c in CIFAR_CLASSES]
    with open(folder / "data_batch_2", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (PER_BATCH, 3072)
    np.testing.assert_array_equal(entry[b"data"], rows["data_batch_2"])
    with open(folder / "data_batch_2", "rb") as f:
        assert set(pickle.load(f, encoding="latin1")) >= {"data", "labels"}


def test_cifar10_split_is_validation_first_then_training(cifar_root):
    root, rows = cifar_root
    data = load_cifar10(str(root), "cpu", verify_md5=False)
    assert isinstance(data, ImageSplits)
    assert (data.name, data.num_classes, data.in_channels, data.image_size, data.arch) == ("cifar10", 10, 3, 32, "cifar")
    assert data.label_offset == pytest.approx(0.1)
    n_train = TRAIN_BATCHES * PER_BATCH
    assert (len(data.val), len(data.train), len(data.test)) == (5000, n_train - 5000, N_TEST)

    np.testing.assert_array_equal(decode_index(data.val.inputs), np.arange(5000))
    np.testing.assert_array_equal(decode_index(data.train.inputs), np.arange(5000, n_train))
    np.testing.assert_array_equal(decode_index(data.test.inputs), np.arange(TEST_OFFSET, TEST_OFFSET + N_TEST))
    np.testing.assert_array_equal(data.val.labels.numpy(), cifar_label(np.arange(5000)))
    np.testing.assert_array_equal(data.train.labels.numpy(), cifar_label(np.arange(5000, n_train)))
    np.testing.assert_array_equal(data.test.labels.numpy(), cifar_label(np.arange(TEST_OFFSET, TEST_OFFSET + N_TEST)))
    assert data.train.labels.dtype == torch.int64


def test_cifar10_images_are_nchw_uint8_matching_the_pickle_rows(cifar_root):
    root, rows = cifar_root
    data = load_cifar10(str(root), "cpu", verify_md5=False)
    for split in (data.train, data.val, data.test):
        assert split.inputs.dtype == torch.uint8
        assert tuple(split.inputs.shape[1:]) == (3, 32, 32)
        assert split.inputs.is_contiguous()
    all_rows = np.concatenate([rows[f"data_batch_{b + 1}"] for b in range(TRAIN_BATCHES)])
    as_hwc = lambda r: r.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # noqa: E731
    # the image's HWC view equals the row read as CHW and transposed to HWC
    np.testing.assert_array_equal(data.val.inputs.permute(0, 2, 3, 1).numpy(), as_hwc(all_rows[:5000]))
    np.testing.assert_array_equal(data.train.inputs.permute(0, 2, 3, 1).numpy(), as_hwc(all_rows[5000:]))
    np.testing.assert_array_equal(data.test.inputs.permute(0, 2, 3, 1).numpy(), as_hwc(rows["test_batch"]))
    # and the NCHW tensor is the row itself, reshaped
    np.testing.assert_array_equal(data.train.inputs[7].numpy().reshape(-1), all_rows[5007])


def test_cifar10_md5_check_fails_on_a_rebuilt_copy_with_a_hint(cifar_root):
    root, _ = cifar_root
    with pytest.raises(ConfigError, match="verify_md5=false") as info:
        load_cifar10(str(root), "cpu", verify_md5=True)
    assert str(root / "cifar-10-batches-py") in str(info.value)
    with pytest.raises(ConfigError, match="verify_md5=false"):
        load("cifar10", "cpu", root=str(root))  # md5 checking is the default


def test_cifar10_missing_folder_names_where_it_looked(tmp_path):
    where = tmp_path / "nothing_here"
    with pytest.raises(ConfigError) as info:
        load_cifar10(str(where), "cpu", verify_md5=False)
    assert str(where / "cifar-10-batches-py") in str(info.value)
    assert "dataset.root" in str(info.value)


NOWHERE = "http://127.0.0.1:9/"  # the discard port: connecting fails at once, with or without a network


@pytest.mark.parametrize("name, attribute, value", [
    ("cifar10", "url", NOWHERE + "cifar-10-python.tar.gz"), ("kmnist", "mirrors", [NOWHERE])])
def test_download_goes_through_torchvision_and_a_failure_is_one_line(tmp_path, monkeypatch, name, attribute, value):
    """dataset.download=true hands the fetch to torchvision's own download (here pointed at a
    closed local port, so the test needs no network); without it the error says the flag exists."""
    import torchvision
    dataset_class = {"cifar10": torchvision.datasets.CIFAR10, "kmnist": torchvision.datasets.KMNIST}[name]
    with pytest.raises(ConfigError, match="dataset.download=true"):
        load(name, "cpu", root=str(tmp_path))
    monkeypatch.setattr(dataset_class, attribute, value)
    with pytest.raises(ConfigError) as info:
        load(name, "cpu", root=str(tmp_path), download=True)
    message = str(info.value)
    assert f"download into {tmp_path} failed" in message and "\n" not in message
    # torchvision's downloader ran and failed to fetch (CIFAR-10's URL, or KMNIST's first file)
    assert "Connection refused" in message or "Error downloading" in message, message


def test_cifar10_one_missing_batch_is_reported(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_cifar10(str(tmp_path), "cpu", verify_md5=False)


def test_cifar10_with_verify_md5_false_ignores_a_rebuilt_meta_file(tmp_path):
    """verify_md5=false is documented as turning the md5 check off for a rebuilt copy; a batches.meta
    that is not byte-identical to the original (same content, written by Python 3's pickle) should
    then load too."""
    meta = pickle.dumps({"num_cases_per_batch": 10000, "label_names": CIFAR_CLASSES, "num_vis": 3072}, protocol=2)
    write_fake_cifar10(tmp_path, meta=meta)
    data = load_cifar10(str(tmp_path), "cpu", verify_md5=False)
    assert len(data.val) == 5000


# ----------------------------------------------------------------------------- small CIFAR-10
@pytest.mark.parametrize("n, expected", [(45, 45), (150, 50), (450, 50), (1500, 100), (4500, 100),
                                         (15000, 100), (45000, 100), (1, 1), (99, 99), (100, 100), (130, 10)])
def test_small_cifar_batch_size_rule(n, expected):
    assert small_cifar_batch_size(n) == expected


@pytest.mark.parametrize("n", [45, 150, 500])
def test_small_cifar_takes_prefixes_of_both_splits(cifar_root, n):
    root, _ = cifar_root
    data = load_cifar10(str(root), "cpu", verify_md5=False, train_size=n)
    assert data.name == "small_cifar10"
    np.testing.assert_array_equal(decode_index(data.train.inputs), np.arange(5000, 5000 + n))
    np.testing.assert_array_equal(data.train.labels.numpy(), cifar_label(np.arange(5000, 5000 + n)))
    np.testing.assert_array_equal(decode_index(data.val.inputs), np.arange(min(n, 5000)))
    np.testing.assert_array_equal(data.val.labels.numpy(), cifar_label(np.arange(min(n, 5000))))
    assert len(data.test) == N_TEST


def test_small_cifar_through_load_and_its_limits(cifar_root):
    root, _ = cifar_root
    data = load("small_cifar10", "cpu", root=str(root), verify_md5=False, train_size=150)
    assert (len(data.train), len(data.val), small_cifar_batch_size(150)) == (150, 150, 50)
    for bad in (0, -5, TRAIN_BATCHES * PER_BATCH - 5000 + 1):
        with pytest.raises(ConfigError, match="train_size"):
            load_cifar10(str(root), "cpu", verify_md5=False, train_size=bad)
    with pytest.raises(ConfigError, match="train_size"):
        load("small_cifar10", "cpu", root=str(root), verify_md5=False)


def test_load_rejects_unknown_names_and_missing_roots():
    with pytest.raises(ConfigError, match="unknown dataset"):
        load("nope", "cpu", root="x")
    for name in ("cifar10", "small_cifar10", "kmnist", "imagenet"):
        with pytest.raises(ConfigError, match="dataset.root"):
            load(name, "cpu", root=None)


# ----------------------------------------------------------------------------- KMNIST
KMNIST_TRAIN, KMNIST_TEST = 5100, 40


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">iiii", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">ii", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def kmnist_images(indices: np.ndarray) -> np.ndarray:
    x = np.random.RandomState(7).randint(0, 256, size=(len(indices), 28, 28)).astype(np.uint8)
    x[:, 0, 0] = indices % 256
    x[:, 0, 1] = indices // 256
    return x


def kmnist_label(indices: np.ndarray) -> np.ndarray:
    return (indices * 3 + 1) % 10


@pytest.fixture(scope="module")
def kmnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kmnist")
    raw = root / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    train_idx, test_idx = np.arange(KMNIST_TRAIN), np.arange(10000, 10000 + KMNIST_TEST)
    images = {"train": kmnist_images(train_idx), "t10k": kmnist_images(test_idx)}
    for split, idx in (("train", train_idx), ("t10k", test_idx)):
        write_idx_images(raw / f"{split}-images-idx3-ubyte", images[split])
        write_idx_labels(raw / f"{split}-labels-idx1-ubyte", kmnist_label(idx))
    return root, images


def test_kmnist_split_shapes_and_labels(kmnist_root):
    root, images = kmnist_root
    data = load_kmnist(str(root), "cpu")
    assert (data.name, data.num_classes, data.in_channels, data.image_size, data.arch) == ("kmnist", 10, 1, 28, "kmnist")
    assert (len(data.val), len(data.train), len(data.test)) == (5000, KMNIST_TRAIN - 5000, KMNIST_TEST)
    for split in (data.train, data.val, data.test):
        assert split.inputs.dtype == torch.uint8 and tuple(split.inputs.shape[1:]) == (1, 28, 28)
    idx = lambda t: t[:, 0, 0, 0].long().numpy() + 256 * t[:, 0, 0, 1].long().numpy()  # noqa: E731
    np.testing.assert_array_equal(idx(data.val.inputs), np.arange(5000))
    np.testing.assert_array_equal(idx(data.train.inputs), np.arange(5000, KMNIST_TRAIN))
    np.testing.assert_array_equal(data.val.labels.numpy(), kmnist_label(np.arange(5000)))
    np.testing.assert_array_equal(data.train.labels.numpy(), kmnist_label(np.arange(5000, KMNIST_TRAIN)))
    np.testing.assert_array_equal(data.test.labels.numpy(), kmnist_label(np.arange(10000, 10000 + KMNIST_TEST)))
    np.testing.assert_array_equal(data.train.inputs[:, 0].numpy(), images["train"][5000:])
    np.testing.assert_array_equal(data.test.inputs[:, 0].numpy(), images["t10k"])
    assert data.test.labels.dtype == torch.int64
    assert load("kmnist", "cpu", root=str(root)).name == "kmnist"


def test_kmnist_missing_file_is_a_config_error(tmp_path, kmnist_root):
    src, _ = kmnist_root
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / f).write_bytes((src / "KMNIST" / "raw" / f).read_bytes())
    with pytest.raises(ConfigError) as info:
        load_kmnist(str(tmp_path), "cpu")
    assert str(raw) in str(info.value)
    with pytest.raises(ConfigError, match="KMNIST"):
        load_kmnist(str(tmp_path / "empty"), "cpu")


# ----------------------------------------------------------------------------- ImageNet
def write_image_folder(root: Path, classes: dict[str, int], seed: int) -> None:
    from PIL import Image
    rng = np.random.RandomState(seed)
    for c, count in classes.items():
        (root / c).mkdir(parents=True)
        for i in range(count):
            h, w = 32 + rng.randint(30), 32 + rng.randint(30)
            img = Image.fromarray(rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8))
            img.save(root / c / (f"{i}.png" if i % 2 else f"{i}.jpg"))


@pytest.fixture()
def imagenet_root(tmp_path):
    write_image_folder(tmp_path / "train", {"n01": 3, "n02": 3}, seed=0)
    write_image_folder(tmp_path / "val", {"n01": 2, "n02": 2}, seed=1)
    return tmp_path


def test_imagenet_image_folder(imagenet_root):
    data = load_imagenet(str(imagenet_root), "cpu", workers=0)
    assert (data.num_classes, data.label_offset, data.arch, data.image_size, data.in_channels) == (2, 0.0, "imagenet", 224, 3)
    assert data.test is None
    assert (len(data.train), len(data.val)) == (6, 4)
    torch.testing.assert_close(data.targets(torch.tensor([1])), torch.tensor([[0.0, 1.0]]))
    batches = list(data.train.batches(np.random.RandomState(0), 2))
    assert len(batches) == 3 == data.train.num_batches(2)
    labels = []
    for x, y in batches:
        assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, 224, 224)
        labels += y.tolist()
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    everything = torch.cat([x for x, _ in batches])
    assert everything.min() < 0  # normalized with the ImageNet mean/std, not left in [0, 1]
    assert everything.max() > 1
    x, y = next(data.val.batches(np.random.RandomState(0), 4))
    assert tuple(x.shape) == (4, 3, 224, 224) and sorted(y.tolist()) == [0, 0, 1, 1]


def test_imagenet_last_partial_batch_is_kept(imagenet_root):
    data = load_imagenet(str(imagenet_root), "cpu", workers=0)
    sizes = [len(y) for _, y in data.train.batches(np.random.RandomState(0), 4)]
    assert sizes == [4, 2] and data.train.num_batches(4) == 2


def test_imagenet_missing_val_is_a_config_error(tmp_path):
    write_image_folder(tmp_path / "train", {"n01": 1, "n02": 1}, seed=0)
    with pytest.raises(ConfigError) as info:
        load_imagenet(str(tmp_path), "cpu", workers=0)
    assert str(tmp_path / "val") in str(info.value)


def test_imagenet_different_class_folders_are_a_config_error(tmp_path):
    write_image_folder(tmp_path / "train", {"n01": 1, "n02": 1}, seed=0)
    write_image_folder(tmp_path / "val", {"n01": 1, "n03": 1}, seed=1)
    with pytest.raises(ConfigError, match="different class folders"):
        load_imagenet(str(tmp_path), "cpu", workers=0)


# ----------------------------------------------------------------------------- TensorSplit
def index_split(n: int) -> TensorSplit:
    """Image i is filled with the value i (so a batch says which images it holds); label = i."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return TensorSplit(images, torch.arange(n, dtype=torch.int32))


def test_tensor_split_batches_follow_the_numpy_permutation():
    split = index_split(23)
    batches = list(split.batches(np.random.RandomState(5), 4))
    assert len(batches) == 5 == split.num_batches(4)  # floor(23 / 4), the remainder is dropped
    order = np.random.RandomState(5).permutation(23)
    for i, (x, y) in enumerate(batches):
        assert tuple(x.shape) == (4, 3, 4, 4) and x.dtype == torch.float32
        assert y.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), order[4 * i:4 * i + 4])
        torch.testing.assert_close(x[:, 0, 0, 0], y.float() / 255)


def test_tensor_split_same_seed_same_batches_and_the_rng_advances():
    split = index_split(30)
    a = [y.tolist() for _, y in split.batches(np.random.RandomState(1), 6)]
    b = [y.tolist() for _, y in split.batches(np.random.RandomState(1), 6)]
    c = [y.tolist() for _, y in split.batches(np.random.RandomState(2), 6)]
    assert a == b and a != c
    rng = np.random.RandomState(1)
    first = [y.tolist() for _, y in split.batches(rng, 6)]
    second = [y.tolist() for _, y in split.batches(rng, 6)]
    assert first == a and second != first  # each call draws a fresh permutation from the stream
    assert sorted(sum(second, [])) == list(range(30))


def test_tensor_split_pixels_are_scaled_to_unit_interval():
    images = torch.tensor([0, 1, 128, 254, 255] * 2, dtype=torch.uint8).view(10, 1, 1, 1)
    split = TensorSplit(images, torch.zeros(10, dtype=torch.long))
    xs = torch.cat([x for x, _ in split.batches(np.random.RandomState(0), 5)])
    assert xs.min() == 0.0 and xs.max() == 1.0
    assert sorted(xs.flatten().tolist()) == sorted((images.float() / 255).flatten().tolist())
    assert split.inputs.dtype == torch.uint8  # batching does not modify the stored images


def test_targets_are_one_hot_minus_the_offset():
    split = index_split(4)
    data = ImageSplits("x", split, split, None, 3, 3, 4, "cifar")
    torch.testing.assert_close(data.targets(torch.tensor([2, 0])),
                               torch.tensor([[-0.1, -0.1, 0.9], [0.9, -0.1, -0.1]]))


# ----------------------------------------------------------------------------- embedded sample
def test_embedded_sample_sizes():
    data = load_embedded("cpu")
    assert (len(data.train), len(data.val), len(data.test)) == (1500, 1500, 1000)
    assert (data.name, data.num_classes, data.in_channels, data.image_size, data.arch) == ("embedded", 10, 3, 32, "cifar")
    for split in (data.train, data.val, data.test):
        assert split.inputs.dtype == torch.uint8 and tuple(split.inputs.shape[1:]) == (3, 32, 32)
        assert set(split.labels.unique().tolist()) == set(range(10))
        assert split.inputs.float().std() > 10  # real pictures, not a constant fill
    assert load("embedded", "cpu").name == "embedded"


@pytest.mark.skipif(not JPEG_COPY.is_dir(), reason="no JPEG copy of CIFAR-10 here (set WALIGN_CIFAR_JPEG)")
def test_embedded_sample_is_reproducible_from_the_jpeg_copy(tmp_path):
    spec = importlib.util.spec_from_file_location("make_embedded_cifar10", REPO / "scripts" / "make_embedded_cifar10.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "sample.npz"
    module.main(str(JPEG_COPY), str(out))
    shipped = np.load(Path(wembedded.__file__).parents[1] / "assets" / wembedded.EMBEDDED_ASSET)
    built = np.load(out)
    assert sorted(built.files) == sorted(shipped.files)
    for key in shipped.files:
        np.testing.assert_array_equal(built[key], shipped[key], err_msg=key)
    # and the labels follow the released split in the original file order
    order = np.load(JPEG_COPY / "original-order-labels.npz")
    np.testing.assert_array_equal(shipped["val_labels"], order["train_labels"][:1500])
    np.testing.assert_array_equal(shipped["train_labels"], order["train_labels"][5000:6500])
    np.testing.assert_array_equal(shipped["test_labels"], order["test_labels"][:1000])
