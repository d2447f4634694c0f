"""Sign symmetry (Liao, Leibo & Poggio 2016): feedback alignment whose feedback weights are the
signs of the forward weights.

This module is written the way a rule from outside walign is (compare examples/my_rule): it uses
only the public rule API (``register``, ``Rule``, ``Rule.exact``, ``mse`` and the network's
``feedback=`` argument) and declares its one option in ``create``'s signature, from which walign
builds ``rule.initial`` on the command line and checks its values.

The network is run once with ``feedback=``: each layer's forward value and weight gradient are
backprop's, but the error reaches the layer's input through sign(W) instead of W (a custom
autograd function, walign/feedback.py), so a step costs what backprop costs. The signs carry
the parameterisation's scale: +-1 under NTK (the weights are N(0, 1) and the 1/sqrt(fan-in)
factor is applied in the forward pass, to the feedback path too), +-1/sqrt(fan-in) under the
standard parameterisation, as FA's feedback draws are scaled.
"""
from __future__ import annotations

import math

import torch

from ..nets import initialize
from .base import Rule, register


@register("sign_symmetry", "cnn")
class SignSymmetry(Rule):
    """Errors travel down through sign(W): of the current weights, or with ``initial=True`` of
    the initial weights (then fixed, like Align-prop's feedback)."""
    passes = Rule.passes  # as backprop; the input gradients use the sign kernels
    needs = frozenset({"forward", "feedback"})
    losses = ("mse", "cross_entropy")

    def __init__(self, net, initial: bool = False):
        super().__init__(net)
        self.weights = net.feedback_weights()
        standard = net.parameterization == "standard"
        self.scales = [1 / math.sqrt(w[0].numel()) if standard else 1.0 for w in self.weights]
        self.fixed = self.signs() if initial else None

    @classmethod
    def create(cls, net, seed, initial: bool = False):
        initialize(net, seed)
        return cls(net, initial)

    def signs(self) -> list[torch.Tensor]:
        return [torch.sign(w.detach()) * s for w, s in zip(self.weights, self.scales)]

    def pseudo_gradients(self, x, target):
        logits = self.net(x, feedback=self.fixed if self.fixed is not None else self.signs())
        return self.exact(self.loss(logits, target))
