"""The command line's checks, before Hydra or any training starts: one entrance for every run.

``python main.py ...`` goes through here: Hydra's own flags are read (``hydra_flags``), the
user's plugin modules imported (``import_modules``), every override checked against the
configuration Hydra itself composes (``check_overrides``; a mistake is one line naming the valid
choices), and a single run becomes a checked ``walign.spec.RunSpec`` (``single_run``) that main.py
executes without going through Hydra's job machinery. A sweep (``-m``) goes to Hydra's sweeper,
which builds the same RunSpec for each of its runs.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
GROUP_DIRS = {"dataset": CONF / "dataset", "rule": CONF / "rule", "arch": CONF / "arch", "task": CONF / "task",
              "launcher": CONF / "launcher", "logger": CONF / "logger", "sweeps": ROOT / "sweeps"}
NODES = ("dataset", "rule", "arch")  # groups whose keys can be set (dataset.root=..., rule.projection=...)


def fail(message: str, code: int = 2):
    print(f"walign: error: {message}", file=sys.stderr)
    sys.exit(code)


def _values(override) -> list[str]:
    if override.is_sweep_override():
        try:
            return [str(v) for v in override.sweep_string_iterator()]
        except Exception:  # glob() and friends need Hydra's config loader; let Hydra check those
            return []
    value = override.value()
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]  # logger=[a,b]: each


def group_options(group: str) -> list[str]:
    """The choices of a config group: its YAML files, and the registered rules, data sets or architectures."""
    from walign.archs import ARCHS
    from walign.datasets import DATASETS
    from walign.rules import RULES
    folder = GROUP_DIRS[group]
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    return sorted(names | set({"rule": RULES, "dataset": DATASETS, "arch": [*ARCHS, "auto"]}.get(group, ())))


def hydra_flags(args: list[str]):
    """Hydra's own reading of the command line (its flags, and the overrides in ``.overrides``);
    a flag mistake is one line. Flags that would load a configuration other than conf/config.yaml
    are refused: every check here and in the sweeper reads conf/."""
    from hydra._internal.utils import get_args_parser
    parser = get_args_parser()
    parser.error = lambda message: fail(f"{message} (see python main.py --help)")
    parsed = parser.parse_args(args)
    for flag, given in (("--config-path/-cp", parsed.config_path), ("--config-name/-cn", parsed.config_name),
                        ("--config-dir/-cd", parsed.config_dir), ("--experimental-rerun", parsed.experimental_rerun)):
        if given is not None:
            fail(f"{flag} is not supported: walign's configuration is conf/config.yaml; set values as key=value")
    return parsed


def import_modules(args: list[str]) -> None:
    """``+rule_module=NAME``, ``+dataset_module=NAME``: import the user's modules before anything
    is checked, then make their rules and data sets config choices."""
    from walign.configs import register_configs
    from walign.errors import ConfigError
    from walign.plugins import MODULE_KEYS, import_user_module
    for arg in args:
        key, _, value = arg.lstrip("+").partition("=")
        if key in MODULE_KEYS:
            try:
                import_user_module(value, key)
            except ConfigError as err:
                fail(str(err))
    register_configs()


def compose(overrides: list[str]):
    """conf/config.yaml composed by Hydra with ``overrides``; a failure is one line."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        fail(str(err).strip().splitlines()[0])


