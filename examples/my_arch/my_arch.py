"""An example walign architecture from outside walign: a LeNet-style network, as ``arch=lenet``.

This ONE file is the whole network: no YAML under conf/, no change to walign. Use it as a template
for your own. An architecture is an entry class registered with ``@register(NAME)`` (what the
config and the checks need before anything is built) plus the ``nn.Module`` it builds:

* ``family = "cnn"``: a feed-forward classifier of images, trained by the CNN rules;
* ``capabilities``: what it offers the rules. This one offers a plain forward pass, a separate
  linear head and feedback weights on every layer, so backprop, Align-zero, Align-prop, FA, the
  sign-concordant rules and last-layer training run on it; DFA and Align-ada, which need a tap at
  every layer's output, are refused in one line;
* ``build``: the network. It receives those of the run's ``shape``, ``width``, ``batch_size``,
  ``activation`` and ``parameterization`` that it names; its other keyword arguments are the
  options (``arch.hidden=...``), typed by their annotations and defaults;
* ``geometry``: the shapes of its weight layers, which the network is built from and which
  walign's cost estimates count (FLOPs, weight bytes).

Make it visible with ``pip install -e examples/my_arch`` (the entry point in pyproject.toml), or
without installing: ``python main.py +arch_module=my_arch arch=lenet rule=fa``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from walign.archs import Arch, Geometry, Layer, draw_in_order, gaussian_like, register
from walign.feedback import FeedbackConv2d, FeedbackLinear

KERNEL = 5


def lenet_geometry(channels: int, image_size: int, classes: int, width: int, hidden: int) -> Geometry:
    """Two 5x5 convolutions ('same' padding, each followed by 2x2 average pooling) at width and
    2 width channels, a hidden linear layer, then the head."""
    after_one, after_two = image_size // 2, image_size // 4
    return Geometry((Layer(channels, width, KERNEL * KERNEL, image_size ** 2),
                     Layer(width, 2 * width, KERNEL * KERNEL, after_one ** 2),
                     Layer(2 * width * after_two ** 2, hidden, 1, 1)), hidden, classes)


class LeNet(nn.Module):
    family = "cnn"
    capabilities = frozenset({"forward", "head", "feedback"})

    def __init__(self, channels, image_size, classes, width, hidden, parameterization):
        super().__init__()
        layers = lenet_geometry(channels, image_size, classes, width, hidden).layers
        self.parameterization, self.num_classes = parameterization, classes
        ntk = parameterization == "ntk"
        self.conv1 = nn.Parameter(torch.zeros(width, channels, KERNEL, KERNEL))
        self.conv2 = nn.Parameter(torch.zeros(2 * width, width, KERNEL, KERNEL))
        self.hidden = nn.Parameter(torch.zeros(hidden, layers[2].c_in))
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(width)), nn.Parameter(torch.zeros(2 * width)),
                                        nn.Parameter(torch.zeros(hidden))])
        self.fc_weight = nn.Parameter(torch.zeros(classes, hidden))
        self.fc_bias = nn.Parameter(torch.zeros(classes))
        # NTK: N(0, 1) weights, 1/sqrt(fan-in) applied in the forward pass
        self.scales = [1 / math.sqrt(l.c_in * l.taps) if ntk else 1.0 for l in layers]
        self.fc_scale = 1 / math.sqrt(hidden) if ntk else 1.0

    def _conv(self, i, weight, a, feedback):
        x = F.pad(a, (2, 2, 2, 2))
        u = F.conv2d(x, weight) if feedback is None else FeedbackConv2d.apply(x, weight, feedback, 1)
        return F.avg_pool2d(torch.relu(u * self.scales[i] + self.biases[i].view(1, -1, 1, 1)), 2)

    def features(self, x, feedback=None):
        fb = feedback if feedback is not None else [None] * 4
        a = self._conv(0, self.conv1, x, fb[0])
        a = self._conv(1, self.conv2, a, fb[1]).flatten(1)
        z = a @ self.hidden.t() if fb[2] is None else FeedbackLinear.apply(a, self.hidden, fb[2])
        return torch.relu(z * self.scales[2] + self.biases[2])

    def head(self, p, feedback=None):
        z = p @ self.fc_weight.t() if feedback is None else FeedbackLinear.apply(p, self.fc_weight, feedback)
        return z * self.fc_scale + self.fc_bias

    def forward(self, x, feedback=None):
        return self.head(self.features(x, feedback), None if feedback is None else feedback[-1])

    def feedback_weights(self):
        return [self.conv1, self.conv2, self.hidden, self.fc_weight]

    def draw_like(self, rng: np.random.RandomState, i: int) -> torch.Tensor:
        """N(0, 1) shaped like weight i (N(0, 1/fan-in) under the standard parameterisation)."""
        return gaussian_like(rng, self.feedback_weights()[i], self.parameterization)

    def initialize(self, seed, draw_extra=None):
        """Weights in order from numpy's legacy RNG (an FA-style rule's draws after each); biases zero."""
        return draw_in_order(self, seed, draw_extra, [*self.biases, self.fc_bias])


@register("lenet")
class LenetEntry(Arch):
    """LeNet-style: conv(width) - pool - conv(2 width) - pool - linear(hidden) - head."""
    family = "cnn"
    capabilities = LeNet.capabilities

    @classmethod
    def build(cls, shape, width: int, parameterization: str, hidden: int = 64):
        return LeNet(shape.channels, shape.image_size, shape.classes, width, hidden, parameterization)

    @classmethod
    def geometry(cls, shape, width: int, hidden: int = 64) -> Geometry:
        return lenet_geometry(shape.channels, shape.image_size, shape.classes, width, hidden)

    @classmethod
    def check(cls, options):
        from walign.errors import ConfigError
        if options["hidden"] < 1:
            raise ConfigError(f"arch.hidden must be a positive integer, got {options['hidden']}")
