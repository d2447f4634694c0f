"""The recurrent learning rules for the Add task (docs/method.md §6).

All four share the RNN's learned initial state S: the frozen copy of the initial network is
always unrolled from the *current* S, and every rule trains S.
"""
from __future__ import annotations

import torch

from ..rnn import initialize_rnn, sequence_loss
from .base import Rule, Step, frozen_copy, register


class _RNNRule(Rule):
    """Shared construction: the released RNN initialisation, then the rule's own state."""

    @classmethod
    def create(cls, net, seed):
        initialize_rnn(net, seed)
        return cls(net)


def _error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d sequence_loss / d output = 2 (output - target) / B at every step."""
    return 2 * (output - target) / output.shape[0]


@register("normal", "rnn")
class BPTT(_RNNRule):
    """Backprop through time on every parameter, S included."""
    passes = Rule.passes  # per time step: recurrent, input and readout maps forward and both gradients

    def pseudo_gradients(self, x, target):
        return self.exact(sequence_loss(self.net(x), target))


@register("readout_only", "rnn")
class ReadoutOnly(_RNNRule):
    """Train the readout (w_out, b_o) and the initial state S; S by exact BPTT through the fixed
    recurrent weights, as the released code does."""
    passes = Rule.passes.replace(weight_grad=0)  # BPTT into S only: no recurrent or input weight gradients

    def pseudo_gradients(self, x, target):
        net = self.net
        output = net(x)
        loss = sequence_loss(output, target)
        trained = [net.w_out, net.b_o, net.state0]
        return self.exact(loss, trained)


@register("align_zero", "rnn")
class AlignZeroRNN(_RNNRule):
    """BPTT of the current errors through the frozen initial network (frozen states, masks and
    weights, the same-step readout term included), applied to the current parameters and S."""
    passes = Rule.passes.replace(forward=2, head_forward=2)  # current forward; frozen forward + both gradients

    def __init__(self, net):
        super().__init__(net)
        self.frozen = frozen_copy(net, requires_grad=True)
        # the frozen unroll starts from the current S, so S's gradient is taken on S itself
        self.sources = [net.state0 if name == "state0" else p for name, p in self.frozen.named_parameters()]

    def pseudo_gradients(self, x, target):
        with torch.no_grad():
            output = self.net(x)
        output0 = self.frozen(x, state0=self.net.state0)
        grads = torch.autograd.grad(output0, self.sources, grad_outputs=_error(output, target))
        return Step(sequence_loss(output, target), list(grads))


@register("align_ada", "rnn")
class AlignAdaRNN(_RNNRule):
    """Frozen future feedback, current local quantities (eq. 58, as coded).

    The state s_t receives only the frozen network's feedback from later steps,
    W_hh(0) (relu'(p0_{t+1}) * G0_{t+1}) / sqrt(n); the current ReLU mask then gives the local
    updates. The released code leaves out the same-step readout term (eq. 58's strict j > i),
    which Align-zero keeps; ``same_step=True`` adds it, making the first update equal BPTT's.
    """
    passes = Rule.passes.replace(forward=2, head_forward=2)  # frozen input grads, current weight grads

    def __init__(self, net, same_step: bool = False):
        super().__init__(net)
        self.frozen = frozen_copy(net)
        self.same_step = bool(same_step)

    @classmethod
    def create(cls, net, seed, same_step: bool = False):
        initialize_rnn(net, seed)
        return cls(net, same_step)

    def pseudo_gradients(self, x, target):
        net, frozen = self.net, self.frozen
        s = net.state0
        s0 = s.detach()
        outputs, outputs0 = [], []
        for t in range(x.shape[1]):
            s0_next = frozen.step(x[:, t], s0 + s - s.detach())  # feedback routed into current s
            s_next = net.step(x[:, t], s.detach())  # local: no gradient between current steps
            outputs.append(net.readout(s_next.detach()))
            readout_in = s0_next + s_next - s_next.detach() if self.same_step else s0_next
            outputs0.append(frozen.readout(readout_in))
            s, s0 = s_next, s0_next
        output, output0 = torch.stack(outputs, 1), torch.stack(outputs0, 1)
        loss = sequence_loss(output + output0 - output0.detach(), target)
        return self.exact(loss)
