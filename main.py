"""walign's command line (Hydra).

    python main.py                                   one run on the embedded CIFAR-10 sample
    python main.py rule=normal width=64 lr=2         change any config value (see conf/)
    python main.py -m rule=align_ada width=8,512     a sweep: one run per combination
    python main.py -m sweeps=table6 launcher=slurm   a paper grid (sweeps/), as SLURM array jobs

Mistakes in the command line (an unknown rule or data set, a key that does not exist, a bad
value) are reported in one line, before Hydra or any training starts.
"""
from __future__ import annotations

import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the libraries below load: one line, not a traceback
    ORIGINAL_SIGINT = signal.getsignal(signal.SIGINT)
    STOPPED_EARLY: list[int] = []  # also checked before main(): library code may swallow the SystemExit

    def _stopped_early(signum, frame):
        if not STOPPED_EARLY:
            print("walign: stopped (Ctrl-C) before any run started", file=sys.stderr, flush=True)
        STOPPED_EARLY.append(signum)
        raise SystemExit(130)
    signal.signal(signal.SIGINT, _stopped_early)

import shutil
import subprocess
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent
CONF = ROOT / "conf"
GROUPS = ("dataset", "rule", "task")            # groups whose keys can be set (dataset.root=...)
GROUP_DIRS = {**{g: CONF / g for g in GROUPS}, "launcher": CONF / "launcher", "sweeps": ROOT / "sweeps"}


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


def group_options(group: str) -> list[str]:
    """The choices of a config group: its YAML files, and for ``rule`` every registered rule."""
    from walign.rules import RULES
    folder = GROUP_DIRS[group]
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    return sorted(names | set(RULES)) if group == "rule" else sorted(names)


def group_keys(group: str, choice: str) -> list[str]:
    """The keys of a group's chosen config (a rule's node comes from its declaration)."""
    from walign.configs import rule_node
    from walign.rules import RULES
    if group == "rule" and choice in RULES:
        return list(rule_node(choice))
    node = OmegaConf.load(GROUP_DIRS[group] / f"{choice}.yaml")
    keys = [k for k in node if k != "defaults"]
    for base in (node.get("defaults") or []):  # a preset: the keys of the config it extends
        if isinstance(base, str) and base != "_self_":
            keys = group_keys(group, base) + [k for k in keys if k not in group_keys(group, base)]
    return keys


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


