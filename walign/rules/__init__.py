"""Learning rules. Importing this package registers every rule in ``RULES``."""
from .base import RULES, Rule, Step, mse, output_error, register, rules_for  # noqa: F401
from . import alignment, cnn, rnn  # noqa: F401  (register the rules)


def build_rule(name: str, net, seed: int, **options) -> Rule:
    """Initialise ``net`` for rule ``name`` with ``seed`` and return the rule."""
    family = net.family
    if name not in RULES:
        raise KeyError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}")
    if family not in RULES[name]:
        raise KeyError(f"rule {name} cannot train a {family} model; rules that can: {', '.join(rules_for(family))}")
    return RULES[name][family].create(net, seed, **options)
