"""Data sets and their splits (SPEC section 3).

Image sets that fit in memory are held as one uint8 tensor on the training device and batched by
index there, so a training step never touches a DataLoader or the host. ImageNet is the exception
and streams through a DataLoader.

Every split uses the released code's protocol: the *validation* split (what the paper reports as
"test" accuracy) is carved from the front of the official training set; the official test split is
evaluated too, as an extra column.
"""
from __future__ import annotations

import io
import math
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Protocol
from importlib import resources

import numpy as np
import torch

from .errors import ConfigError
from .runs import best

CIFAR_VALIDATION = 5000
KMNIST_VALIDATION = 5000


class TensorSplit:
    """Inputs and labels resident on one device, batched by index there: images (N, C, H, W)
    uint8 with integer labels, or the Add task's sequences with their target sequences."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, device: torch.device | str = "cpu"):
        self.inputs = inputs.to(device)
        self.labels = (labels if labels.is_floating_point() else labels.long()).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, rng: np.random.RandomState, batch_size: int):
        """A fresh permutation from ``rng`` (moved to the device once), consumed in
        floor(N / batch_size) equal batches; uint8 images come out as floats in [0, 1]."""
        order = torch.from_numpy(rng.permutation(len(self))).to(self.inputs.device)
        for i in range(len(self) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = self.inputs[idx]
            yield (x.float().div_(255) if x.dtype == torch.uint8 else x), self.labels[idx]

    def num_batches(self, batch_size: int) -> int:
        return len(self) // batch_size


class LoaderSplit:
    """A split streamed by a DataLoader (ImageNet); shuffled with a generator seeded from ``rng``."""

    def __init__(self, dataset, device, workers: int = 8, drop_last: bool = False):
        self.dataset, self.device, self.workers, self.drop_last = dataset, device, workers, drop_last

    def __len__(self) -> int:
        return len(self.dataset)

    def num_batches(self, batch_size: int) -> int:
        return len(self) // batch_size if self.drop_last else math.ceil(len(self) / batch_size)

    def batches(self, rng: np.random.RandomState, batch_size: int):
        generator = torch.Generator().manual_seed(int(rng.randint(2**31)))
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=True,
                                             generator=generator, num_workers=self.workers,
                                             drop_last=self.drop_last, pin_memory=True)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class Task(Protocol):
    """What the training loop (walign.train) needs from a data set: ``Data`` for the image sets,
    ``walign.addtask.AddTask`` for the Add task."""
    family: str             # the model family that learns it: 'cnn' or 'rnn'
    train: TensorSplit | LoaderSplit

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The regression targets of a batch's labels."""

    def evaluate(self, net, batch_size: int, rng: np.random.RandomState, test_rng: np.random.RandomState,
                 eval_test: bool = True) -> dict:
        """The epoch's evaluation metrics (drawing batch orders from ``rng`` as the released code)."""

    def summarize(self, records: list[dict]) -> dict:
        """The run's summary values from its per-epoch records."""


@dataclass
class Data:
    """The splits of one data set plus what the network needs to know about its inputs."""
    name: str
    train: TensorSplit | LoaderSplit
    val: TensorSplit | LoaderSplit
    test: TensorSplit | LoaderSplit | None
    num_classes: int
    in_channels: int
    image_size: int
    arch: str
    label_offset: float = 0.1  # targets are one-hot minus this (ImageNet: plain one-hot)

    family = "cnn"

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        # one-hot by comparison: F.one_hot would read the labels' range on the host every step
        onehot = (labels[:, None] == torch.arange(self.num_classes, device=labels.device)).float()
        return onehot - self.label_offset

    def evaluate(self, net, batch_size: int, rng, test_rng, eval_test: bool = True) -> dict:
        """Validation accuracy from the training RNG stream; official-test accuracy from its own."""
        test = accuracy(net, self.test, batch_size, test_rng) if eval_test and self.test is not None else None
        return {"val_acc": accuracy(net, self.val, batch_size, rng), "test_acc": test}

    @staticmethod
    def summarize(records: list[dict]) -> dict:
        """Best (over epochs, SPEC 4.4) and final accuracies."""
        out = {"best_val_acc": best(records, "val_acc"), "best_val_epoch": None, "final_val_acc": None,
               "test_acc_at_best_val": None, "best_test_acc": best(records, "test_acc"),
               "final_test_acc": None, "final_train_loss": None}
        if records:
            last = records[-1]
            out.update(final_val_acc=last["val_acc"], final_test_acc=last["test_acc"],
                       final_train_loss=last["train_loss"])
            if out["best_val_acc"] is not None:
                top = next(r for r in records if r["val_acc"] == out["best_val_acc"])
                out.update(best_val_epoch=top["epoch"], test_acc_at_best_val=top["test_acc"])
        return out


