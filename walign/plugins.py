"""Rules from outside walign: installed packages and quick experiment modules.

* A package declares its rules under the entry-point group ``walign.rules`` (in its setup.cfg or
  pyproject.toml, e.g. ``my_rule = my_rule_package``); every such module is imported when
  ``walign.rules`` is, and its ``@register`` decorators add its rules to ``RULES``.
* ``+rule_module=NAME`` on the command line imports the module NAME (from the working directory
  or anywhere on sys.path) before the configuration is checked: a rule in a single file, no
  package needed.

A plugin that fails to import is reported in one line on stderr and skipped, so one broken
package cannot stop runs of the other rules.
"""
from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from ..errors import ConfigError

GROUP = "walign.rules"


def load_entry_points() -> list[str]:
    """Import every module registered under the ``walign.rules`` entry-point group; their names."""
    loaded = []
    for entry in entry_points(group=GROUP):
        try:
            entry.load()
            loaded.append(entry.name)
        except Exception as err:  # a broken plugin must not break walign
            print(f"walign: warning: rule plugin {entry.name} ({entry.value}) failed to load: "
                  f"{type(err).__name__}: {err}".splitlines()[0], file=sys.stderr)
    return loaded


def import_rule_module(name: str) -> None:
    """Import the module ``name`` (the working directory first on the path); ConfigError if it
    cannot be imported."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"rule_module must be a module name, got {name!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(name)
    except Exception as err:
        raise ConfigError(f"rule_module {name} cannot be imported: {type(err).__name__}: {err}".splitlines()[0]) from None
