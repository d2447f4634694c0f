"""The paper's networks as the first entries: the three convolutional stacks (docs/method.md §2)
and the Add task's RNN. ``arch=auto`` picks the data set's own (CIFAR-10: cifar, KMNIST: kmnist,
ImageNet: imagenet, Add: add_rnn)."""
from __future__ import annotations

from .base import Arch, register


class _PaperConvNet(Arch):
    """One of walign.nets.ConvNet's stacks; no options (the run's width is its channel count)."""
    family = "cnn"
    capabilities = frozenset({"forward", "head", "feedback", "layers", "scoring"})

    @classmethod
    def spec(cls, shape, width, activation="relu", parameterization="ntk"):
        from ..nets import NetSpec
        return NetSpec(cls.name, width, shape.channels, shape.image_size, shape.classes, activation, parameterization)

    @classmethod
    def build(cls, shape, width: int, activation: str, parameterization: str):
        from ..nets import ConvNet
        return ConvNet(cls.spec(shape, width, activation, parameterization))

    @classmethod
    def geometry(cls, shape, width: int):
        from ..nets import conv_geometry
        return conv_geometry(cls.spec(shape, width))


@register("cifar")
class Cifar(_PaperConvNet):
    """Seven 3x3 conv layers, strides 1, 1, 1, 2, 1, 2, 1 (the CIFAR-10 network)."""


@register("kmnist")
class Kmnist(_PaperConvNet):
    """Three 3x3 conv layers, strides 1, 2, 2 (the KMNIST network)."""


@register("imagenet")
class Imagenet(_PaperConvNet):
    """Seven 3x3 conv layers with a stride-4 stem, strides 4, 2, 1, 2, 1, 2, 1 (the ImageNet network)."""


@register("add_rnn")
class AddRnn(Arch):
    """The Add task's ReLU RNN (docs/method.md §2.6): ``width`` hidden units, one learned initial
    state per batch slot, so its batch size is fixed when it is built."""
    family = "rnn"
    capabilities = frozenset({"forward", "head", "feedback", "layers", "scoring"})  # all its rules need

    @classmethod
    def build(cls, shape, width: int, batch_size: int):
        from ..rnn import AddRNN
        return AddRNN(width, batch_size)
