"""Rules, data sets and architectures from outside walign: installed packages and quick experiment modules.

* A package declares its modules under the entry-point group ``walign.rules``,
  ``walign.datasets`` or ``walign.archs`` (in its setup.cfg or pyproject.toml, e.g.
  ``my_rule = my_rule_package``); every such module is imported when ``walign.rules`` (or
  ``walign.datasets``, ``walign.archs``) is, and its ``@register`` decorators add its entries.
* ``+rule_module=NAME``, ``+dataset_module=NAME`` or ``+arch_module=NAME`` on the command line
  imports the module NAME (from the working directory or anywhere on sys.path) before the
  configuration is checked: a rule, a data set or a network in a single file, no package needed.

A plugin that fails to import is reported in one line on stderr and skipped, so one broken
package cannot stop runs of the other rules and data sets.
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from .errors import ConfigError

MODULE_KEYS = ("rule_module", "dataset_module", "arch_module")  # config keys naming a user's module to import first


def load_entry_points(group: str) -> list[str]:
    """Import every module registered under the entry-point ``group``; their names."""
    loaded = []
    for entry in entry_points(group=group):
        try:
            entry.load()
            loaded.append(entry.name)
        except Exception as err:  # a broken plugin must not break walign
            kind = group.rpartition(".")[2][:-1]
            print(f"walign: warning: {kind} plugin {entry.name} ({entry.value}) failed to load: "
                  f"{type(err).__name__}: {err}".splitlines()[0], file=sys.stderr)
    return loaded


def import_user_module(name: str, key: str = "rule_module") -> None:
    """Import the module ``name`` given as ``+key=name`` (the working directory first on the
    path); ConfigError if it cannot be imported."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key} must be a module name, got {name!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(name)
    except Exception as err:
        raise ConfigError(f"{key} {name} cannot be imported: {type(err).__name__}: {err}".splitlines()[0]) from None


def import_user_modules(values) -> None:
    """Import the modules a run's config names (``rule_module``, ``dataset_module``), if any."""
    for key in MODULE_KEYS:
        if values.get(key):
            import_user_module(values[key], key)
