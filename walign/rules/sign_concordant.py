"""The sign-concordant feedback rules of Liao, Leibo & Poggio (2016), under the names the field's
library (biotorch) gives them: errors travel down through feedback weights that share the
forward weights' signs but not their magnitudes.

* ``usf``: uniform magnitudes, B = sign(W) at the parameterisation's scale (+-1 under NTK,
  +-1/sqrt(fan-in) under the standard parameterisation). walign's ``sign_symmetry`` is the same rule.
* ``frsf``: fixed random magnitudes, B = |M| o sign(W), M drawn once like FA's feedback weights (at
  the initial weights' scale, interleaved with them from the run's seed) and kept.
* ``brsf``: batchwise random magnitudes, B = |M| o sign(W), M drawn afresh for every minibatch at
  the same scale, from the rule's own random stream (part of the checkpoint, so a resumed run
  draws what an uninterrupted one would).

W is the current forward weight in each step: the signs follow it as it trains. As FA's, a step
is backprop's forward and weight gradients with the input gradients through B, in one backward
pass (walign/feedback.py), so it costs what backprop costs.
"""
from __future__ import annotations

import math

import torch

from ..nets import draw_like, initialize
from .base import Rule, register
from .sign_symmetry import SignSymmetry


@register("usf", "cnn")
class UniformSignFeedback(SignSymmetry):
    """uSF: feedback sign(W) of the current weights (sign_symmetry with initial=false)."""
    passes = Rule.passes

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net, initial=False)


class _RandomMagnitudes(Rule):
    """Feedback |M| o sign(W) for each conv kernel and the head."""
    passes = Rule.passes  # as backprop; the input gradients use the feedback kernels
    needs = frozenset({"forward", "feedback"})
    losses = ("mse", "cross_entropy")

    def __init__(self, net):
        super().__init__(net)
        self.weights = net.feedback_weights()

    def magnitudes(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def pseudo_gradients(self, x, target):
        feedback = [m * torch.sign(w.detach()) for m, w in zip(self.magnitudes(), self.weights, strict=True)]
        return self.exact(self.loss(self.net(x, feedback=feedback), target))


@register("frsf", "cnn")
class FixedRandomSignFeedback(_RandomMagnitudes):
    """frSF: |M| drawn once, interleaved with the forward weights like FA's feedback draws."""

    def __init__(self, net, drawn: list[torch.Tensor]):
        super().__init__(net)
        self.fixed = [d.abs().to(device=w.device, dtype=w.dtype) for d, w in zip(drawn, self.weights, strict=True)]

    @classmethod
    def create(cls, net, seed):
        return cls(net, initialize(net, seed, lambda rng, l: draw_like(rng, net, l).float()))

    def magnitudes(self):
        return self.fixed


@register("brsf", "cnn")
class BatchwiseRandomSignFeedback(_RandomMagnitudes):
    """brSF: |M| drawn afresh every step, N(0, 1) under NTK and N(0, 1/fan-in) under the standard
    parameterisation, from a generator seeded by the run's seed and saved with the run's state."""
    compile_refusal = ("its feedback magnitudes are drawn every step from the rule's own random stream, "
                       "which a compiled graph would draw differently")

    def __init__(self, net, seed: int):
        super().__init__(net)
        standard = net.parameterization == "standard"
        self.scales = [1 / math.sqrt(w[0].numel()) if standard else 1.0 for w in self.weights]
        self.generator = torch.Generator(device=self.weights[-1].device).manual_seed(seed + 1)

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net, seed)

    def magnitudes(self):
        return [torch.randn(w.shape, generator=self.generator, device=w.device, dtype=w.dtype).abs() * s
                for w, s in zip(self.weights, self.scales, strict=True)]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if not isinstance(state.get("generator"), torch.Tensor):
            raise ValueError("the state holds no brsf random stream")
        self.generator.set_state(state["generator"])
