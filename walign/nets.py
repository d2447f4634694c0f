"""The paper's convolutional networks (docs/method.md §1 and §2).

One class covers the CIFAR (7 conv), KMNIST (3 conv) and ImageNet (7 conv, stride-4 stem) stacks;
they differ only in their strides, input shape and class count. Three details matter for faithful
numbers and are easy to get wrong, so they are explicit here:

* NTK parameterisation: weights are N(0, 1) and the 1/sqrt(fan_in) factor is applied to the
  output of every linear map in the forward pass (so autograd puts it into the gradients too).
  The standard parameterisation divides the draws instead and applies no factor.
* Batch norm normalises every (c, h, w) element over the batch only, has no affine parameters and
  no running averages: batch statistics are used in training and in evaluation alike.
* TensorFlow 'SAME' padding: the extra row/column of an asymmetric pad goes bottom/right.

The network is exposed layer by layer (``layer``, ``activation``, ``pool``, ``head``) because the
learning rules wire the same layers into different computation graphs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .archs.base import Geometry, Layer
from .feedback import FeedbackConv2d, FeedbackLinear

BN_EPS = 1e-6
KERNEL = 3
ARCHITECTURES = {  # name -> conv strides (docs/method.md §2.4)
    "cifar": (1, 1, 1, 2, 1, 2, 1),
    "kmnist": (1, 2, 2),
    "imagenet": (4, 2, 1, 2, 1, 2, 1),
}
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}
PARAMETERIZATIONS = ("ntk", "standard")


def same_padding(size: int, stride: int, kernel: int = KERNEL) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one spatial axis; the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _BatchStatNorm(torch.autograd.Function):
    """Per-element batch norm with a hand-written backward.

    Autograd through the centre/square/mean/rsqrt chain keeps several full-size intermediates
    and runs one kernel per op; the closed form needs only h and 1/sigma:
    du = (dh - mean_b dh - h * mean_b(dh * h)) / sigma.
    """

    @staticmethod
    def forward(ctx, u):
        centred = u - u.mean(0, keepdim=True)
        rstd = torch.rsqrt(centred.square().mean(0, keepdim=True) + BN_EPS)
        h = centred.mul_(rstd)
        ctx.save_for_backward(h, rstd)
        return h

    @staticmethod
    def backward(ctx, grad):
        h, rstd = ctx.saved_tensors
        inner = grad - grad.mean(0, keepdim=True) - h * (grad * h).mean(0, keepdim=True)
        return inner.mul_(rstd)


def batch_stat_norm(u: torch.Tensor) -> torch.Tensor:
    """Normalise each feature-map element over the batch axis (biased variance, no affine).

    Statistics come from the batch at training and evaluation alike; gradients flow through the
    mean and the variance (the full batch-coupled backward).
    """
    return _BatchStatNorm.apply(u)


@dataclass(frozen=True)
class NetSpec:
    """Everything that fixes a network's shapes and forward function."""
    arch: str = "cifar"
    width: int = 16
    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    activation: str = "relu"
    parameterization: str = "ntk"

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; valid: {', '.join(ARCHITECTURES)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {self.parameterization!r}; "
                             f"valid: {', '.join(PARAMETERIZATIONS)}")
        if self.width <= 0:
            raise ValueError(f"width must be a positive integer, got {self.width}")


def conv_geometry(spec: NetSpec) -> Geometry:
    """The conv layers' and the head's shapes of the ConvNet ``spec`` describes: what the network
    is built from and what walign/cost.py counts (TF 'SAME' padding: H_out = ceil(H_in / stride))."""
    layers, channels, size = [], spec.in_channels, spec.image_size
    for stride in ARCHITECTURES[spec.arch]:
        size = math.ceil(size / stride)
        layers.append(Layer(channels, spec.width, KERNEL * KERNEL, size * size))
        channels = spec.width
    return Geometry(tuple(layers), spec.width, spec.num_classes)


