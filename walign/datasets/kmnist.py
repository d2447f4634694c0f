"""KMNIST (docs/method.md §3.2) in torchvision's layout: validation = the first 5000 training
images, training = the other 55 000; the official test split is an extra column."""
from __future__ import annotations

import os

import torch

from .base import DataShape, register
from .files import find
from .image import ImageDataSet
from .splits import ImageSplits, TensorSplit, nchw

KMNIST_VALIDATION = 5000


def locate_kmnist(root: str, download: bool = False) -> None:
    """KMNIST's raw files must be under root/KMNIST/raw (fetched first when ``download``)."""
    import torchvision

    raw = os.path.join(root, "KMNIST", "raw")
    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    find("KMNIST", raw, files, download, torchvision.datasets.KMNIST, root, "give data_root=DIR with "
         "DIR/kmnist/KMNIST/raw (or dataset.root=DIR/kmnist), or dataset.download=true to fetch it with torchvision")


def load_kmnist(root: str, device, download: bool = False) -> ImageSplits:
    """KMNIST on ``device``, with the released split."""
    import torchvision

    locate_kmnist(root, download)
    train = torchvision.datasets.KMNIST(root, train=True, download=False)
    test = torchvision.datasets.KMNIST(root, train=False, download=False)
    x, y = train.data.numpy(), train.targets.numpy()
    v = KMNIST_VALIDATION
    return ImageSplits("kmnist", TensorSplit(nchw(x[v:]), torch.from_numpy(y[v:]), device),
                TensorSplit(nchw(x[:v]), torch.from_numpy(y[:v]), device),
                TensorSplit(nchw(test.data.numpy()), test.targets, device), 10, 1, 28, "kmnist")


@register("kmnist")
class Kmnist(ImageDataSet):
    """KMNIST in torchvision's layout, ``${root}/KMNIST/raw``."""
    config = {"root": None,         # null: <data_root>/kmnist
              "download": False,    # true: fetch it into root with torchvision's download if missing
              "epochs": 100, "batch_size": 100, "lr": 1.0}
    loading = ("root", "download")
    needs_root = True
    folder = "kmnist"

    @classmethod
    def locate(cls, root, download=False, **_):
        locate_kmnist(root, download)

    @classmethod
    def load(cls, device, root, download=False):
        return load_kmnist(root, device, download)

    @classmethod
    def shape(cls, options):
        return DataShape(55000, 5000, 10000, 1, 28, 10, "kmnist")
