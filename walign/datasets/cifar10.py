"""CIFAR-10 and small CIFAR-10 (docs/method.md §3.1, §3.3), read from torchvision's layout.

The split is the released code's: the validation split (what the paper reports as "test"
accuracy) is the first 5000 images of the official training set, training is the other 45 000;
the official test split is scored as an extra column.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..errors import ConfigError
from .base import DataShape, register
from .files import find
from .image import ImageDataSet
from .splits import ImageSplits, TensorSplit, nchw

CIFAR_VALIDATION = 5000


def locate_cifar10(root: str, download: bool = False) -> str:
    """The folder holding CIFAR-10's batches (fetched first when ``download``); ConfigError if absent."""
    import torchvision

    folder = os.path.join(root, "cifar-10-batches-py")
    find("CIFAR-10", folder, [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], download,
         torchvision.datasets.CIFAR10, root, "give data_root=DIR with DIR/cifar10/cifar-10-batches-py (or "
         "dataset.root=DIR/cifar10), or dataset.download=true to fetch it with torchvision")
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
                 download: bool = False) -> ImageSplits:
    """CIFAR-10 with the released split: validation = first 5000 training images, training = the
    remaining 45 000. With ``train_size`` N (small CIFAR-10): train on the first N of those and
    validate on the first min(N, 5000); the run then uses the released batch-size rule
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
    return ImageSplits(name, TensorSplit(nchw(x_train), torch.from_numpy(y_train), device),
                TensorSplit(nchw(x_val), torch.from_numpy(y_val), device),
                TensorSplit(nchw(x_test), torch.from_numpy(y_test), device),
                10, 3, 32, "cifar")


def small_cifar_batch_size(n: int, preferred: int = 100) -> int:
    """The released code's rule: N if N < 100, else gcd(100, N) (which is 100 when 100 divides N)."""
    return n if preferred > n else math.gcd(preferred, n)


@register("cifar10")
class Cifar10(ImageDataSet):
    """CIFAR-10 in torchvision's layout, ``${root}/cifar-10-batches-py``: train on 45 000 images,
    validate on the first 5000 of the training file."""
    config = {"root": None,         # null: <data_root>/cifar10
              "download": False,    # true: fetch it into root with torchvision's download if missing
              "verify_md5": True,   # false for a rebuilt copy whose bytes differ from the original
              "epochs": 150, "batch_size": 100, "lr": 1.0}
    loading = ("root", "download", "verify_md5")
    needs_root = True
    folder = "cifar10"

    @classmethod
    def locate(cls, root, download=False, **_):
        locate_cifar10(root, download)

    @classmethod
    def load(cls, device, root, verify_md5=True, download=False):
        return load_cifar10(root, device, verify_md5, download=download)

    @classmethod
    def shape(cls, options):
        return DataShape(45000, 5000, 10000, 3, 32, 10, "cifar")


@register("small_cifar10")
class SmallCifar10(Cifar10):
    """Table 9's small CIFAR-10: train on the first ``train_size`` images of the 45 000-image
    training split, validate on the first min(train_size, 5000); batch size by the released rule."""
    config = {"root": None, "download": False, "verify_md5": True,   # root null: <data_root>/cifar10
              "train_size": 4500,   # 45 | 150 | 450 | 1500 | 4500 | 15000 | 45000
              "epochs": 150,
              "batch_size": None,   # decided by train_size: N if N < 100, else gcd(100, N)
              "lr": 1.0}

    @classmethod
    def load(cls, device, root, verify_md5=True, train_size=None, download=False):
        if train_size is None:
            raise ConfigError("dataset small_cifar10 needs dataset.train_size (e.g. 45, 150, ..., 45000)")
        return load_cifar10(root, device, verify_md5, train_size, download)

    @classmethod
    def shape(cls, options):
        n = int(options.get("train_size") or 0)
        if n <= 0:
            raise ValueError("small_cifar10 needs dataset.train_size")
        return DataShape(n, min(n, CIFAR_VALIDATION), 10000, 3, 32, 10, "cifar")

    @classmethod
    def batch_size(cls, options, given):
        size = options.get("train_size")
        if isinstance(size, int) and not isinstance(size, bool):
            return small_cifar_batch_size(size)
        return given or 100