class ConvNet(nn.Module):
    """Conv -> per-element batch norm -> activation, repeated; global average pool; linear head.

    It offers every capability of walign/archs/base.py: a head, feedback weights, layer taps and
    the chain of 3x3 convolutions the alignment estimator scores."""
    family = "cnn"
    capabilities = frozenset({"forward", "head", "feedback", "layers", "scoring"})

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        self.strides = ARCHITECTURES[spec.arch]
        self.act = ACTIVATIONS[spec.activation]
        self.parameterization, self.num_classes = spec.parameterization, spec.num_classes
        ntk = spec.parameterization == "ntk"
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.pads, self.scales, self.feature_shapes = [], [], []
        size = spec.image_size
        for stride, layer in zip(self.strides, conv_geometry(spec).layers, strict=True):
            self.weights.append(nn.Parameter(torch.zeros(layer.c_out, layer.c_in, KERNEL, KERNEL)))
            self.biases.append(nn.Parameter(torch.zeros(layer.c_out)))
            pad = same_padding(size, stride)
            self.pads.append((pad[0], pad[1], pad[0], pad[1]))  # F.pad order: left, right, top, bottom
            self.scales.append(1 / math.sqrt(KERNEL * KERNEL * layer.c_in) if ntk else 1.0)
            size = math.ceil(size / stride)
            self.feature_shapes.append((layer.c_out, size, size))
        self.fc_weight = nn.Parameter(torch.zeros(spec.num_classes, spec.width))
        self.fc_bias = nn.Parameter(torch.zeros(spec.num_classes))
        self.fc_scale = 1 / math.sqrt(spec.width) if ntk else 1.0

    @property
    def depth(self) -> int:
        return len(self.strides)

    def layer(self, l: int, a: torch.Tensor, feedback: torch.Tensor | None = None) -> torch.Tensor:
        """Post-batch-norm output h_l of conv layer l (0-based) for input a.

        With ``feedback`` the layer's input gradient is computed with that kernel instead of the
        forward one (feedback alignment); values and weight gradients are unchanged.
        """
        x = F.pad(a, self.pads[l])
        if feedback is None:
            u = F.conv2d(x, self.weights[l], stride=self.strides[l])
        else:
            u = FeedbackConv2d.apply(x, self.weights[l], feedback, self.strides[l])
        u = u * self.scales[l] + self.biases[l].view(1, -1, 1, 1)
        return batch_stat_norm(u)

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h)

    @staticmethod
    def pool(a: torch.Tensor) -> torch.Tensor:
        return a.mean(dim=(2, 3))

    def head(self, p: torch.Tensor, feedback: torch.Tensor | None = None) -> torch.Tensor:
        if feedback is None:
            z = p @ self.fc_weight.t()
        else:
            z = FeedbackLinear.apply(p, self.fc_weight, feedback)
        return z * self.fc_scale + self.fc_bias

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads."""
        a = x
        for l in range(self.depth):
            a = self.activation(self.layer(l, a))
        return self.pool(a)

    def forward(self, x: torch.Tensor, feedback: list[torch.Tensor] | None = None) -> torch.Tensor:
        a = x
        for l in range(self.depth):
            a = self.activation(self.layer(l, a, None if feedback is None else feedback[l]))
        return self.head(self.pool(a), None if feedback is None else feedback[-1])

    def feedback_weights(self) -> list[nn.Parameter]:
        """The weights whose transposes carry the error down: the conv kernels, then the head."""
        return [*self.weights, self.fc_weight]

    def draw_like(self, rng: np.random.RandomState, l: int) -> torch.Tensor:
        return _draw_like_convnet(rng, self, l)

    def initialize(self, seed: int, draw_extra: "ExtraDraw | None" = None) -> list[torch.Tensor]:
        return _initialize_convnet(self, seed, draw_extra)


INITIALIZATIONS = ("default", "xavier")


def xavier_factor(weight: torch.Tensor) -> float:
    """What turns a N(0, 1/fan_in) draw into Xavier's N(0, 2/(fan_in + fan_out)) (Glorot & Bengio;
    torch's fans: fan_in = inputs x kernel taps, fan_out = outputs x kernel taps)."""
    taps = weight[0, 0].numel() if weight.dim() > 2 else 1
    fan_in, fan_out = weight.shape[1] * taps, weight.shape[0] * taps
    return math.sqrt(2 * fan_in / (fan_in + fan_out))