@torch.no_grad()
def accuracy(net: torch.nn.Module, split, batch_size: int, rng: np.random.RandomState) -> float | None:
    """Mean over random equal-sized batches of top-1 accuracy (batch-statistics BN: batch
    composition matters, so evaluation batches are drawn like training batches)."""
    correct = torch.zeros((), dtype=torch.long, device=next(net.parameters()).device)
    count = 0
    for x, labels in split.batches(rng, batch_size):
        correct += (net(x).argmax(1) == labels).sum()
        count += len(labels)
    return correct.item() / count if count else None


def _nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W[, C]) uint8 array -> (N, C, H, W) uint8 tensor."""
    if images.ndim == 3:
        images = images[..., None]
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _missing(what: str, where: str, how: str) -> ConfigError:
    return ConfigError(f"{what} not found at {where}; {how}")


# ----------------------------------------------------------------------------- embedded sample
EMBEDDED_ASSET = "cifar10_sample.npz"


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Decode concatenated JPEG files (byte ranges given by ``offsets``) into (N, 32, 32, 3)."""
    from PIL import Image
    out = [np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"), dtype=np.uint8)
           for a, b in zip(offsets[:-1], offsets[1:])]
    return np.stack(out)


def load_embedded(device) -> Data:
    """The real CIFAR-10 sample shipped in the package (see scripts/make_embedded_cifar10.py)."""
    with resources.files("walign.assets").joinpath(EMBEDDED_ASSET).open("rb") as f:
        pack = dict(np.load(f))
    splits = {}
    for split in ("train", "val", "test"):
        images = decode_jpegs(pack[f"{split}_jpeg"], pack[f"{split}_offsets"])
        splits[split] = TensorSplit(_nchw(images), torch.from_numpy(pack[f"{split}_labels"]), device)
    return Data("embedded", splits["train"], splits["val"], splits["test"], 10, 3, 32, "cifar")


def _find(what: str, folder: str, files: list[str], download: bool, dataset_class, root: str, how: str) -> None:
    """Make sure ``files`` are in ``folder``: fetched first with torchvision's own download of both
    splits into ``root`` when ``download`` is set; a one-line ConfigError if they are not there.
    A download that fails leaves nothing behind: whatever it created under ``root`` is removed."""
    def present():
        return all(os.path.isfile(os.path.join(folder, name)) for name in files)
    if download and not present():
        existed = os.path.isdir(root)
        before = set(os.listdir(root)) if existed else set()
        try:
            for train in (True, False):
                dataset_class(root, train=train, download=True)
        except Exception as err:  # no network, a proxy, a full disk, a bad checksum
            _remove_new(root, existed, before)
            reason = (str(err).strip().splitlines() or [""])[0]
            raise ConfigError(f"{what} download into {root} failed: {type(err).__name__}: {reason}") from None
    if not present():
        raise _missing(what, folder, how)


def _remove_new(root: str, existed: bool, before: set) -> None:
    """Undo a failed download: ``root`` itself if it did not exist, else the entries it gained."""
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in set(os.listdir(root)) - before:
        target = os.path.join(root, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                os.unlink(target)
            except OSError:
                pass


# ----------------------------------------------------------------------------- CIFAR-10
def locate_cifar10(root: str, download: bool = False) -> str:
    """The folder holding CIFAR-10's batches (fetched first when ``download``); ConfigError if absent."""
    import torchvision

    folder = os.path.join(root, "cifar-10-batches-py")
    _find("CIFAR-10", folder, [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], download,
          torchvision.datasets.CIFAR10, root, "set dataset.root to the folder that holds cifar-10-batches-py, "
          "or dataset.download=true to fetch it with torchvision (offline, shared/data/cifar10/make_cifar10.py "
          "ROOT rebuilds it)")
    return folder


def _read_cifar10(root: str, verify_md5: bool, download: bool = False):
    """(train images, train labels, test images, test labels) from torchvision's layout;
    fetched first with torchvision's download when ``download`` and not there yet."""
    import torchvision

    folder = locate_cifar10(root, download)

    class Unverified(torchvision.datasets.CIFAR10):
        """Skips the md5 sums (of the batches and of batches.meta): a rebuilt copy fails them."""
        meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}

        def _check_integrity(self):
            return True

    cifar = torchvision.datasets.CIFAR10 if verify_md5 else Unverified
    try:
        train = cifar(root, train=True, download=False)
        test = cifar(root, train=False, download=False)
    except RuntimeError as err:
        raise ConfigError(f"CIFAR-10 at {folder} failed its md5 check ({err}); "
                          "set dataset.verify_md5=false to use a rebuilt copy") from None
    return train.data, np.asarray(train.targets), test.data, np.asarray(test.targets)


