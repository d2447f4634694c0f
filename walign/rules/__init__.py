"""Learning rules. Importing this package registers every rule in ``RULES``."""
from .base import RULES, Rule, Step, mse, output_error, register, rules_for  # noqa: F401
from . import cnn  # noqa: F401  (registers the CNN rules)


def build_rule(name: str, net, seed: int, **options) -> Rule:
    """Initialise ``net`` for rule ``name`` with ``seed`` and return the rule."""
    if name not in RULES:
        raise KeyError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}")
    return RULES[name].create(net, seed, **options)
