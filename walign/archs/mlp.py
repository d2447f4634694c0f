"""A fully connected network: ``depth`` hidden layers of ``width`` units, each a linear map, the
per-element batch norm of walign's CNNs and the activation, then a linear head; images are
flattened. It has every capability but scoring (a chain of layers with taps, so DFA and Align-ada
are defined on it exactly as on the paper's CNNs, a layer being a linear map instead of a
convolution; docs/method.md §2.7).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..feedback import FeedbackLinear
from .base import Arch, Geometry, Layer, draw_in_order, gaussian_like, register


def geometry(in_features: int, classes: int, width: int, depth: int) -> Geometry:
    layers = tuple(Layer(in_features if l == 0 else width, width, 1, 1) for l in range(depth))
    return Geometry(layers, width, classes)


class MLP(nn.Module):
    family = "cnn"
    capabilities = frozenset({"forward", "head", "feedback", "layers"})

    def __init__(self, in_features: int, classes: int, width: int, depth: int = 3, activation: str = "relu",
                 parameterization: str = "ntk"):
        super().__init__()
        from ..nets import ACTIVATIONS
        self.act, self.parameterization, self.num_classes = ACTIVATIONS[activation], parameterization, classes
        shapes = geometry(in_features, classes, width, depth).layers
        ntk = parameterization == "ntk"
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(l.c_out, l.c_in)) for l in shapes)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(l.c_out)) for l in shapes)
        self.scales = [1 / math.sqrt(l.c_in) if ntk else 1.0 for l in shapes]
        self.feature_shapes = [(width,)] * depth
        self.fc_weight = nn.Parameter(torch.zeros(classes, width))
        self.fc_bias = nn.Parameter(torch.zeros(classes))
        self.fc_scale = 1 / math.sqrt(width) if ntk else 1.0

    @property
    def depth(self) -> int:
        return len(self.weights)

    def layer(self, l: int, a: torch.Tensor, feedback: torch.Tensor | None = None) -> torch.Tensor:
        """Post-batch-norm output of hidden layer l (0-based); layer 0 flattens its input."""
        from ..nets import batch_stat_norm
        x = a.flatten(1) if l == 0 else a
        u = x @ self.weights[l].t() if feedback is None else FeedbackLinear.apply(x, self.weights[l], feedback)
        return batch_stat_norm(u * self.scales[l] + self.biases[l])

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h)

    @staticmethod
    def pool(a: torch.Tensor) -> torch.Tensor:
        return a

    def head(self, p: torch.Tensor, feedback: torch.Tensor | None = None) -> torch.Tensor:
        z = p @ self.fc_weight.t() if feedback is None else FeedbackLinear.apply(p, self.fc_weight, feedback)
        return z * self.fc_scale + self.fc_bias

    def features(self, x: torch.Tensor) -> torch.Tensor:
        a = x
        for l in range(self.depth):
            a = self.activation(self.layer(l, a))
        return a

    def forward(self, x: torch.Tensor, feedback: list[torch.Tensor] | None = None) -> torch.Tensor:
        a = x
        for l in range(self.depth):
            a = self.activation(self.layer(l, a, None if feedback is None else feedback[l]))
        return self.head(a, None if feedback is None else feedback[-1])

    def feedback_weights(self) -> list[nn.Parameter]:
        return [*self.weights, self.fc_weight]

    def draw_like(self, rng: np.random.RandomState, i: int) -> torch.Tensor:
        return gaussian_like(rng, self.feedback_weights()[i], self.parameterization)

    def initialize(self, seed: int, draw_extra=None) -> list[torch.Tensor]:
        """Every weight drawn in order from numpy's legacy RNG (``draw_extra`` after each); biases zero."""
        return draw_in_order(self, seed, draw_extra, [*self.biases, self.fc_bias])


@register("mlp")
class Mlp(Arch):
    """``depth`` hidden layers (default 3) of ``width`` units."""
    family = "cnn"
    capabilities = MLP.capabilities

    @classmethod
    def build(cls, shape, width: int, activation: str, parameterization: str, depth: int = 3):
        return MLP(shape.channels * shape.image_size ** 2, shape.classes, width, depth, activation, parameterization)

    @classmethod
    def geometry(cls, shape, width: int, depth: int = 3) -> Geometry:
        return geometry(shape.channels * shape.image_size ** 2, shape.classes, width, depth)

    @classmethod
    def check(cls, options: dict) -> None:
        from ..errors import ConfigError
        if not 1 <= options["depth"] <= 1000:
            raise ConfigError(f"arch.depth must be 1..1000 hidden layers, got {options['depth']}")