def check_overrides(args: list[str], multirun: bool = False) -> None:
    """Reject unknown config-group options and keys with one line naming the valid ones."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:
        return  # a syntax error: Hydra's own message says where
    base = OmegaConf.load(CONF / "config.yaml")
    choices = {g: next(d[g] for d in OmegaConf.to_container(base.defaults) if isinstance(d, dict) and g in d) for g in GROUPS}
    for o in overrides:
        key = o.key_or_group
        if o.is_hydra_override() or o.is_delete() or key.startswith("+"):
            continue
        if key in GROUP_DIRS:
            valid = group_options(key)
            for value in _values(o):
                if value not in valid:
                    noun = key[:-1] if key == "sweeps" else key
                    fail(f"unknown {noun} {value!r}; valid {noun}s: {', '.join(valid)}")
            values = _values(o)
            if key in GROUPS:
                choices[key] = values[0] if values else choices[key]
    explicit = {o.key_or_group for o in overrides}
    for o in overrides:  # a sweep picks group options too (sweeps=table6 -> dataset=cifar10)
        if o.key_or_group == "sweeps" and _values(o):
            sweep = OmegaConf.to_container(OmegaConf.load(GROUP_DIRS["sweeps"] / f"{_values(o)[0]}.yaml"))
            for entry in sweep.get("defaults", []):
                for key, value in (entry.items() if isinstance(entry, dict) else ()):
                    group = key.replace("override /", "")
                    if group in GROUPS and group not in explicit:
                        choices[group] = value
                        explicit = explicit | {group}
    task = OmegaConf.to_container(OmegaConf.load(GROUP_DIRS["task"] / f"{choices['task']}.yaml"))
    for entry in (task or {}).get("defaults", []):  # a task may pick another option of a group
        for key, value in (entry.items() if isinstance(entry, dict) else ()):
            group = key.replace("override /", "")
            if key.startswith("override /") and group in GROUPS and group not in explicit:
                choices[group] = value
    for o in overrides:
        key = o.key_or_group
        if o.is_hydra_override() or o.is_add() or o.is_delete() or key in GROUP_DIRS:
            continue
        head, _, rest = key.partition(".")
        if head in GROUPS and rest:
            known = group_keys(head, choices[head])
            if head == "rule" and rest.split(".")[0] not in known:
                fail(f"rule {choices[head]} has no option {rest.split('.')[0]!r}; its options: "
                     f"{', '.join(k for k in known if k != 'name') or 'none'}")
            if rest.split(".")[0] not in known:
                fail(f"{head} {choices[head]} has no key {rest!r} (its keys: {', '.join(known)}); "
                     f"to add one anyway use +{key}=...")
        elif head not in base or head == "defaults":
            keys = [k for k in base if k not in ("defaults", "hydra")] + list(GROUP_DIRS)
            fail(f"no config key {key!r}; keys: {', '.join(keys)}")
    if any(o.key_or_group == "launcher" and "slurm" in _values(o) for o in overrides):
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
    from walign.rules import import_rule_module
    from walign.runs import WriteError

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN

    def cannot_write(message: str) -> str:
        """One line; a single run exits 1, while in a sweep only this run has 'failed' (its
        directory may be the only one affected) and the sweep goes on to the next."""
        if not multirun:
            fail(message, 1)
        print(f"walign: error: {message}", file=sys.stderr, flush=True)
        return "failed"

    try:
        if cfg.get("rule_module"):  # in a job process of its own (launcher=local or slurm)
            import_rule_module(cfg.rule_module)
        spec = RunSpec.from_config(cfg)
        summary = execute(spec, OmegaConf.to_yaml(cfg, resolve=True))
    except ConfigError as err:  # bad values or missing data hold for the whole sweep: stop it here
        fail(str(err))
    except WriteError as err:
        return cannot_write(f"{err}; nothing else was changed and the last checkpoint is kept: run the same "
                            f"command to resume once the file can be written")
    status = summary["status"]
    if status == "failed":
        print(f"walign: run failed: {summary['error']} (traceback: {summary['run_dir']}/error.log)",
              file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(1)
    elif status != "running":
        print(f"{status}: {headline(summary)} -> {summary['run_dir']}", flush=True)
    return status


def preflight(args: list[str]) -> None:
    """Check a single run's values and machine before Hydra starts (Hydra creates its output
    folder first thing), so a refused command leaves nothing on disk."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from walign.app import RunSpec
    from walign.errors import ConfigError

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=args)
    except (HydraException, OmegaConfBaseException) as err:
        fail(str(err).strip().splitlines()[0])
    try:
        RunSpec.from_config(cfg).check_environment()
    except ConfigError as err:
        fail(str(err))


def load_rule_module(args: list[str]) -> None:
    """``+rule_module=NAME``: import the user's module of rules before anything is checked."""
    from walign.configs import register_configs
    from walign.errors import ConfigError
    from walign.rules import import_rule_module
    for arg in args:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "rule_module":
            try:
                import_rule_module(value)
            except ConfigError as err:
                fail(str(err))
    register_configs()


if __name__ == "__main__":
    try:
        arguments = sys.argv[1:]
        flags = hydra_flags(arguments)
        load_rule_module(flags.overrides)
        check_overrides(flags.overrides, flags.multirun)
        if not (flags.multirun or flags.help or flags.hydra_help or flags.cfg or flags.info
                or flags.shell_completion):
            preflight(flags.overrides)  # a single run (also with --run): checked before Hydra writes anything
    finally:
        signal.signal(signal.SIGINT, ORIGINAL_SIGINT if ORIGINAL_SIGINT is not None else signal.SIG_DFL)
        if STOPPED_EARLY:  # seen in CI once: a Ctrl-C during start-up was swallowed and the run trained
            sys.exit(130)
    try:
        main()  # a stop signal during training ends the process with walign.interrupt.Stopped
    except KeyboardInterrupt:
        print("walign: stopped (Ctrl-C); the last checkpoint, if any, is kept: run the same command to resume",
              file=sys.stderr, flush=True)
        sys.exit(130)
