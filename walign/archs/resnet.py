"""The CIFAR ResNet of He et al. (2016), as the field's library for these rules (biotorch) builds it:
a 3x3 stem, three stages of basic blocks (two 3x3 convolutions each) at ``width``, 2 ``width`` and
4 ``width`` channels, the second and third stages starting with stride 2, identity shortcuts that
subsample and zero-pad channels where the shape changes (He et al.'s option A, no parameters),
global average pooling and a linear head. ``depth`` = 6 n + 2 for n blocks per stage: 20, 32, 44,
56, 110. ``width`` 16 is the published network; 32 and 64 are its 2x and 4x widenings.

Two choices follow walign's other networks rather than torchvision's BatchNorm2d, so that every
rule sees the same kind of network (docs/method.md §2.7): the batch norm normalises each channel
over the batch and the positions with batch statistics in training and evaluation alike, without
affine parameters or running averages (a frozen copy of the network then has no state to keep in
step); and under the NTK parameterisation each convolution's output and the head's are scaled
by 1/sqrt(fan-in) with N(0, 1) weights. The convolutions have no bias (a batch norm follows each).

Capabilities: a head and feedback weights on every convolution and the head, so backprop, FA,
Align-prop, Align-zero, the sign-concordant rules and last-layer training run on it. It has no
chain of layer taps: a block's output mixes two depths, so DFA's and Align-ada's per-layer signals
are not defined here and those rules are refused.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..feedback import FeedbackConv2d, FeedbackLinear
from .base import Arch, Geometry, Layer, draw_in_order, gaussian_like, register

BN_EPS = 1e-5
TAPS = 9


def blocks(width: int, depth: int) -> list[tuple[int, int, int]]:
    """(c_in, c_out, stride) of every basic block, in order."""
    n = (depth - 2) // 6
    out, c_in = [], width
    for stage in range(3):
        c_out = width * 2 ** stage
        for b in range(n):
            out.append((c_in, c_out, 2 if stage > 0 and b == 0 else 1))
            c_in = c_out
    return out


def geometry(channels: int, image_size: int, classes: int, width: int, depth: int) -> tuple[Geometry, list[int]]:
    """The convolutions' shapes in order (stem, then two per block) and their strides."""
    size = image_size
    layers, strides = [Layer(channels, width, TAPS, size * size)], [1]
    for c_in, c_out, stride in blocks(width, depth):
        size = -(-size // stride)
        layers += [Layer(c_in, c_out, TAPS, size * size), Layer(c_out, c_out, TAPS, size * size)]
        strides += [stride, 1]
    return Geometry(tuple(layers), 4 * width, classes), strides


def channel_norm(u: torch.Tensor) -> torch.Tensor:
    """Per-channel batch norm from the batch's statistics, no affine parameters, no running averages."""
    return F.batch_norm(u, None, None, training=True, eps=BN_EPS)


def shortcut(a: torch.Tensor, c_out: int, stride: int) -> torch.Tensor:
    """Identity, subsampled and zero-padded in channels where the block changes shape."""
    if stride != 1:
        a = a[:, :, ::stride, ::stride]
    extra = c_out - a.shape[1]
    return F.pad(a, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else a


class ResNet(nn.Module):
    family = "cnn"
    capabilities = frozenset({"forward", "head", "feedback"})

    def __init__(self, channels: int, image_size: int, classes: int, width: int, depth: int = 20,
                 activation: str = "relu", parameterization: str = "ntk"):
        super().__init__()
        from ..nets import ACTIVATIONS
        self.act, self.parameterization, self.num_classes = ACTIVATIONS[activation], parameterization, classes
        self.geometry, self.strides = geometry(channels, image_size, classes, width, depth)
        self.blocks = blocks(width, depth)
        ntk = parameterization == "ntk"
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(l.c_out, l.c_in, 3, 3)) for l in self.geometry.layers)
        self.scales = [1 / math.sqrt(TAPS * l.c_in) if ntk else 1.0 for l in self.geometry.layers]
        self.fc_weight = nn.Parameter(torch.zeros(classes, self.geometry.features))
        self.fc_bias = nn.Parameter(torch.zeros(classes))
        self.fc_scale = 1 / math.sqrt(self.geometry.features) if ntk else 1.0

    def conv(self, i: int, a: torch.Tensor, feedback: torch.Tensor | None = None) -> torch.Tensor:
        """Convolution i (0: the stem), scaled and batch-normalised, before the activation."""
        x = F.pad(a, (1, 1, 1, 1))
        if feedback is None:
            u = F.conv2d(x, self.weights[i], stride=self.strides[i])
        else:
            u = FeedbackConv2d.apply(x, self.weights[i], feedback, self.strides[i])
        return channel_norm(u * self.scales[i])

    def head(self, p: torch.Tensor, feedback: torch.Tensor | None = None) -> torch.Tensor:
        z = p @ self.fc_weight.t() if feedback is None else FeedbackLinear.apply(p, self.fc_weight, feedback)
        return z * self.fc_scale + self.fc_bias

    def features(self, x: torch.Tensor, feedback: list[torch.Tensor] | None = None) -> torch.Tensor:
        fb = feedback if feedback is not None else [None] * (len(self.weights) + 1)
        a = self.act(self.conv(0, x, fb[0]))
        for b, (_, c_out, stride) in enumerate(self.blocks):
            h = self.act(self.conv(1 + 2 * b, a, fb[1 + 2 * b]))
            a = self.act(self.conv(2 + 2 * b, h, fb[2 + 2 * b]) + shortcut(a, c_out, stride))
        return a.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, feedback: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self.head(self.features(x, feedback), None if feedback is None else feedback[-1])

    def feedback_weights(self) -> list[nn.Parameter]:
        return [*self.weights, self.fc_weight]

    def draw_like(self, rng: np.random.RandomState, i: int) -> torch.Tensor:
        return gaussian_like(rng, self.feedback_weights()[i], self.parameterization)

    def initialize(self, seed: int, draw_extra=None) -> list[torch.Tensor]:
        """Every weight drawn in order from numpy's legacy RNG (``draw_extra`` after each); the head's bias zero."""
        return draw_in_order(self, seed, draw_extra, [self.fc_bias])


@register("resnet20")
class ResNet20(Arch):
    """He et al.'s CIFAR ResNet; ``depth`` 20 (default), 32, 44, 56 or 110; ``width`` the first
    stage's channels (16 as published)."""
    family = "cnn"
    capabilities = ResNet.capabilities

    @classmethod
    def build(cls, shape, width: int, activation: str, parameterization: str, depth: int = 20):
        return ResNet(shape.channels, shape.image_size, shape.classes, width, depth, activation, parameterization)

    @classmethod
    def geometry(cls, shape, width: int, depth: int = 20) -> Geometry:
        return geometry(shape.channels, shape.image_size, shape.classes, width, depth)[0]

    @classmethod
    def check(cls, options: dict) -> None:
        from ..errors import ConfigError
        depth = options["depth"]
        if depth < 8 or (depth - 2) % 6 or depth > 1202:
            raise ConfigError(f"arch.depth must be 6 n + 2 for n >= 1 blocks per stage (20, 32, 44, 56, 110, ... "
                              f"up to 1202), got {depth}")