def load_cifar10(root: str, device, verify_md5: bool = True, train_size: int | None = None,
                 download: bool = False) -> Data:
    """CIFAR-10 with the released split: validation = first 5000 training images, training = the
    remaining 45 000. With ``train_size`` N (small CIFAR-10, SPEC 3.3): train on the first N of
    those and validate on the first min(N, 5000); the run then uses the released batch-size rule
    (``small_cifar_batch_size``)."""
    x, y, x_test, y_test = _read_cifar10(root, verify_md5, download)
    x_val, y_val, x_train, y_train = x[:CIFAR_VALIDATION], y[:CIFAR_VALIDATION], x[CIFAR_VALIDATION:], y[CIFAR_VALIDATION:]
    name = "cifar10"
    if train_size is not None:
        if not 0 < train_size <= len(x_train):
            raise ConfigError(f"dataset.train_size must be in 1..{len(x_train)}, got {train_size}")
        x_train, y_train = x_train[:train_size], y_train[:train_size]
        n_val = min(train_size, CIFAR_VALIDATION)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
        name = "small_cifar10"
    return Data(name, TensorSplit(_nchw(x_train), torch.from_numpy(y_train), device),
                TensorSplit(_nchw(x_val), torch.from_numpy(y_val), device),
                TensorSplit(_nchw(x_test), torch.from_numpy(y_test), device),
                10, 3, 32, "cifar")


def small_cifar_batch_size(n: int, preferred: int = 100) -> int:
    """The released code's rule: N if N < 100, else gcd(100, N) (which is 100 when 100 divides N)."""
    return n if preferred > n else math.gcd(preferred, n)


# ----------------------------------------------------------------------------- KMNIST
def locate_kmnist(root: str, download: bool = False) -> None:
    """KMNIST's raw files must be under root/KMNIST/raw (fetched first when ``download``)."""
    import torchvision

    raw = os.path.join(root, "KMNIST", "raw")
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    _find("KMNIST", raw, files, download, torchvision.datasets.KMNIST, root, "set dataset.root to the folder "
          "that holds KMNIST/raw, or dataset.download=true to fetch it with torchvision")


def load_kmnist(root: str, device, download: bool = False) -> Data:
    """KMNIST in torchvision's layout; validation = first 5000 training images (train: 55 000)."""
    import torchvision

    locate_kmnist(root, download)
    train = torchvision.datasets.KMNIST(root, train=True, download=False)
    test = torchvision.datasets.KMNIST(root, train=False, download=False)
    x, y = train.data.numpy(), train.targets.numpy()
    v = KMNIST_VALIDATION
    return Data("kmnist", TensorSplit(_nchw(x[v:]), torch.from_numpy(y[v:]), device),
                TensorSplit(_nchw(x[:v]), torch.from_numpy(y[:v]), device),
                TensorSplit(_nchw(test.data.numpy()), test.targets, device), 10, 1, 28, "kmnist")


# ----------------------------------------------------------------------------- ImageNet
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def locate_imagenet(root: str) -> None:
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise _missing("ImageNet", os.path.join(root, split), "set dataset.root to a folder with "
                           "train/ and val/ in ImageFolder layout (one sub-folder per class)")


def load_imagenet(root: str, device, workers: int = 8) -> Data:
    """ILSVRC-12 as ImageFolder trees root/train and root/val (SPEC 3.4 transforms, one-hot targets)."""
    import torchvision
    from torchvision import transforms as T

    locate_imagenet(root)
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = torchvision.datasets.ImageFolder(os.path.join(root, "train"), T.Compose(
        [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm]))
    val = torchvision.datasets.ImageFolder(os.path.join(root, "val"), T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm]))
    if train.classes != val.classes:
        raise ConfigError(f"ImageNet train/ and val/ under {root} hold different class folders")
    return Data("imagenet", LoaderSplit(train, device, workers), LoaderSplit(val, device, workers),
                None, len(train.classes), 3, 224, "imagenet", label_offset=0.0)


@dataclass(frozen=True)
class DataShape:
    """Split sizes and input shape of an image data set, known without loading it (the FLOP
    count of a sweep, walign/cost.py, needs them on a login node)."""
    train: int
    val: int
    test: int
    channels: int
    image_size: int
    classes: int
    arch: str
    whole_batches: bool = True  # in-memory splits use floor(N / B) full batches; ImageNet keeps the partial last one


