"""The architecture interface and its registry: a network is one declared entry, like a rule or a
data set.

An entry (an ``Arch`` subclass registered with ``@register``) says what walign needs to know about
a network before one is built, so that a config mistake is refused in one line before anything is
written and a sweep is priced on a login node:

* ``family``: the kind of model it is ('cnn': a feed-forward classifier of images, whatever its
  layers; 'rnn': the Add task's recurrent network), which must be the data set's family;
* ``capabilities``: what the network offers the learning rules (below); a rule declares what it
  ``needs`` (walign/rules/base.py) and a run pairing the two is refused naming what is missing;
* ``build(shape, width, ..., **options)``: the network, for inputs of ``shape`` (a
  walign.datasets.DataShape: channels, image size, classes). It is given those of the run's
  ``shape``, ``width``, ``batch_size``, ``activation`` and ``parameterization`` that it names; its
  other keyword arguments, with their defaults and annotations, are the entry's config options
  (``arch=NAME arch.OPTION=VALUE``), typed and checked as a rule's are;
* ``geometry(shape, width, **options)``: the shapes of its weight layers, from which the network
  itself is built and walign/cost.py counts FLOPs and weight bytes, so the two cannot drift apart.

The network an entry builds is an ``nn.Module``. Every one offers ``initialize(seed, draw_extra)``
and a plain ``forward(x)``; the capabilities add, each a small set of methods:

* ``head``: ``features(x)`` (the pooled input to the linear head), ``head(p, feedback=None)``,
  and the head's ``fc_weight``, ``fc_bias``, ``fc_scale``;
* ``feedback``: ``feedback_weights()`` (the weights whose transposes carry the error down, in order,
  the head's last), ``forward(x, feedback=[...])`` with one feedback tensor per such weight, and
  ``draw_like(rng, i)`` (a draw shaped and scaled like weight i, for FA-style feedback);
* ``layers``: a chain of ``depth`` layers, ``layer(l, a, feedback=None)`` giving the
  pre-activation output h_l, ``activation(h)``, ``pool(a)``, ``feature_shapes`` (the shape of
  each h_l without the batch axis) and each layer's ``weights[l]`` and ``biases[l]``: the taps that
  DFA and Align-ada inject their signals at;
* ``scoring``: the paper's chain of 3x3 convolutions with ``strides`` and ``weights``, which the
  alignment estimator (gd_wstar) scores.
"""
from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass

from ..errors import ConfigError

ARCHS: dict[str, type["Arch"]] = {}  # the one list of architecture names
CAPABILITIES = {  # capability -> what it means, as a refusal names it
    "forward": "a plain forward pass",
    "head": "a separate linear head",
    "feedback": "feedback weights on every layer",
    "layers": "a chain of layers with a tap at each layer's output",
    "scoring": "the chain of 3x3 convolutions the alignment estimator scores",
}
STANDARD_ARGS = ("shape", "width", "batch_size", "activation", "parameterization")  # the run's values build may name


@dataclass(frozen=True)
class Layer:
    """One weight layer below the head: ``c_in`` input channels (features), ``c_out`` outputs,
    ``taps`` kernel taps (9 for a 3x3 convolution, 1 for a linear map) and ``positions`` output
    positions (H_out * W_out; 1 for a linear map)."""
    c_in: int
    c_out: int
    taps: int
    positions: int

    def macs(self) -> int:
        """Multiply-adds of one forward pass of the layer, per example."""
        return self.positions * self.c_out * self.taps * self.c_in

    def weights(self) -> int:
        return self.c_out * self.taps * self.c_in


@dataclass(frozen=True)
class Geometry:
    """The weight layers of a network, in order, and its head (``features`` -> ``classes``)."""
    layers: tuple[Layer, ...]
    features: int
    classes: int

    def weight_count(self) -> int:
        return sum(layer.weights() for layer in self.layers) + self.features * self.classes


