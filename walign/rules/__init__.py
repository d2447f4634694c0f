"""Learning rules. Importing this package registers every rule in ``RULES``: walign's own and
those of installed plugin packages (entry-point group ``walign.rules``, walign/plugins.py)."""
from .base import RULES, Rule, Step, mse, output_error, register, rules_for  # noqa: F401
from . import cnn, gd_wstar, rnn, sign_concordant, sign_symmetry  # noqa: F401  (register the rules)
from ..plugins import load_entry_points

load_entry_points("walign.rules")


def build_rule(name: str, net, seed: int, loss: str = "mse", **options) -> Rule:
    """Initialise ``net`` for rule ``name`` with ``seed`` and return the rule, computing ``loss``."""
    family = net.family
    if name not in RULES:
        raise KeyError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}")
    if family not in RULES[name]:
        raise KeyError(f"rule {name} cannot train a {family} model; rules that can: {', '.join(rules_for(family))}")
    rule = RULES[name][family].create(net, seed, **options)
    if loss not in rule.losses:
        raise KeyError(f"rule {name} is written for the loss {', '.join(rule.losses)} only, not {loss}")
    rule.loss_name = loss
    return rule


__all__ = ["RULES", "Rule", "Step", "build_rule", "mse", "output_error", "register", "rules_for"]