def _small_cifar_shape(options: dict) -> DataShape:
    n = int(options.get("train_size") or 0)
    if n <= 0:
        raise ValueError("small_cifar10 needs dataset.train_size")
    return DataShape(n, min(n, CIFAR_VALIDATION), 10000, 3, 32, 10, "cifar")


@dataclass(frozen=True)
class DatasetEntry:
    """A data set walign knows: its model family, how to load it, and its shape."""
    name: str
    family: str                 # 'cnn' (ConvNet) or 'rnn' (the Add-task RNN)
    loader: Callable[..., object]
    needs_root: bool = True     # read from dataset.root (else generated or shipped)
    shape: Callable[[dict], DataShape] | None = None  # from its dataset.* values; None for the RNN task
    summarize: Callable[[list], dict] = Data.summarize  # summary.json's result values from the records
    locate: Callable[..., object] | None = None  # (root, download?) -> ConfigError if the files are absent


def _load_add(device, generator, data_seed, sequences, length, train_size, precision):
    from .addtask import AddTask
    return AddTask.load(device, generator, data_seed, sequences, length, train_size, precision)


def _summarize_add(records: list[dict]) -> dict:
    from .addtask import AddTask
    return AddTask.summarize(records)


def _load_small_cifar10(device, root, verify_md5=True, train_size=None, download=False):
    if train_size is None:
        raise ConfigError("dataset small_cifar10 needs dataset.train_size (e.g. 45, 150, ..., 45000)")
    return load_cifar10(root, device, verify_md5, train_size, download)


# The one list of data set names: config checks, the app and the report all read it. A loader
# takes the device and the data set's dataset.* values (conf/dataset/<name>.yaml) as keywords.
DATASETS = {entry.name: entry for entry in (
    DatasetEntry("add", "rnn", _load_add, needs_root=False, summarize=_summarize_add),
    DatasetEntry("cifar10", "cnn", lambda device, root, verify_md5=True, download=False:
                 load_cifar10(root, device, verify_md5, download=download), locate=locate_cifar10,
                 shape=lambda _: DataShape(45000, 5000, 10000, 3, 32, 10, "cifar")),
    DatasetEntry("embedded", "cnn", lambda device: load_embedded(device), needs_root=False,
                 shape=lambda _: DataShape(1500, 1500, 1000, 3, 32, 10, "cifar")),
    DatasetEntry("imagenet", "cnn", lambda device, root, workers=8: load_imagenet(root, device, workers),
                 locate=locate_imagenet,
                 shape=lambda _: DataShape(1281167, 50000, 0, 3, 224, 1000, "imagenet", whole_batches=False)),
    DatasetEntry("kmnist", "cnn", lambda device, root, download=False: load_kmnist(root, device, download),
                 locate=locate_kmnist,
                 shape=lambda _: DataShape(55000, 5000, 10000, 1, 28, 10, "kmnist")),
    DatasetEntry("small_cifar10", "cnn", _load_small_cifar10, shape=_small_cifar_shape, locate=locate_cifar10),
)}


def loader_keys(name: str) -> list[str]:
    """The dataset.* values data set ``name`` takes (its loader's keyword arguments)."""
    import inspect
    return [p for p in inspect.signature(DATASETS[name].loader).parameters if p != "device"]


def train_examples(name: str, options: dict) -> int | None:
    """How many training examples data set ``name`` has with these dataset.* values, known
    without loading it (None where that needs the data: ImageNet folders, a missing size)."""
    entry = DATASETS[name]
    if entry.shape is None:
        size = options.get("train_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else None
    try:
        return entry.shape(options).train
    except (ValueError, TypeError):
        return None


def check_available(name: str, loading: dict) -> None:
    """ConfigError (one line) unless data set ``name``'s files are where ``loading`` (its
    dataset.root, dataset.download) says, downloading them first if asked; reads no data."""
    entry = DATASETS[name]
    if entry.needs_root and not loading.get("root"):
        raise ConfigError(f"dataset {name} needs dataset.root (the folder that holds it)")
    if entry.locate is not None:
        import inspect
        wanted = inspect.signature(entry.locate).parameters
        entry.locate(**{k: v for k, v in loading.items() if k in wanted})


def load(name: str, device, **options):
    """Load data set (or task) ``name`` onto ``device``; ``options`` are its dataset.* values."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    entry = DATASETS[name]
    if entry.needs_root and not options.get("root"):
        raise ConfigError(f"dataset {name} needs dataset.root (the folder that holds it)")
    return entry.loader(device, **options)
