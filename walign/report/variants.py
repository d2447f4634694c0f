"""Which runs are variants: the paper-setting defaults, read from the configuration.

A run is at the paper's setting when every option that identifies what it trains has its default.
The defaults are not copied here: they come from the data set's entry (walign.datasets), from the
Hydra configuration the runs were launched with (``conf/`` beside the walign package, composed once
per rule) for the top-level keys and rule presets, and from the rule's own declaration
(``RULES[rule][family].options()``) for options the config file does not name. The summary keys
of a run fall into five groups:

* grid axes (width, lr, epochs, ...): the selection protocol picks among them, never a variant;
* the run's ``scale`` (smoke runs say "scale": "smoke"): like a grid axis it is chosen, not
  compared, once for the whole report (``collect.Collection.scale``), so never a variant;
* results and bookkeeping that walign writes after training (status, best_val_acc, device, ...);
* measurement settings that do not change the trained network (gd_wstar's scoring schedule);
* everything else is an identity option and is compared with its default. An option with no
  default anywhere (not a declared rule option, not a data-set option) makes the run a variant.

When walign was installed without its repository, ``conf/`` is absent: the rule declarations are
then the only source, data-set options cannot be checked, and REPORT.md says so.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import walign

from ..datasets import DATASETS, result_keys
from ..runs import RUN_KEYS
from ..rules import RULES

CONF_DIR = Path(walign.__file__).resolve().parents[1] / "conf"

# chosen by the selection protocol of each table and figure, so not part of the variant test
GRID_AXES = ("dataset", "rule", "width", "lr", "epochs", "batch_size", "seed", "activation", "parameterization",
             "optimizer", "train_size")
# chosen once for the whole report (collect.Collection.scale): smoke runs are never mixed with full-scale
# ones, so calling them variants would only say it twice (and wrongly, "not a declared option")
SCALE_KEYS = ("scale",)
# rule options that only decide what is measured about the trained network
MEASUREMENT_OPTIONS = {"gd_wstar": ("score_epochs", "iterations", "probes", "permuted", "nan_skip")}
# top-level options that identify a run, and their default when the config does not have the key
# (compute_precision is newer than some runs: a run without it trained in fp32)
TOP_LEVEL_OPTIONS = {"arch": "auto", "compute_precision": "fp32", "compile": False, "loss": "mse", "momentum": 0.0,
                     "weight_decay": 0.0, "lr_milestones": [], "lr_gamma": 0.1, "augment": False,
                     "init": "default"}


@dataclass(frozen=True)
class Defaults:
    """The default of every identity option of one (data set, rule) pair."""
    options: dict                       # option -> default
    ignored: frozenset                  # summary keys that never make a variant
    from_config: bool                   # False: conf/ was not found or could not be composed
    checks_unknown: bool = True         # False: keys with no known default cannot be judged


def _plain(value):
    """JSON-like value for comparison: tuples as lists (a declaration's (150,) is a config's [150])."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _declared(dataset: str, rule: str) -> dict:
    """The rule's declared options for the data set's model family, with their defaults."""
    entry = DATASETS.get(dataset)
    family = entry.family if entry is not None else "cnn"
    cls = RULES.get(rule, {}).get(family)
    return dict(cls.options()) if cls is not None else {}


def _compose(conf_dir: Path, rule: str) -> dict | None:
    """The resolved config for this rule, or None if it cannot be composed here. A rule with no
    file in conf/ (every rule but a preset) gets an empty node: its declaration gives its options."""
    if not (conf_dir / "config.yaml").is_file():
        return None
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ..configs import register_configs
    register_configs()  # the data sets' and rules' nodes, which conf/config.yaml's defaults name
    known = rule.isidentifier() and (conf_dir / "rule" / f"{rule}.yaml").is_file()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
            cfg = compose("config", overrides=[f"rule={rule}"] if known else [])
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a config that does not compose here (another Hydra app running, a broken file)
        return None
    if not known:
        config["rule"] = {"name": rule}
    return config


def _data_defaults(dataset: str) -> dict:
    """The identity options of a registered data set with their defaults (none if unknown)."""
    entry = DATASETS.get(dataset)
    return entry.split_options(entry.node())[1] if entry is not None else {}


@functools.lru_cache(maxsize=None)
def _defaults_at(conf_dir: Path, dataset: str, rule: str) -> Defaults:
    declared = _declared(dataset, rule)
    ignored = frozenset(GRID_AXES + SCALE_KEYS + RUN_KEYS + result_keys() + MEASUREMENT_OPTIONS.get(rule, ()))
    config = _compose(conf_dir, rule)
    if config is None:
        options = {**declared, **TOP_LEVEL_OPTIONS}
        return Defaults({k: _plain(v) for k, v in options.items()}, ignored, from_config=False,
                        checks_unknown=False)
    rule_node = {k: v for k, v in config.get("rule", {}).items() if k != "name"}
    data_node = _data_defaults(dataset)
    top = {key: config.get(key, fallback) for key, fallback in TOP_LEVEL_OPTIONS.items()}
    if isinstance(top["arch"], dict):  # arch is a config group: its node names the choice
        top["arch"] = top["arch"].get("name", "auto")
    # the config's value wins over the declaration's: it is what a launch without overrides used
    options = {**data_node, **declared, **rule_node, **top}
    # a rule not registered in this process (a plugin that is not installed here) has options the
    # report cannot know: they are not judged, rather than all called variants
    return Defaults({k: _plain(v) for k, v in options.items() if k not in ignored}, ignored, from_config=True,
                    checks_unknown=rule in RULES)


def defaults(dataset: str, rule: str) -> Defaults:
    """Defaults of the identity options of runs of ``rule`` on ``dataset``: the configuration is
    composed once per (configuration directory, data set, rule)."""
    return _defaults_at(CONF_DIR, dataset, rule)


def variant(summary: dict, found: Defaults | None = None) -> str:
    """'key=value, ...' for every identity option that differs from its default ('' if none).

    An option the summary lacks counts as its default (runs from before the option existed)."""
    found = found or defaults(str(summary["dataset"]), str(summary["rule"]))
    changed = []
    for key in sorted(summary):
        if key in found.ignored:
            continue
        value = _plain(summary[key])
        if key in found.options:
            if value != found.options[key]:
                changed.append(f"{key}={_text(value)}")
        elif key.startswith("arch_") and "arch" in summary:  # the architecture's options (walign/archs/)
            changed.append(f"{key}={_text(value)}")
        elif found.checks_unknown:
            changed.append(f"{key}={_text(value)} (not a declared option)")
    return ", ".join(changed)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def fallback_note() -> str:
    """What REPORT.md says when the defaults could not come from the configuration."""
    return (f"The configuration directory `{CONF_DIR}` was not found or did not compose (walign installed "
            f"without its repository?): variants were judged against the rule declarations alone (rule "
            f"options, arch = auto, compute_precision = fp32, compile = false); data-set options and other keys were not checked.")
