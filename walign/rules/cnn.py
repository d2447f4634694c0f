"""The seven CNN learning rules (docs/method.md §5).

Each rule is written in its cheap form: the current network is run once, layers whose input
gradient the rule does not use take detached inputs, and the rule's error signals are injected
with ``torch.autograd.grad(outputs, params, grad_outputs)`` rather than by building a second
full network graph. The autograd recipes of docs/method.md §5 are the reference the tests compare against.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from ..nets import ConvNet, draw_like, initialize
from .base import Rule, Step, frozen_copy, register


def _local_forward(net: ConvNet, x: torch.Tensor):
    """Run the net with every layer cut off from the one below it (no gradient between layers).

    Returns the post-BN outputs h_l (each a small graph back to its own weights only), the
    post-activation outputs, the pooled features and the logits (head on detached features).
    """
    hs, acts, a = [], [], x
    for l in range(net.depth):
        h = net.layer(l, a.detach())
        a = net.activation(h)
        hs.append(h)
        acts.append(a)
    p = net.pool(a)
    return hs, acts, p, net.head(p.detach())


@register("normal", "cnn")
class Normal(Rule):
    """Backprop: the exact gradient of the loss."""
    passes = Rule.passes  # forward, input gradients (layers 2..L), weight gradients; the head alike
    needs = frozenset({"forward"})
    losses = ("mse", "cross_entropy")

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net)

    def pseudo_gradients(self, x, target):
        return self.exact(self.loss(self.net(x), target))


@register("last_layer", "cnn")
class LastLayer(Rule):
    """Train the linear head only; the conv layers keep their initial weights."""
    passes = Rule.passes.replace(input_grad=0, weight_grad=0, head_input_grad=0)  # convs forward only
    needs = frozenset({"forward", "head"})
    losses = ("mse", "cross_entropy")

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net)

    def pseudo_gradients(self, x, target):
        net = self.net
        with torch.no_grad():
            p = net.features(x)
        logits = net.head(p)
        loss = self.loss(logits, target)
        head = [net.fc_weight, net.fc_bias]
        return self.exact(loss, head)


@register("align_zero", "cnn")
class AlignZero(Rule):
    """theta <- theta - lr * J_{theta0}(x)^T e: the frozen initial network's parameter gradient,
    driven by the current network's output error (eq. 15)."""
    passes = Rule.passes.replace(forward=2, head_forward=2)  # current forward; frozen forward + both gradients
    needs = frozenset({"forward"})
    losses = ("mse", "cross_entropy")

    def __init__(self, net):
        super().__init__(net)
        self.frozen = frozen_copy(net, requires_grad=True)
        self.frozen_params = list(self.frozen.parameters())

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net)

    def pseudo_gradients(self, x, target):
        with torch.no_grad():
            logits = self.net(x)
        e = self.error(logits, target)
        grads = torch.autograd.grad(self.frozen(x), self.frozen_params, grad_outputs=e)
        return Step(self.loss(logits, target), list(grads))


@register("align_ada", "cnn")
class AlignAda(Rule):
    """Frozen feedback, current local quantities (eq. 16, as the released code wires it).

    The error e is backpropagated once through the frozen network (frozen weights, masks and
    batch norm). Layer l < L takes the frozen signal at its post-BN output; the last conv layer
    takes e W_fc(0) spread over positions through the *current* activation derivative. Each layer
    then turns its signal into a weight gradient with its current batch norm and current input.
    The head gets its ordinary gradient.
    """
    passes = Rule.passes.replace(forward=2, head_forward=2, head_input_grad=2)  # frozen input grads, current weight grads
    compile_traces_autograd = True  # frozen_signals differentiates at intermediate outputs
    needs = frozenset({"forward", "head", "layers"})
    losses = ("mse", "cross_entropy")

    def __init__(self, net):
        super().__init__(net)
        self.frozen = frozen_copy(net)

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net)

    def frozen_signals(self, x: torch.Tensor, e: torch.Tensor) -> list[torch.Tensor]:
        """Gradient of <frozen logits, e> at the frozen post-BN outputs of layers 1..L-1.

        It differentiates with respect to intermediate tensors, which a compiled graph can only
        do when it traces the gradient too: hence ``compile_traces_autograd``."""
        frozen = self.frozen
        with torch.no_grad():
            h = frozen.layer(0, x)
        h.requires_grad_(True)
        roots, a = [h], frozen.activation(h)
        for l in range(1, frozen.depth):
            h = frozen.layer(l, a)
            roots.append(h)
            a = frozen.activation(h)
        logits0 = frozen.head(frozen.pool(a))
        return list(torch.autograd.grad(logits0, roots[:-1], grad_outputs=e))

    def pseudo_gradients(self, x, target):
        hs, _, p, logits = _local_forward(self.net, x)
        e = self.error(logits.detach(), target)
        signals = self.frozen_signals(x, e) if self.net.depth > 1 else []
        into_p = (e @ self.frozen.fc_weight) * self.frozen.fc_scale
        grads = torch.autograd.grad([*hs[:-1], p, logits], self.params,
                                    grad_outputs=[*signals, into_p, e])
        return Step(self.loss(logits.detach(), target), list(grads))


