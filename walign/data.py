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
from dataclasses import dataclass
from typing import Callable
from importlib import resources

import numpy as np
import torch

from .errors import ConfigError
from .runs import best

CIFAR_VALIDATION = 5000
KMNIST_VALIDATION = 5000


class TensorSplit:
    """Images (N, C, H, W) uint8 and integer labels, resident on one device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str = "cpu"):
        self.images = images.to(device)
        self.labels = labels.long().to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, rng: np.random.RandomState, batch_size: int):
        """A fresh permutation from ``rng``, consumed in floor(N / batch_size) equal batches."""
        order = torch.from_numpy(rng.permutation(len(self))).to(self.images.device)
        for i in range(len(self) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield self.images[idx].float().div_(255), self.labels[idx]

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
    dataset_batch_size: int | None = None  # a data set may dictate its batch size (small CIFAR)

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


# ----------------------------------------------------------------------------- CIFAR-10
def _read_cifar10(root: str, verify_md5: bool):
    """(train images, train labels, test images, test labels) from torchvision's layout."""
    import torchvision

    folder = os.path.join(root, "cifar-10-batches-py")
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all(os.path.isfile(os.path.join(folder, n)) for n in names):
        raise _missing("CIFAR-10", folder, "set dataset.root to the folder that holds "
                       "cifar-10-batches-py (torchvision.datasets.CIFAR10(root, download=True) "
                       "fetches it; offline, shared/data/cifar10/make_cifar10.py ROOT rebuilds it)")

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


def load_cifar10(root: str, device, verify_md5: bool = True, train_size: int | None = None) -> Data:
    """CIFAR-10 with the released split: validation = first 5000 training images, training = the
    remaining 45 000. With ``train_size`` N (small CIFAR-10, SPEC 3.3): train on the first N of
    those, validate on the first min(N, 5000), and use the released batch-size rule."""
    x, y, x_test, y_test = _read_cifar10(root, verify_md5)
    x_val, y_val, x_train, y_train = x[:CIFAR_VALIDATION], y[:CIFAR_VALIDATION], x[CIFAR_VALIDATION:], y[CIFAR_VALIDATION:]
    batch_size, name = None, "cifar10"
    if train_size is not None:
        if not 0 < train_size <= len(x_train):
            raise ConfigError(f"dataset.train_size must be in 1..{len(x_train)}, got {train_size}")
        x_train, y_train = x_train[:train_size], y_train[:train_size]
        n_val = min(train_size, CIFAR_VALIDATION)
        x_val, y_val = x_val[:n_val], y_val[:n_val]
        batch_size, name = small_cifar_batch_size(train_size), "small_cifar10"
    return Data(name, TensorSplit(_nchw(x_train), torch.from_numpy(y_train), device),
                TensorSplit(_nchw(x_val), torch.from_numpy(y_val), device),
                TensorSplit(_nchw(x_test), torch.from_numpy(y_test), device),
                10, 3, 32, "cifar", dataset_batch_size=batch_size)


def small_cifar_batch_size(n: int, preferred: int = 100) -> int:
    """The released code's rule: N if N < 100, else gcd(100, N) (which is 100 when 100 divides N)."""
    return n if preferred > n else math.gcd(preferred, n)


# ----------------------------------------------------------------------------- KMNIST
def load_kmnist(root: str, device) -> Data:
    """KMNIST in torchvision's layout; validation = first 5000 training images (train: 55 000)."""
    import torchvision

    raw = os.path.join(root, "KMNIST", "raw")
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if not all(os.path.isfile(os.path.join(raw, f)) for f in files):
        raise _missing("KMNIST", raw, "set dataset.root to the folder that holds KMNIST/raw "
                       "(torchvision.datasets.KMNIST(root, download=True) fetches it)")
    train = torchvision.datasets.KMNIST(root, train=True, download=False)
    test = torchvision.datasets.KMNIST(root, train=False, download=False)
    x, y = train.data.numpy(), train.targets.numpy()
    v = KMNIST_VALIDATION
    return Data("kmnist", TensorSplit(_nchw(x[v:]), torch.from_numpy(y[v:]), device),
                TensorSplit(_nchw(x[:v]), torch.from_numpy(y[:v]), device),
                TensorSplit(_nchw(test.data.numpy()), test.targets, device), 10, 1, 28, "kmnist")


# ----------------------------------------------------------------------------- ImageNet
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_imagenet(root: str, device, workers: int = 8) -> Data:
    """ILSVRC-12 as ImageFolder trees root/train and root/val (SPEC 3.4 transforms, one-hot targets)."""
    import torchvision
    from torchvision import transforms as T

    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise _missing("ImageNet", os.path.join(root, split), "set dataset.root to a folder with "
                           "train/ and val/ in ImageFolder layout (one sub-folder per class)")
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
class DatasetEntry:
    """A data set walign knows: its model family and how to load it."""
    name: str
    family: str                 # 'cnn' (ConvNet) or 'rnn' (the Add-task RNN)
    loader: Callable[..., object]
    needs_root: bool = True     # read from dataset.root (else generated or shipped)


def _load_add(device, root=None, verify_md5=True, train_size=None, **options):
    from .rnn import AddTask
    return AddTask.load(device, train_size=train_size or 300, **options)


def _load_small_cifar10(device, root, verify_md5=True, train_size=None, **options):
    if train_size is None:
        raise ConfigError("dataset small_cifar10 needs dataset.train_size (e.g. 45, 150, ..., 45000)")
    return load_cifar10(root, device, verify_md5, train_size)


# The one list of data set names: config checks, the app and the report all read it.
DATASETS = {entry.name: entry for entry in (
    DatasetEntry("add", "rnn", _load_add, needs_root=False),
    DatasetEntry("cifar10", "cnn", lambda device, root, verify_md5=True, **_: load_cifar10(root, device, verify_md5)),
    DatasetEntry("embedded", "cnn", lambda device, root=None, **_: load_embedded(device), needs_root=False),
    DatasetEntry("imagenet", "cnn", lambda device, root, workers=8, **_: load_imagenet(root, device, workers)),
    DatasetEntry("kmnist", "cnn", lambda device, root, **_: load_kmnist(root, device)),
    DatasetEntry("small_cifar10", "cnn", _load_small_cifar10),
)}


def load(name: str, device, root: str | None = None, verify_md5: bool = True, **options):
    """Load data set (or task) ``name`` onto ``device``; ``options`` are its dataset.* values."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    entry = DATASETS[name]
    if entry.needs_root and not root:
        raise ConfigError(f"dataset {name} needs dataset.root (the folder that holds it)")
    return entry.loader(device, root=root, verify_md5=verify_md5, **options)