def _init_factor(net: nn.Module, l: int) -> float:
    """1, or Xavier's factor for weight l when the run asks for it (``net.initialization``; the
    standard parameterisation only, whose draws are N(0, 1/fan_in))."""
    if getattr(net, "initialization", "default") != "xavier":
        return 1.0
    return xavier_factor(net.feedback_weights()[l])


def draw_like(rng: np.random.RandomState, net: nn.Module, l: int) -> torch.Tensor:
    """One float64 draw shaped and scaled like weight ``l`` of ``net.feedback_weights()`` (the
    network's own ``draw_like``, at Xavier's scale if the run uses it): what FA-style rules draw
    their feedback weights with."""
    draw = net.draw_like(rng, l)
    factor = _init_factor(net, l)
    return draw * factor if factor != 1.0 else draw


def _draw_like_convnet(rng: np.random.RandomState, net: ConvNet, l: int) -> torch.Tensor:
    """One float64 draw shaped like parameter ``l`` of ``net`` (conv kernel l, or the head when
    l == net.depth), at the parameterisation's scale, in the released code's layout (docs/method.md §1.3):
    a kernel is drawn as a (C_out, 9*C_in) matrix in (kh, kw, c_in) column order."""
    standard = net.spec.parameterization == "standard"
    if l == net.depth:
        draw = rng.randn(net.spec.num_classes, net.spec.width)
        return torch.from_numpy(draw / math.sqrt(net.spec.width) if standard else draw)
    c_out, c_in = net.weights[l].shape[:2]
    draw = rng.randn(c_out, KERNEL * KERNEL * c_in)
    if standard:
        draw = draw / math.sqrt(KERNEL * KERNEL * c_in)
    return torch.from_numpy(draw.reshape(c_out, KERNEL, KERNEL, c_in).transpose(0, 3, 1, 2).copy())


ExtraDraw = Callable[[np.random.RandomState, int], "torch.Tensor | None"]


def initialize(net: nn.Module, seed: int, draw_extra: ExtraDraw | None = None) -> list[torch.Tensor]:
    """Draw ``net``'s initial weights for ``seed`` (its own ``initialize``; a rule calls this for
    whatever network it trains). ``draw_extra(rng, i)`` is called after weight i of
    ``net.feedback_weights()`` is drawn, with the network's random stream; returns what it drew.

    With ``net.initialization == "xavier"`` (set by the run, standard parameterisation) each weight
    is then rescaled to Xavier's variance: the same draws, so every network gets it without knowing."""
    extras = net.initialize(seed, draw_extra)
    if getattr(net, "initialization", "default") == "xavier":
        with torch.no_grad():
            for l, weight in enumerate(net.feedback_weights()):
                weight.mul_(_init_factor(net, l))
    return extras


def _initialize_convnet(net: ConvNet, seed: int, draw_extra: ExtraDraw | None = None) -> list[torch.Tensor]:
    """Draw the initial weights with numpy's legacy RNG in the released code's order (docs/method.md §1.3).

    Conv kernels in layer order, then the head; biases are zero. A rule with random state of its
    own (FA's feedback kernels, DFA's projections) passes ``draw_extra(rng, l)``, called right
    after parameter l is drawn (l = net.depth after the head): the released code interleaves
    those draws with the forward weights, so rules without them share identical initial weights
    for a seed while FA's and DFA's differ from layer 2 on. Returns what ``draw_extra`` drew.
    """
    rng = np.random.RandomState(seed)
    extras = []
    with torch.no_grad():
        for l in range(net.depth + 1):
            weight, bias = (net.weights[l], net.biases[l]) if l < net.depth else (net.fc_weight, net.fc_bias)
            weight.copy_(_draw_like_convnet(rng, net, l))
            bias.zero_()
            extra = draw_extra(rng, l) if draw_extra is not None else None
            if extra is not None:
                extras.append(extra)
    return extras
