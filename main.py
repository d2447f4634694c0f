"""walign's command line (Hydra).

    python main.py                                   one run on the embedded CIFAR-10 sample
    python main.py rule=normal width=64 lr=2         change any config value (see conf/)
    python main.py -m rule=align_ada width=8,512     a sweep: one run per combination

Mistakes in the command line (an unknown rule or data set, a key that does not exist, a bad
value) are reported in one line, before Hydra or any training starts.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parent / "conf"
GROUPS = ("dataset", "rule", "task")


def fail(message: str, code: int = 2):
    print(f"walign: error: {message}", file=sys.stderr)
    sys.exit(code)


def _values(override) -> list[str]:
    if override.is_sweep_override():
        try:
            return [str(v) for v in override.sweep_string_iterator()]
        except Exception:  # glob() and friends need Hydra's config loader; let Hydra check those
            return []
    return [str(override.value())]


def check_overrides(args: list[str]) -> None:
    """Reject unknown config-group options and keys with one line naming the valid ones."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except Exception:
        return  # a syntax error: Hydra's own message says where
    base = OmegaConf.load(CONF / "config.yaml")
    choices = {g: next(d[g] for d in OmegaConf.to_container(base.defaults) if isinstance(d, dict) and g in d) for g in GROUPS}
    for o in overrides:
        key = o.key_or_group
        if o.is_hydra_override() or o.is_delete() or key.startswith("+"):
            continue
        if key in GROUPS:
            valid = sorted(p.stem for p in (CONF / key).glob("*.yaml"))
            for value in _values(o):
                if value not in valid:
                    fail(f"unknown {key} {value!r}; valid {key}s: {', '.join(valid)}")
            values = _values(o)
            choices[key] = values[0] if values else choices[key]
    explicit = {o.key_or_group for o in overrides}
    task = OmegaConf.to_container(OmegaConf.load(CONF / "task" / f"{choices['task']}.yaml"))
    for entry in (task or {}).get("defaults", []):  # a task may pick another option of a group
        for key, value in (entry.items() if isinstance(entry, dict) else ()):
            group = key.replace("override /", "")
            if key.startswith("override /") and group in GROUPS and group not in explicit:
                choices[group] = value
    for o in overrides:
        key = o.key_or_group
        if o.is_hydra_override() or o.is_add() or o.is_delete() or key in GROUPS:
            continue
        head, _, rest = key.partition(".")
        if head in GROUPS and rest:
            known = OmegaConf.load(CONF / head / f"{choices[head]}.yaml")
            if rest.split(".")[0] not in known:
                fail(f"{head} {choices[head]} has no key {rest!r} (its keys: {', '.join(known)}); "
                     f"to add one anyway use +{key}=...")
        elif head not in base or head == "defaults":
            keys = [k for k in base if k not in ("defaults", "hydra")] + list(GROUPS)
            fail(f"no config key {key!r}; keys: {', '.join(keys)}")


def headline(summary: dict) -> str:
    """The run's main result in words."""
    if "min_test_loss" in summary:
        low = lambda key: "n/a" if summary[key] is None else f"{summary[key]:.4f}"  # noqa: E731
        return f"min train loss {low('min_train_loss')}, min test loss {low('min_test_loss')}"
    acc = summary.get("best_val_acc")
    acc = "n/a" if acc is None else f"{100 * acc:.2f}% (epoch {summary['best_val_epoch']})"
    return f"best validation accuracy {acc}"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from walign.app import RunSpec, execute
    from walign.errors import ConfigError

    try:
        spec = RunSpec.from_config(cfg)
        summary = execute(spec, OmegaConf.to_yaml(cfg, resolve=True))
    except ConfigError as err:
        fail(str(err))
    status = summary["status"]
    if status == "failed":
        print(f"walign: run failed: {summary['error']} (traceback: {summary['run_dir']}/error.log)",
              file=sys.stderr, flush=True)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(1)
    else:
        print(f"{status}: {headline(summary)} -> {summary['run_dir']}", flush=True)
    return status


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
