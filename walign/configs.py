"""The Hydra config nodes of the rules and the data sets, generated from their declarations.

``dataset=NAME`` selects the node a data set's entry declares (walign/datasets/base.py:
``DataSet.node``), so a data set registered in Python, in walign or in a plugin, needs no YAML file.

Each rule's node is generated from the rule's declaration (walign/rules/options.py).

``rule=NAME`` selects the node ``{name: NAME, <option>: <default>, ...}`` holding the options of
every model family the rule has (align_ada's RNN-only ``same_step`` included; the run checks which
apply). No YAML file per rule is written by hand: a rule registered in Python, in walign or in a
plugin, is a config choice as soon as ``register_configs`` has run. A rule may give its config node
a default that differs from the Python default, through ``config_defaults`` (gd_wstar scores the
run's last epoch: the Hydra interpolation ``${epochs}``).

conf/rule/ holds only presets, which name a rule in their defaults list and change its options
(dfa_shared: DFA with the shared projection).
"""
from __future__ import annotations

from .archs import ARCHS
from .datasets import DATASETS
from .rules import RULES
from .rules.options import declared


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def rule_node(name: str) -> dict:
    """The config node of rule ``name``: the union of its families' options, with defaults."""
    node = {"name": name}
    for family, cls in sorted(RULES[name].items()):
        for key, default in declared(cls).items():
            default = _plain(getattr(cls, "config_defaults", {}).get(key, default))
            if key in node and node[key] != default:
                raise ValueError(f"rule {name}: option {key} has different defaults in its families")
            node[key] = default
    return node


def register_configs() -> None:
    """Put every registered rule's, data set's and architecture's node into Hydra's ConfigStore
    (groups ``rule``, ``dataset`` and ``arch``); idempotent."""
    from hydra.core.config_store import ConfigStore
    store = ConfigStore.instance()
    for name in RULES:
        store.store(group="rule", name=name, node=rule_node(name), provider="walign")
    for name, entry in DATASETS.items():
        store.store(group="dataset", name=name, node=entry.node(), provider="walign")
    store.store(group="arch", name="auto", node={"name": "auto"}, provider="walign")
    for name, entry in ARCHS.items():
        store.store(group="arch", name=name, node=entry.node(), provider="walign")
