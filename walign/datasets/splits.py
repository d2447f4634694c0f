"""Splits of a data set and the classification task over them.

Image sets that fit in memory are held as one uint8 tensor on the training device and batched by
index there (``TensorSplit``), so a training step never touches a DataLoader or the host; ImageNet
streams through a DataLoader (``LoaderSplit``). Every split is drawn in the released code's way:
a fresh permutation from the caller's numpy RNG, consumed in equal batches (docs/method.md §3.6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..runs import best


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
                                             drop_last=self.drop_last,
                                             pin_memory=torch.device(self.device).type == "cuda")  # (CPU: nothing to pin)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class LoadedData(Protocol):
    """What the training loop (walign.train) needs from loaded data: ``ImageSplits`` for the image sets,
    ``walign.datasets.add.AddTask`` for the Add task."""
    family: str             # the model family that learns it: 'cnn' or 'rnn'
    train: TensorSplit | LoaderSplit

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The regression targets of a batch's labels."""

    def evaluate(self, net, batch_size: int, rng: np.random.RandomState, test_rng: np.random.RandomState,
                 eval_test: bool = True) -> dict:
        """The epoch's evaluation metrics (drawing batch orders from ``rng`` as the released code)."""

    def summarize(self, records: list[dict]) -> dict:
        """The run's summary values from its per-epoch records."""


# summary.json's result keys of a classification run (ImageSplits.summarize)
CLASSIFICATION_KEYS = ("best_val_acc", "best_val_epoch", "final_val_acc", "test_acc_at_best_val", "best_test_acc",
                       "final_test_acc", "final_train_loss")


@dataclass
class ImageSplits:
    """The splits of one image data set plus what the network needs to know about its inputs."""
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
        """Best (over epochs, docs/method.md §4.4) and final accuracies."""
        out = dict.fromkeys(CLASSIFICATION_KEYS)
        out.update(best_val_acc=best(records, "val_acc"), best_test_acc=best(records, "test_acc"))
        if records:
            last = records[-1]
            out.update(final_val_acc=last["val_acc"], final_test_acc=last["test_acc"],
                       final_train_loss=last["train_loss"])
            if out["best_val_acc"] is not None:
                top = next(r for r in records if r["val_acc"] == out["best_val_acc"])
                out.update(best_val_epoch=top["epoch"], test_acc_at_best_val=top["test_acc"])
        return out


def accuracy(net: torch.nn.Module, split, batch_size: int, rng: np.random.RandomState) -> float | None:
    """Mean over random equal-sized batches of top-1 accuracy (batch-statistics BN: batch
    composition matters, so evaluation batches are drawn like training batches). Gradients are
    off inside the body rather than by a decorator, so mutation testing (docs/contributing.md)
    reaches this function."""
    correct = torch.zeros((), dtype=torch.long, device=next(net.parameters()).device)
    count = 0
    with torch.no_grad():
        for x, labels in split.batches(rng, batch_size):
            correct += (net(x).argmax(1) == labels).sum()
            count += len(labels)
    return correct.item() / count if count else None


def nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W[, C]) uint8 array -> (N, C, H, W) uint8 tensor."""
    if images.ndim == 3:
        images = images[..., None]
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


# The names these had before (``Data``: the loaded splits of an image data set; ``Task``: what the
# training loop reads from any loaded data), kept so that data-set plugins written with them still import.
Data = ImageSplits
Task = LoadedData
