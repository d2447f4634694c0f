"""An example walign rule from outside walign: backprop into the top of the network only.

``my_rule`` trains the linear head and the last ``layers`` conv layers with the exact gradient;
the conv layers below keep their initial weights. It is a small, real experiment (how much of
backprop's benefit comes from the top of the network?) and a template for your own rule:

1. subclass ``walign.rules.Rule`` and register it for a model family ('cnn' or 'rnn');
2. declare the options as typed keyword arguments of ``create`` (here ``layers``): walign builds
   ``rule=my_rule rule.layers=3`` from that and refuses values of the wrong type;
3. ``pseudo_gradients`` turns a batch into a ``Step``: the loss and one gradient per parameter
   (None: leave it alone); ``self.exact(loss, params)`` is backprop's for ``params``;
4. declare ``passes``, what one step computes, so sweeps are priced right (walign warns without),
   and ``needs``, what it uses of the network, so a network without it is refused in one line.

Make it visible to walign with ``pip install -e examples/my_rule`` (the entry point in
pyproject.toml), or without installing: ``python main.py +rule_module=my_rule rule=my_rule``.
"""
from __future__ import annotations

from walign.nets import initialize
from walign.rules import Rule, mse, register


@register("my_rule", "cnn")
class TopLayersBackprop(Rule):
    """Backprop into the head and the last ``layers`` conv layers; the rest stays at init."""
    # what one step computes, for FLOP counts (walign.rules.base.Passes counts whole-network
    # passes): a full forward, and gradients of the top layers only; backprop's counts are the
    # upper bound, exact when layers equals the network's depth
    passes = Rule.passes
    # what it uses of the network (walign/archs/base.py): a forward pass, the head, and the chain of
    # layers with their weights; so it runs on the paper's CNNs and the MLP, and not on the ResNet
    needs = frozenset({"forward", "head", "layers"})

    def __init__(self, net, layers: int):
        super().__init__(net)
        if not 0 <= layers <= net.depth:
            raise ValueError(f"my_rule: layers must be in 0..{net.depth}, got {layers}")
        top = range(net.depth - layers, net.depth)
        self.trained = [p for l in top for p in (net.weights[l], net.biases[l])] + [net.fc_weight, net.fc_bias]

    @classmethod
    def create(cls, net, seed, layers: int = 2):
        initialize(net, seed)  # the same initial weights as every other rule for this seed
        return cls(net, layers)

    def pseudo_gradients(self, x, target):
        return self.exact(mse(self.net(x), target), self.trained)  # backprop's gradient, for these only
