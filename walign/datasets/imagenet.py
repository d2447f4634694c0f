"""ILSVRC-12 (docs/method.md §3.4) as ImageFolder trees ``root/train`` and ``root/val``, streamed
through a DataLoader with the paper's transforms and plain one-hot targets."""
from __future__ import annotations

import os

from ..errors import ConfigError
from .base import DataShape, register
from .files import missing
from .image import ImageDataSet
from .splits import ImageSplits, LoaderSplit

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def locate_imagenet(root: str) -> None:
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(root, split)):
            raise missing("ImageNet", os.path.join(root, split), "give data_root=DIR with DIR/imagenet (or dataset.root) holding "
                          "train/ and val/ in ImageFolder layout (one sub-folder per class)")


def load_imagenet(root: str, device, workers: int = 8) -> ImageSplits:
    """The two ImageFolder trees with random-resized-crop training and centre-crop evaluation."""
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
    return ImageSplits("imagenet", LoaderSplit(train, device, workers), LoaderSplit(val, device, workers),
                None, len(train.classes), 3, 224, "imagenet", label_offset=0.0)


@register("imagenet")
class ImageNet(ImageDataSet):
    """ILSVRC-12 (Figure 5): 1000 classes, 224 x 224, the 7-conv net with a stride-4 stem."""
    config = {"root": None,   # null: <data_root>/imagenet
              "workers": 8, "epochs": 300, "batch_size": 100, "lr": 5.0}
    loading = ("root", "workers")
    needs_root = True
    folder = "imagenet"

    @classmethod
    def locate(cls, root, **_):
        locate_imagenet(root)

    @classmethod
    def load(cls, device, root, workers=8):
        return load_imagenet(root, device, workers)

    @classmethod
    def shape(cls, options):
        return DataShape(1281167, 50000, 0, 3, 224, 1000, "imagenet", whole_batches=False)
