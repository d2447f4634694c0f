"""A rule's options, declared once: the keyword arguments of its ``create`` with their defaults
and type annotations.

From that one declaration walign builds the rule's Hydra config node (walign/configs.py), checks
every value a user gives before any data is loaded (``resolve``), and names the valid options when
one is unknown. A value is checked against its annotation: ``bool`` accepts only true/false,
``int`` only integers, ``float`` finite numbers, ``Literal[...]`` the listed values, ``X | None``
also null, ``list[int]`` a list of integers.
"""
from __future__ import annotations

import math
import types
import typing
from typing import Literal, Union, get_args, get_origin

from ..errors import ConfigError


def declared(cls) -> dict:
    """name -> default of the options ``cls.create(net, seed, ...)`` takes."""
    import inspect
    params = list(inspect.signature(cls.create).parameters.values())[2:]  # after net, seed
    return {p.name: p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}


def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls.create)
    except Exception:  # an annotation that does not evaluate: accept any value
        return {}


def _fits(value, hint) -> bool:
    if hint is typing.Any:
        return True
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arm) for arm in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0])}" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def resolve(name: str, family: str, implementations: dict, given: dict) -> dict:
    """The options rule ``name`` gets on a ``family`` model from the config values ``given``.

    ``given`` holds the whole config node of the rule, which also carries options that only the
    rule's other family declares (align_ada's RNN-only same_step); those are dropped while they
    keep their default, and refused when set. Unknown options and ill-typed values are refused
    with a ConfigError naming the valid options or the expected type.
    """
    cls = implementations[family]
    mine, hints = declared(cls), _hints(cls)
    others = {k: v for fam, other in implementations.items() if fam != family for k, v in declared(other).items()}
    options = {}
    for key, value in given.items():
        if key in mine:
            hint = hints.get(key, typing.Any)
            if not _fits(value, hint):
                raise ConfigError(f"rule.{key} must be {_describe(hint)}, got {value!r}")
            options[key] = list(value) if isinstance(value, tuple) else value
        elif key in others and value == others[key]:
            continue
        else:
            valid = ", ".join(sorted(mine)) or "none"
            where = f" (it is an option of the {'/'.join(f for f in implementations if f != family)} rule)" \
                if key in others else ""
            raise ConfigError(f"rule {name} has no option {key!r} for the {family} model{where}; "
                              f"its options: {valid}")
    return options