class _FeedbackRule(Rule):
    """Backprop through the current network, but errors travel down through fixed feedback
    weights instead of the forward weights (custom autograd Functions, one backward pass)."""
    needs = frozenset({"forward", "feedback"})
    losses = ("mse", "cross_entropy")

    def __init__(self, net, feedback: list[torch.Tensor]):
        super().__init__(net)
        last = net.feedback_weights()[-1]
        self.feedback = [f.to(device=last.device, dtype=last.dtype) for f in feedback]

    def pseudo_gradients(self, x, target):
        return self.exact(self.loss(self.net(x, feedback=self.feedback), target))


@register("align_prop", "cnn")
class AlignProp(_FeedbackRule):
    """Feedback alignment whose feedback weights are the network's own initial weights."""
    passes = Rule.passes  # as backprop; the input gradients use the feedback kernels

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        initial = [w.detach().clone() for w in net.feedback_weights()]
        return cls(net, initial)


@register("fa", "cnn")
class FeedbackAlignment(_FeedbackRule):
    """Feedback alignment with independent N(0, 1) feedback weights, drawn interleaved with the
    forward weights as the released code does (so FA's forward init differs from layer 2 on)."""
    passes = Rule.passes  # as backprop; the input gradients use the feedback kernels

    @classmethod
    def create(cls, net, seed):
        # after each forward kernel (and the head), a feedback matrix of the same shape and scale
        return cls(net, initialize(net, seed, lambda rng, l: draw_like(rng, net, l).float()))


@register("dfa", "cnn")
class DirectFeedbackAlignment(Rule):
    """Every conv layer receives e projected by its own fixed random matrix D_l.

    ``projection='full'`` (default): D_l maps the (h, w, c)-flattened feature map to the classes,
    std 1/sqrt(H W C). ``projection='shared'``: one (K, C) matrix shared by every position, as the
    paper describes for ImageNet; ``projection_std`` overrides the std.
    """
    passes = Rule.passes.replace(input_grad=0, head_input_grad=0, projection=1)  # no input gradients; e D_l
    needs = frozenset({"forward", "head", "layers"})
    losses = ("mse", "cross_entropy")

    def __init__(self, net, projections, shared: bool):
        super().__init__(net)
        device = net.fc_weight.device
        self.projections = [d.to(device=device, dtype=net.fc_weight.dtype) for d in projections]
        self.shared = shared

    @classmethod
    def create(cls, net, seed, projection: Literal["full", "shared"] = "full", projection_std: float | None = None):
        if projection not in ("full", "shared"):
            raise ValueError(f"dfa projection must be 'full' or 'shared', got {projection!r}")
        k = net.num_classes

        def draw_projection(rng, l):  # after each layer's weight: D_l, (K, H*W*C) or shared (K, C)
            if l == net.depth:
                return None
            shape = net.feature_shapes[l]
            std = projection_std if projection_std is not None else 1 / math.sqrt(math.prod(shape))
            return torch.from_numpy(rng.randn(k, math.prod(shape) if projection == "full" else shape[0]) * std).float()

        return cls(net, initialize(net, seed, draw_projection), shared=projection == "shared")

    def signal(self, l: int, e: torch.Tensor) -> torch.Tensor:
        """Gradient injected at the post-activation output of layer l: (B, C, H, W) for a
        convolution's feature map, (B, C) for a fully connected layer's."""
        projected = e @ self.projections[l]
        if len(self.net.feature_shapes[l]) == 1:
            return projected
        c, h, w = self.net.feature_shapes[l]
        if self.shared:
            return (projected / (h * w)).view(-1, c, 1, 1).expand(-1, c, h, w)
        return projected.view(-1, h, w, c).permute(0, 3, 1, 2)

    def pseudo_gradients(self, x, target):
        _, acts, _, logits = _local_forward(self.net, x)
        e = self.error(logits.detach(), target)
        signals = [self.signal(l, e) for l in range(self.net.depth)]
        grads = torch.autograd.grad([*acts, logits], self.params, grad_outputs=[*signals, e])
        return Step(self.loss(logits.detach(), target), list(grads))
