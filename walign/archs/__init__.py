"""Architectures. Importing this package registers every network in ``ARCHS``: walign's own (the
paper's CNNs and RNN, a CIFAR ResNet, an MLP; one file each) and those of installed plugin packages
(entry-point group ``walign.archs``, walign/plugins.py). See walign/archs/base.py for the interface."""
from .base import ARCHS, CAPABILITIES, Arch, Geometry, Layer, draw_in_order, entry, gaussian_like, missing, register  # noqa: F401
from . import mlp, paper, resnet  # noqa: F401  (register the architectures)
from ..plugins import load_entry_points

load_entry_points("walign.archs")

__all__ = ["ARCHS", "CAPABILITIES", "Arch", "Geometry", "Layer", "draw_in_order", "entry", "gaussian_like", "missing",
           "register"]