class Arch:
    """Base class of an architecture entry."""
    name = "?"
    family = "cnn"
    capabilities: frozenset = frozenset({"forward"})

    @classmethod
    def build(cls, shape, width: int, **options):
        """The network (see the module's docstring for what it is given)."""
        raise NotImplementedError

    @classmethod
    def create(cls, shape, width: int, batch_size: int, activation: str, parameterization: str, options: dict):
        """``build`` called with the run's values it names and the arch options."""
        run = dict(shape=shape, width=width, batch_size=batch_size, activation=activation,
                   parameterization=parameterization)
        named = inspect.signature(cls.build).parameters
        return cls.build(**{k: v for k, v in run.items() if k in named}, **options)

    @classmethod
    def geometry(cls, shape, width: int, **options) -> Geometry:
        raise NotImplementedError

    @classmethod
    def options(cls) -> dict:
        """name -> default of the keyword options ``build`` takes after the standard arguments."""
        params = list(inspect.signature(cls.build).parameters.values())
        return {p.name: p.default for p in params if p.name not in STANDARD_ARGS
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}

    @classmethod
    def node(cls) -> dict:
        """The ``arch=NAME`` config node."""
        return {"name": cls.name, **cls.options()}

    @classmethod
    def check(cls, options: dict) -> None:
        """Refuse option values that fit their types but not a network (ConfigError, one line)."""

    @classmethod
    def resolve(cls, given: dict) -> dict:
        """The options from the config node's values: unknown keys and ill-typed values refused."""
        from ..rules.options import _describe, _fits
        mine = cls.options()
        try:
            hints = typing.get_type_hints(cls.build)
        except Exception:  # an annotation that does not evaluate: accept any value
            hints = {}
        options = {}
        for key, value in given.items():
            if key not in mine:
                raise ConfigError(f"arch {cls.name} has no option {key!r}; its options: "
                                  f"{', '.join(sorted(mine)) or 'none'}")
            hint = hints.get(key, typing.Any)
            if not _fits(value, hint):
                raise ConfigError(f"arch.{key} must be {_describe(hint)}, got {value!r}")
            options[key] = list(value) if isinstance(value, tuple) else value
        cls.check({**mine, **options})
        return options


def register(name: str):
    """Class decorator: make an architecture available as ``arch=name``. A name is taken once, and
    ``auto`` (the data set's own network) is not a name an entry can take."""
    def add(cls):
        taken = ARCHS.get(name)
        if name == "auto":
            raise ValueError("arch 'auto' means the data set's own network; choose another name")
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"arch {name!r} is already registered by {taken.__module__}.{taken.__qualname__}")
        unknown = set(cls.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"arch {name!r}: unknown capabilities {sorted(unknown)}; known: {', '.join(CAPABILITIES)}")
        cls.name = name
        ARCHS[name] = cls
        return cls
    return add


def gaussian_like(rng, weight, parameterization: str):
    """A float64 N(0, 1) draw from numpy ``rng`` shaped like ``weight``; N(0, 1/fan_in) under the
    standard parameterisation (fan_in: inputs x kernel taps). What a network's ``draw_like`` can be."""
    import torch
    draw = rng.randn(*weight.shape)
    return torch.from_numpy(draw / math.sqrt(weight[0].numel()) if parameterization == "standard" else draw)


def draw_in_order(net, seed: int, draw_extra, zeroed) -> list:
    """A network's ``initialize``: every weight of ``net.feedback_weights()`` in order from
    ``RandomState(seed)`` through ``net.draw_like``, ``draw_extra(rng, i)`` after weight i (what it
    returns is collected and returned), and the ``zeroed`` parameters (the biases) set to zero."""
    import numpy as np
    import torch
    rng, extras = np.random.RandomState(seed), []
    with torch.no_grad():
        for i, weight in enumerate(net.feedback_weights()):
            weight.copy_(net.draw_like(rng, i))
            extra = draw_extra(rng, i) if draw_extra is not None else None
            if extra is not None:
                extras.append(extra)
        for param in zeroed:
            param.zero_()
    return extras


def entry(name: str) -> type[Arch]:
    """The registered architecture ``name``; ConfigError naming the valid ones if there is none."""
    if name not in ARCHS:
        raise ConfigError(f"unknown arch {name!r}; valid: auto (the data set's own), {', '.join(sorted(ARCHS))}")
    return ARCHS[name]


def missing(arch: type[Arch], needs) -> list[str]:
    """The capabilities a rule needs that an architecture lacks, in CAPABILITIES order."""
    return [c for c in CAPABILITIES if c in needs and c not in arch.capabilities]
