"""The learning-rule interface and its registry.

A rule owns whatever fixed state it needs (a frozen copy of the initial network, feedback
weights, random projections) and turns one minibatch into pseudo-gradients for the current
parameters. The training loop hands those to a ``torch.optim`` optimizer and never needs to
know which rule produced them.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, replace

import torch
from torch import nn

RULES: dict[str, dict[str, type["Rule"]]] = {}  # rule name -> model family -> implementation


def register(name: str, family: str = "cnn"):
    """Class decorator: make a rule available under ``name`` for models of ``family``.

    One name can have an implementation per family ('normal' is backprop for CNNs and BPTT for
    the RNN); a model declares its family in its ``family`` attribute. A rule that declares no
    ``passes`` of its own is costed as backprop (sweep prices, SLURM packing): one warning line
    says so, since a wrong count is otherwise silent.
    """
    def add(cls):
        cls.name, cls.family = name, family
        RULES.setdefault(name, {})[family] = cls
        if not any("passes" in vars(k) for k in cls.__mro__ if k is not Rule):
            print(f"walign: warning: rule {name} ({family}) declares no `passes`; its FLOP count assumes "
                  f"backprop's (set passes = Rule.passes.replace(...), docs/extending.md)", file=sys.stderr)
        return cls
    return add


def rules_for(family: str) -> list[str]:
    """Names of the rules that can train a model of this family ('cnn' or 'rnn')."""
    return sorted(name for name, families in RULES.items() if family in families)


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over the batch and the classes (docs/method.md §4.1)."""
    return (output - target).pow(2).mean()


def output_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d mse / d output = 2 (output - target) / (B K): the error signal every rule starts from."""
    return 2 * (output - target) / output.numel()


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy averaged over the batch; the class is each target row's largest entry
    (targets are one-hot, shifted for the paper's MSE)."""
    return torch.nn.functional.cross_entropy(output, target.argmax(1))


