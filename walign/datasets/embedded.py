"""The real CIFAR-10 sample shipped inside the package (walign/assets/cifar10_sample.npz, made by
scripts/make_embedded_cifar10.py): 1500 training images (numbers 5000-6499 of the training file),
1500 validation images (0-1499) and 1000 official test images, kept as their JPEG bytes."""
from __future__ import annotations

import io
from importlib import resources

import numpy as np
import torch

from .base import DataShape, register
from .image import ImageDataSet
from .splits import ImageSplits, TensorSplit, nchw

EMBEDDED_ASSET = "cifar10_sample.npz"


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Decode concatenated JPEG files (byte ranges given by ``offsets``) into (N, 32, 32, 3)."""
    from PIL import Image
    out = [np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"), dtype=np.uint8)
           for a, b in zip(offsets[:-1], offsets[1:])]
    return np.stack(out)


def load_embedded(device) -> ImageSplits:
    """The shipped sample on ``device``."""
    with resources.files("walign.assets").joinpath(EMBEDDED_ASSET).open("rb") as f:
        pack = dict(np.load(f))
    splits = {}
    for split in ("train", "val", "test"):
        images = decode_jpegs(pack[f"{split}_jpeg"], pack[f"{split}_offsets"])
        splits[split] = TensorSplit(nchw(images), torch.from_numpy(pack[f"{split}_labels"]), device)
    return ImageSplits("embedded", splits["train"], splits["val"], splits["test"], 10, 3, 32, "cifar")


@register("embedded")
class Embedded(ImageDataSet):
    """The shipped CIFAR-10 sample: no download, sized for a laptop CPU."""
    config = {"epochs": 20,       # ~2.5 min at width 32 on a laptop CPU; not a paper setting
              "batch_size": 50,   # twice the steps per epoch of the paper's 100
              "lr": 5.0}

    @classmethod
    def load(cls, device):
        return load_embedded(device)

    @classmethod
    def shape(cls, options):
        return DataShape(1500, 1500, 1000, 3, 32, 10, "cifar")