def _parse(args: list[str]):
    """The overrides as Hydra parses them; a syntax error (``width=8,``, an unclosed bracket) is
    one line naming the override, not Hydra's grammar dump and exit status 1."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(args)
    except OverrideParseException:
        pass
    for arg in args:  # which one: parse them one by one
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            why = str(err).strip().splitlines()[0] if str(err).strip() else "a syntax error"
            if arg.rstrip().endswith(","):
                why = "a value list ends with a comma"
            fail(f"cannot read {arg!r}: {why} (values are KEY=VALUE, a sweep KEY=V1,V2 with -m; see "
                 f"https://hydra.cc/docs/1.2/advanced/override_grammar/basic)")
    fail(f"cannot read the command line {' '.join(args)!r}")


def check_overrides(args: list[str], multirun: bool = False) -> None:
    """Reject unknown config-group options and keys with one line naming the valid ones. The keys
    are checked against the config Hydra composes from the chosen groups (a sweep's first value),
    so a sweep file's or a task's own group choices count as Hydra applies them."""
    overrides = _parse(args)
    choices = []
    for o in overrides:
        key = o.key_or_group
        if key in GROUP_DIRS and not (o.is_hydra_override() or o.is_delete() or o.is_add()):
            valid = group_options(key)
            for value in _values(o):
                if value not in valid:
                    noun = key[:-1] if key == "sweeps" else key
                    fail(f"unknown {noun} {value!r}; valid {noun}s: {', '.join(valid)}")
            if _values(o) and key != "launcher":  # the launcher's keys are checked below
                many = isinstance(o.value(), list) and not o.is_sweep_override()
                choices.append(f"{key}=[{','.join(_values(o))}]" if many else f"{key}={_values(o)[0]}")
    cfg = compose(choices)
    for o in overrides:
        if not (o.is_hydra_override() or o.is_add() or o.is_delete() or o.key_or_group in GROUP_DIRS):
            _check_key(cfg, o.key_or_group)
    if any(o.key_or_group == "launcher" and "slurm" in _values(o) for o in overrides):
        _check_slurm_launcher(overrides, multirun)


def _check_key(cfg, key: str) -> None:
    """One override's key must exist in the composed config (or be added with +)."""
    head, _, rest = key.partition(".")
    if head in NODES and rest:
        option, known = rest.split(".")[0], list(cfg[head])
        if option in known:
            return
        if head in ("rule", "arch"):
            fail(f"{head} {cfg[head].name} has no option {option!r}; its options: "
                 f"{', '.join(k for k in known if k != 'name') or 'none'}")
        # a data set refuses keys it does not declare (walign.datasets.DataSet.check), so no
        # +dataset.KEY hint: name the data sets that have the key instead
        from walign.datasets import DATASETS
        having = sorted(name for name, entry in DATASETS.items() if option in entry.option_keys())
        elsewhere = (f"; {option} is a key of dataset {', '.join(having)}" if having
                     else f"; no data set has a key {option!r}")
        fail(f"{head} {cfg[head].name} has no key {rest!r} (its keys: {', '.join(known)}){elsewhere}")
    if head not in cfg or head in NODES or head == "hydra":
        keys = [k for k in cfg if k not in ("hydra",) + NODES] + list(GROUP_DIRS)
        fail(f"no config key {key!r}; keys: {', '.join(keys)}")
    if rest and OmegaConf.is_dict(cfg[head]) and rest.split(".")[0] not in cfg[head]:  # verify_md5.kmnist
        known = ", ".join(cfg[head]) or "none"
        if head == "logger":
            fail(f"{key} sets an option of logger {rest.split('.')[0]}, which is not chosen (chosen: {known}); "
                 f"add logger={rest.split('.')[0]}, or logger=[A,B] for several")
        fail(f"{head} has no key {rest.split('.')[0]!r} (its keys: {known})" + (
            "; only those data sets check md5 sums (a plugin data set's own folder is added with "
            f"+{key}=...)" if head == "verify_md5" else f"; to add one anyway use +{key}=..."))


def _check_slurm_launcher(overrides, multirun: bool) -> None:
    if not multirun:
        fail("launcher=slurm submits sweeps: add -m (one run on SLURM is a sweep of one: "
             "python main.py -m ... launcher=slurm)")
    launcher = OmegaConf.load(GROUP_DIRS["launcher"] / "slurm.yaml")["hydra"]["launcher"]
    for o in overrides:
        head, _, rest = o.key_or_group.partition("hydra.launcher.")
        if not head and rest and not o.is_add() and rest.split(".")[0] not in launcher:
            fail(f"launcher=slurm has no key {rest.split('.')[0]!r} (its keys: {', '.join(launcher)})")
    check_slurm()


def check_slurm() -> None:
    """launcher=slurm needs a reachable SLURM controller; say so in one line if there is none."""
    if shutil.which("sbatch") is None:
        fail("launcher=slurm needs SLURM, but sbatch is not on PATH (run on a cluster login node, "
             "or use launcher=local)")
    try:
        probe = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        fail(f"launcher=slurm cannot reach the SLURM controller: sinfo failed ({err})")
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        fail(f"launcher=slurm cannot reach the SLURM controller: {reason}")


def sweep_name(hydra_node) -> str:
    """A launch's name for the loggers (an MLflow experiment, a W&B group): the sweep file chosen
    (or 'sweep') and the time Hydra's sweep folder was named by, e.g. 'table6 2026-12-07_01-08-13'."""
    choice = hydra_node.runtime.choices.get("sweeps") or "sweep"
    return f"{choice} {Path(str(hydra_node.sweep.dir)).name}"


def single_run(args: list[str]):
    """(the checked RunSpec, its config as YAML) of a single run: values and machine are checked
    here, before anything is written."""
    from walign.errors import ConfigError
    from walign.spec import RunSpec
    cfg = compose(args)
    try:
        spec = RunSpec.from_config(cfg)
        spec.check_environment()
    except ConfigError as err:
        fail(str(err))
    return spec, OmegaConf.to_yaml(cfg, resolve=True)


def headline(summary: dict) -> str:
    """The run's main result in words."""
    if "min_test_loss" in summary:
        low = lambda key: "n/a" if summary[key] is None else f"{summary[key]:.4f}"  # noqa: E731
        return f"min train loss {low('min_train_loss')}, min test loss {low('min_test_loss')}"
    acc = summary.get("best_val_acc")
    acc = "n/a" if acc is None else f"{100 * acc:.2f}% (epoch {summary['best_val_epoch']})"
    return f"best validation accuracy {acc}"


def report(summary: dict, multirun: bool) -> str:
    """Say how a run ended (one line); a single run that failed exits 1. Returns its status."""
    status = summary["status"]
    if status == "failed":
        print(f"walign: run failed: {summary['error']} (traceback: {summary['run_dir']}/error.log)",
              file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(1)
    elif status != "running":
        print(f"{status}: {headline(summary)} -> {summary['run_dir']}", flush=True)
    return status