def cross_entropy_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d cross_entropy / d output = (softmax(output) - one-hot) / B."""
    onehot = (target == target.amax(1, keepdim=True)).to(output.dtype)
    return (torch.softmax(output, 1) - onehot) / output.shape[0]


LOSSES = {"mse": (mse, output_error), "cross_entropy": (cross_entropy, cross_entropy_error)}  # loss, d loss / d out


@dataclass
class Step:
    """What one minibatch produced: the detached loss, and one gradient per parameter (None
    where the rule leaves a parameter untouched)."""
    loss: torch.Tensor
    grads: list[torch.Tensor | None]


@dataclass(frozen=True)
class Passes:
    """What one training step of a rule computes, counted in layer-sized matrix products.

    walign/cost.py turns these counts into FLOPs. For a CNN, ``forward``, ``input_grad`` and
    ``weight_grad`` count the convolutions of every conv layer: forwards (of the current and of any
    frozen network together), input gradients (layers 2..L only: the first layer's input is the
    data, which needs none) and weight gradients. The ``head_*`` fields count the same three
    products of the linear head (width -> classes), which some rules use differently from the
    convs; ``projection`` counts DFA-style products of the output error with a fixed matrix per
    conv layer. For the RNN the conv fields count the recurrent (and input) maps and the head
    fields the readout, each once per time step. The default is backprop's: one of each.

    A plugin rule declares its own counts, e.g. ``passes = Rule.passes.replace(forward=2)``.
    """
    forward: int = 1
    input_grad: int = 1
    weight_grad: int = 1
    head_forward: int = 1
    head_input_grad: int = 1
    head_weight_grad: int = 1
    projection: int = 0

    def replace(self, **changes) -> "Passes":
        """These counts with some of them changed."""
        return replace(self, **changes)


class Rule:
    """Base class. Subclasses are registered with ``register`` and implement ``create`` and
    ``pseudo_gradients``."""
    name = "?"
    family = "?"
    passes = Passes()  # what one step computes (see Passes); backprop's counts unless a rule says otherwise
    # What the rule needs of the network (walign/archs/base.py CAPABILITIES); a run on an architecture
    # that lacks one is refused in one line. A rule that says nothing is taken to need everything the
    # paper's networks offer, so it runs on them (and on any network offering as much) and nowhere else.
    needs: frozenset = frozenset({"forward", "head", "feedback", "layers", "scoring"})
    # Options added after runs existed, at the value that reproduces the behaviour before them: at
    # that value an option stays out of the run's identity, so those runs keep their directories.
    identity_omits: dict = {}
    # Why this rule's step cannot go through torch.compile (compile=true is then refused in one
    # line), or None: every built-in rule compiles.
    compile_refusal: str | None = None
    # With compile=true, trace torch.autograd.grad into the compiled graph (dynamo's
    # trace_autograd_ops) instead of breaking the graph there. It lets a rule differentiate with
    # respect to intermediate tensors inside one graph; it pays only where measured
    # (docs/performance.md): it made Normal's step slower on the CPU.
    compile_traces_autograd: bool = False
    # The losses the rule is written for (LOSSES): a rule computes its loss and output error with
    # ``self.loss`` and ``self.error``, which follow the run's ``loss``. One that calls ``mse``
    # directly keeps the default, and loss=cross_entropy is refused for it in one line.
    losses: tuple = ("mse",)
    loss_name: str = "mse"

    def __init__(self, net: nn.Module):
        self.net = net
        self.params = list(net.parameters())

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The run's loss (the paper's MSE unless loss=cross_entropy)."""
        return LOSSES[self.loss_name][0](output, target)

    def error(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """d loss / d output: the error signal the rules send down."""
        return LOSSES[self.loss_name][1](output, target)

    @classmethod
    def create(cls, net: nn.Module, seed: int, **options) -> "Rule":
        """Draw the initial weights (and any rule-specific random state) and build the rule."""
        raise NotImplementedError

    @classmethod
    def check(cls, options: dict, epochs: int) -> None:
        """Refuse option values that fit their types but not the run (ConfigError, one line):
        e.g. a score epoch beyond the run's epochs. Nothing to check by default."""

    @classmethod
    def options(cls) -> dict:
        """The rule's options and their defaults: the keyword arguments ``create`` declares
        (walign/rules/options.py)."""
        from .options import declared
        return declared(cls)

    def pseudo_gradients(self, x: torch.Tensor, target: torch.Tensor) -> Step:
        raise NotImplementedError

    def epoch_metrics(self, epoch: int) -> dict:
        """Extra values for this epoch's record (a measuring rule's scores); none by default."""
        return {}

    def state_dict(self) -> dict:
        """The tensors that training changes: the parameters in ``self.params`` order. A rule
        with more mutable state (a random stream it draws from) adds it. Everything else a rule
        holds is rebuilt from the seed by ``create``."""
        return {"params": [p.detach() for p in self.params]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if len(state["params"]) != len(self.params):
            raise ValueError(f"state has {len(state['params'])} parameters, the rule {len(self.params)}")
        for index, (param, value) in enumerate(zip(self.params, state["params"])):
            if not isinstance(value, torch.Tensor) or value.shape != param.shape:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"parameter {index} has shape {shape}, the rule's {tuple(param.shape)}")
            param.copy_(value)

    def exact(self, loss: torch.Tensor, params: list[torch.Tensor] | None = None) -> Step:
        """The step whose pseudo-gradients are the exact gradients of ``loss`` for ``params``
        (default: all parameters); any other parameter is left untouched."""
        params = self.params if params is None else params
        return Step(loss.detach(), self.in_param_order(params, torch.autograd.grad(loss, params)))

    def in_param_order(self, targets: list[torch.Tensor], grads) -> list[torch.Tensor | None]:
        """Gradients computed for ``targets`` laid out in the order of ``self.params``."""
        by_param = dict(zip(targets, grads))
        return [by_param.get(p) for p in self.params]


def frozen_copy(net: nn.Module, requires_grad: bool = False) -> nn.Module:
    """An independent copy of the network at its current (initial) parameters, never stepped."""
    frozen = copy.deepcopy(net)
    frozen.requires_grad_(requires_grad)
    return frozen
