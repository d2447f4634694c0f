"""An example walign data set from outside walign: Fashion-MNIST, as ``dataset=fashion_mnist``.

This ONE file is the whole data set: no YAML under conf/, no change to walign. Use it as a
template for your own. A data set is a class registered with ``@register(NAME)``; what it declares:

* ``config``: its ``dataset.*`` keys with their defaults (walign generates ``dataset=NAME`` from
  it), plus defaults for the top-level ``epochs``, ``batch_size`` and ``lr``. A key whose default
  is true/false only accepts true/false; a key not listed here is refused.
* ``loading``: the keys that say where and how to read the files, not what is trained; they stay
  out of the run's identity (its directory name). Every other key is an identity option.
* ``needs_root``: the files are read from ``dataset.root`` (so a run refuses an empty root).
* ``locate``: check the files before anything starts (a one-line error if missing); here
  walign.datasets.files.find does that, and fetches them with torchvision when asked to.
* ``load``: the splits on a device, as a ``walign.datasets.ImageSplits``: train, validation, test,
  classes, channels, image size and the default network architecture (``arch=auto``).
* ``shape``: split sizes and input shape without loading (for cost estimates and batch checks).
* ``ImageDataSet`` (the base class) supplies the rest: ``family = "cnn"``, the classification
  ``summary_keys``/``summarize`` for summary.json, ``build_net`` (the paper's ConvNet) and
  ``flops``; ``DataSet.batch_size`` keeps the given batch size (default 100).

Make it visible with ``pip install -e examples/my_dataset`` (the entry point in pyproject.toml),
or without installing: ``python main.py +dataset_module=my_dataset dataset=fashion_mnist``.
"""
from __future__ import annotations

import os

import torch

from walign.datasets import ImageSplits, DataShape, TensorSplit, register
from walign.datasets.files import find
from walign.datasets.image import ImageDataSet
from walign.datasets.splits import nchw

VALIDATION = 5000  # the first 5000 training images; the other 55 000 are trained on
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@register("fashion_mnist")
class FashionMnist(ImageDataSet):
    """Fashion-MNIST in torchvision's layout, ``${root}/FashionMNIST/raw``: 28x28 grey, 10 classes."""
    config = {"root": "data",
              "download": False,   # true: fetch it into root with torchvision's download if missing
              "epochs": 100, "batch_size": 100, "lr": 1.0}
    loading = ("root", "download")
    needs_root = True

    @classmethod
    def locate(cls, root, download=False, **_):
        import torchvision
        find("Fashion-MNIST", os.path.join(root, "FashionMNIST", "raw"), FILES, download,
             torchvision.datasets.FashionMNIST, root,
             "set dataset.root to the folder that holds FashionMNIST/raw, or dataset.download=true to fetch it")

    @classmethod
    def load(cls, device, root, download=False):
        import torchvision
        cls.locate(root, download)
        train = torchvision.datasets.FashionMNIST(root, train=True, download=False)
        test = torchvision.datasets.FashionMNIST(root, train=False, download=False)
        x, y, v = train.data.numpy(), train.targets, VALIDATION
        return ImageSplits("fashion_mnist",
                    TensorSplit(nchw(x[v:]), y[v:], device),                   # training
                    TensorSplit(nchw(x[:v]), y[:v], device),                   # validation
                    TensorSplit(nchw(test.data.numpy()), test.targets, device),  # official test
                    num_classes=10, in_channels=1, image_size=28, arch="kmnist")  # the paper's 3-conv net

    @classmethod
    def shape(cls, options):
        return DataShape(train=55000, val=5000, test=10000, channels=1, image_size=28, classes=10, arch="kmnist")
